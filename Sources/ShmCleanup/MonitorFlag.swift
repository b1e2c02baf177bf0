import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The "a monitor runs for this session" flag, `sem.fmq_<id>_ms`, as FairMQ keeps it (devices
/// only test whether it exists). Ours also records who holds it — a magic, the pid and the
/// process start time in the first 16 bytes of its 32 — so a flag left by a SIGKILLed monitor
/// is recognised as stale and taken over instead of blocking monitors forever.
public struct MonitorFlag: Sendable {
    /// Who holds an existing flag.
    public enum Holder: Sendable, Hashable {
        /// A live monitor process.
        case live(pid: Int32)
        /// Its holder (one of our monitors) is dead: ``acquire()`` takes such a flag over.
        case stale
        /// Not one of our records (a C++ FairMQ monitor's flag, say): who holds it cannot be checked.
        case foreign
    }

    static let magic: UInt32 = 0x534d_4f4e  // "NOMS"

    public let name: ShmObjectName
    let directory: FilePath
    let inspector = ProcessInspector()

    /// The flag of session `id` in `directory`.
    public init(_ id: ShmID, directory: FilePath = SessionScanner.defaultDirectory) {
        self.name = ShmObjectName(id, .monitorFlag)
        self.directory = directory
    }

    private var path: String { directory.appending(name.fileName).string }

    /// Takes the flag for this process. Returns the holder instead when a live monitor (or a
    /// C++ FairMQ monitor) already has it; replaces a stale flag of a dead monitor.
    ///
    /// The record is written to a private temporary file first and then linked to the flag's
    /// name (`link` fails with `EEXIST` when the flag exists, which keeps the flag exclusive), so
    /// the flag never exists without its record, even when this process dies half-way: an empty
    /// flag would read as another program's forever.
    public func acquire() throws(ShmCleanupError) -> Holder? {
        let temporary = try writeTemporaryRecord()
        defer { unlink(temporary) }
        for _ in 0..<3 {
            if link(temporary, path) == 0 { return nil }
            let err = errno
            guard err == EEXIST else {
                throw ShmCleanupError(
                    .systemCall, "cannot create the monitor flag '\(path)'", subject: path, errno: err)
            }
            switch holder() {
            case .live(let pid): return .live(pid: pid)
            case .foreign: return .foreign
            case .stale, nil: unlink(path)  // a dead monitor's flag: take it over
            }
        }
        throw ShmCleanupError(.systemCall, "the monitor flag '\(path)' keeps changing; try again", subject: path)
    }

    /// Writes this process's record to a new file next to the flag, under a name outside the
    /// transport's object grammar (scanners and cleanups never take it for a session object),
    /// and returns its path.
    private func writeTemporaryRecord() throws(ShmCleanupError) -> String {
        let me = getpid()
        let unique = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let temporary = directory.appending(".\(name.fileName).\(me).\(unique).tmp").string
        let fd = open(temporary, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ShmCleanupError(
                .systemCall, "cannot create the monitor flag '\(path)'", subject: temporary, errno: errno)
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeMutableBytes { b in
            b.storeLE(Self.magic, 0)
            b.storeLE(me, 4)
            b.storeLE(inspector.stat(pid: me)?.startTime ?? 0, 8)
        }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            let err = written < 0 ? errno : EIO
            unlink(temporary)
            throw ShmCleanupError(
                .systemCall, "cannot write the monitor flag '\(path)'", subject: temporary, errno: err)
        }
        return temporary
    }

    /// Who holds the flag now, or `nil` when there is none.
    public func holder() -> Holder? {
        guard let bytes = Posix.readSmallFile(path, limit: 64) else { return nil }
        guard bytes.count >= 16 else { return .foreign }
        return bytes.withUnsafeBytes { b -> Holder in
            guard b.loadLE(UInt32.self, 0) == Self.magic else { return .foreign }
            let pid = b.loadLE(Int32.self, 4)
            return inspector.isAlive(pid: pid, startTime: b.loadLE(UInt64.self, 8)) ? .live(pid: pid) : .stale
        }
    }

    /// Removes the flag if this process holds it.
    public func release() {
        if case .live(let pid) = holder(), pid == getpid() { unlink(path) }
    }
}
