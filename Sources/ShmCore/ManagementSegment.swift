import Atomics
import CShmTransport
import Logging
import ShmCleanup
import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// This process's view of a session's management segment `fmq_<id>_mng` (layout:
/// `ManagementLayout`): the session lock, the process table and the segment table.
///
/// Creation is race-free: the `O_CREAT|O_EXCL` winner writes everything and stores
/// `state = ready` last; everyone else waits for ready (bounded) and checks magic and version.
final class ManagementSegment: @unchecked Sendable {
    typealias H = ManagementLayout.Header
    typealias P = ManagementLayout.ProcessEntry
    typealias S = ManagementLayout.SegmentEntry

    let object: SharedObject
    let created: Bool
    /// Where the tables and the lock lie: read and checked once, when the segment is ready, and
    /// never read from shared memory again, so a header scribbled on later cannot move them.
    let geometry: ManagementLayout.Geometry
    var base: UnsafeMutableRawPointer { object.base }
    /// Frees what a dead process kept in its local cache (slot, its segment id); set by the owner.
    var reclaimCache: (@Sendable (Int, UInt16) -> Void)?
    /// Told once, with the reason, when this process finds the segment overwritten by another
    /// (a lock that cannot be taken, a process entry that fails its check); set by the owner.
    var onDamage: (@Sendable (String) -> Void)?
    private let damageReport = Mutex<String?>(nil)

    /// How long the session lock may stay held before this process calls the segment damaged:
    /// it is held for microseconds (the longest: reserving a new segment's pages), so 5 s
    /// means a holder that never lets go or a lock word another process overwrote.
    static let lockTimeoutNanoseconds = 5_000_000_000

    private init(object: SharedObject, created: Bool, geometry: ManagementLayout.Geometry) {
        self.object = object
        self.created = created
        self.geometry = geometry
    }

    // MARK: Raw access

