import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// One shared memory object of a session, mapped read/write (a file in the shm directory).
///
/// Objects are opened relative to the shm directory (`/dev/shm` or `SHMTRANSPORT_SHM_DIR`)
/// with `O_NOFOLLOW`, mode 0600.
final class SharedObject: @unchecked Sendable {
    /// File name under the shm directory (changes only in ``publish(as:in:)``, before the object
    /// is shared).
    private(set) var name: String
    let base: UnsafeMutableRawPointer
    let size: Int
    /// Device and inode, to tell whether the name still points at this object.
    let device: UInt64
    let inode: UInt64

    private init(name: String, base: UnsafeMutableRawPointer, size: Int, device: UInt64, inode: UInt64) {
        self.name = name
        self.base = base
        self.size = size
        self.device = device
        self.inode = inode
    }

    deinit { munmap(base, size) }

    /// Gives this object (made under a draft name) its final `finalName` in one step, unless
    /// that name exists: `linkat` either links the fully written object or fails, so nobody ever
    /// finds `finalName` half-made; then the draft name is removed.
    /// - Returns: false when `finalName` exists (another process published first).
    func publish(as finalName: String, in directory: Directory) throws(ShmCoreError) -> Bool {
        guard linkat(directory.fd, name, directory.fd, finalName, 0) == 0 else {
            let err = errno
            if err == EEXIST { return false }
            throw ShmCoreError(
                .systemCall, "cannot link '\(name)' to '\(finalName)' in \(directory.path)", objectName: finalName, errno: err)
        }
        unlinkat(directory.fd, name, 0)
        name = finalName
        return true
    }

