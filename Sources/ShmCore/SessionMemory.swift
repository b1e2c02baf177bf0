import Atomics
import CShmTransport
import Logging
import ShmCleanup
import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// One process's attachment to the shared memory of a session (FairMQ's `Manager`).
///
/// Creating it creates or attaches the management segment `fmq_<id>_mng`, registers this
/// process in its process table (pid, start time, uid, Slurm job and step), and creates or
/// attaches the segment `fmq_<id>_m_<segmentID>` this process allocates from. Blocks are plain
/// ``ShmBlock`` values valid in every process of the session; any process may release them.
/// A background thread records heartbeats every 100 ms, publishes free memory for
/// `shmmonitor`, and prunes dead processes from the table every second.
///
/// All methods are thread-safe. ``detach()`` (also run by `deinit`) unregisters; the last
/// process out removes the session's objects unless `noCleanup` is set.
public final class SessionMemory: @unchecked Sendable {
    /// The configuration this process attached with.
    public let configuration: SessionConfiguration
    /// The session's shmId (the `<id>` in `fmq_<id>_...`).
    public let id: ShmID
    /// This process's slot in the management segment's process table.
    public let processSlot: Int
    /// Whether this process created the management segment.
    public let createdSession: Bool

    let logger: Logger
    let directory: Directory
    private let state: Mutex<State>
    /// The unmanaged regions this process maps (as controller or viewer).
    let regionStore = RegionStore()
    /// Segment base addresses by segment id (0: not mapped), read without a lock.
    private let bases: UnsafeMutablePointer<UnsafeAtomic<UInt>.Storage>
    /// Futex word: 1 while interrupted.
    private let interruptWord: UnsafeMutablePointer<UInt32>
    private let ownSegmentID: UInt16
    private let cache: LocalCache
    /// This process's mark on blocks in its local cache (process slot + 1).
    private let cacheOwner: UInt16
    /// This process's mark on blocks it allocated and that are live (slot + 1, high bit set).
    private let allocatedMark: UInt16
    /// Threads of this process waiting for room in its segment.
    private let waitingThreads = Mutex(0)
    /// Set while a thread of this process takes back its remote frees.
    private let takingRemoteFrees = ManagedAtomic<Bool>(false)
    /// Set when the management segment was found overwritten by another process; from then on
    /// allocations and received blocks fail with the reason (``damage``).
    private let damaged = ManagedAtomic<Bool>(false)
    private let damageHandlers = DamageHandlers()
    /// "Segment full" lines, at most one a second.
    private let fullReport = SegmentFullReport()
    /// Bytes every allocation adds for its message record: 32 when this process's segment
    /// records messages (``SessionConfiguration/messageRecords``), else 0. Set once in `init`.
    private var recordBytes = 0
    private let pid = getpid()
    /// Test hook: a ``CrashPoint`` raw value index + 1 armed by ``armCrash(at:)``, 0 when none.
    private let armedCrash = ManagedAtomic<Int>(0)

    private struct State: ~Copyable {
        var detached = false
        var management: ManagementSegment?
        var segments: [UInt16: SharedObject] = [:]
        var heartbeat: HeartbeatThread?
    }

    /// Creates or attaches the session's memory and registers this process.
    /// - Throws: ``ShmCoreError`` naming the object and the fix (no space in the shm directory,
    ///   a foreign or newer layout, a full process table, ...). Nothing is left behind on error.
    public init(_ configuration: SessionConfiguration, logger: Logger) throws(ShmCoreError) {
        let arenas = configuration.arenaCount ?? SegmentLayout.defaultArenaCount(segmentSize: configuration.segmentSize)
        guard configuration.segmentSize >= SegmentLayout.minimumSegmentSize else {
            throw ShmCoreError(
                .invalidArgument,
                "segment size \(configuration.segmentSize) is too small; use at least \(SegmentLayout.minimumSegmentSize) bytes")
        }
        guard (1...SegmentLayout.maximumArenas).contains(arenas),
            configuration.segmentSize / arenas >= SegmentLayout.minimumSegmentSize / 2
        else {
            throw ShmCoreError(
                .invalidArgument,
                "arena count \(arenas) does not fit a segment of \(configuration.segmentSize) bytes; use 1...\(SegmentLayout.maximumArenas) arenas of at least 32 KiB")
        }
        self.configuration = configuration
        self.id = ShmID(session: configuration.session)
        var logger = logger
        logger[metadataKey: "shm.session"] = "\(configuration.session)"
        logger[metadataKey: "shm.id"] = "\(id)"
        self.logger = logger
        self.directory = try Directory(configuration.directory)
        self.ownSegmentID = configuration.segmentID
        self.cache = LocalCache(
            limitBytes: max(0, configuration.localCacheBytes ?? min(configuration.segmentSize / 16, 16 << 20)))

        let mngName = ShmObjectName(id, .management).fileName
        var attached: (ManagementSegment, Int)?
        for _ in 0..<50 {
            let mng = try ManagementSegment.createOrAttach(
                name: mngName, session: configuration.session, directory: directory,
                noCleanup: configuration.noCleanup, logger: logger)
            let dir = directory
            let segmentID = configuration.segmentID
            let shmID = id
            let damagedFlag = damaged
            let handlers = damageHandlers
            let damageLogger = logger
            let mngName = mng.object.name
            mng.onDamage = { why in
                damagedFlag.store(true, ordering: .releasing)
                damageLogger.error(
                    "the session's management segment was overwritten by another process (\(why)); this process stops using the session: stop its devices and clean it (shmmonitor -c --force)",
                    metadata: ["shm.object": "\(mngName)"])
                handlers.call(why)
            }
            mng.reclaimCache = { slot, segment in
                // Map the dead process's segment just for this: no lock of ours is needed.
                let name = ShmObjectName(shmID, .segment(UInt32(segment))).fileName
                guard let object = try? SharedObject.open(name, in: dir, minimumSize: SegmentLayout.minimumSegmentSize)
                else { return }
                let heap = SegmentHeap(base: object.base)
                guard heap.isUsable(objectSize: object.size) else { return }
                RemoteFreeList(heap, slot: slot).close()
                heap.reclaimCached(owner: UInt16(slot + 1))
                RoomSignal(heap).setWaiting(slot: slot, false)
            }
            let slot = try mng.withLock { () throws(ShmCoreError) -> Int? in
                // The last process out unlinks under this lock: if the name is gone, start again.
                guard mng.object.isLinked(in: dir) else { return nil }
                mng.pruneDead()
                return try mng.register(segmentID: segmentID)
            }
            if let slot {
                attached = (mng, slot)
                break
            }
        }
        guard let (mng, slot) = attached else {
            throw ShmCoreError(
                .notReady, "could not attach '\(mngName)': it was removed 50 times while attaching; check for a cleanup loop",
                objectName: mngName)
        }
        // Allocated only now that nothing can throw before `deinit` owns them.
        self.bases = .allocate(capacity: 1 << 16)
        self.bases.initialize(repeating: UnsafeAtomic<UInt>.Storage(0), count: 1 << 16)
        self.interruptWord = .allocate(capacity: 1)
        self.interruptWord.initialize(to: 0)
        self.processSlot = slot
        self.createdSession = mng.created
        self.cacheOwner = UInt16(slot + 1)
        self.allocatedMark = UInt16(slot + 1) | 0x8000
        self.state = Mutex(State(management: mng))
        do {
            let heap = try segment(configuration.segmentID, create: true)
            RemoteFreeList(heap, slot: slot).open()
            recordBytes = heap.recordsMessages ? SegmentLayout.Record.size : 0
            if heap.recordsMessages != configuration.messageRecords {
                logger.warning(
                    "segment \(configuration.segmentID) \(heap.recordsMessages ? "records" : "does not record") messages, unlike this process's configuration; keeping the segment's",
                    metadata: ["shm.segment": "\(configuration.segmentID)"])
            }
        } catch {
            detach()
            throw error
        }
        let heartbeat = HeartbeatThread(management: mng, slot: slot, publish: { [unowned(unsafe) self] in self.publishFreeBytes() })
        state.withLock { $0.heartbeat = heartbeat }
        heartbeat.start()
        ExitDetach.add(self)
        logger.debug("attached", metadata: ["shm.slot": "\(slot)", "shm.created": "\(mng.created)"])
    }

