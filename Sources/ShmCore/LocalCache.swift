import Atomics

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A process-local cache of freed blocks of this process's segment (the idea of malloc's
/// thread cache), so that a process creating and destroying small messages does not take a
/// shared lock for every pair (FairMQ issue #480).
///
/// A cached chunk stays *used* in the shared heap (its header is intact, its reference count
/// is 0, so ``SessionMemory/validatedBlock(segmentID:offset:size:)`` refuses stale names of it).
/// Nothing in shared memory points at the cache, so a process killed with a full cache only
/// leaks what it cached (bounded by `limitBytes`) until the session ends, like any block it held.
/// ``flush(into:)`` returns everything to the shared heap (on detach, on a failed allocation).
final class LocalCache: @unchecked Sendable {
    static let classCount = 112  // SegmentHeap.bin(for:) up to chunks of 2 MiB
    static let depth = 128  // a sink returns blocks in bursts of up to its high-water mark

    let limitBytes: Int
    let maxChunk: Int
    private let slots: UnsafeMutablePointer<Int>
    private let counts: UnsafeMutablePointer<Int>
    private let lockWord: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>
    private let bytesWord: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>

    /// Bytes of chunks in the cache (changed under the lock, readable at any time).
    var bytes: Int { UnsafeAtomic<Int>(at: bytesWord).load(ordering: .relaxed) }

    @inline(__always) private func addBytes(_ delta: Int) {
        UnsafeAtomic<Int>(at: bytesWord).wrappingIncrement(by: delta, ordering: .relaxed)
    }

    init(limitBytes: Int) {
        self.limitBytes = limitBytes
        self.maxChunk = min(limitBytes / 4, (1 << 20) + 4096)
        slots = .allocate(capacity: Self.classCount * Self.depth)
        counts = .allocate(capacity: Self.classCount)
        counts.initialize(repeating: 0, count: Self.classCount)
        lockWord = .allocate(capacity: 1)
        lockWord.initialize(to: .init(0))
        bytesWord = .allocate(capacity: 1)
        bytesWord.initialize(to: .init(0))
    }

    deinit {
        slots.deallocate()
        counts.deallocate()
        lockWord.deallocate()
        bytesWord.deallocate()
    }

    @inline(__always) private func lock() {
        let word = UnsafeAtomic<Int>(at: lockWord)
        while !word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { sched_yield() }
    }

    @inline(__always) private func unlock() {
        UnsafeAtomic<Int>(at: lockWord).store(0, ordering: .releasing)
    }

    /// A cached chunk of at least `need` bytes, or nil.
    @inline(__always) func pop(_ heap: SegmentHeap, need: Int) -> Int? {
        guard need <= maxChunk else { return nil }
        let cls = SegmentHeap.bin(for: need)
        lock()
        defer { unlock() }
        let n = counts[cls]
        guard n > 0 else { return nil }
        let chunk = slots[cls * Self.depth + n - 1]
        let total = Int(truncatingIfNeeded: heap.u64(chunk) & ~SegmentLayout.Chunk.usedBit)
        guard total >= need else { return nil }
        counts[cls] = n - 1
        addBytes(-total)
        return chunk
    }

    /// Keeps a freed chunk (payload at chunk + 32); false when it does not fit the cache.
    @inline(__always) func push(_ heap: SegmentHeap, chunk: Int) -> Bool {
        let total = Int(truncatingIfNeeded: heap.u64(chunk) & ~SegmentLayout.Chunk.usedBit)
        guard total <= maxChunk else { return false }
        let cls = SegmentHeap.bin(for: total)
        lock()
        defer { unlock() }
        let n = counts[cls]
        guard n < Self.depth, bytes + total <= limitBytes else { return false }
        slots[cls * Self.depth + n] = chunk
        counts[cls] = n + 1
        addBytes(total)
        return true
    }

    /// Returns every cached chunk to the shared heap.
    func flush(into heap: SegmentHeap) {
        var chunks: [Int] = []
        lock()
        for cls in 0..<Self.classCount {
            for i in 0..<counts[cls] { chunks.append(slots[cls * Self.depth + i]) }
            counts[cls] = 0
        }
        UnsafeAtomic<Int>(at: bytesWord).store(0, ordering: .relaxed)
        unlock()
        for chunk in chunks { heap.free(payload: chunk + 32) }
    }
}
