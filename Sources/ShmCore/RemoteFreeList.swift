import Atomics

/// The remote-free list of one process slot in one segment: blocks that other processes
/// released, waiting for the process that allocated them to take them back (FairMQ's
/// receiver-frees-under-the-sender's-lock cost, removed). A releaser never takes an arena lock
/// for a block of a live peer; only the owner touches its arenas.
///
/// ```
/// +0 head (UInt64, in the segment's remote-free table, one 64-byte line per slot):
///   0            empty
///   UInt64.max   closed: the owner left or died; releasers free into the heap themselves
///   otherwise    payload offset of the newest block; each block's first 8 payload bytes
///                hold the payload offset of the next one (0 ends the chain)
/// +8 taken (UInt64): the rest of the chain the owner is walking (0 when it walks none)
/// ```
///
/// Operations and why they are safe (a Treiber stack whose only pop takes the whole chain):
/// - *push* (any releaser, after the block's reference count reached 0, so it owns the block):
///   read head; closed → fail (the caller frees the block); else write the link, then
///   compare-exchange head from the value read to the block. No ABA problem: nothing is ever
///   popped one by one, so a head that changed and came back still heads a valid chain.
/// - *take* (the owner): exchange head with 0, store the chain in `taken`, and walk it,
///   storing the next link in `taken` before it handles a block: the chain stays where the
///   pruner finds it if the owner dies walking it.
/// - *close* (the owner on detach, or the pruner of a dead owner under the session lock):
///   exchange head with closed and free the chain. A releaser that pushed before it is in the
///   chain; one after it sees closed and frees by itself: each block has exactly one owner.
/// - *open* (a process taking the slot for this segment): compare-exchange closed to 0.
///
/// A process killed at any instruction leaves every block either in a chain, in its own
/// hands (at most one block, or a chain between the exchange and the store to `taken`: leaked
/// until the session is cleaned), or in the heap: never in two places. A dead owner's blocks
/// in `head` and `taken` are freed by the pruner's close.
struct RemoteFreeList {
    static let closed = UInt64.max

    let heap: SegmentHeap
    let head: UnsafeAtomic<UInt64>
    let taken: UnsafeAtomic<UInt64>

    init(_ heap: SegmentHeap, slot: Int) {
        self.heap = heap
        let line = SegmentLayout.remoteFreeTableOffset(arenaCount: heap.arenaCount) + slot * SegmentLayout.remoteFreeStride
        self.head = heap.atomic64(line)
        self.taken = heap.atomic64(line + 8)
    }

    /// Whether a block can carry a link: its payload has room for 8 bytes inside its chunk.
    @inline(__always) static func canLink(_ heap: SegmentHeap, payload: Int) -> Bool {
        let h = payload - SegmentLayout.Block.headerSize
        let chunk = payload - Int(heap.u32(h + SegmentLayout.Block.chunkDelta))
        let size = Int(truncatingIfNeeded: heap.u64(chunk) & ~SegmentLayout.Chunk.usedBit)
        return chunk + size - payload >= 8
    }

    /// Pushes a block the caller owns; false when the list is closed (the caller frees it).
    @inline(__always) func push(payload: Int, crashAfterLink: Bool = false) -> Bool {
        var old = head.load(ordering: .relaxed)
        while true {
            if old == Self.closed { return false }
            heap.setU64(payload, old)
            if crashAfterLink { return true }
            let (exchanged, original) = head.weakCompareExchange(expected: old, desired: UInt64(payload), ordering: .releasing)
            if exchanged { return true }
            old = original
        }
    }

    /// Whether blocks are waiting (a relaxed peek, for the owner's fast path).
    @inline(__always) var hasBlocks: Bool {
        let value = head.load(ordering: .relaxed)
        return value != 0 && value != Self.closed
    }

    /// Takes the whole chain and calls `body` with each payload offset (newest first).
    /// Returns how many blocks there were.
    @discardableResult
    func take(_ body: (Int) -> Void) -> Int {
        let value = head.load(ordering: .relaxed)
        guard value != 0, value != Self.closed else { return 0 }
        taken.store(head.exchange(0, ordering: .acquiring), ordering: .relaxed)
        return walk(taken, body)
    }

    /// Closes the list and frees every block in it, and in a chain a dead owner was walking,
    /// into the heap. The owner is gone or is this process (not walking). Returns how many.
    @discardableResult
    func close() -> Int {
        var freed = 0
        if taken.load(ordering: .acquiring) != 0 { freed += walk(taken) { heap.free(payload: $0) } }
        let chain = head.exchange(Self.closed, ordering: .acquiring)
        guard chain != Self.closed else { return freed }
        taken.store(chain, ordering: .relaxed)
        return freed + walk(taken) { heap.free(payload: $0) }
    }

    /// Opens a closed list for a new owner (a fresh segment's list is open already).
    func open() {
        _ = head.compareExchange(expected: Self.closed, desired: 0, ordering: .acquiringAndReleasing)
    }

    /// Walks the chain in `cursor`, moving `cursor` to each block's successor before the block is
    /// handed to `body`. A link that does not name a payload inside the heap (memory scribbled by
    /// another program) ends the walk: the rest leaks, nothing is freed twice.
    private func walk(_ cursor: UnsafeAtomic<UInt64>, _ body: (Int) -> Void) -> Int {
        let start = UInt64(heap.heapOffset)
        let end = UInt64(heap.segmentSize)
        var count = 0
        while true {
            let next = cursor.load(ordering: .relaxed)
            guard next != 0, next != Self.closed, next >= start + 32, next < end, next % 16 == 0 else { break }
            let payload = Int(next)
            cursor.store(heap.u64(payload), ordering: .relaxed)
            body(payload)
            count += 1
        }
        cursor.store(0, ordering: .relaxed)
        return count
    }
}
