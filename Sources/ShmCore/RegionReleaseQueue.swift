import Atomics
import CShmTransport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// One released block of an unmanaged region: what the controller's callback gets back.
public struct RegionRelease: Sendable, Hashable {
    /// Offset of the block's first byte from the region's start.
    public var offset: UInt64
    /// The block's size in bytes.
    public var size: UInt64
    /// The hint its message was made with.
    public var hint: UInt64

    /// A released block.
    public init(offset: UInt64, size: UInt64, hint: UInt64) {
        self.offset = offset
        self.size = size
        self.hint = hint
    }
}

/// The release acknowledgements of a region: `fmq_<id>_rgq_<regionID>` (FairMQ's `rgq`).
///
/// One lane per process slot of the session: a process writes the blocks it releases into its
/// own lane (single producer: its threads take a local lock), the controller's one thread reads
/// every lane (single consumer). A lane is a ring whose `tail` is stored only after the entry is
/// written, so a process killed at any instruction leaves nothing half-visible and blocks no
/// one; a process that later gets the same slot goes on from the lane's `tail`.
///
/// ```
/// offset  size  field
///      0     8  magic "SHMTRGQ1"
///      8     4  laneCount       lanes (the process table's capacity)
///     12     4  laneCapacity    entries per lane, a power of two
///     16     4  wakeSequence    futex word: bumped by a producer that finds the consumer asleep
///     20     4  consumerAsleep  1 while the controller's thread waits on wakeSequence
///     24     4  highestLane     atomic: 1 + the highest lane ever written (the consumer reads no further)
///     28    36  (reserved)
///     64     …  laneCount × (64 + laneCapacity × 24) bytes:
///               lane header { head UInt64 atomic (consumer), tail UInt64 atomic (producer), … }
///               entries { offset UInt64, size UInt64, hint UInt64 }
/// ```
package struct RegionReleaseQueue {
    static let magic: UInt64 = 0x3151_4752_544D_4853  // "SHMTRGQ1"
    static let headerSize = 64
    static let laneHeaderSize = 64
    static let entrySize = 24
    static let defaultLaneCapacity = 512

    let base: UnsafeMutableRawPointer
    package let laneCount: Int
    package let laneCapacity: Int

    package static func size(laneCount: Int, laneCapacity: Int = defaultLaneCapacity) -> Int {
        headerSize + laneCount * (laneHeaderSize + laneCapacity * entrySize)
    }

    /// Formats a new queue object (its creator only, before anyone can open it).
    package static func format(base: UnsafeMutableRawPointer, laneCount: Int, laneCapacity: Int = defaultLaneCapacity) {
        memset(base, 0, headerSize)
        base.storeBytes(of: UInt32(laneCount), toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(laneCapacity), toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: magic, toByteOffset: 0, as: UInt64.self)
    }

    /// The queue in an object of `size` bytes, or nil when it is not a formatted queue that fits.
    package init?(base: UnsafeMutableRawPointer, size: Int) {
        guard size >= Self.headerSize, base.load(fromByteOffset: 0, as: UInt64.self) == Self.magic else { return nil }
        let lanes = Int(base.load(fromByteOffset: 8, as: UInt32.self))
        let capacity = Int(base.load(fromByteOffset: 12, as: UInt32.self))
        guard lanes >= 1, lanes <= 1 << 16, capacity >= 1, capacity <= 1 << 20, capacity & (capacity - 1) == 0,
            Self.size(laneCount: lanes, laneCapacity: capacity) <= size
        else { return nil }
        self.base = base
        self.laneCount = lanes
        self.laneCapacity = capacity
    }

    private func atomic32(_ o: Int) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: (base + o).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }
    private func atomic64(_ o: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + o).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
    }
    private func lane(_ i: Int) -> Int { Self.headerSize + i * (Self.laneHeaderSize + laneCapacity * Self.entrySize) }
    private var wakeWord: UnsafeMutablePointer<UInt32> { (base + 16).assumingMemoryBound(to: UInt32.self) }

    /// Appends `blocks` to lane `slot`; returns how many fit (the rest: the lane is full).
    package func push(lane slot: Int, _ blocks: UnsafeBufferPointer<RegionRelease>) -> Int {
        guard slot < laneCount else { return 0 }
        let l = lane(slot)
        let head = atomic64(l).load(ordering: .acquiring)
        let tail = atomic64(l + 8).load(ordering: .relaxed)
        let room = max(0, laneCapacity - Int(truncatingIfNeeded: tail &- head))
        let n = min(room, blocks.count)
        guard n > 0 else { return 0 }
        for k in 0..<n {
            let e = l + Self.laneHeaderSize + Int((tail &+ UInt64(k)) & UInt64(laneCapacity - 1)) * Self.entrySize
            base.storeBytes(of: blocks[k].offset, toByteOffset: e, as: UInt64.self)
            base.storeBytes(of: blocks[k].size, toByteOffset: e + 8, as: UInt64.self)
            base.storeBytes(of: blocks[k].hint, toByteOffset: e + 16, as: UInt64.self)
        }
        atomic64(l + 8).store(tail &+ UInt64(n), ordering: .releasing)
        let highest = atomic32(24)
        var seen = highest.load(ordering: .relaxed)
        while seen < UInt32(slot + 1) {
            let (done, now) = highest.compareExchange(expected: seen, desired: UInt32(slot + 1), ordering: .relaxed)
            if done { break }
            seen = now
        }
        // Pairs with the consumer's store of consumerAsleep and re-check of the lanes.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if atomic32(20).load(ordering: .relaxed) != 0 {
            atomic32(16).wrappingIncrement(ordering: .relaxed)
            _ = cshm_futex_wake(wakeWord, 1)
        }
        return n
    }

    /// Takes every published entry of every lane into `into`; returns how many.
    package func drain(into out: inout [RegionRelease]) -> Int {
        let before = out.count
        let lanes = min(laneCount, Int(atomic32(24).load(ordering: .relaxed)))
        for i in 0..<lanes {
            let l = lane(i)
            let head = atomic64(l).load(ordering: .relaxed)
            let tail = atomic64(l + 8).load(ordering: .acquiring)
            let pending = Int(truncatingIfNeeded: tail &- head)
            // A damaged lane (more pending than it holds) is skipped to its tail: its entries are garbage.
            if pending > 0 && pending <= laneCapacity {
                for k in 0..<pending {
                    let e = l + Self.laneHeaderSize + Int((head &+ UInt64(k)) & UInt64(laneCapacity - 1)) * Self.entrySize
                    out.append(RegionRelease(
                        offset: base.load(fromByteOffset: e, as: UInt64.self), size: base.load(fromByteOffset: e + 8, as: UInt64.self),
                        hint: base.load(fromByteOffset: e + 16, as: UInt64.self)))
                }
            }
            if pending != 0 { atomic64(l).store(tail, ordering: .releasing) }
        }
        return out.count - before
    }

    /// Whether a lane has entries the consumer has not taken.
    var hasPending: Bool {
        let lanes = min(laneCount, Int(atomic32(24).load(ordering: .relaxed)))
        return (0..<lanes).contains { atomic64(lane($0) + 8).load(ordering: .acquiring) != atomic64(lane($0)).load(ordering: .relaxed) }
    }

    /// The consumer: sleeps until a producer pushes or `milliseconds` pass (no lost wake-up:
    /// the lanes are checked again after announcing the sleep).
    func waitForReleases(milliseconds: Int) {
        let sequence = atomic32(16).load(ordering: .relaxed)
        atomic32(20).store(1, ordering: .relaxed)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if !hasPending {
            var timeout = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
            _ = cshm_futex_wait(wakeWord, sequence, &timeout)
        }
        atomic32(20).store(0, ordering: .relaxed)
    }

    /// Wakes the consumer (to stop it).
    func wakeConsumer() {
        atomic32(16).wrappingIncrement(ordering: .relaxed)
        _ = cshm_futex_wake(wakeWord, 1)
    }
}
