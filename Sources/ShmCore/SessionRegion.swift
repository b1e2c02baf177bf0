import Atomics
import Logging
import ShmCleanup
import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// How an unmanaged region is made (FairMQ's `RegionConfig`, with its defaults).
public struct RegionOptions: Sendable, Hashable {
    /// The region's id; nil picks the next free automatic id (from 1024 up, as the original).
    public var id: UInt16?
    /// Size in bytes (more than 0).
    public var size: Int
    /// A directory prefix for a file-backed region (`<path>fmq_<id>_rg_<n>`, for example on a
    /// hugetlbfs mount); empty for a shared-memory object in the shm directory.
    public var path: String
    /// Extra `mmap` flags for the mapping (recorded and reported to event subscribers).
    public var creationFlags: Int32
    /// Opaque to the transport; reported to event subscribers.
    public var userFlags: UInt64
    /// Bytes of the reference-count pool `fmq_<id>_rrc_<n>` for copies of region messages;
    /// 0 keeps those counters in the managed segment instead.
    public var referenceCountPoolSize: Int
    /// Lock the region into RAM (`mlock`).
    public var lock: Bool
    /// Zero the region when it is made or adopted.
    public var zero: Bool
    /// The controller removes the region's objects when it destroys the region.
    public var removeOnDestruction: Bool
    /// How long a controller that destroys the region keeps taking acknowledgements that are
    /// still arriving, in milliseconds.
    public var lingerMilliseconds: Int

    /// The default pool size: 4 MiB, 524,280 copied region messages in flight (the original
    /// reserves 100 MB for each region; tmpfs charges what `posix_fallocate` reserves).
    public static let defaultReferenceCountPoolSize = 4 << 20

    /// Options with the original's defaults.
    public init(
        id: UInt16? = nil, size: Int, path: String = "", creationFlags: Int32 = 0, userFlags: UInt64 = 0,
        referenceCountPoolSize: Int = RegionOptions.defaultReferenceCountPoolSize, lock: Bool = false, zero: Bool = false,
        removeOnDestruction: Bool = true, lingerMilliseconds: Int = 100
    ) {
        self.id = id
        self.size = size
        self.path = path
        self.creationFlags = creationFlags
        self.userFlags = userFlags
        self.referenceCountPoolSize = referenceCountPoolSize
        self.lock = lock
        self.zero = zero
        self.removeOnDestruction = removeOnDestruction
        self.lingerMilliseconds = lingerMilliseconds
    }
}

/// Where the reference count of a region message lives.
public enum RegionCounter: Sendable, Hashable {
    /// Never copied: the one holder releases the block.
    case none
    /// A counter of the region's pool `fmq_<id>_rrc_<n>`.
    case pool(UInt32)
    /// A counter in a small block of a managed segment (a region made with pool size 0).
    case managed(ShmBlock)
}

/// One unmanaged region of a session as this process maps it: user-managed memory that
/// messages point into without copying (`fmq_<id>_rg_<n>` or a file under a path), its
/// reference-count pool and its release queue.
///
/// The *controller* made (or adopted) it with ``SessionMemory/createRegion(_:onRelease:)`` and
/// gets every released block back through its callback; other processes open it as *viewers*
/// when a message names it. ``destroy()`` (the controller's) stops the callbacks after the
/// linger time and, with `removeOnDestruction`, removes the objects.
public final class SessionRegion: @unchecked Sendable {
    /// The region id.
    public let id: UInt16
    /// The first byte of the region in this process.
    public let base: UnsafeMutableRawPointer
    /// Size in bytes.
    public let size: Int
    /// The directory prefix of a file-backed region ("" for shared memory).
    public let path: String
    /// The user flags it was made with.
    public let userFlags: UInt64
    /// The creation flags it was made with.
    public let creationFlags: Int32
    /// Whether this process made or adopted it (it gets the acknowledgements if it has a callback).
    public let isController: Bool
    /// Whether this process created the objects (a controller may adopt existing ones).
    public let createdObjects: Bool

    let entryIndex: Int
    let generation: UInt32
    let object: SharedObject
    let poolObject: SharedObject?
    let pool: RegionReferencePool?
    let queueObject: SharedObject
    let queue: RegionReleaseQueue
    let management: ManagementSegment
    let directory: Directory
    let shmID: ShmID
    let slot: Int
    let options: RegionOptions?
    private let logger: Logger
    private let producer = Mutex(false)
    private let warnedGone = ManagedAtomic<Bool>(false)
    private let consumer = Mutex<ReleaseConsumer?>(nil)
    private let destroyed = ManagedAtomic<Bool>(false)

