import Atomics
import CShmTransport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// How a full segment is waited out: the waiter sleeps on a futex in the segment and any
/// process that frees memory of the segment wakes it, so no allocation sleeps a fixed interval
/// while room is there (DESIGN.md: waiting is a futex woken by the event waited for).
///
/// ```
/// waitingSlots  4 × UInt64 at Header.waitingSlots: bit s set while process slot s waits
/// roomSequence  UInt32 at Header.roomSequence: bumped by every wake-up
/// ```
/// A waiter sets its bit, reads the sequence, tries to allocate, and only then sleeps on the
/// sequence value it read: a free that lands after the read changes the sequence, so the
/// sleep returns at once (no lost wake-up). Freers read the four bitmap words (one cache line,
/// read-mostly) and make the futex call only when a bit is set. A waiter killed while waiting
/// leaves its bit set until the pruner clears it for the dead slot; until then frees make one
/// futex call too many, which costs time but never blocks anybody.
struct RoomSignal {
    let heap: SegmentHeap

    init(_ heap: SegmentHeap) { self.heap = heap }

    private var sequenceWord: UnsafeMutablePointer<UInt32> {
        (heap.base + SegmentLayout.Header.roomSequence).assumingMemoryBound(to: UInt32.self)
    }

    private func bitmapWord(_ slot: Int) -> UnsafeAtomic<UInt64> {
        heap.atomic64(SegmentLayout.Header.waitingSlots + (slot >> 6) * 8)
    }

    /// Marks (or unmarks) process slot `slot` as waiting for room.
    func setWaiting(slot: Int, _ waiting: Bool) {
        let bit = UInt64(1) << UInt64(slot & 63)
        if waiting {
            _ = bitmapWord(slot).bitwiseOrThenLoad(with: bit, ordering: .sequentiallyConsistent)
        } else {
            _ = bitmapWord(slot).bitwiseAndThenLoad(with: ~bit, ordering: .sequentiallyConsistent)
        }
    }

    /// The current sequence; pass it to ``wait(sequence:milliseconds:)``.
    var sequence: UInt32 { heap.atomic32(SegmentLayout.Header.roomSequence).load(ordering: .sequentiallyConsistent) }

    /// Sleeps until the sequence moves past `sequence` or `milliseconds` pass.
    func wait(sequence: UInt32, milliseconds: Int) {
        var timeout = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        _ = cshm_futex_wait(sequenceWord, sequence, &timeout)
    }

    /// After memory of the segment was freed: wakes the waiters, if there are any.
    @inline(__always) func notify() {
        // Sequentially consistent, pairing with the waiter's bit store and sequence read: either
        // this sees the bit, or the waiter's retry sees the freed memory.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let words = (0..<4).reduce(UInt64(0)) { $0 | heap.atomic64(SegmentLayout.Header.waitingSlots + $1 * 8).load(ordering: .relaxed) }
        if words != 0 { wakeAll() }
    }

    /// Bumps the sequence and wakes every waiter (also used by interrupt).
    func wakeAll() {
        heap.atomic32(SegmentLayout.Header.roomSequence).wrappingIncrement(ordering: .sequentiallyConsistent)
        _ = cshm_futex_wake(sequenceWord, Int32.max)
    }
}