    deinit {
        detach()
        bases.deallocate()
        interruptWord.deallocate()
    }

    /// The management segment, nil once detached.
    var management: ManagementSegment? { state.withLock { $0.management } }

    // MARK: Segments

    private func segmentName(_ id: UInt16) -> String { ShmObjectName(self.id, .segment(UInt32(id))).fileName }

    @inline(__always) private func base(_ segmentID: UInt16) -> UnsafeMutableRawPointer? {
        let raw = UnsafeAtomic<UInt>(at: bases + Int(segmentID)).load(ordering: .acquiring)
        return UnsafeMutableRawPointer(bitPattern: raw)
    }

    /// The base of a segment, mapping it first when a peer's block names one not mapped yet;
    /// nil when it is not part of the session.
    @inline(__always) private func mappedBase(_ segmentID: UInt16) -> UnsafeMutableRawPointer? {
        base(segmentID) ?? mapForBlock(segmentID)
    }

    @inline(never) private func mapForBlock(_ segmentID: UInt16) -> UnsafeMutableRawPointer? {
        (try? segment(segmentID, create: false))?.base
    }

    /// Maps a segment (creating it when `create` and it is not registered yet).
    private func segment(_ segmentID: UInt16, create: Bool, size: Int? = nil) throws(ShmCoreError) -> SegmentHeap {
        if let b = base(segmentID) { return SegmentHeap(base: b) }
        var config = configuration
        config.segmentSize = size ?? config.segmentSize
        let name = segmentName(segmentID)
        let dir = directory
        let logger = self.logger
        let mapped: SharedObject = try state.withLock { (s: inout State) throws(ShmCoreError) -> SharedObject in
            if let existing = s.segments[segmentID] { return existing }
            guard let mng = s.management else {
                throw ShmCoreError(.detached, "the session memory was detached; create a new SessionMemory", objectName: name)
            }
            let object = try mng.withLock { () throws(ShmCoreError) -> SharedObject in
                if let info = mng.segment(id: segmentID) {
                    var opened = try SharedObject.open(name, in: dir, minimumSize: SegmentLayout.minimumSegmentSize)
                    if opened == nil && mng.attachedCount == 1 {
                        // Registered but gone: a last process killed while removing the session.
                        // Nobody else is attached (we pruned under this lock), so nobody maps the
                        // old memory: create it again at the registered size; it is formatted below.
                        logger.warning("recreating a segment a dying process removed", metadata: ["shm.object": "\(name)"])
                        opened = try SharedObject.create(name, size: info.size, in: dir)
                    }
                    guard let object = opened else {
                        throw ShmCoreError(
                            .unknownSegment,
                            "segment \(segmentID) is registered in session '\(config.session)' but '\(name)' is missing from \(dir.path); the session was damaged, clean it (shmmonitor -c -s \(config.session))",
                            objectName: name)
                    }
                    let heap = SegmentHeap(base: object.base)
                    if !heap.isFormatted {
                        // Pre-created by a keep-alive process that does not format segments.
                        let strategy = AllocationStrategy(code: info.allocator) ?? .rbtreeBestFit
                        let arenas = config.arenaCount ?? SegmentLayout.defaultArenaCount(segmentSize: object.size)
                        SegmentHeap.format(
                            base: object.base, size: object.size, segmentID: segmentID, strategy: strategy, arenaCount: arenas,
                            flags: config.segmentFlags)
                    } else {
                        guard heap.isUsable(objectSize: object.size) else {
                            throw ShmCoreError(
                                .unsupportedVersion,
                                "'\(name)' has segment layout version \(heap.u32(SegmentLayout.Header.layoutVersion)) or a size that does not match; run all devices with the same build or clean the session",
                                objectName: name)
                        }
                    }
                    if config.allocationStrategy != heap.strategy && segmentID == config.segmentID {
                        logger.warning(
                            "segment uses a different allocator than requested; keeping the segment's",
                            metadata: ["shm.segment": "\(segmentID)", "shm.allocator": "\(heap.strategy.rawValue)"])
                    }
                    return object
                }
                guard create else {
                    throw ShmCoreError(
                        .unknownSegment,
                        "segment \(segmentID) does not exist in session '\(config.session)'; the sender used a segment id no device created",
                        objectName: name)
                }
                var object = try SharedObject.create(name, size: config.segmentSize, in: dir)
                if object == nil {
                    try SharedObject.refuseIfNotRegular(name, in: dir)  // a planted FIFO or symlink stays
                    // Not registered, so a leftover of an earlier session with this id: replace it.
                    logger.warning("removing a stale segment left by an earlier session", metadata: ["shm.object": "\(name)"])
                    dir.unlink(name)
                    object = try SharedObject.create(name, size: config.segmentSize, in: dir)
                }
                guard let object else {
                    throw ShmCoreError(.systemCall, "cannot create '\(name)': it keeps reappearing", objectName: name)
                }
                if config.zeroSegmentOnCreation { memset(object.base, 0, object.size) }
                let arenas = config.arenaCount ?? SegmentLayout.defaultArenaCount(segmentSize: object.size)
                SegmentHeap.format(
                    base: object.base, size: object.size, segmentID: segmentID, strategy: config.allocationStrategy,
                    arenaCount: arenas, flags: config.segmentFlags)
                if config.mlockSegmentOnCreation && !config.mlockSegmentOnAttach { try Self.lockInRAM(object) }
                let heap = SegmentHeap(base: object.base)
                do throws(ShmCoreError) {
                    try mng.registerSegment(
                        id: segmentID, size: object.size, allocator: config.allocationStrategy.code, freeBytes: heap.freeBytes)
                } catch {
                    dir.unlink(name)
                    throw error
                }
                logger.debug("segment created", metadata: ["shm.object": "\(name)", "shm.size": "\(object.size)"])
                return object
            }
            if config.mlockSegmentOnAttach { try Self.lockInRAM(object) }
            if config.zeroSegmentOnAttach { SegmentHeap(base: object.base).zeroFreeMemory() }
            if config.prefaultSegment { Self.prefault(object) }
            s.segments[segmentID] = object
            UnsafeAtomic<UInt>(at: bases + Int(segmentID)).store(UInt(bitPattern: object.base), ordering: .releasing)
            return object
        }
        return SegmentHeap(base: mapped.base)
    }

