import CShmTransport
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
    /// The record is written to an unnamed file in the directory first (`O_TMPFILE`) and then
    /// linked to the flag's name (`linkat` fails with `EEXIST` when the flag exists, which keeps
    /// the flag exclusive). So the flag never exists without its record — an empty flag would
    /// read as another program's forever — and a monitor killed half-way leaves nothing: the
    /// unnamed file goes with its last descriptor. Where the file system has no `O_TMPFILE`, a
    /// hidden temporary name outside the object grammar is used instead.
    public func acquire() throws(ShmCleanupError) -> Holder? {
        let record = try RecordFile(in: directory, for: path, record: ownRecord())
        defer { record.close() }
        for _ in 0..<3 {
            if record.link(to: path) { return nil }
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

    /// This process's 32-byte record: magic, pid, process start time.
    private func ownRecord() -> [UInt8] {
        let me = getpid()
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeMutableBytes { b in
            b.storeLE(Self.magic, 0)
            b.storeLE(me, 4)
            b.storeLE(inspector.stat(pid: me)?.startTime ?? 0, 8)
        }
        return bytes
    }

    /// A file next to the flag holding the record, not yet under the flag's name: unnamed
    /// (`O_TMPFILE`) where the file system allows, else under a hidden temporary name that
    /// scanners and cleanups never take for a session object.
    private struct RecordFile {
        let fd: Int32
        /// The hidden name when `O_TMPFILE` was not available.
        let temporary: String?

        init(in directory: FilePath, for path: String, record: [UInt8]) throws(ShmCleanupError) {
            var fd = open(directory.string, cshm_o_tmpfile_flag() | O_WRONLY | O_CLOEXEC, 0o600)
            var temporary: String?
            let unnamedError = fd < 0 ? errno : 0
            if unnamedError == EOPNOTSUPP || unnamedError == EISDIR || unnamedError == EINVAL {
                let name = ".\(FilePath(path).lastComponent?.string ?? "flag").\(getpid()).\(String(UInt64.random(in: 0...UInt64.max), radix: 16)).tmp"
                temporary = directory.appending(name).string
                fd = open(temporary!, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o600)
            }
            guard fd >= 0 else {
                throw ShmCleanupError(
                    .systemCall, "cannot create the monitor flag '\(path)'", subject: temporary ?? directory.string, errno: errno)
            }
            self.fd = fd
            self.temporary = temporary
            let written = record.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == record.count else {
                let err = written < 0 ? errno : EIO
                close()
                throw ShmCleanupError(
                    .systemCall, "cannot write the monitor flag '\(path)'", subject: temporary ?? directory.string, errno: err)
            }
        }

        /// Gives the record the flag's name; false with `errno` set when that fails.
        func link(to path: String) -> Bool {
            if let temporary { return Glibc.link(temporary, path) == 0 }
            return linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0
        }

        func close() {
            if let temporary { unlink(temporary) }
            _ = Glibc.close(fd)
        }
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