    init(
        entry: ManagementSegment.RegionEntryInfo, object: SharedObject, poolObject: SharedObject?, queueObject: SharedObject,
        management: ManagementSegment, directory: Directory, shmID: ShmID, slot: Int, options: RegionOptions?,
        createdObjects: Bool, logger: Logger
    ) throws(ShmCoreError) {
        guard let queue = RegionReleaseQueue(base: queueObject.base, size: queueObject.size) else {
            throw ShmCoreError(
                .corrupt, "'\(queueObject.name)' is not a release queue of this build; clean the session (shmmonitor -c)",
                objectName: queueObject.name)
        }
        var pool: RegionReferencePool?
        if let poolObject {
            guard let p = RegionReferencePool(base: poolObject.base, size: poolObject.size) else {
                throw ShmCoreError(
                    .corrupt, "'\(poolObject.name)' is not a reference-count pool of this build; clean the session (shmmonitor -c)",
                    objectName: poolObject.name)
            }
            pool = p
        }
        self.id = entry.id
        self.base = object.base
        self.size = entry.size
        self.path = entry.path
        self.userFlags = entry.userFlags
        self.creationFlags = entry.creationFlags
        self.isController = options != nil
        self.createdObjects = createdObjects
        self.entryIndex = entry.index
        self.generation = entry.generation
        self.object = object
        self.poolObject = poolObject
        self.pool = pool
        self.queueObject = queueObject
        self.queue = queue
        self.management = management
        self.directory = directory
        self.shmID = shmID
        self.slot = slot
        self.options = options
        var logger = logger
        logger[metadataKey: "shm.region"] = "\(entry.id)"
        self.logger = logger
    }

    deinit { stopConsumer(linger: 0) }

    /// Whether the session still has this region (alive, not re-created under the same id).
    public var isCurrent: Bool { management.regionIsCurrent(index: entryIndex, generation: generation) }

    /// Counters of the reference-count pool in use (0 without a pool).
    public var referenceCountsInUse: Int { pool?.countersInUse ?? 0 }

    /// Whether `offset ..< offset + size` lies inside the region.
    public func contains(offset: UInt64, size: UInt64) -> Bool {
        offset <= UInt64(self.size) && size <= UInt64(self.size) - offset
    }

    // MARK: Acknowledgements

    /// Tells the controller that the last holder let go of a block: written into this process's
    /// lane of the release queue. A full lane is waited out while the controller is alive; a
    /// dead controller or a region that is gone drops the acknowledgement (logged once).
    public func acknowledge(_ block: RegionRelease) {
        guard isCurrent else {
            if !warnedGone.exchange(true, ordering: .relaxed) {
                logger.warning("region \(id) no longer exists; its release acknowledgements are dropped")
            }
            return
        }
        producer.withLock { _ in
            var block = block
            while withUnsafePointer(to: &block, { queue.push(lane: slot, UnsafeBufferPointer(start: $0, count: 1)) }) == 0 {
                guard controllerIsAlive, isCurrent else {
                    if !warnedGone.exchange(true, ordering: .relaxed) {
                        logger.warning("the controller of region \(id) is gone and its release queue is full; acknowledgements are dropped")
                    }
                    return
                }
                usleep(200)
            }
        }
    }

    /// Whether the registered controller is alive (false when the region has none).
    var controllerIsAlive: Bool {
        guard let entry = management.regionEntry(at: entryIndex), entry.generation == generation, entry.controllerPID > 0 else {
            return false
        }
        return ProcessInspector().isAlive(pid: entry.controllerPID, startTime: entry.controllerStartTime)
    }

    // MARK: Controller

    func startConsumer(_ handler: @escaping @Sendable ([RegionRelease]) -> Void) {
        let consumer = ReleaseConsumer(queue: queue, handler: handler)
        self.consumer.withLock { $0 = consumer }
        consumer.start()
    }

    private func stopConsumer(linger: Int) {
        let running = consumer.withLock { c -> ReleaseConsumer? in
            defer { c = nil }
            return c
        }
        running?.stop(lingerMilliseconds: linger)
    }

