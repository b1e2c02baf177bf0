import Atomics
import Logging
import ShmCleanup
import ShmCore
import Synchronization

// The region types of the core are part of this module's API: users need not import ShmCore.
@_exported import struct ShmCore.RegionOptions
@_exported import struct ShmCore.RegionEventInfo
@_exported import enum ShmCore.RegionCounter

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// How an unmanaged region is made: FairMQ's `RegionConfig` with its defaults (size, id, path,
/// creation and user flags, reference-count pool size, lock, zero, remove on destruction, linger).
public typealias RegionConfiguration = RegionOptions

/// A block of an unmanaged region that its last holder let go of.
public struct RegionBlock: @unchecked Sendable, Hashable {
    /// The block's first byte in the controller's mapping.
    public var pointer: UnsafeMutableRawPointer
    /// The size of the message that released it.
    public var size: Int
    /// The hint the message was made with.
    public var hint: UInt64

    public init(pointer: UnsafeMutableRawPointer, size: Int, hint: UInt64) {
        self.pointer = pointer
        self.size = size
        self.hint = hint
    }
}

/// What the controller of a region is told when blocks come back: one call per block, or one
/// call per batch. Either runs on a thread of the transport (over `zeromq`: the thread that
/// drops the last holder), so it must be quick and thread-safe.
public enum RegionCallback: Sendable {
    case perBlock(@Sendable (_ pointer: UnsafeMutableRawPointer, _ size: Int, _ hint: UInt64) -> Void)
    case bulk(@Sendable ([RegionBlock]) -> Void)

    func deliver(_ blocks: [RegionBlock]) {
        switch self {
        case .perBlock(let callback): for block in blocks { callback(block.pointer, block.size, block.hint) }
        case .bulk(let callback): callback(blocks)
        }
    }
}

/// A buffer the user manages, shared zero-copy: messages point into it instead of into a managed
/// segment (FairMQ's `UnmanagedRegion`). Over `shmem` it is `fmq_<id>_rg_<n>` (or a file under
/// a path such as a hugetlbfs mount), registered in the session so that receivers open it, views
/// show it and cleanup removes it; the callback tells the controller when every holder of a
/// block — in any process — has let go, so the block can be refilled. Over `zeromq` it is
/// memory of this process and messages are copied by libzmq as usual.
///
/// Dropping the region (or ``destroy()``) takes acknowledgements for the linger time, then stops
/// the callbacks and, with `removeOnDestruction`, removes its objects.
public final class UnmanagedRegion: @unchecked Sendable {
    /// The factory that made it.
    public let factory: TransportFactory
    /// The region id (automatic ids start at 1024).
    public let id: UInt16
    /// The first byte of the region in this process.
    public let data: UnsafeMutableRawPointer
    /// Size in bytes.
    public let size: Int
    /// The user flags it was made with.
    public let userFlags: UInt64
    let shared: SessionRegion?
    private let callback: RegionCallback?
    private let destroyed = ManagedAtomic<Bool>(false)

    init(factory: TransportFactory, size: Int, configuration: RegionConfiguration, callback: RegionCallback?) throws(TransportError) {
        self.factory = factory
        self.callback = callback
        if let shm = factory.shm {
            let base = MappedBase()
            var handler: (@Sendable ([RegionRelease]) -> Void)?
            if let callback {
                handler = { @Sendable (releases: [RegionRelease]) -> Void in
                    guard let start = base.pointer else { return }
                    var blocks: [RegionBlock] = []
                    blocks.reserveCapacity(releases.count)
                    for release in releases {
                        blocks.append(RegionBlock(pointer: start + Int(release.offset), size: Int(release.size), hint: release.hint))
                    }
                    callback.deliver(blocks)
                }
            }
            var options = configuration
            options.size = size
            let region: SessionRegion
            do {
                region = try shm.memory.createRegion(options, onRelease: handler)
            } catch {
                let code: TransportError.Code = error.code == .invalidArgument ? .invalidArgument : .sharedMemory
                throw TransportError(code, "cannot create unmanaged region of \(size) bytes: \(error.message)", errno: error.errno)
            }
            base.pointer = region.base
            shared = region
            id = region.id
            data = region.base
            self.size = region.size
            userFlags = region.userFlags
        } else {
            guard size > 0 else { throw TransportError(.invalidArgument, "region size \(size) is not positive; give the size of the buffer in bytes") }
            guard let memory = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | configuration.creationFlags, -1, 0),
                memory != MAP_FAILED
            else {
                throw TransportError(.badAlloc, "cannot map an unmanaged region of \(size) bytes; lower the size or raise the address-space limit", errno: errno)
            }
            if configuration.lock && mlock(memory, size) != 0 {
                let err = errno
                munmap(memory, size)
                throw TransportError(.sharedMemory, "cannot lock the region into RAM; raise the memlock limit (ulimit -l) or drop the lock option", errno: err)
            }
            shared = nil
            id = configuration.id ?? factory.nextLocalRegionID()
            data = memory
            self.size = size
            userFlags = configuration.userFlags
        }
    }

    deinit {
        destroy()
        if shared == nil { munmap(data, size) }  // a zeromq region: this process's own mapping
    }

    /// Stops the callbacks after the linger time and, with `removeOnDestruction`, removes the
    /// region's objects. Messages still pointing into it stay readable in this process.
    public func destroy() {
        guard !destroyed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shared?.destroy()
    }

    /// A message of `size` bytes at `offset` in the region, zero-copy; `hint` comes back in the
    /// release callback.
    /// - Throws: ``TransportError/Code/invalidArgument`` when the block does not lie inside the region.
    public func makeMessage(offset: Int, size: Int, hint: UInt64 = 0) throws(TransportError) -> Message {
        guard offset >= 0, size >= 0, offset <= self.size, size <= self.size - offset else {
            throw TransportError(
                .invalidArgument,
                "a message of \(size) bytes at offset \(offset) does not lie inside region \(id) of \(self.size) bytes; give a block inside the region")
        }
        guard !destroyed.load(ordering: .relaxed) else {
            throw TransportError(.closed, "region \(id) was destroyed; make messages before destroying it")
        }
        let pointer = data + offset
        let address = UInt(bitPattern: pointer)
        if let shared, let shm = factory.shm {
            let payload = RegionPayload(region: shared, memory: shm.memory, offset: UInt64(offset), hint: hint, counter: .none)
            return Message(factory: factory, storage: .region(payload), base: pointer, size: size, alignment: 0)
        }
        let callback = self.callback
        let payload = HeapPayload(external: pointer) {
            callback?.deliver([RegionBlock(pointer: UnsafeMutableRawPointer(bitPattern: address)!, size: size, hint: hint)])
        }
        return Message(factory: factory, storage: .heap(payload), base: pointer, size: size, alignment: 0)
    }

    /// A message of `size` bytes at `pointer` (inside the region), zero-copy.
    public func makeMessage(pointer: UnsafeRawPointer, size: Int, hint: UInt64 = 0) throws(TransportError) -> Message {
        try makeMessage(offset: pointer - UnsafeRawPointer(data), size: size, hint: hint)
    }

    /// Counters of the region's reference-count pool in use now (copied messages in flight).
    public var referenceCountsInUse: Int { shared?.referenceCountsInUse ?? 0 }
}

