import Atomics
import ShmCleanup

/// The reference counters of copied region messages: `fmq_<id>_rrc_<regionID>` (FairMQ's
/// `rcSegmentSize` segment).
///
/// A region message that was never copied has no counter: its one holder releases the block.
/// Its first ``Message/copy()`` takes a counter from this pool with the value 2; every later copy
/// adds one, every release takes one away, and the release that reaches 0 gives the counter back
/// and acknowledges the block to the region's controller.
///
/// Layout: `ShmCleanup.RegionPoolLayout`.
///
/// Lock-free: the free list is a stack with a tag against ABA; a process killed at any
/// instruction leaks at most the counter it was taking or giving back, and blocks no one.
struct RegionReferencePool {
    typealias L = RegionPoolLayout
    static let headerSize = L.headerSize
    static let counterSize = L.counterSize

    let base: UnsafeMutableRawPointer
    let capacity: Int

    /// Counters a pool of `bytes` holds.
    static func capacity(bytes: Int) -> Int { L.capacity(bytes: bytes) }

    /// Formats a new pool object of `size` bytes (its creator only, before anyone can open it).
    static func format(base: UnsafeMutableRawPointer, size: Int) {
        memset(base, 0, headerSize)
        base.storeBytes(of: UInt32(capacity(bytes: size)), toByteOffset: L.capacity, as: UInt32.self)
        base.storeBytes(of: L.magic, toByteOffset: 0, as: UInt64.self)
    }

    /// The pool in an object of `size` bytes, or nil when it is not a formatted pool that fits.
    init?(base: UnsafeMutableRawPointer, size: Int) {
        guard size >= Self.headerSize, base.load(fromByteOffset: 0, as: UInt64.self) == L.magic else { return nil }
        let capacity = Int(base.load(fromByteOffset: L.capacity, as: UInt32.self))
        guard capacity <= Self.capacity(bytes: size) else { return nil }
        self.base = base
        self.capacity = capacity
    }

    private func atomic32(_ o: Int) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: (base + o).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }
    private var freeHead: UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + L.freeHead).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
    }
    private var nextUnused: UnsafeAtomic<UInt32> { atomic32(L.nextUnused) }
    private var inUse: UnsafeAtomic<UInt32> { atomic32(L.inUse) }
    private func count(_ index: Int) -> UnsafeAtomic<UInt32> { atomic32(Self.headerSize + index * Self.counterSize) }
    private func nextFreeOffset(_ index: Int) -> Int { Self.headerSize + index * Self.counterSize + 4 }

    /// Counters handed out now.
    var countersInUse: Int { Int(inUse.load(ordering: .relaxed)) }

    /// Takes a counter set to `initial`; nil when the pool is exhausted.
    func take(initial: UInt32) -> UInt32? {
        var head = freeHead.load(ordering: .acquiring)
        while head & 0xFFFF_FFFF != 0 {
            let index = Int(head & 0xFFFF_FFFF) - 1
            guard index < capacity else { break }  // a damaged list: fall back to fresh counters
            let next = UInt64(base.load(fromByteOffset: nextFreeOffset(index), as: UInt32.self))
            let desired = ((head >> 32) &+ 1) << 32 | next
            let (exchanged, original) = freeHead.compareExchange(expected: head, desired: desired, ordering: .acquiringAndReleasing)
            if exchanged {
                count(index).store(initial, ordering: .relaxed)
                inUse.wrappingIncrement(ordering: .relaxed)
                return UInt32(index)
            }
            head = original
        }
        let fresh = nextUnused.loadThenWrappingIncrement(ordering: .relaxed)
        guard Int(fresh) < capacity else {
            nextUnused.wrappingDecrement(ordering: .relaxed)
            return nil
        }
        count(Int(fresh)).store(initial, ordering: .relaxed)
        inUse.wrappingIncrement(ordering: .relaxed)
        return fresh
    }

    /// Whether `index` names a counter that is handed out (for a peer's frame: checked before use).
    func isLive(_ index: UInt32) -> Bool {
        Int(index) < capacity && index < nextUnused.load(ordering: .relaxed) && count(Int(index)).load(ordering: .acquiring) > 0
    }

    /// The value of counter `index`.
    func value(_ index: UInt32) -> Int { Int(count(Int(index)).load(ordering: .acquiring)) }

    /// Adds one to counter `index`.
    func retain(_ index: UInt32) { count(Int(index)).wrappingIncrement(ordering: .relaxed) }

    /// Takes one from counter `index`; returns true when it reached 0 (the counter is then back
    /// in the pool, and the caller acknowledges the block).
    func release(_ index: UInt32) -> Bool {
        guard count(Int(index)).loadThenWrappingDecrement(ordering: .acquiringAndReleasing) == 1 else { return false }
        var head = freeHead.load(ordering: .relaxed)
        while true {
            base.storeBytes(of: UInt32(truncatingIfNeeded: head), toByteOffset: nextFreeOffset(Int(index)), as: UInt32.self)
            let desired = ((head >> 32) &+ 1) << 32 | UInt64(index + 1)
            let (exchanged, original) = freeHead.compareExchange(expected: head, desired: desired, ordering: .acquiringAndReleasing)
            if exchanged { break }
            head = original
        }
        inUse.wrappingDecrement(ordering: .relaxed)
        return true
    }
}

#if canImport(Glibc)
@preconcurrency import Glibc
#endif