    /// The controller's end of the region: takes acknowledgements for the linger time, stops
    /// the callbacks, lets go of the controller role and — with `removeOnDestruction` — removes
    /// the region's objects and marks it destroyed for event subscribers. Idempotent; viewers'
    /// calls do nothing.
    public func destroy() {
        guard isController, let options, !destroyed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        stopConsumer(linger: options.lingerMilliseconds)
        let me = getpid()
        guard management.damage == nil else {
            logger.error("region left in place: the session's management segment is damaged; clean it (shmmonitor -c --force)")
            return
        }
        do throws(ShmCoreError) {
            try management.withLock {
                guard let entry = management.regionEntry(at: entryIndex), entry.generation == generation, !entry.destroyed else { return }
                if options.removeOnDestruction {
                    SessionRegion.removeObjects(of: entry, shmID: shmID, directory: directory)
                    management.markRegionDestroyed(index: entryIndex)
                } else if entry.controllerPID == me {
                    management.setRegionController(index: entryIndex, nil)
                }
            }
        } catch {
            logger.error("region left in place: \(error.message)")
            return
        }
        logger.debug("region destroyed", metadata: ["shm.removed": "\(options.removeOnDestruction)"])
    }

    /// Unlinks a region's three objects (the caller holds the session lock).
    static func removeObjects(of entry: ManagementSegment.RegionEntryInfo, shmID: ShmID, directory: Directory) {
        let n = UInt32(entry.id)
        if entry.path.isEmpty {
            directory.unlink(ShmObjectName(shmID, .region(n)).fileName)
        } else {
            let full = entry.path + ShmObjectName(shmID, .region(n)).fileName
            var st = stat()
            if lstat(full, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG { unlink(full) }
        }
        directory.unlink(ShmObjectName(shmID, .regionQueue(n)).fileName)
        directory.unlink(ShmObjectName(shmID, .regionRefCount(n)).fileName)
    }
}

/// The controller's thread: takes acknowledgements from every lane and hands them to the
/// callback in batches.
final class ReleaseConsumer: @unchecked Sendable {
    private let queue: RegionReleaseQueue
    private let handler: @Sendable ([RegionRelease]) -> Void
    private let stopping = ManagedAtomic<Int>(-1)
    private var thread: BackgroundThread?
    /// How long the thread looks for more releases before it sleeps.
    static let spinNanoseconds: UInt64 = 50_000

    init(queue: RegionReleaseQueue, handler: @escaping @Sendable ([RegionRelease]) -> Void) {
        self.queue = queue
        self.handler = handler
    }

    func start() {
        thread = BackgroundThread { [self] in run() }
    }

    private func run() {
        var batch: [RegionRelease] = []
        batch.reserveCapacity(1024)
        func takeAll() -> Bool {
            batch.removeAll(keepingCapacity: true)
            guard queue.drain(into: &batch) > 0 else { return false }
            handler(batch)
            return true
        }
        while stopping.load(ordering: .acquiring) < 0 {
            if takeAll() { continue }
            // Under a stream of releases the lanes refill within microseconds: look again for a
            // short while (yielding the core) before sleeping, so a releaser finds this thread
            // awake and makes no futex call. The profile put that wake-up first on the region path.
            let spinUntil = MonotonicClock.nanoseconds() + Self.spinNanoseconds
            while !queue.hasPending && MonotonicClock.nanoseconds() < spinUntil { sched_yield() }
            if !queue.hasPending { queue.waitForReleases(milliseconds: 100) }
        }
        // Linger: acknowledgements still arriving are taken until none came for the linger time.
        let linger = UInt64(max(0, stopping.load(ordering: .acquiring))) * 1_000_000
        var quietSince = MonotonicClock.nanoseconds()
        while true {
            if takeAll() {
                quietSince = MonotonicClock.nanoseconds()
                continue
            }
            let quiet = MonotonicClock.nanoseconds() - quietSince
            if quiet >= linger { break }
            queue.waitForReleases(milliseconds: max(1, Int(min(10_000_000, linger - quiet) / 1_000_000)))
        }
    }

    /// Stops after the linger time and waits for the thread (the last callbacks run before it returns).
    func stop(lingerMilliseconds: Int) {
        stopping.store(max(0, lingerMilliseconds), ordering: .releasing)
        queue.wakeConsumer()
        thread?.join()
        thread = nil
    }
}