/// The region's base address, set once the region is mapped (the callback thread starts before).
private final class MappedBase: @unchecked Sendable {
    private let raw = ManagedAtomic<UInt>(0)
    var pointer: UnsafeMutableRawPointer? {
        get { UnsafeMutableRawPointer(bitPattern: raw.load(ordering: .acquiring)) }
        set { raw.store(UInt(bitPattern: newValue), ordering: .releasing) }
    }
}

/// A `shmem` message's payload in an unmanaged region.
struct RegionPayload {
    unowned(unsafe) let region: SessionRegion
    unowned(unsafe) let memory: SessionMemory
    let offset: UInt64
    let hint: UInt64
    var counter: RegionCounter

    init(region: SessionRegion, memory: SessionMemory, offset: UInt64, hint: UInt64, counter: RegionCounter) {
        self.region = region
        self.memory = memory
        self.offset = offset
        self.hint = hint
        self.counter = counter
    }

    mutating func retain() throws(TransportError) {
        do {
            try memory.retainRegionBlock(region, counter: &counter)
        } catch {
            throw TransportError(.badAlloc, "cannot copy a message of region \(region.id): \(error.message)")
        }
    }

    func release(size: Int) {
        memory.releaseRegionBlock(region, counter: counter, RegionRelease(offset: offset, size: UInt64(size), hint: hint))
    }

    var referenceCount: Int { memory.regionReferenceCount(region, counter: counter) }
}

extension TransportFactory {
    /// Creates an unmanaged region of `size` bytes — or adopts the existing one of
    /// `configuration.id`, for example one an outside keep-alive process made — and makes this
    /// process its controller: `callback` gets every block whose last holder let go.
    /// - Throws: ``TransportError`` naming the problem: a size that differs from the existing
    ///   region's, a second controller for one id, a full region table, no space.
    public func makeUnmanagedRegion(
        size: Int, configuration: RegionConfiguration? = nil, callback: RegionCallback? = nil
    ) throws(TransportError) -> UnmanagedRegion {
        try UnmanagedRegion(factory: self, size: size, configuration: configuration ?? RegionConfiguration(size: size), callback: callback)
    }

    /// The managed segments and unmanaged regions of the session now, as region events would
    /// report them (`shmem` only; empty over `zeromq`).
    public func regionInfo() -> [RegionEventInfo] { shm?.memory.regionEvents() ?? [] }

    /// Calls `callback` for every managed segment and region of the session that is created or
    /// destroyed, by any process — first for those that exist now. Polls the session's event
    /// counter every 50 ms on a thread of its own. One subscription per factory: a second call
    /// replaces the first.
    public func subscribeToRegionEvents(_ callback: @escaping @Sendable (RegionEventInfo) -> Void) {
        unsubscribeFromRegionEvents()
        guard let memory = shm?.memory else { return }
        let watcher = RegionEventWatcher(memory: memory, callback: callback)
        regionEventWatcher.withLock { $0 = watcher }
        watcher.start()
    }

    /// Stops the event subscription (waits for a callback in progress).
    public func unsubscribeFromRegionEvents() {
        let watcher = regionEventWatcher.withLock { w -> RegionEventWatcher? in
            defer { w = nil }
            return w
        }
        watcher?.stop()
    }

    /// Whether a region event subscription is active.
    public var isSubscribedToRegionEvents: Bool { regionEventWatcher.withLock { $0 != nil } }
}