    func u32(_ o: Int) -> UInt32 { base.load(fromByteOffset: o, as: UInt32.self) }
    func u64(_ o: Int) -> UInt64 { base.load(fromByteOffset: o, as: UInt64.self) }
    func setU32(_ o: Int, _ v: UInt32) { base.storeBytes(of: v, toByteOffset: o, as: UInt32.self) }
    func setU64(_ o: Int, _ v: UInt64) { base.storeBytes(of: v, toByteOffset: o, as: UInt64.self) }
    func atomic32(_ o: Int) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: (base + o).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }
    func atomic64(_ o: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + o).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
    }

    var processTable: ManagementLayout.Table { geometry.processes }
    var segmentTable: ManagementLayout.Table { geometry.segments }
    /// The session lock (``SharedLock``), where the header said when the segment became ready.
    var lock: SharedLock { SharedLock(at: base + geometry.lockOffset) }


    // MARK: Create or attach

    /// Creates the management segment, or attaches to the existing one once it is ready.
    static func createOrAttach(
        name: String, session: SessionID, directory: Directory, noCleanup: Bool, logger: Logger
    ) throws(ShmCoreError) -> ManagementSegment {
        let size = ManagementLayout.defaultTotalSize
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        // Written under a draft name and published complete (linkat): nobody ever finds the
        // management segment half-made, even when its creator is killed while writing it (the
        // kill soak found attachers waiting 5 s for such a one, then failing).
        let draft = name + "d_\(getpid())"
        while true {
            var st = stat()
            let absent = fstatat(directory.fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT
            // a draft under our name is a leftover of a dead process that had our pid
            if absent { directory.unlinkIfOwnRegularFile(draft) }
            if absent, let object = try SharedObject.create(draft, size: size, in: directory) {
                let pid = getpid()
                let env = { (n: String) in getenv(n).flatMap { UInt32(String(cString: $0)) } }
                let record = ManagementRecord(
                    sessionName: session.rawValue, creatorUID: geteuid(), creatorPID: pid,
                    creatorSlurmJobID: env("SLURM_JOB_ID") ?? 0, creatorSlurmStepID: env("SLURM_STEP_ID"),
                    flags: noCleanup ? ManagementLayout.Flags.noCleanup : 0, createdAtNanos: WallClock.nanoseconds(),
                    ready: false)
                let segment = ManagementSegment(object: object, created: true, geometry: .standard)
                segment.write(record)
                let published: Bool
                do throws(ShmCoreError) {
                    published = try object.publish(as: name, in: directory)
                } catch {
                    directory.unlink(draft)
                    throw error
                }
                if published {
                    logger.debug("management segment created", metadata: ["shm.object": "\(name)"])
                    return segment
                }
                directory.unlink(draft)  // another process published first: attach to its segment
                continue
            }
            // Someone else created it: wait until its memory is reserved and it is ready.
            let opening = try SharedObject.openExisting(name, in: directory, minimumSize: ManagementLayout.headerSize)
            if case .missing = opening { continue }
            if case .opened(let object) = opening {
                let header = UnsafeRawBufferPointer(start: object.base, count: ManagementLayout.headerSize)
                func u32(_ o: Int) -> UInt32 { header.load(fromByteOffset: o, as: UInt32.self) }
                let magic = header.load(fromByteOffset: H.magic, as: UInt64.self)
                let state = UnsafeAtomic<UInt32>(at: (object.base + H.state).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
                if magic != 0 && magic != ManagementLayout.magic {
                    throw ShmCoreError(
                        .foreignLayout,
                        "'\(name)' in \(directory.path) is not a ShmTransport management segment (a C++ FairMQ session or another program uses this session id); use another session id or clean it (shmmonitor -c -s \(session))",
                        objectName: name)
                }
                if magic == ManagementLayout.magic && u32(H.layoutVersion) != ManagementLayout.version {
                    throw ShmCoreError(
                        .unsupportedVersion,
                        "'\(name)' has management layout version \(u32(H.layoutVersion)), this build reads version \(ManagementLayout.version); run all devices of a session with the same build, or clean the session (shmmonitor -c -s \(session))",
                        objectName: name)
                }
                if magic == ManagementLayout.magic && state.load(ordering: .acquiring) == ManagementLayout.State.ready {
                    let totalSize = header.load(fromByteOffset: H.totalSize, as: UInt64.self)
                    guard UInt64(object.size) >= totalSize, object.size >= ManagementLayout.defaultTotalSize else {
                        throw ShmCoreError(
                            .corrupt,
                            "'\(name)' is \(object.size) bytes, smaller than the \(totalSize) its header says; the session is damaged, clean it (shmmonitor -c -s \(session))",
                            objectName: name)
                    }
                    let geometry: ManagementLayout.Geometry
                    switch ManagementLayout.Geometry.read(header, objectSize: object.size) {
                    case .success(let g): geometry = g
                    case .failure(let damage):
                        throw ShmCoreError(
                            .corrupt, "'\(name)' is damaged: \(damage); clean the session (shmmonitor -c -s \(session))", objectName: name)
                    }
                    let segment = ManagementSegment(object: object, created: false, geometry: geometry)
                    try segment.ensureLock()
                    try segment.checkLockUsable(session: session)
                    return segment
                }
                let creator = Int32(bitPattern: u32(H.creatorPID))
                if magic == ManagementLayout.magic && creator > 0 && !ProcessInspector().isAlive(pid: creator, startTime: nil) {
                    throw ShmCoreError(
                        .notReady,
                        "'\(name)' was left half-initialised by pid \(creator), which died; clean the session (shmmonitor -c -s \(session)) and start again",
                        objectName: name)
                }
            }
            if MonotonicClock.nanoseconds() > deadline {
                throw ShmCoreError(
                    .notReady,
                    "'\(name)' in \(directory.path) did not become ready within 5 s; if no device of session '\(session)' is starting, clean it (shmmonitor -c -s \(session))",
                    objectName: name)
            }
            usleep(1000)
        }
    }

    /// Writes `record` as the whole content (standard geometry, `ready: false` in it), a fresh
    /// session lock, and `state = ready` last; nobody may use the segment meanwhile (its creator,
    /// or a reset of a session no process is attached to). Attachers wait while it is not ready.
    func write(_ record: ManagementRecord, regionCounter: UInt32 = 1024) {
        atomic32(H.state).store(ManagementLayout.State.initialising, ordering: .sequentiallyConsistent)
        var fresh = record
        fresh.ready = false
        let bytes = fresh.encoded()
        bytes.withUnsafeBytes { object.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        setU32(H.regionCounter, regionCounter)
        lock.initialise()
        atomic32(H.lockState).store(ManagementLayout.LockState.ready, ordering: .releasing)
        atomic32(H.state).store(ManagementLayout.State.ready, ordering: .releasing)
    }

    /// Opens an existing management segment to overwrite it with ``write(_:regionCounter:)``,
    /// whatever it holds now (growing it to the standard size when it is smaller).
    static func openForRewrite(_ name: String, in directory: Directory) throws(ShmCoreError) -> ManagementSegment? {
        let size = ManagementLayout.defaultTotalSize
        if let object = try SharedObject.create(name, size: size, in: directory) {
            return ManagementSegment(object: object, created: true, geometry: .standard)
        }
        guard let object = try SharedObject.open(name, in: directory, minimumSize: 1, growTo: size) else { return nil }
        return ManagementSegment(object: object, created: false, geometry: .standard)
    }

    /// Makes sure the session lock is initialised (a creator such as an older keep-alive may
    /// leave it zero: the first attacher initialises it, guarded by a CAS on `lockState`).
    func ensureLock() throws(ShmCoreError) {
        let state = atomic32(H.lockState)
        let deadline = MonotonicClock.nanoseconds() + 2_000_000_000
        while true {
            let s = state.load(ordering: .acquiring)
            if s == ManagementLayout.LockState.ready { return }
            if s == ManagementLayout.LockState.uninitialised
                && state.compareExchange(expected: s, desired: ManagementLayout.LockState.initialising, ordering: .acquiring).exchanged
            {
                lock.initialise()
                state.store(ManagementLayout.LockState.ready, ordering: .releasing)
                return
            }
            if MonotonicClock.nanoseconds() > deadline {
                throw ShmCoreError(
                    .notReady, "the session lock in '\(object.name)' was never initialised; clean the session (shmmonitor -c) and start again",
                    objectName: object.name)
            }
            usleep(1000)
        }
    }

    /// Takes and releases the session lock once with a time limit, so that an attacher finds a
    /// lock that stays held (a stuck holder, a lock word another process overwrote with a live
    /// pid) as an error at attach instead of in every later ``withLock(_:)``. The lock is held
    /// for microseconds at a time, so 3 s without it means a stuck holder or a damaged segment.
    func checkLockUsable(session: SessionID) throws(ShmCoreError) {
        switch lock.lock(timeoutNanoseconds: 3_000_000_000, repair: repairAfterOwnerDied) {
        case .acquired, .holderDied:
            lock.unlock()
        case .timedOut(let holder):
            throw ShmCoreError(
                .corrupt,
                "the session lock in '\(object.name)' stayed held for 3 s (by pid \(holder)); if a device of session '\(session)' is stuck, stop it, otherwise the session is damaged: clean it (shmmonitor -c -s \(session))",
                objectName: object.name, errno: ETIMEDOUT)
        }
    }

    // MARK: Lock

    /// Runs `body` holding the session lock. A holder that died is repaired first: half-claimed
    /// process entries are released (dead processes are pruned by ``pruneDead()``).
    /// - Throws: `.corrupt` when the lock cannot be taken within ``lockTimeoutNanoseconds`` (a
    ///   holder that never lets go, or its word overwritten); the segment is then reported damaged.
    /// - Parameter timeoutNanoseconds: a shorter wait for work that can be skipped (the
    ///   heartbeat's pruning); running out of it is then `.notReady`, not damage.
    func withLock<T>(timeoutNanoseconds: Int? = nil, _ body: () throws(ShmCoreError) -> T) throws(ShmCoreError) -> T {
        let lock = self.lock
        if case .timedOut(let holder) = lock.lock(
            timeoutNanoseconds: timeoutNanoseconds ?? Self.lockTimeoutNanoseconds, repair: repairAfterOwnerDied)
        {
            if timeoutNanoseconds != nil {
                throw ShmCoreError(.notReady, "the session lock in '\(object.name)' is busy; try again", objectName: object.name, errno: ETIMEDOUT)
            }
            throw damaged(
                "its session lock stayed held for \(Self.lockTimeoutNanoseconds / 1_000_000_000) s by pid \(holder)", errno: ETIMEDOUT)
        }
        defer { lock.unlock() }
        return try body()
    }

    /// The damage found so far, if any.
    var damage: String? { damageReport.withLock { $0 } }

    /// Records that the segment was overwritten (the first reason is kept and told once) and
    /// returns the error to throw.
    func damaged(_ why: String, errno: Int32? = nil) -> ShmCoreError {
        let first = damageReport.withLock { report -> Bool in
            guard report == nil else { return false }
            report = why
            return true
        }
        if first { onDamage?(why) }
        return ShmCoreError(
            .corrupt,
            "the management segment '\(object.name)' was damaged while in use (\(why)), probably overwritten by another process; stop the session's devices and clean it (shmmonitor -c --force)",
            objectName: object.name, errno: errno)
    }

    /// The check word of a process entry: a mix of its identity, so that bytes written over it
    /// by anyone but the process itself almost never match.
    static func checkWord(slot: Int, pid: Int32, startTime: UInt64, uid: UInt32, segmentID: UInt16) -> UInt64 {
        var z = 0x5348_4D54_5052_4F43 ^ UInt64(slot) ^ (UInt64(UInt32(bitPattern: pid)) << 16) ^ (UInt64(uid) << 40) ^ UInt64(segmentID) << 56
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z ^= startTime
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Whether entry `i` is intact: its check word matches its fields.
    func entryIsIntact(_ i: Int) -> Bool {
        let e = processTable.offset + i * processTable.stride
        return u64(e + P.check) == Self.checkWord(
            slot: i, pid: base.load(fromByteOffset: e + P.pid, as: Int32.self), startTime: u64(e + P.startTime), uid: u32(e + P.uid),
            segmentID: base.load(fromByteOffset: e + P.segmentID, as: UInt16.self))
    }

    /// Checks this process's own entry (no lock needed: only this process writes it); reports
    /// the segment damaged when it no longer names this process.
    func verifyOwnEntry(slot: Int) {
        let e = processTable.offset + slot * processTable.stride
        guard atomic32(e + P.state).load(ordering: .acquiring) == P.attached, base.load(fromByteOffset: e + P.pid, as: Int32.self) == getpid(),
            entryIsIntact(slot)
        else {
            _ = damaged("the entry of this process, slot \(slot), no longer names it")
            return
        }
    }

    private func repairAfterOwnerDied() {
        let t = processTable
        for i in 0..<t.capacity where u32(t.offset + i * t.stride + P.state) == P.claiming {
            atomic32(t.offset + i * t.stride + P.state).store(P.free, ordering: .releasing)
        }
    }

    // MARK: Process table (caller holds the lock)

    /// Registers this process; returns its slot.
    func register(segmentID: UInt16) throws(ShmCoreError) -> Int {
        let t = processTable
        let pid = getpid()
        let env = { (n: String) in getenv(n).flatMap { UInt32(String(cString: $0)) } }
        for i in 0..<t.capacity {
            let e = t.offset + i * t.stride
            guard atomic32(e + P.state).compareExchange(expected: P.free, desired: P.claiming, ordering: .acquiring).exchanged
            else { continue }
            let now = WallClock.nanoseconds()
            base.storeBytes(of: pid, toByteOffset: e + P.pid, as: Int32.self)
            setU32(e + P.uid, geteuid())
            setU32(e + P.slurmStepID, env("SLURM_STEP_ID") ?? P.noStep)
            setU64(e + P.startTime, ProcessInspector().stat(pid: pid)?.startTime ?? 0)
            setU32(e + P.slurmJobID, env("SLURM_JOB_ID") ?? 0)
            base.storeBytes(of: segmentID, toByteOffset: e + P.segmentID, as: UInt16.self)
            setU64(e + P.attachedAtNanos, now)
            atomic64(e + P.lastHeartbeatNanos).store(now, ordering: .relaxed)
            setU64(e + P.check, Self.checkWord(slot: i, pid: pid, startTime: u64(e + P.startTime), uid: geteuid(), segmentID: segmentID))
            atomic32(e + P.state).store(P.attached, ordering: .releasing)
            updateDeviceCount()
            return i
        }
        throw ShmCoreError(
            .tableFull,
            "the process table of '\(object.name)' is full (\(t.capacity) processes); detach devices or use several sessions",
            objectName: object.name)
    }

    func unregister(slot: Int) {
        let t = processTable
        atomic32(t.offset + slot * t.stride + P.state).store(P.free, ordering: .releasing)
        updateDeviceCount()
    }

    /// Removes entries of processes that are gone (pid dead or recycled); returns their pids.
    @discardableResult
    func pruneDead() -> [Int32] {
        let t = processTable
        let inspector = ProcessInspector()
        var pruned: [Int32] = []
        for i in 0..<t.capacity {
            let e = t.offset + i * t.stride
            guard u32(e + P.state) == P.attached else { continue }
            // An entry that fails its check was written over by someone else: acting on it could
            // free a live process's blocks. Leave it, and say the segment is damaged.
            guard entryIsIntact(i) else {
                _ = damaged("process entry \(i) fails its check")
                continue
            }
            let pid = base.load(fromByteOffset: e + P.pid, as: Int32.self)
            if !inspector.isAlive(pid: pid, startTime: u64(e + P.startTime)) {
                reclaimCache?(i, base.load(fromByteOffset: e + P.segmentID, as: UInt16.self))
                atomic32(e + P.state).store(P.free, ordering: .releasing)
                pruned.append(pid)
            }
        }
        if !pruned.isEmpty { updateDeviceCount() }
        return pruned
    }

    var attachedCount: Int {
        let t = processTable
        return (0..<t.capacity).filter { u32(t.offset + $0 * t.stride + P.state) == P.attached && entryIsIntact($0) }.count
    }

    private func updateDeviceCount() {
        atomic32(H.deviceCount).store(UInt32(attachedCount), ordering: .relaxed)
    }

    /// Records a heartbeat of the process in `slot` (no lock needed: atomics only).
    func heartbeat(slot: Int) {
        let t = processTable
        atomic64(t.offset + slot * t.stride + P.lastHeartbeatNanos).store(WallClock.nanoseconds(), ordering: .relaxed)
        atomic64(H.heartbeat).wrappingIncrement(ordering: .relaxed)
    }

    var noCleanupFlag: Bool { u32(H.flags) & ManagementLayout.Flags.noCleanup != 0 }

    // MARK: Segment table (caller holds the lock, except for publishing free bytes)

    struct SegmentInfo {
        var size: Int
        var allocator: UInt8
    }

    func segment(id: UInt16) -> SegmentInfo? {
        let t = segmentTable
        for i in 0..<t.capacity {
            let e = t.offset + i * t.stride
            if u32(e + S.state) == S.registered && base.load(fromByteOffset: e + S.segmentID, as: UInt16.self) == id {
                return SegmentInfo(size: Int(truncatingIfNeeded: u64(e + S.segmentSize)), allocator: base.load(fromByteOffset: e + S.allocator, as: UInt8.self))
            }
        }
        return nil
    }

    var registeredSegmentIDs: [UInt16] {
        let t = segmentTable
        return (0..<t.capacity).compactMap { i in
            let e = t.offset + i * t.stride
            return u32(e + S.state) == S.registered ? base.load(fromByteOffset: e + S.segmentID, as: UInt16.self) : nil
        }
    }

    func registerSegment(id: UInt16, size: Int, allocator: UInt8, freeBytes: Int) throws(ShmCoreError) {
        let t = segmentTable
        for i in 0..<t.capacity {
            let e = t.offset + i * t.stride
            guard u32(e + S.state) == S.free else { continue }
            base.storeBytes(of: id, toByteOffset: e + S.segmentID, as: UInt16.self)
            base.storeBytes(of: allocator, toByteOffset: e + S.allocator, as: UInt8.self)
            setU64(e + S.segmentSize, UInt64(size))
            atomic64(e + S.freeBytes).store(UInt64(freeBytes), ordering: .relaxed)
            base.storeBytes(of: getpid(), toByteOffset: e + S.creatorPID, as: Int32.self)
            atomic32(e + S.state).store(S.registered, ordering: .releasing)
            atomic64(H.eventCounter).wrappingIncrement(ordering: .relaxed)
            return
        }
        throw ShmCoreError(
            .tableFull, "the segment table of '\(object.name)' is full (\(t.capacity) segments); use fewer segment ids",
            objectName: object.name)
    }

    /// Publishes a segment's free bytes for the monitor (atomic store; no lock).
    func publishFreeBytes(id: UInt16, freeBytes: Int) {
        let t = segmentTable
        for i in 0..<t.capacity {
            let e = t.offset + i * t.stride
            if u32(e + S.state) == S.registered && base.load(fromByteOffset: e + S.segmentID, as: UInt16.self) == id {
                atomic64(e + S.freeBytes).store(UInt64(freeBytes), ordering: .relaxed)
                return
            }
        }
    }
}
