import Logging
import SystemPackage

/// What `shmmonitor` does, as a library (as the original's `Monitor` class): inspect sessions,
/// tell whether one is present and in use, watch one, clean it, sweep by job, prefix or user,
/// and read its free memory. The CLI's modes are thin layers over it.
public struct Monitor: Sendable {
    public let directory: FilePath
    let logger: Logger
    private let inspector = ProcessInspector()

    public init(directory: FilePath = SessionScanner.defaultDirectory, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    private var scanner: SessionScanner { SessionScanner(directory: directory, logger: logger) }
    private var cleaner: SessionCleaner { SessionCleaner(directory: directory, logger: logger) }

    /// Every session in the directory, with live users.
    public func listAll() throws(ShmCleanupError) -> ShmDirectoryScan { try scanner.scan() }

    /// Session `id` as it is now, with its live users; `nil` when none of its objects exists.
    public func inspect(_ id: ShmID) throws(ShmCleanupError) -> ShmSession? { try scanner.scan(only: [id]).sessions.first }

    /// Whether any object of session `id` other than a monitor's flag exists.
    public func isPresent(_ id: ShmID) throws(ShmCleanupError) -> Bool {
        try scanner.scan(only: [id], liveness: false).sessions.first?.objects.contains { $0.name.kind != .monitorFlag } ?? false
    }

    /// Whether a live process uses session `id`. Asks the processes registered in its management
    /// segment first (pid and start time); reads every `/proc/<pid>/maps` only when none of them
    /// is alive, for users that map it unregistered (C++ FairMQ devices, a damaged table).
    public func isInUse(_ id: ShmID, ignoring me: Int32? = nil) throws(ShmCleanupError) -> Bool {
        guard let quick = try scanner.scan(only: [id], liveness: false).sessions.first else { return false }
        if quick.record?.processes.contains(where: { $0.pid != me && inspector.isAlive(pid: $0.pid, startTime: $0.startTime) }) == true {
            return true
        }
        return try scanner.scan(only: [id]).sessions.first?.isInUse ?? false
    }

    /// One step of watching session `id` (the monitor's loop calls it every check interval).
    public func observe(_ id: ShmID, with watch: inout SessionWatch, now: UInt64, ignoring me: Int32? = nil)
        throws(ShmCleanupError) -> SessionWatch.Decision
    {
        let present = try isPresent(id)
        let inUse = present ? try isInUse(id, ignoring: me) : false
        return watch.observe(present: present, inUse: inUse, now: now)
    }

    /// Removes sessions (see ``SessionCleaner/clean(_:options:)`` for the safety rules).
    public func clean(_ ids: [ShmID], options: SessionCleaner.Options = .init()) throws(ShmCleanupError) -> CleanupReport {
        try cleaner.clean(ids, options: options)
    }

    /// Removes every session `selection` selects; sessions in use are kept unless forced.
    public func sweep(_ selection: SweepSelection, options: SessionCleaner.Options = .init()) throws(ShmCleanupError) -> CleanupReport {
        try cleaner.sweep(selection, options: options)
    }

    /// Free bytes of each managed segment of session `id`, as its processes last published them
    /// (empty for a session without our management record).
    public func freeBytes(_ id: ShmID) throws(ShmCleanupError) -> [UInt16: UInt64] {
        let record = try scanner.scan(only: [id], liveness: false).sessions.first?.record
        return Dictionary((record?.segments ?? []).map { ($0.id, $0.freeBytes) }, uniquingKeysWith: { a, _ in a })
    }
}
