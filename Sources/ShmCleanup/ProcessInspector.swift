import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// What the engine knows about one live process that uses a session.
public struct ProcessUse: Sendable, Hashable, Codable, CustomStringConvertible {
    /// How the engine knows the process uses the session.
    public enum Evidence: String, Sendable, Hashable, Codable {
        /// `/proc/<pid>/maps` shows one of the session's objects.
        case maps
        /// The process is registered in the management segment and still alive.
        case registered
    }

    public let pid: Int32
    /// The process name from `/proc/<pid>/comm`.
    public let command: String
    public let evidence: Evidence
    /// Object file names the process maps (for `.maps`).
    public let objects: [String]
    /// The Slurm job recorded for a registered process, if any.
    public let slurmJobID: UInt32?

    enum CodingKeys: String, CodingKey {
        case pid, command, evidence, objects, slurmJobID = "slurm_job_id"
    }

    public var description: String {
        switch evidence {
        case .maps: return "pid \(pid) (\(command)) maps \(objects.joined(separator: ", "))"
        case .registered: return "pid \(pid) (\(command)) is attached"
        }
    }
}

/// Reads `/proc` to tell which processes are alive and which map which files.
public struct ProcessInspector: Sendable {
    var procRoot = "/proc"

    /// Creates an inspector of the live system.
    public init() {}

    /// Start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) and state letter.
    public func stat(pid: Int32) -> (startTime: UInt64, state: Character)? {
        guard let bytes = Posix.readSmallFile("\(procRoot)/\(pid)/stat", limit: 4096) else { return nil }
        // The command may contain spaces and ')': fields start after the last ')'.
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "))
        // fields[0] is field 3 (state); field 22 is fields[19].
        guard fields.count > 19, let state = fields[0].first,
            let start = UInt64(String(decoding: fields[19], as: UTF8.self))
        else { return nil }
        return (start, Character(UnicodeScalar(state)))
    }

    /// Whether `pid` is a live (not zombie) process, and — when `startTime` is given — the same
    /// process that registered (not a recycled pid).
    public func isAlive(pid: Int32, startTime: UInt64?) -> Bool {
        guard pid > 0, let info = stat(pid: pid), info.state != "Z", info.state != "X" else { return false }
        if let startTime, startTime != 0 { return info.startTime == startTime }
        return true
    }

    /// The process name from `/proc/<pid>/comm`.
    func command(pid: Int32) -> String {
        guard let bytes = Posix.readSmallFile("\(procRoot)/\(pid)/comm", limit: 256) else { return "?" }
        return String(decoding: bytes, as: UTF8.self).trimmingTrailingNewline()
    }

    /// Every live process other than this one that maps one of `files`, with the files it maps.
    /// Processes whose maps cannot be read (other users' when not root) are not seen.
    func processesMapping(_ files: Set<FileKey>) -> [Int32: Set<FileKey>] {
        guard !files.isEmpty, let entries = try? Posix.listDirectoryPath(procRoot) else { return [:] }
        let me = getpid()
        var result: [Int32: Set<FileKey>] = [:]
        for entry in entries {
            guard let pid = Int32(entry), pid != me,
                let maps = Posix.readSmallFile("\(procRoot)/\(pid)/maps", limit: 1 << 26)
            else { continue }
            for line in maps.split(separator: UInt8(ascii: "\n")) {
                guard let key = Self.fileKey(mapsLine: line), files.contains(key) else { continue }
                result[pid, default: []].insert(key)
            }
        }
        return result
    }

    /// Parses `address perms offset major:minor inode path` into a file key (nil for anonymous maps).
    static func fileKey(mapsLine line: ArraySlice<UInt8>) -> FileKey? {
        var fields = line.split(separator: UInt8(ascii: " "), maxSplits: 5, omittingEmptySubsequences: true)
            .makeIterator()
        _ = fields.next()
        _ = fields.next()
        _ = fields.next()
        guard let dev = fields.next(), let inodeField = fields.next(),
            let inode = UInt64(String(decoding: inodeField, as: UTF8.self)), inode != 0,
            let colon = dev.firstIndex(of: UInt8(ascii: ":")),
            let major = UInt64(String(decoding: dev[..<colon], as: UTF8.self), radix: 16),
            let minor = UInt64(String(decoding: dev[(colon + 1)...], as: UTF8.self), radix: 16)
        else { return nil }
        return FileKey(major: major, minor: minor, inode: inode)
    }
}

extension Posix {
    static func listDirectoryPath(_ path: String) throws -> [String] {
        let fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.directory])
        defer { try? fd.close() }
        return try listDirectory(fd).get()
    }
}

extension String {
    func trimmingTrailingNewline() -> String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