    /// Maps every page of `object` into this process, writable, without changing a byte.
    /// The corresponding C function is `madvise` (`MADV_POPULATE_WRITE`, Linux 5.14).
    static func prefault(_ object: SharedObject) {
        let populateWrite: Int32 = 23
        if madvise(object.base, object.size, populateWrite) == 0 { return }
        // Older kernels: one atomic add of 0 per page is a write fault that keeps the content,
        // also while other processes write the same words.
        for page in stride(from: 0, to: object.size, by: 4096) {
            UnsafeAtomic<UInt64>(at: (object.base + page).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
                .wrappingIncrement(by: 0, ordering: .relaxed)
        }
    }

    private static func lockInRAM(_ object: SharedObject) throws(ShmCoreError) {
        guard mlock(object.base, object.size) == 0 else {
            throw ShmCoreError(
                .systemCall,
                "cannot lock '\(object.name)' (\(object.size) bytes) into RAM; raise the memlock limit (ulimit -l) or drop the mlock option",
                objectName: object.name, errno: errno)
        }
    }

    /// Maps another segment of the session (for example one named in a peer's message).
    /// - Throws: `.unknownSegment` when it is not registered.
    public func attachSegment(_ segmentID: UInt16) throws(ShmCoreError) {
        _ = try segment(segmentID, create: false)
    }

    /// Creates a segment (or attaches it when it exists) without allocating from it; a
    /// keep-alive process uses it to pre-create the segments devices will use.
    public func createSegment(_ segmentID: UInt16, size: Int) throws(ShmCoreError) {
        guard size >= SegmentLayout.minimumSegmentSize else {
            throw ShmCoreError(
                .invalidArgument, "segment size \(size) is too small; use at least \(SegmentLayout.minimumSegmentSize) bytes")
        }
        _ = try segment(segmentID, create: true, size: size)
    }

    // MARK: Allocation

    /// Sizes beyond this are refused before any arithmetic on them (no segment is that big).
    static let largestSize = 1 << 62

    /// Allocates a block of `size` bytes with reference count 1 from this process's segment.
    /// - Parameters:
    ///   - size: payload bytes; 0 is allowed (a valid block with an empty payload).
    ///   - alignment: a power of two up to 1 MiB (at least 16 is used).
    /// - Throws: `.badAlloc` when the segment has no room after the bad-alloc policy's retries,
    ///   `.interrupted` when ``interrupt()`` ended the wait, `.invalidArgument` for a bad size
    ///   or alignment, `.detached` after ``detach()``.
    public func allocate(size: Int, alignment: Int = 8) throws(ShmCoreError) -> ShmBlock {
        guard let b = base(ownSegmentID) else {
            throw ShmCoreError(.detached, "the session memory was detached; create a new SessionMemory")
        }
        guard size >= 0, size <= Self.largestSize, alignment > 0, alignment & (alignment - 1) == 0, alignment <= 1 << 20 else {
            throw ShmCoreError(
                .invalidArgument, "cannot allocate \(size) bytes at alignment \(alignment); use a size of 0 ... 2^62 bytes and a power-of-two alignment up to 1 MiB")
        }
        if damaged.load(ordering: .relaxed) { throw makeDamageError() }
        let align = max(16, alignment)
        let heap = SegmentHeap(base: b)
        // Take back what peers released on every allocation, so the chain stays short: a process
        // killed while walking it leaks only those few blocks (DESIGN.md allows blocks in flight).
        if RemoteFreeList(heap, slot: processSlot).hasBlocks { takeRemoteFrees(heap) }
        let need = size + recordBytes
        let payload: Int
        if align == 16, let cached = popCached(heap, size: need) {
            payload = cached
        } else if let allocated = tryAllocate(heap, size: need, alignment: align) {
            payload = allocated
        } else {
            payload = try allocateSlowly(heap, size: need, alignment: align, asked: size)
        }
        if recordBytes != 0 { heap.writeRecord(payload: payload, size: size, pid: pid) }
        return ShmBlock(segmentID: ownSegmentID, offset: UInt64(payload), size: UInt64(size))
    }

    /// Allocates a block for each of `sizes` (FairMQ #480: many messages at once), taking each
    /// arena lock once for the whole batch instead of once per block. All or none: on error
    /// nothing stays allocated.
    /// - Throws: like ``allocate(size:alignment:)``.
    public func allocate(sizes: [Int], alignment: Int = 8) throws(ShmCoreError) -> [ShmBlock] {
        guard let b = base(ownSegmentID) else {
            throw ShmCoreError(.detached, "the session memory was detached; create a new SessionMemory")
        }
        guard sizes.allSatisfy({ $0 >= 0 && $0 <= Self.largestSize }), alignment > 0, alignment & (alignment - 1) == 0, alignment <= 1 << 20 else {
            throw ShmCoreError(
                .invalidArgument, "cannot allocate sizes \(sizes.filter { $0 < 0 || $0 > Self.largestSize }) at alignment \(alignment); use sizes of 0 ... 2^62 bytes and a power-of-two alignment up to 1 MiB")
        }
        if sizes.isEmpty { return [] }
        let align = max(16, alignment)
        let heap = SegmentHeap(base: b)
        takeRemoteFrees(heap)
        let extra = recordBytes
        let needs = sizes.lazy.map { $0 + extra }
        let payloads = [Int](unsafeUninitializedCapacity: sizes.count) { buffer, count in
            for arena in arenaOrder(heap, need: SegmentHeap.chunkSize(size: sizes.max()! + extra, alignment: align))
            where heap.allocate(arena: arena, sizes: needs, alignment: align, owner: allocatedMark, into: buffer) {
                count = sizes.count
                return
            }
            count = 0
        }
        if payloads.count == sizes.count {
            if extra != 0 { for (p, size) in zip(payloads, sizes) { heap.writeRecord(payload: p, size: size, pid: pid) } }
            return zip(payloads, sizes).map { ShmBlock(segmentID: ownSegmentID, offset: UInt64($0), size: UInt64($1)) }
        }
        // No arena holds the whole batch: one by one, with the bad-alloc policy for each.
        var blocks: [ShmBlock] = []
        blocks.reserveCapacity(sizes.count)
        do {
            for size in sizes { blocks.append(try allocate(size: size, alignment: align)) }
        } catch {
            for block in blocks { release(block) }
            throw error
        }
        return blocks
    }

    /// A block from the local cache, live again (reference count 1, marked as this process's):
    /// its payload offset.
    @inline(__always) private func popCached(_ heap: SegmentHeap, size: Int) -> Int? {
        guard let chunk = cache.pop(heap, need: SegmentHeap.chunkSize(size: size, alignment: 16)) else { return nil }
        let h = chunk + 32 - SegmentLayout.Block.headerSize
        heap.atomic32(h + SegmentLayout.Block.refCount).store(1, ordering: .relaxed)
        heap.base.storeBytes(of: allocatedMark, toByteOffset: h + SegmentLayout.Block.cacheOwner, as: UInt16.self)
        return chunk + 32
    }

    /// Takes back the blocks other processes released (``RemoteFreeList``): into the local
    /// cache where they fit, else into the heap, under this process's own arena locks.
    ///
    /// One thread of the process takes at a time (the list's `taken` cursor is per slot, and
    /// the slot is the process's); a thread that finds another taking goes on without waiting.
    private func takeRemoteFrees(_ heap: SegmentHeap) {
        guard takingRemoteFrees.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        defer { takingRemoteFrees.store(false, ordering: .releasing) }
        RemoteFreeList(heap, slot: processSlot).take { payload in
            if let point = testCrashPoint, point == .remoteTakeWalking { raise(SIGKILL) }
            keepOrFree(heap, payload: payload)
        }
    }

    /// A block of this process's segment whose last reference is gone: into the local cache if
    /// it fits (an unaligned block this process allocated), else back to the heap.
    @inline(__always) private func keepOrFree(_ heap: SegmentHeap, payload: Int) {
        let h = payload - SegmentLayout.Block.headerSize
        if heap.u32(h + SegmentLayout.Block.chunkDelta) == 32 {
            heap.base.storeBytes(of: cacheOwner, toByteOffset: h + SegmentLayout.Block.cacheOwner, as: UInt16.self)
            if cache.push(heap, chunk: payload - 32) { return }
            heap.base.storeBytes(of: UInt16(0), toByteOffset: h + SegmentLayout.Block.cacheOwner, as: UInt16.self)
        }
        heap.free(payload: payload)
    }

    /// Allocates from the shared heap. Blocks are marked as allocated by this process
    /// (`allocatedMark`): only such blocks go to its local cache when it releases them, so
    /// blocks handed to other processes return to the shared heap.
    @inline(__always) private func tryAllocate(_ heap: SegmentHeap, size: Int, alignment: Int) -> Int? {
        if heap.arenaCount == 1 { return heap.allocate(arena: 0, size: size, alignment: alignment, owner: allocatedMark) }
        for arena in arenaOrder(heap, need: SegmentHeap.chunkSize(size: size, alignment: alignment)) {
            if let p = heap.allocate(arena: arena, size: size, alignment: alignment, owner: allocatedMark) { return p }
        }
        return nil
    }

    /// The arenas to try for a chunk of `need` bytes, in order: small chunks start at this
    /// process's small-block arena (processes spread over them) and end at arena 0; big ones
    /// go through the arenas in order.
    @inline(__always) private func arenaOrder(_ heap: SegmentHeap, need: Int) -> LazyMapSequence<Range<Int>, Int> {
        let n = heap.arenaCount
        let small: Bool
        if n == 1 {
            small = false
        } else {
            let smallArena = heap.arenaRange(1)
            small = need <= (smallArena.end - smallArena.start) / 8
        }
        let own = n > 1 ? processSlot % (n - 1) : 0
        return (0..<n).lazy.map { k in small ? (k < n - 1 ? 1 + (own + k) % (n - 1) : 0) : k }
    }

    /// The bad-alloc path: gathers every free block this process can reach (remote frees, its
    /// cache), then waits for room as the policy says, on the segment's futex (``RoomSignal``),
    /// woken by any process that frees memory of the segment. `.retry(attempts: a, interval: i)`
    /// gives up after waiting (a - 1) · i ms in all; `.forever` waits until there is room.
    /// - Parameters:
    ///   - size: the bytes to allocate (with the message record's, if any);
    ///   - asked: the payload bytes the caller asked for (what the errors name).
    /// - Returns: the payload offset.
    @inline(never) private func allocateSlowly(_ heap: SegmentHeap, size: Int, alignment: Int, asked: Int) throws(ShmCoreError) -> Int {
        func attempt() -> Int? {
            takeRemoteFrees(heap)
            if cache.bytes > 0 { cache.flush(into: heap) }
            return tryAllocate(heap, size: size, alignment: alignment)
        }
        if let payload = attempt() { return payload }
        let need = SegmentHeap.chunkSize(size: size, alignment: alignment)
        var largest = 0  // a loop, not map/max: this path runs while a sampler waits for room
        for arena in 0..<heap.arenaCount {
            let range = heap.arenaRange(arena)
            largest = max(largest, range.end - range.start)
        }
        if need > largest {
            let name = segmentName(ownSegmentID)
            throw ShmCoreError(
                .badAlloc,
                "requested message size \(asked) (alignment \(alignment)) exceeds the largest arena (\(largest) bytes) of segment \(ownSegmentID) (\(heap.segmentSize) bytes); use a bigger segment size or fewer arenas",
                objectName: name)
        }
        let budget: Int?  // milliseconds of waiting in all; nil = for ever
        let interval: Int
        switch configuration.badAlloc {
        case .throwImmediately: (budget, interval) = (0, 0)
        case .retry(let a, let i):
            let (product, overflowed) = (max(1, a) - 1).multipliedReportingOverflow(by: max(0, i))
            (budget, interval) = (overflowed ? nil : product, max(0, i))
        case .forever(let i): (budget, interval) = (nil, max(0, i))
        }
        fullReport.note(logger: logger, size: asked, freeBytes: heap.freeBytes, segment: ownSegmentID)
        if budget != 0 {
            let signal = RoomSignal(heap)
            // The bit is the slot's, so the process's first waiting thread sets it and its last
            // one clears it: a thread that got room must not stop the wake-ups of another.
            waitingThreads.withLock { count in
                count += 1
                if count == 1 { signal.setWaiting(slot: processSlot, true) }
            }
            defer {
                waitingThreads.withLock { count in
                    count -= 1
                    if count == 0 { signal.setWaiting(slot: processSlot, false) }
                }
            }
            // In nanoseconds: a deadline in whole milliseconds cut the budget by up to 1 ms.
            let deadline = budget.map { MonotonicClock.nanoseconds() + UInt64($0) * 1_000_000 }
            while true {
                let sequence = signal.sequence
                if isInterrupted {
                    throw ShmCoreError(
                        .interrupted, "allocation of \(asked) bytes was interrupted; the device is stopping or was told to",
                        objectName: segmentName(ownSegmentID))
                }
                if let payload = attempt() { return payload }
                let now = MonotonicClock.nanoseconds()
                let remaining = deadline.map { $0 > now ? Int(($0 - now + 999_999) / 1_000_000) : 0 } ?? Int.max
                if remaining <= 0 { break }
                // The interval only bounds one sleep: a free anywhere in the session wakes it earlier.
                signal.wait(sequence: sequence, milliseconds: max(1, min(remaining, interval == 0 ? 100 : interval)))
            }
        }
        throw ShmCoreError(
            .badAlloc,
            "could not create a message of size \(asked), alignment \(alignment): free memory \(heap.freeBytes) of \(heap.heapBytes) bytes in segment \(ownSegmentID); free messages sooner, use a bigger segment size, or allow retries (bad-alloc policy)",
            objectName: segmentName(ownSegmentID))
    }

    private var interruptFlag: UnsafeAtomic<UInt32> {
        UnsafeAtomic<UInt32>(at: UnsafeMutableRawPointer(interruptWord).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }

    private var isInterrupted: Bool { interruptFlag.load(ordering: .acquiring) != 0 }

    /// Wakes every allocation waiting for room; they throw `.interrupted`, and so do later ones
    /// that would wait, until ``resume()``.
    public func interrupt() {
        interruptFlag.store(1, ordering: .sequentiallyConsistent)
        if let b = base(ownSegmentID) { RoomSignal(SegmentHeap(base: b)).wakeAll() }
    }

    /// Lets allocations wait for room again after ``interrupt()``.
    public func resume() {
        interruptFlag.store(0, ordering: .releasing)
    }

    // MARK: Reference counts

    @inline(__always) private func refCount(_ block: ShmBlock, base b: UnsafeMutableRawPointer) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(
            at: (b + Int(block.offset) - SegmentLayout.Block.headerSize + SegmentLayout.Block.refCount)
                .assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }

    @inline(__always) private func refCount(_ block: ShmBlock) -> UnsafeAtomic<UInt32>? {
        mappedBase(block.segmentID).map { refCount(block, base: $0) }
    }

    /// Adds a reference (a zero-copy copy of a message).
    public func retain(_ block: ShmBlock) {
        refCount(block)?.wrappingIncrement(ordering: .relaxed)
    }

    /// Drops a reference; the block is freed when the count reaches 0, from any process.
    public func release(_ block: ShmBlock) {
        guard let b = mappedBase(block.segmentID) else { return }
        let rc = refCount(block, base: b)
        let old = rc.loadThenWrappingDecrement(ordering: .acquiringAndReleasing)
        if old == 1 {
            // The last reference: this process owns the block now.
            let heap = SegmentHeap(base: b)
            let payload = Int(block.offset)
            let mark = heap.base.load(fromByteOffset: payload - SegmentLayout.Block.headerSize + SegmentLayout.Block.cacheOwner, as: UInt16.self)
            if mark == allocatedMark && block.segmentID == ownSegmentID {
                keepOrFree(heap, payload: payload)
                return
            }
            // Another process allocated it: hand it back through that process's remote-free list,
            // without taking its arena lock. A closed list (the owner is gone) or a block with no
            // room for the link goes to the heap.
            let ownerSlot = Int(mark & 0x7FFF) - 1
            if mark & 0x8000 != 0, ownerSlot < SegmentLayout.remoteFreeSlots, RemoteFreeList.canLink(heap, payload: payload) {
                let list = RemoteFreeList(heap, slot: ownerSlot)
                if let point = testCrashPoint, point == .remotePushLinked {
                    _ = list.push(payload: payload, crashAfterLink: true)
                    raise(SIGKILL)
                }
                if list.push(payload: payload) {
                    RoomSignal(heap).notify()
                    return
                }
            }
            heap.free(payload: payload)
        } else if old == 0 {
            rc.wrappingIncrement(ordering: .relaxed)
            logger.error(
                "block released more often than retained; ignored",
                metadata: ["shm.segment": "\(block.segmentID)", "shm.offset": "\(block.offset)"])
        }
    }

    /// The current reference count (0 for a freed block or an unknown segment).
    public func referenceCount(_ block: ShmBlock) -> Int {
        refCount(block).map { Int($0.load(ordering: .relaxed)) } ?? 0
    }

    /// Shrinks a block in place to `newSize` bytes (growing is not possible: the block is
    /// returned unchanged). The freed tail goes back to the segment.
    public func shrink(_ block: ShmBlock, to newSize: UInt64) -> ShmBlock {
        guard newSize < block.size, let b = base(block.segmentID) else { return block }
        let heap = SegmentHeap(base: b)
        if heap.recordsMessages {
            // The record sits at the chunk's end, which moves: keep its creator and time.
            let old = heap.record(payload: Int(block.offset))
            heap.shrink(payload: Int(block.offset), to: Int(newSize) + SegmentLayout.Record.size)
            heap.writeRecord(payload: Int(block.offset), size: Int(newSize), pid: old.pid, createdAt: old.createdAt)
        } else {
            heap.shrink(payload: Int(block.offset), to: Int(newSize))
        }
        return ShmBlock(segmentID: block.segmentID, offset: block.offset, size: newSize)
    }

    /// The address of a block's payload in this process.
    public func address(of block: ShmBlock) -> UnsafeMutableRawPointer {
        guard let b = mappedBase(block.segmentID) else {
            preconditionFailure("segment \(block.segmentID) is not part of session \(configuration.session); validate peer blocks with validatedBlock")
        }
        return b + Int(block.offset)
    }

    /// Checks a block named by a peer (a metadata frame) before it is touched: maps the segment
    /// if needed, then checks that the payload lies inside it, its alignment, and its header.
    /// Never reads outside the segment.
    public func validatedBlock(segmentID: UInt16, offset: UInt64, size: UInt64) throws(ShmCoreError) -> ShmBlock {
        if damaged.load(ordering: .relaxed) { throw makeDamageError() }
        let heap = try segment(segmentID, create: false)
        let segmentSize = UInt64(heap.segmentSize)
        let heapStart = UInt64(heap.heapOffset)
        // The object name is built only here: this check runs for every received message.
        func bad(_ why: String) -> ShmCoreError {
            ShmCoreError(
                .invalidBlock,
                "block at offset \(offset) size \(size) in segment \(segmentID) is invalid: \(why); the sender and this process disagree on the session's memory (mixed builds or a corrupted message)",
                objectName: segmentName(segmentID))
        }
        guard offset >= heapStart + 32, offset <= segmentSize, size <= segmentSize - offset else {
            throw bad("it does not lie inside the segment's heap (\(heapStart)..<\(segmentSize))")
        }
        guard offset % 16 == 0 else { throw bad("the offset is not 16-byte aligned") }
        let h = Int(offset) - SegmentLayout.Block.headerSize
        guard heap.u32(h + SegmentLayout.Block.magic) == SegmentLayout.Block.magicValue else {
            throw bad("no block header (freed, or not a block)")
        }
        let delta = UInt64(heap.u32(h + SegmentLayout.Block.chunkDelta))
        let arena = Int(heap.base.load(fromByteOffset: h + SegmentLayout.Block.arena, as: UInt16.self))
        guard delta >= 32, delta <= offset - heapStart, arena < heap.arenaCount else { throw bad("a damaged block header") }
        let chunk = Int(offset - delta)
        let range = heap.arenaRange(arena)
        guard chunk % 16 == 0, chunk >= range.start, chunk < range.end else { throw bad("its chunk lies outside its arena") }
        let word = heap.u64(chunk)
        let chunkSize = Int(word & ~SegmentLayout.Chunk.usedBit)
        guard word & SegmentLayout.Chunk.usedBit != 0, chunk + chunkSize <= range.end else {
            throw bad("its chunk is not in use")
        }
        guard UInt64(chunk + chunkSize) >= offset + size else {
            throw bad("the size exceeds the block's capacity \(UInt64(chunk + chunkSize) - offset)")
        }
        guard heap.u32(h + SegmentLayout.Block.refCount) > 0 else { throw bad("its reference count is 0") }
        return ShmBlock(segmentID: segmentID, offset: offset, size: size)
    }

    /// Whether `pointer` lies inside one of the session's segments mapped in this process.
    public func contains(_ pointer: UnsafeRawPointer) -> Bool {
        state.withLock { s in
            s.segments.values.contains { UnsafeRawPointer($0.base) <= pointer && pointer < UnsafeRawPointer($0.base + $0.size) }
        }
    }

    /// Free bytes of a segment (0 when it is not part of the session).
    ///
    /// Includes the blocks this process keeps in its local cache (they are free for it);
    /// other processes' caches and remote-free lists count as used until they take them back.
    /// Blocks that peers released into this process's remote-free list are taken back first.
    public func freeMemory(segmentID: UInt16) -> Int {
        guard let heap = try? segment(segmentID, create: false) else { return 0 }
        guard segmentID == ownSegmentID else { return heap.freeBytes }
        takeRemoteFrees(heap)
        return heap.freeBytes + cache.bytes
    }

    /// Size of a segment in bytes (0 when it is not part of the session).
    public func segmentSize(segmentID: UInt16) -> Int {
        guard let heap = try? segment(segmentID, create: false) else { return 0 }
        return heap.segmentSize
    }

    /// Free bytes of an empty segment: what ``freeMemory(segmentID:)`` returns once every block is freed.
    public func heapSize(segmentID: UInt16) -> Int {
        guard let heap = try? segment(segmentID, create: false) else { return 0 }
        return heap.heapBytes
    }

    /// Checks every allocator invariant of a segment (takes each arena lock in turn; for tests
    /// and diagnostics). Returns the first broken invariant, or nil.
    public func verifySegment(_ segmentID: UInt16) -> String? {
        guard let heap = try? segment(segmentID, create: false) else { return "segment \(segmentID) is not mapped" }
        return heap.verify()
    }

    /// Blocks this process allocated in its segment that are still held — by this process or by
    /// the receivers of messages it sent. Walks the segment under each arena's lock in turn, so
    /// it is for shutdown (waiting for receivers to drain), not for the hot path.
    public func liveBlocksAllocatedHere() -> Int {
        guard let b = base(ownSegmentID) else { return 0 }
        return SegmentHeap(base: b).liveBlocks(mark: allocatedMark)
    }

    /// Used blocks of a segment by state (live, cached, released, other) with their bytes; for
    /// leak diagnostics in tests. Only blocks at alignment 16 are classified; others count as "other".
    @_spi(Testing) public func usedBlockCensus(segmentID: UInt16) -> [String: (blocks: Int, bytes: Int)] {
        (try? segment(segmentID, create: false))?.usedCensus() ?? [:]
    }

    /// How often arenas of a segment were rebuilt after a lock holder died.
    public func repairCount(segmentID: UInt16) -> Int {
        (try? segment(segmentID, create: false))?.repairs ?? 0
    }

    /// Processes registered in the session right now (after pruning dead ones).
    public func attachedProcesses() -> [Int32] {
        state.withLock { s -> [Int32] in
            guard let mng = s.management else { return [] }
            return (try? mng.withLock {
                mng.pruneDead()
                let t = mng.processTable
                return (0..<t.capacity).compactMap { i in
                    let e = t.offset + i * t.stride
                    guard mng.u32(e + ManagementLayout.ProcessEntry.state) == ManagementLayout.ProcessEntry.attached else { return nil }
                    return mng.base.load(fromByteOffset: e + ManagementLayout.ProcessEntry.pid, as: Int32.self)
                }
            }) ?? []
        }
    }

    /// The crash point armed for this process's next remote-free push or take, if any.
    @inline(__always) private var testCrashPoint: CrashPoint? {
        let armed = armedCrash.load(ordering: .relaxed)
        return armed == 0 ? nil : CrashPoint.allCases[armed - 1]
    }

    /// Test hook: this process dies by SIGKILL the next time it reaches `point` (the remote-free
    /// points only), in the middle of real work.
    @_spi(Testing) public func armCrash(at point: CrashPoint) {
        armedCrash.store(CrashPoint.allCases.firstIndex(of: point)! + 1, ordering: .relaxed)
    }

    /// Test hooks: die by SIGKILL while holding a lock, in the middle of an update, so that
    /// the crash tests can prove the owner-died repair.
    @_spi(Testing) public enum CrashPoint: String, Sendable, CaseIterable {
        /// A free chunk was taken off its bin, its size not yet changed.
        case allocationUnlinked = "allocation-unlinked"
        /// A chunk was split (remainder header written, used size stored) but the remainder is in no bin.
        case allocationSplit = "allocation-split"
        /// A freed chunk was marked free (one size store), not yet put in a bin.
        case freeMerged = "free-merged"
        /// The session lock is held while a process entry is half claimed.
        case sessionLockClaiming = "session-lock-claiming"
        /// A releaser wrote a block's remote-free link but did not publish it (the block leaks).
        case remotePushLinked = "remote-push-linked"
        /// The owner took its remote-free chain and dies walking it (the chain's blocks leak).
        case remoteTakeWalking = "remote-take-walking"
        /// The owner dies with blocks in its remote-free list: the pruner must free them all.
        case remoteListFull = "remote-list-full"

        /// Whether the point dies holding an arena lock, so that the next locker repairs the arena.
        public var holdsArenaLock: Bool {
            switch self {
            case .allocationUnlinked, .allocationSplit, .freeMerged: return true
            case .sessionLockClaiming, .remotePushLinked, .remoteTakeWalking, .remoteListFull: return false
            }
        }
    }

    /// Performs the first half of an operation and SIGKILLs this process (see ``CrashPoint``).
    @_spi(Testing) public func crash(at point: CrashPoint) -> Never {
        let heap = SegmentHeap(base: base(ownSegmentID)!)
        switch point {
        case .allocationUnlinked, .allocationSplit:
            heap.lock(arena: 0)
            let need = SegmentHeap.chunkSize(size: 256, alignment: 16)
            if let c = heap.findFit(arena: 0, need: need) {
                let total = Int(heap.u64(c))
                heap.removeFree(arena: 0, chunk: c, size: total)
                if point == .allocationSplit && total - need >= SegmentLayout.Chunk.minimumSize {
                    heap.setU64(c + need, UInt64(total - need))
                    heap.setU64(c + need + 8, UInt64(need))
                    heap.setU64(c, UInt64(need) | SegmentLayout.Chunk.usedBit)
                }
            }
        case .freeMerged:
            let a = heap.allocate(arena: 0, size: 100, alignment: 16, owner: 0)!
            _ = heap.allocate(arena: 0, size: 100, alignment: 16, owner: 0)
            let b = heap.allocate(arena: 0, size: 100, alignment: 16, owner: 0)!
            heap.free(payload: b)
            heap.lock(arena: 0)
            let c = a - 32
            let size = Int(heap.u64(c) & ~SegmentLayout.Chunk.usedBit)
            heap.setU64(c, UInt64(size))
        case .remotePushLinked:
            // As a releaser of a block of this process's own slot (a peer's view of it).
            let block = try! allocate(size: 300)
            _ = RemoteFreeList(heap, slot: processSlot).push(payload: Int(block.offset), crashAfterLink: true)
        case .remoteTakeWalking, .remoteListFull:
            // Three blocks "released by peers" wait in this process's list.
            let list = RemoteFreeList(heap, slot: processSlot)
            for _ in 0..<3 {
                let block = try! allocate(size: 300)
                heap.atomic32(Int(block.offset) - SegmentLayout.Block.headerSize + SegmentLayout.Block.refCount).store(0, ordering: .relaxed)
                _ = list.push(payload: Int(block.offset))
            }
            if point == .remoteTakeWalking {
                armCrash(at: point)
                takeRemoteFrees(heap)
            }
        case .sessionLockClaiming:
            if let mng = state.withLock({ $0.management }) {
                _ = mng.lock.lock(timeoutNanoseconds: nil) {}
                let t = mng.processTable
                for i in 0..<t.capacity {
                    let e = t.offset + i * t.stride
                    if mng.atomic32(e).compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { break }
                }
            }
        }
        raise(SIGKILL)
        fatalError("SIGKILL did not kill")
    }

    private func publishFreeBytes() {
        state.withLock { s in
            guard let mng = s.management else { return }
            for (id, object) in s.segments { mng.publishFreeBytes(id: id, freeBytes: SegmentHeap(base: object.base).freeBytes) }
        }
    }

    // MARK: Detach

    /// Why the session's management segment counts as damaged (overwritten by another process
    /// while in use), or nil. Once set, allocations and received blocks fail with it.
    public var damage: String? { state.withLock { $0.management?.damage } }

    /// Whether ``damage`` is set (a relaxed load: cheap enough for every iteration of a loop).
    public var isDamaged: Bool { damaged.load(ordering: .relaxed) }

    /// Calls `handler` (on the thread that finds it, usually the heartbeat's) once the
    /// management segment is found damaged — for example to interrupt blocked transfers.
    public func onDamage(_ handler: @escaping @Sendable (String) -> Void) { damageHandlers.add(handler) }

    /// A full error for the damage: what happened, to which object, and how to clean up.
    public var damageError: ShmCoreError? { damaged.load(ordering: .acquiring) ? makeDamageError() : nil }

    private func makeDamageError() -> ShmCoreError {
        ShmCoreError(
            .corrupt,
            "the management segment 'fmq_\(id)_mng' of session '\(configuration.session)' was overwritten by another process while in use (\(damage ?? "damaged")); stop the session's devices and clean it (shmmonitor -c --force -s \(configuration.session))",
            objectName: "fmq_\(id)_mng")
    }

    /// Unregisters this process and unmaps the session's memory. The last process out removes
    /// the segments and the management segment, unless `noCleanup` was set (by this process or
    /// by the session's creator). Idempotent; `deinit` calls it, and so does the process's normal
    /// exit (`return` from `main`, `exit()`) for a memory still attached then.
    public func detach() {
        ExitDetach.remove(self)
        detach(unmapping: true)
    }

    /// Detaches; `unmapping: false` (at exit, other threads may still run) keeps every mapping
    /// and every base pointer, so a thread still using the memory never faults.
    func detach(unmapping: Bool) {
        let heartbeat = state.withLock { s -> HeartbeatThread? in
            if s.detached { return nil }
            s.detached = true
            return s.heartbeat
        }
        heartbeat?.stop()
        if let b = base(ownSegmentID) {
            // Close before flushing: a peer releasing a block of ours from now on frees it itself.
            let heap = SegmentHeap(base: b)
            RemoteFreeList(heap, slot: processSlot).close()
            cache.flush(into: heap)
        }
        let noCleanup = configuration.noCleanup
        let dir = directory
        let id = self.id
        let logger = self.logger
        let slot = processSlot
        state.withLock { s in
            if unmapping {
                for (segmentID, _) in s.segments {
                    UnsafeAtomic<UInt>(at: bases + Int(segmentID)).store(0, ordering: .releasing)
                }
            }
            if let mng = s.management, let damage = mng.damage {
                // Nothing written into a segment another process overwrote: leave it to the cleanup.
                logger.error(
                    "left the session's memory in place: its management segment is damaged (\(damage)); clean it (shmmonitor -c --force)",
                    metadata: ["shm.object": "\(mng.object.name)"])
            } else if let mng = s.management {
                do throws(ShmCoreError) {
                    try mng.withLock {
                        for (segmentID, object) in s.segments {
                            mng.publishFreeBytes(id: segmentID, freeBytes: SegmentHeap(base: object.base).freeBytes)
                        }
                        mng.unregister(slot: slot)
                        mng.pruneDead()
                        if mng.attachedCount == 0 && !noCleanup && !mng.noCleanupFlag && mng.object.isLinked(in: dir) {
                            for entry in mng.regionEntries where !entry.destroyed {
                                SessionRegion.removeObjects(of: entry, shmID: id, directory: dir)
                            }
                            for segmentID in mng.registeredSegmentIDs {
                                dir.unlink(ShmObjectName(id, .segment(UInt32(segmentID))).fileName)
                            }
                            // A process killed between making an object and registering it (a region's
                            // memory, queue or pool; a segment) left it unregistered: the session's
                            // lock is held, so nobody is making one now and every other object of
                            // this shm id of those kinds is such a leftover (not the monitor's flag:
                            // a daemon holds it).
                            for name in dir.names() {
                                guard let object = ShmObjectName(fileName: name), object.shmID == id else { continue }
                                switch object.kind {
                                case .segment, .region, .regionQueue, .regionRefCount: break
                                // a management segment a process died writing (a live one's is being written)
                                case .managementDraft(let pid) where !ProcessInspector().isAlive(pid: Int32(bitPattern: pid), startTime: nil): break
                                default: continue
                                }
                                if dir.unlinkIfOwnRegularFile(name) {
                                    logger.debug("last process out: removed an unregistered leftover", metadata: ["shm.object": "\(name)"])
                                }
                            }
                            dir.unlink(mng.object.name)
                            logger.debug("last process out: session memory removed")
                        }
                    }
                } catch {
                    logger.error("could not detach from the session: \(error.message)", metadata: ["shm.object": "\(mng.object.name)"])
                }
            }
            guard unmapping else { return }
            s.segments = [:]
            s.management = nil
            s.heartbeat = nil
        }
    }
}

/// Who is told when the management segment is found damaged.
private final class DamageHandlers: Sendable {
    private let handlers = Mutex<[@Sendable (String) -> Void]>([])
    func add(_ handler: @escaping @Sendable (String) -> Void) { handlers.withLock { $0.append(handler) } }
    func call(_ why: String) { for handler in handlers.withLock({ $0 }) { handler(why) } }
}
