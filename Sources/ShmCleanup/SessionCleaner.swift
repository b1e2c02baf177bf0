import Logging
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Removes sessions from a shm directory, safely.
///
/// - Objects are removed in FairMQ's order: regions (rg, rgq, rrc), segments, the management
///   segment, the monitor flag. The directory is scanned, so a session whose `_mng` is
///   missing or not ours (a C++ FairMQ session) is still removed completely.
/// - A session that live processes use is refused unless `force` is set.
/// - A session with objects of another user is refused unless the caller is root.
/// - Symbolic links and non-regular files are never removed or followed; names outside the
///   object grammar are never touched.
public struct SessionCleaner: Sendable {
    /// How a cleanup behaves.
    public struct Options: Sendable {
        /// Remove sessions even when live processes use them.
        public var force = false
        /// Report what would be removed, remove nothing.
        public var dryRun = false
        /// Keep the monitor flag `sem.fmq_<id>_ms` (FairMQ's plain `Cleanup`; `-c` removes it).
        public var keepMonitorFlag = false

        public init(force: Bool = false, dryRun: Bool = false, keepMonitorFlag: Bool = false) {
            self.force = force
            self.dryRun = dryRun
            self.keepMonitorFlag = keepMonitorFlag
        }
    }

    let scanner: SessionScanner
    let logger: Logger
    /// The caller's effective uid (root may remove anybody's objects).
    let effectiveUID: uid_t

    /// Creates a cleaner for `directory`.
    public init(directory: FilePath = SessionScanner.defaultDirectory, logger: Logger) {
        self.scanner = SessionScanner(directory: directory, logger: logger)
        self.logger = logger
        self.effectiveUID = geteuid()
    }

    /// Removes the given sessions. A session with no objects is reported as `nothing-found`.
    public func clean(_ ids: [ShmID], options: Options = Options()) throws(ShmCleanupError) -> CleanupReport {
        let scan = try scanner.scan(only: Set(ids))
        var found: [ShmID: ShmSession] = [:]
        for s in scan.sessions { found[s.shmID] = s }
        var report = CleanupReport(directory: scan.directory, sessions: [])
        let dirFD = try scanner.openDirectory()
        defer { try? dirFD.close() }
        var seen = Set<ShmID>()
        for id in ids where seen.insert(id).inserted {
            guard let session = found[id] else {
                logger.info("no objects found", metadata: ["shm.id": "\(id)"])
                report.sessions.append(
                    .init(shmID: id, sessionName: nil, status: .nothingFound, message: nil, users: [], objects: []))
                continue
            }
            report.sessions.append(remove(session, options: options, directoryFD: dirFD))
        }
        return report
    }

    /// Removes every session for which `select` is true. Sessions in use are kept (and
    /// reported as refused) unless `force` is set; this never fails for them, so sweeps can run
    /// unattended.
    public func sweep(options: Options = Options(), where select: (ShmSession) -> Bool) throws(ShmCleanupError)
        -> CleanupReport
    {
        let scan = try scanner.scan()
        var report = CleanupReport(directory: scan.directory, sessions: [])
        let dirFD = try scanner.openDirectory()
        defer { try? dirFD.close() }
        for session in scan.sessions where select(session) {
            report.sessions.append(remove(session, options: options, directoryFD: dirFD))
        }
        return report
    }

    /// Scans the directory (for callers that want to select or show sessions first).
    public func scan() throws(ShmCleanupError) -> ShmDirectoryScan { try scanner.scan() }

