import Logging
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The result of scanning a shm directory.
public struct ShmDirectoryScan: Sendable, Encodable {
    /// The directory scanned.
    public let directory: String
    /// Sessions, sorted by shmId.
    public let sessions: [ShmSession]
    /// Entries that are not transport objects (never touched).
    public let foreignEntries: [String]

    enum CodingKeys: String, CodingKey {
        case directory, sessions, foreignEntries = "foreign_entries"
    }
}

/// Scans a shm directory into sessions: objects with owner and size, the management record
/// when it is ours, and the live processes that use each session.
public struct SessionScanner: Sendable {
    /// The directory used when nothing else is said: `$SHMTRANSPORT_SHM_DIR`, else `/dev/shm`.
    public static var defaultDirectory: FilePath {
        if let value = getenv("SHMTRANSPORT_SHM_DIR").map({ String(cString: $0) }), !value.isEmpty {
            return FilePath(value)
        }
        return FilePath("/dev/shm")
    }

    /// The directory scanned.
    public let directory: FilePath
    let logger: Logger
    var inspector = ProcessInspector()

    /// Creates a scanner for `directory`.
    public init(directory: FilePath = SessionScanner.defaultDirectory, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    /// Opens the directory.
    /// - Throws: ``ShmCleanupError/Code/invalidDirectory`` when it is missing or not a directory.
    func openDirectory() throws(ShmCleanupError) -> FileDescriptor {
        switch Posix.retrying({ open(directory.string, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) {
        case .success(let raw):
            return FileDescriptor(rawValue: raw)
        case .failure(let error):
            let hint =
                error == .noSuchFileOrDirectory || error == .notDirectory
                ? "shm directory '\(directory)' does not exist or is not a directory; pass an existing directory (--shm-dir or SHMTRANSPORT_SHM_DIR), or unset it to use /dev/shm"
                : "cannot open shm directory '\(directory)'; check that it is a readable directory"
            throw ShmCleanupError(.invalidDirectory, hint, subject: directory.string, errno: error.rawValue)
        }
    }

    /// Scans the whole directory.
    /// - Parameters:
    ///   - only: when given, only these sessions are examined (faster for targeted cleanups).
    ///   - liveness: whether to compute the live users of each session (reads `/proc`).
    public func scan(only: Set<ShmID>? = nil, liveness: Bool = true) throws(ShmCleanupError) -> ShmDirectoryScan {
        let dirFD = try openDirectory()
        defer { try? dirFD.close() }
        let names: [String]
        switch Posix.listDirectory(dirFD) {
        case .success(let n): names = n
        case .failure(let e):
            throw ShmCleanupError(.systemCall, "cannot list '\(directory)'", subject: directory.string, errno: e.rawValue)
        }

        var bySession: [ShmID: [ShmObject]] = [:]
        var foreign: [String] = []
        for fileName in names {
            guard let name = ShmObjectName(fileName: fileName) else {
                foreign.append(fileName)
                continue
            }
            if let only, !only.contains(name.shmID) { continue }
            guard case .success(let st) = Posix.lstat(at: dirFD, fileName) else { continue }  // vanished meanwhile
            bySession[name.shmID, default: []].append(
                ShmObject(name: name, path: directory.appending(fileName).string, stat: st))
        }

        var sessions: [ShmSession] = []
        sessions.reserveCapacity(bySession.count)
        for (id, objects) in bySession {
            var session = ShmSession(
                shmID: id, objects: objects, managementStatus: .missing, record: nil, users: [])
            readManagement(into: &session, directoryFD: dirFD)
            session.objects.sort { $0.name.removalRank < $1.name.removalRank }
            sessions.append(session)
        }
        if liveness { computeUsers(&sessions) }
        sessions.sort { $0.shmID < $1.shmID }
        logger.debug(
            "scanned shm directory",
            metadata: ["shm.dir": "\(directory)", "shm.sessions": "\(sessions.count)", "shm.foreign": "\(foreign.count)"])
        return ShmDirectoryScan(directory: directory.string, sessions: sessions, foreignEntries: foreign.sorted())
    }

    /// Reads `fmq_<id>_mng` (never through a symlink) and adds file-backed regions it names.
    private func readManagement(into session: inout ShmSession, directoryFD: FileDescriptor) {
        guard let mng = session.objects.first(where: { $0.name.kind == .management }) else { return }
        guard mng.fileType == .regular else {
            session.managementStatus = .unreadable("'\(mng.fileName)' is a \(mng.fileType.rawValue), not a file")
            return
        }
        let fd: FileDescriptor
        switch Posix.retrying({ openat(directoryFD.rawValue, mng.fileName, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK) }) {
        case .success(let raw): fd = FileDescriptor(rawValue: raw)
        case .failure(let error):
            session.managementStatus = .unreadable("cannot open '\(mng.fileName)': \(error)")
            return
        }
        defer { try? fd.close() }
        let limit = Int(min(max(mng.size, 0), 1 << 24))
        var bytes = [UInt8](repeating: 0, count: max(limit, 8))
        let count = (try? bytes.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }) ?? 0
        let decoded = bytes.withUnsafeBytes { raw in
            Result { () throws(ManagementRecord.DecodeFailure) in
                try ManagementRecord(bytes: UnsafeRawBufferPointer(rebasing: raw[0..<count]))
            }
        }
        switch decoded {
        case .success(let record):
            session.record = record
            session.managementStatus = .ours
            for region in record.regions where !region.path.isEmpty {
                let name = ShmObjectName(session.shmID, .region(UInt32(region.id)))
                let path = region.path + name.fileName
                if case .success(let st) = Posix.lstat(path: path) {
                    session.objects.append(ShmObject(name: name, path: path, stat: st))
                }
            }
        case .failure(.foreign):
            session.managementStatus = .foreign
        case .failure(let failure):
            session.managementStatus = .unreadable(failure.description)
        }
    }

    /// Finds live users: processes mapping any object (one pass over `/proc`) and live registered processes.
    private func computeUsers(_ sessions: inout [ShmSession]) {
        var owner: [FileKey: (session: Int, fileName: String)] = [:]
        for (i, s) in sessions.enumerated() {
            for o in s.objects where o.fileType == .regular { owner[o.key] = (i, o.fileName) }
        }
        let mapping = inspector.processesMapping(Set(owner.keys))
        var uses: [[Int32: (Set<String>, ProcessUse.Evidence, UInt32?)]] = Array(repeating: [:], count: sessions.count)
        for (pid, keys) in mapping {
            for key in keys {
                guard let (i, fileName) = owner[key] else { continue }
                uses[i][pid, default: ([], .maps, nil)].0.insert(fileName)
            }
        }
        let me = getpid()
        for (i, s) in sessions.enumerated() {
            for p in s.record?.processes ?? [] where p.pid != me && uses[i][p.pid] == nil {
                if inspector.isAlive(pid: p.pid, startTime: p.startTime) {
                    uses[i][p.pid] = ([], .registered, p.slurmJobID == 0 ? nil : p.slurmJobID)
                }
            }
            sessions[i].users = uses[i].keys.sorted().map { pid in
                let (files, evidence, job) = uses[i][pid]!
                return ProcessUse(
                    pid: pid, command: inspector.command(pid: pid), evidence: evidence, objects: files.sorted(),
                    slurmJobID: job)
            }
        }
    }
}
