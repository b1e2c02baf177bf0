import Logging
import ShmCleanup
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The memory `shm-keepalive` holds: a management segment in our layout with this process
/// registered, and pre-allocated managed segments, all mapped.
struct SessionHolder {
    private var mappings: [(UnsafeMutableRawPointer, Int)] = []

    init(
        id: ShmID, session: SessionID, directory: FilePath, segments: [(UInt16, UInt64)], logger: Logger
    ) throws {
        let pid = getpid()
        let env = { (name: String) in getenv(name).flatMap { UInt32(String(cString: $0)) } }
        let now = { () -> UInt64 in
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        }()
        let me = ManagementRecord.Process(
            pid: pid, uid: geteuid(), startTime: ProcessInspector().stat(pid: pid)?.startTime ?? 0,
            slurmJobID: env("SLURM_JOB_ID") ?? 0, slurmStepID: env("SLURM_STEP_ID"), attachedAtNanos: now,
            lastHeartbeatNanos: now)
        let record = ManagementRecord(
            sessionName: session.rawValue, creatorUID: geteuid(), creatorPID: pid,
            creatorSlurmJobID: env("SLURM_JOB_ID") ?? 0, creatorSlurmStepID: env("SLURM_STEP_ID"),
            createdAtNanos: now, deviceCount: 1, processes: [me],
            segments: segments.map { .init(id: $0.0, size: $0.1, freeBytes: $0.1, creatorPID: pid) })

        let dir = open(directory.string, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else {
            throw ShmCleanupError(
                .invalidDirectory, "cannot open shm directory '\(directory)'", subject: directory.string, errno: errno)
        }
        defer { close(dir) }
        for (segmentID, size) in segments {
            try create(ShmObjectName(id, .segment(UInt32(segmentID))).fileName, size: Int(size), in: dir, directory: directory)
        }
        let bytes = record.encoded()
        try create(ShmObjectName(id, .management).fileName, size: bytes.count, in: dir, directory: directory) { base in
            bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        logger.info("session memory created", metadata: ["shm.id": "\(id)", "shm.session": "\(session)"])
    }

    private mutating func create(
        _ name: String, size: Int, in dir: Int32, directory: FilePath,
        fill: (UnsafeMutableRawPointer) -> Void = { _ in }
    ) throws {
        let fd = openat(dir, name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let err = errno
            throw ShmCleanupError(
                .systemCall,
                err == EEXIST
                    ? "'\(name)' already exists in \(directory); clean the session first (shmmonitor -c -s <session>)"
                    : "cannot create '\(name)' in \(directory)", subject: name, errno: err)
        }
        defer { close(fd) }
        let rc = posix_fallocate(fd, 0, off_t(size))
        guard rc == 0 else {
            unlinkat(dir, name, 0)
            var fs = statvfs()
            fstatvfs(dir, &fs)
            let free = UInt64(fs.f_bavail) * UInt64(fs.f_frsize)
            throw ShmCleanupError(
                .systemCall,
                "cannot reserve \(size) bytes for '\(name)' in \(directory): \(free) bytes free; use a smaller segment or a bigger tmpfs",
                subject: name, errno: rc)
        }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw ShmCleanupError(.systemCall, "cannot map '\(name)'", subject: name, errno: errno)
        }
        fill(base)
        mappings.append((base, size))
    }

    /// Unmaps everything (so the final cleanup does not see this process as a user).
    func unmap() {
        for (base, size) in mappings { munmap(base, size) }
    }
}