    private func remove(_ session: ShmSession, options: Options, directoryFD: FileDescriptor)
        -> CleanupReport.SessionOutcome
    {
        var logger = self.logger
        logger[metadataKey: "shm.id"] = "\(session.shmID)"
        if let name = session.sessionName { logger[metadataKey: "shm.session"] = "\(name)" }
        let name = session.sessionName.map { "session '\($0)' (shmid \(session.shmID))" } ?? "shmid \(session.shmID)"

        if effectiveUID != 0 {
            let others = session.objects.filter { $0.fileType == .regular && $0.ownerUID != effectiveUID }
            if let other = others.first {
                let message =
                    "\(name) has objects of uid \(other.ownerUID) (\(other.fileName)); only that user or root may remove them: run the cleanup as that user or as root"
                logger.info("refused: objects of another user", metadata: ["shm.owner": "\(other.ownerUID)"])
                return .init(
                    shmID: session.shmID, sessionName: session.sessionName, status: .refusedNotOwner,
                    message: message, users: session.users,
                    objects: session.objects.map {
                        .init(
                            name: $0.fileName, path: $0.path, size: $0.size, action: .kept,
                            reason: "session has objects of another user", errno: nil)
                    })
            }
        }

        if session.isInUse && !options.force {
            let pids = session.users.map { "\($0.pid) (\($0.command))" }.joined(separator: ", ")
            let message =
                "\(name) is in use by pid \(pids); stop those processes first, or add --force to remove it anyway (their mappings stay valid until they exit)"
            logger.info("refused: session in use", metadata: ["shm.pids": "\(pids)"])
            return .init(
                shmID: session.shmID, sessionName: session.sessionName, status: .refusedInUse, message: message,
                users: session.users,
                objects: session.objects.map {
                    .init(
                        name: $0.fileName, path: $0.path, size: $0.size, action: .kept, reason: "session in use",
                        errno: nil)
                })
        }

        var outcomes: [CleanupReport.ObjectOutcome] = []
        var complete = true
        for object in session.objects {
            if options.keepMonitorFlag && object.name.kind == .monitorFlag {
                outcomes.append(
                    .init(
                        name: object.fileName, path: object.path, size: object.size, action: .kept,
                        reason: "monitor flag kept", errno: nil))
                continue
            }
            guard object.fileType == .regular else {
                complete = false
                outcomes.append(
                    .init(
                        name: object.fileName, path: object.path, size: object.size, action: .kept,
                        reason: "is a \(object.fileType.rawValue), not a shared memory object; never followed or removed",
                        errno: nil))
                continue
            }
            if options.dryRun {
                outcomes.append(
                    .init(
                        name: object.fileName, path: object.path, size: object.size, action: .wouldRemove,
                        reason: nil, errno: nil))
                continue
            }
            let result: Result<Void, Errno>
            if object.path.hasSuffix("/" + object.fileName) && object.path == scanner.directory.appending(object.fileName).string {
                result = Posix.unlink(at: directoryFD, object.fileName)
            } else {
                // A file-backed region outside the shm directory: check again that it is a regular file.
                switch Posix.lstat(path: object.path) {
                case .success(let st) where (st.st_mode & S_IFMT) == S_IFREG:
                    result = Posix.retrying { unlink(object.path) }.map { _ in () }
                case .success:
                    result = .failure(.notPermitted)
                case .failure(let e):
                    result = .failure(e)
                }
            }
            switch result {
            case .success:
                logger.debug("removed", metadata: ["shm.object": "\(object.path)"])  // the report lists it
                outcomes.append(
                    .init(name: object.fileName, path: object.path, size: object.size, action: .removed, reason: nil, errno: nil))
            case .failure(.noSuchFileOrDirectory):
                outcomes.append(
                    .init(
                        name: object.fileName, path: object.path, size: object.size, action: .alreadyGone, reason: nil,
                        errno: nil))
            case .failure(let e):
                complete = false
                logger.info("could not remove", metadata: ["shm.object": "\(object.path)", "error.errno": "\(e.rawValue)"])
                outcomes.append(
                    .init(
                        name: object.fileName, path: object.path, size: object.size, action: .failed,
                        reason: "\(e)", errno: e.rawValue))
            }
        }
        let status: CleanupReport.SessionOutcome.Status =
            options.dryRun ? .wouldRemove : (complete ? .removed : .incomplete)
        let message = complete ? nil : "\(name): some objects were kept or could not be removed; see each object's reason"
        return .init(
            shmID: session.shmID, sessionName: session.sessionName, status: status, message: message,
            users: session.users, objects: outcomes)
    }
}
