import ArgumentParser
import Logging
import ShmCleanup
import ShmCore
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shm-keepalive`: creates a session's management segment and managed segments, registers
/// itself as an attached process, keeps them mapped, and waits for SIGTERM, SIGINT or SIGHUP.
///
/// It is the outside keep-alive process of FairMQ's `keep-alive` example: it pre-creates the
/// memory, through the same ``SessionMemory`` a device uses, so devices can attach with
/// `--shm-no-cleanup`, and it is what the launcher, CTest and Slurm tests run as "a device
/// holding shared memory".
@main
struct KeepAliveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shm-keepalive",
        abstract: "Create a session's shared memory, hold it until signalled, then remove it.",
        discussion: """
            Prints 'ready <shmid> <session>' on standard output once the memory exists. \
            SIGTERM, SIGINT or SIGHUP end it: the session is removed unless --no-cleanup. \
            SIGKILL leaves everything behind (what the cleanup tools are for).
            """,
        version: ShmTransportVersion.current)

    @Option(name: [.customShort("s"), .long], help: "Session id (default: $SHMTRANSPORT_SESSION or 'default').")
    var session: String?

    @Option(
        name: .customLong("segment"),
        help: "A managed segment as <id>,<size in bytes> (repeatable; default one segment 0 of 1 MiB).")
    var segments: [String] = []

    @Option(
        name: .customLong("region"),
        help: "An unmanaged region as <id>,<size in bytes> (repeatable): created and zeroed here without a callback, so a device can adopt it as controller with the same id and size.")
    var regions: [String] = []

    @Option(name: .customLong("shm-dir"), help: "Shm directory (default: $SHMTRANSPORT_SHM_DIR or /dev/shm).")
    var shmDir: String?

    @Flag(name: .customLong("no-cleanup"), help: "Leave the memory in place on exit.")
    var noCleanup = false

    @Option(help: "Exit by itself after this many seconds (0: wait for a signal).")
    var lifetime: Double = 0

    @Flag(name: .customLong("message-records"), help: "Segments created here record every message for 'shmmonitor --debug'.")
    var messageRecords = false

    mutating func validate() throws {
        for spec in segments where parseSegment(spec) == nil {
            throw ValidationError("'--segment \(spec)' is not <id>,<size>; for example '--segment 0,1048576'")
        }
        for spec in regions where parseSegment(spec) == nil {
            throw ValidationError("'--region \(spec)' is not <id>,<size>; for example '--region 100,16777216'")
        }
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .notice
            return handler
        }
        let logger = Logger(label: "shm-keepalive")
        let sessionID = try session.map { try SessionID($0) } ?? SessionID.fromEnvironment()
        let directory = shmDir.map { FilePath($0) } ?? SessionScanner.defaultDirectory
        let specs = segments.isEmpty ? [(UInt16(0), UInt64(1 << 20))] : segments.compactMap(parseSegment)

        // Block the ending signals before anything exists, so no signal can slip past the cleanup.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        // Creates (or joins) the session and registers this process (pid, start time, uid, Slurm
        // job and step); the first segment is this process's own.
        let memory = try SessionMemory(
            SessionConfiguration(
                session: sessionID, directory: directory, segmentSize: Int(specs[0].1), segmentID: specs[0].0,
                noCleanup: noCleanup, messageRecords: messageRecords),
            logger: logger)
        for (segmentID, size) in specs.dropFirst() {
            try memory.createSegment(segmentID, size: Int(size))
        }
        // Regions outlive a device that adopts them (removeOnDestruction false); they go with the session.
        let heldRegions = try regions.compactMap(parseSegment).map { id, size in
            try memory.createRegion(
                RegionOptions(id: id, size: Int(size), zero: true, removeOnDestruction: false), onRelease: nil)
        }
        let id = memory.id
        logger.info("session memory held", metadata: ["shm.id": "\(id)", "shm.session": "\(sessionID)"])
        print("ready \(id) \(sessionID)")
        fflush(nil)

        if lifetime > 0 {
            var timeout = timespec(tv_sec: Int(lifetime), tv_nsec: Int((lifetime - lifetime.rounded(.down)) * 1e9))
            _ = sigtimedwait(&signals, nil, &timeout)
        } else {
            var received: Int32 = 0
            sigwait(&signals, &received)
        }
        // Unregisters and unmaps; as the last process out it removes the session, unless --no-cleanup.
        heldRegions.forEach { $0.destroy() }
        memory.detach()
        // The keep-alive owns the memory's lifetime: devices still attached do not keep it.
        if !noCleanup {
            // A monitor watching the session keeps its flag: it is still running.
            var liveMonitor = false
            if case .live = MonitorFlag(id, directory: directory).holder() { liveMonitor = true }
            let report = try Monitor(directory: directory, logger: logger).clean([id], options: .init(force: true, keepMonitorFlag: liveMonitor))
            for s in report.sessionsLeft {
                logger.error("cleanup incomplete", metadata: ["shm.id": "\(id)", "status": "\(s.status.rawValue)"])
            }
        }
    }

    private func parseSegment(_ spec: String) -> (UInt16, UInt64)? {
        let parts = spec.split(separator: ",")
        guard parts.count == 2, let id = UInt16(parts[0]), let size = UInt64(parts[1]), size > 0 else { return nil }
        return (id, size)
    }
}