    /// Creates `name` exclusively and reserves its memory, so that a full shm directory is an
    /// error now and never a SIGBUS later.
    /// - Returns: nil when the object already exists.
    /// The corresponding C functions are `openat(O_CREAT|O_EXCL)`, `posix_fallocate` and `mmap`.
    static func create(_ name: String, size: Int, in directory: Directory) throws(ShmCoreError) -> SharedObject? {
        let fd = openat(directory.fd, name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 {
            let err = errno
            if err == EEXIST { return nil }
            throw ShmCoreError(
                .systemCall, "cannot create '\(name)' in \(directory.path); check that the directory exists and is writable",
                objectName: name, errno: err)
        }
        defer { close(fd) }
        var rc: Int32
        repeat { rc = posix_fallocate(fd, 0, off_t(size)) } while rc == EINTR
        if rc != 0 {
            unlinkat(directory.fd, name, 0)
            var fs = statvfs()
            let free = fstatvfs(directory.fd, &fs) == 0 ? UInt64(fs.f_bavail) * UInt64(fs.f_frsize) : 0
            let code: ShmCoreError.Code = (rc == ENOSPC || rc == EFBIG) ? .noSpace : .systemCall
            throw ShmCoreError(
                code,
                "cannot reserve \(size) bytes (\(Self.human(size))) for '\(name)' in \(directory.path): only \(free) bytes (\(Self.human(Int(free)))) free there; use a smaller segment size (--shm-segment-size), free space (shmmonitor -c for stale sessions) or a bigger tmpfs (mount -o remount,size=...)",
                objectName: name, errno: rc)
        }
        var st = stat()
        fstat(fd, &st)
        do {
            return try map(fd: fd, name: name, size: size, stat: st)
        } catch {
            unlinkat(directory.fd, name, 0)  // nobody else can use what its creator could not map
            throw error
        }
    }

    /// What ``openExisting(_:in:minimumSize:)`` found.
    enum Opening {
        /// No object of that name.
        case missing
        /// The object exists but is smaller than asked for (for example 0 bytes while its
        /// creator has not reserved its memory yet); it was not mapped.
        case tooSmall(size: Int)
        case opened(SharedObject)
    }

    /// Opens an existing object and maps it when it is at least `minimumSize` bytes (and never
    /// maps an empty one). The size is read from the opened descriptor, so it belongs to the
    /// same inode that is mapped even when the name is replaced meanwhile.
    /// - Parameter growTo: first extend a smaller object to this many bytes (reserving them).
    static func openExisting(_ name: String, in directory: Directory, minimumSize: Int, growTo: Int? = nil) throws(ShmCoreError) -> Opening {
        try refuseIfNotRegular(name, in: directory)
        let fd = openat(directory.fd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            if err == ENOENT { return .missing }
            throw ShmCoreError(
                .systemCall,
                err == EACCES
                    ? "cannot open '\(name)' in \(directory.path): it belongs to another user; use another session id"
                    : "cannot open '\(name)' in \(directory.path)", objectName: name, errno: err)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw ShmCoreError(.systemCall, "cannot stat '\(name)'", objectName: name, errno: errno)
        }
        guard st.st_mode & S_IFMT == S_IFREG else { throw notRegular(name, in: directory, mode: st.st_mode) }
        // Our names carry our uid in the shm id, so an object of another owner was planted.
        guard st.st_uid == geteuid() else {
            throw ShmCoreError(
                .foreignLayout,
                "'\(name)' in \(directory.path) belongs to user \(st.st_uid), not to you (\(geteuid())): another user may have planted it, so it is not used; use another session id, or have its owner or root remove it",
                objectName: name)
        }
        if let growTo, Int(st.st_size) < growTo {
            var rc: Int32
            repeat { rc = posix_fallocate(fd, 0, off_t(growTo)) } while rc == EINTR
            guard rc == 0, fstat(fd, &st) == 0 else {
                throw ShmCoreError(
                    rc == ENOSPC ? .noSpace : .systemCall, "cannot grow '\(name)' in \(directory.path) to \(growTo) bytes; free space there",
                    objectName: name, errno: rc == 0 ? errno : rc)
            }
        }
        let size = Int(st.st_size)
        guard size >= max(minimumSize, 1) else { return .tooSmall(size: size) }
        return .opened(try map(fd: fd, name: name, size: size, stat: st))
    }

    /// Opens an existing object; `nil` when it does not exist.
    /// - Parameter minimumSize: the object must be at least this big, and never empty (else `.corrupt`).
    static func open(_ name: String, in directory: Directory, minimumSize: Int = 1, growTo: Int? = nil) throws(ShmCoreError)
        -> SharedObject?
    {
        switch try openExisting(name, in: directory, minimumSize: minimumSize, growTo: growTo) {
        case .missing:
            return nil
        case .tooSmall(let size):
            throw ShmCoreError(
                .corrupt,
                "'\(name)' in \(directory.path) is \(size) bytes, too small to be ours (a device may be creating it this moment, or died doing so); if none is starting, clean the session (shmmonitor -c -s <session>)",
                objectName: name)
        case .opened(let object):
            return object
        }
    }

    /// Opens an existing object read-only, for tools that inspect a session without being part
    /// of it; `nil` when it does not exist. Only a regular file is opened (`O_NONBLOCK`, so a FIFO
    /// planted under the name does not block); its memory must never be written.
    static func openReadOnly(_ name: String, in directory: Directory) throws(ShmCoreError) -> SharedObject? {
        try refuseIfNotRegular(name, in: directory)
        let fd = openat(directory.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            if err == ENOENT { return nil }
            throw ShmCoreError(.systemCall, "cannot open '\(name)' in \(directory.path) to read it", objectName: name, errno: err)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size > 0 else {
            throw ShmCoreError(.corrupt, "'\(name)' in \(directory.path) is not a non-empty regular file", objectName: name)
        }
        return try map(fd: fd, name: name, size: Int(st.st_size), stat: st, writable: false)
    }

    /// Throws when `name` exists but is not a regular file (a FIFO, a device, a directory, a
    /// symlink planted under a session's name): such a name is never opened, followed or used.
    static func refuseIfNotRegular(_ name: String, in directory: Directory) throws(ShmCoreError) {
        var st = stat()
        guard fstatat(directory.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return }  // missing: the caller says so
        if st.st_mode & S_IFMT != S_IFREG { throw notRegular(name, in: directory, mode: st.st_mode) }
    }

    private static func notRegular(_ name: String, in directory: Directory, mode: mode_t) -> ShmCoreError {
        let kind: String
        switch mode & S_IFMT {
        case S_IFLNK: kind = "a symbolic link"
        case S_IFIFO: kind = "a FIFO"
        case S_IFDIR: kind = "a directory"
        case S_IFSOCK: kind = "a socket"
        default: kind = "a device or other special file"
        }
        return ShmCoreError(
            .foreignLayout,
            "'\(name)' in \(directory.path) is \(kind), not a shared memory object, so it is left untouched; find out who put it there and remove it, or use another session id",
            objectName: name)
    }

    /// Maps `size` bytes of `fd`; `st` is the descriptor's stat (its device and inode are kept).
    private static func map(fd: Int32, name: String, size: Int, stat st: stat, writable: Bool = true) throws(ShmCoreError) -> SharedObject {
        // Map at a 2 MiB boundary in every process, so that offsets aligned within the object
        // (blocks up to 1 MiB alignment) are aligned addresses everywhere: reserve more address
        // space, map the object over its aligned part, give back the slack.
        let alignment = 2 << 20
        guard let reserved = mmap(nil, size + alignment, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            reserved != MAP_FAILED
        else {
            throw ShmCoreError(
                .systemCall, "cannot reserve address space for '\(name)' (\(size) bytes); check the address-space limit (ulimit -v)",
                objectName: name, errno: errno)
        }
        let start = (Int(bitPattern: reserved) + alignment - 1) & ~(alignment - 1)
        let head = start - Int(bitPattern: reserved)
        guard let base = mmap(
                UnsafeMutableRawPointer(bitPattern: start), size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED | MAP_FIXED,
                fd, 0),
            base != MAP_FAILED
        else {
            let err = errno
            munmap(reserved, size + alignment)
            throw ShmCoreError(
                .systemCall, "cannot map '\(name)' (\(size) bytes); check the address-space limit (ulimit -v)",
                objectName: name, errno: err)
        }
        if head > 0 { munmap(reserved, head) }
        let tail = alignment - head
        let mappedEnd = (start + size + 4095) & ~4095
        let reservedEnd = Int(bitPattern: reserved) + size + alignment
        if tail > 0 && reservedEnd > mappedEnd { munmap(UnsafeMutableRawPointer(bitPattern: mappedEnd), reservedEnd - mappedEnd) }
        return SharedObject(name: name, base: base, size: size, device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// Whether `name` in `directory` is still this object (not unlinked or replaced).
    func isLinked(in directory: Directory) -> Bool {
        var st = stat()
        guard fstatat(directory.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    static func human(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : "\((value * 10).rounded() / 10) \(units[unit])"
    }
}

/// An open shm directory (held for the life of a ``SessionMemory``).
final class Directory: @unchecked Sendable {
    let path: String
    let fd: Int32

    init(_ path: FilePath) throws(ShmCoreError) {
        self.path = path.string
        let fd = Glibc.open(path.string, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ShmCoreError(
                .invalidArgument,
                "cannot open the shm directory '\(path)'; create it or point SHMTRANSPORT_SHM_DIR at an existing tmpfs directory",
                objectName: path.string, errno: errno)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    func unlink(_ name: String) { unlinkat(fd, name, 0) }

    /// The names of the directory's entries now (without `.` and `..`); empty if it cannot be read.
    func names() -> [String] {
        let copy = dup(fd)
        guard copy >= 0 else { return [] }
        guard let stream = fdopendir(copy) else {
            close(copy)
            return []
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Unlinks `name` only if it is a regular file of this user (never a FIFO, a symlink or
    /// another user's object planted under a session's name); whether it did.
    @discardableResult
    func unlinkIfOwnRegularFile(_ name: String) -> Bool {
        var st = stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid() else { return false }
        return unlinkat(fd, name, 0) == 0
    }
}
