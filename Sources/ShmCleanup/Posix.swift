import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Thin wrappers over the system calls the engine needs. Each captures `errno` right after
/// the call and retries `EINTR` (never for `close`).
enum Posix {
    /// Runs `body` until it does not fail with `EINTR`; returns its result or the `Errno`.
    @inline(never)
    static func retrying<T: FixedWidthInteger>(_ body: () -> T) -> Result<T, Errno> {
        while true {
            let result = body()
            if result == -1 {
                let err = Errno(rawValue: errno)
                if err == .interrupted { continue }
                return .failure(err)
            }
            return .success(result)
        }
    }

    /// Metadata of a directory entry, without following symbolic links.
    /// The corresponding C function is `fstatat` with `AT_SYMLINK_NOFOLLOW`.
    static func lstat(at directory: FileDescriptor, _ name: String) -> Result<stat, Errno> {
        var st = stat()
        return retrying { fstatat(directory.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) }.map { _ in st }
    }

    /// Metadata of a path, without following a final symbolic link.
    /// The corresponding C function is `lstat`.
    static func lstat(path: String) -> Result<stat, Errno> {
        var st = stat()
        return retrying { Glibc.lstat(path, &st) }.map { _ in st }
    }

    /// Removes a directory entry (a symbolic link itself, never its target).
    /// The corresponding C function is `unlinkat`.
    static func unlink(at directory: FileDescriptor, _ name: String) -> Result<Void, Errno> {
        retrying { unlinkat(directory.rawValue, name, 0) }.map { _ in () }
    }

    /// Lists the names in a directory (without `.` and `..`).
    /// The corresponding C functions are `fdopendir` and `readdir`.
    static func listDirectory(_ directory: FileDescriptor) -> Result<[String], Errno> {
        let copy = dup(directory.rawValue)
        guard copy >= 0 else { return .failure(Errno(rawValue: errno)) }
        guard let dir = fdopendir(copy) else {
            let err = Errno(rawValue: errno)
            close(copy)
            return .failure(err)
        }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return .success(names)
    }

    /// Reads a whole (small) file; `nil` if it cannot be opened or read.
    static func readSmallFile(_ path: String, limit: Int = 1 << 22) -> [UInt8]? {
        guard let fd = try? FileDescriptor.open(FilePath(path), .readOnly, options: [.noFollow]) else { return nil }
        defer { try? fd.close() }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while out.count < limit {
            guard let n = try? chunk.withUnsafeMutableBytes({ try fd.read(into: $0) }), n > 0 else { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }
}

/// A file's identity: the device and inode, as `/proc/<pid>/maps` shows them.
struct FileKey: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64

    init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    init(_ st: stat) {
        self.init(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The kernel's `MAJOR(dev)`/`MINOR(dev)` split of a glibc `dev_t`.
    init(major: UInt64, minor: UInt64, inode: UInt64) {
        let dev = ((major & 0xfff) << 8) | ((major & ~0xfff) << 32) | (minor & 0xff) | ((minor & ~0xff) << 12)
        self.init(device: dev, inode: inode)
    }
}
