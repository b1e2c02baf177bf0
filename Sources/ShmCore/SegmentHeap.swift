import Atomics

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The allocator of one mapped segment: a view over the bytes at `base`, holding no state of
/// its own, so every process that maps the segment (at any address) can use it.
///
/// Layout and invariants: ``SegmentLayout``. All heap changes of an arena happen under the
/// arena's lock (``SharedLock``); when a holder dies, the next locker takes the lock over and
/// rebuilds the arena's free lists from the chunk sizes (``repair(arena:)``).
struct SegmentHeap: @unchecked Sendable {
    typealias A = SegmentLayout.Arena
    typealias C = SegmentLayout.Chunk
    typealias B = SegmentLayout.Block

    let base: UnsafeMutableRawPointer

    init(base: UnsafeMutableRawPointer) { self.base = base }

    // MARK: Raw access

    @inline(__always) func u64(_ offset: Int) -> UInt64 { base.load(fromByteOffset: offset, as: UInt64.self) }
    @inline(__always) func setU64(_ offset: Int, _ value: UInt64) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt64.self)
    }
    @inline(__always) func u32(_ offset: Int) -> UInt32 { base.load(fromByteOffset: offset, as: UInt32.self) }
    @inline(__always) func setU32(_ offset: Int, _ value: UInt32) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
    }
    @inline(__always) func atomic64(_ offset: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + offset).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
    }
    @inline(__always) func atomic32(_ offset: Int) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: (base + offset).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }

    var segmentSize: Int { Int(truncatingIfNeeded: u64(SegmentLayout.Header.segmentSize)) }
    var arenaCount: Int { Int(u32(SegmentLayout.Header.arenaCount)) }
    var heapOffset: Int { Int(truncatingIfNeeded: u64(SegmentLayout.Header.heapOffset)) }
    var strategy: AllocationStrategy {
        AllocationStrategy(code: base.load(fromByteOffset: SegmentLayout.Header.allocator, as: UInt8.self))
            ?? .rbtreeBestFit
    }
    var isFormatted: Bool {
        u64(SegmentLayout.Header.magic) == SegmentLayout.magic
            && atomic32(SegmentLayout.Header.state).load(ordering: .acquiring) == SegmentLayout.ready
    }
    /// Whether this build may use the segment: formatted, of this layout version, and its
    /// recorded size is `objectSize` (the mapped object's), so no walk reads past the mapping.
    func isUsable(objectSize: Int) -> Bool {
        guard isFormatted, u32(SegmentLayout.Header.layoutVersion) == SegmentLayout.version, segmentSize == objectSize,
            (1...SegmentLayout.maximumArenas).contains(arenaCount),
            heapOffset == SegmentLayout.heapOffset(arenaCount: arenaCount), heapOffset < objectSize
        else { return false }
        // Every arena's range inside the heap, in order: allocation and walks trust them.
        var previousEnd = heapOffset
        for arena in 0..<arenaCount {
            let a = arenaOffset(arena)
            let start = u64(a + A.start)
            let end = u64(a + A.end)
            // 16-byte aligned, as every chunk: a walk loads words at chunk offsets
            guard start == UInt64(previousEnd), end > start, end <= UInt64(objectSize), end & 15 == 0 else { return false }
            previousEnd = Int(end)
        }
        return true
    }

    @inline(__always) func arenaOffset(_ arena: Int) -> Int { SegmentLayout.arenaTableOffset + arena * SegmentLayout.arenaStride }
    /// The arena's lock (``SharedLock``).
    @inline(__always) func lock(_ arena: Int) -> SharedLock { SharedLock(at: base + arenaOffset(arena) + A.lock) }
    func arenaRange(_ arena: Int) -> (start: Int, end: Int) {
        let a = arenaOffset(arena)
        return (Int(truncatingIfNeeded: u64(a + A.start)), Int(truncatingIfNeeded: u64(a + A.end)))
    }
    /// Free bytes of one arena (a racy but untorn read), never more than the arena holds: a
    /// damaged counter (the fuzz suite found one that trapped the monitor) reads as a full arena.
    func freeBytes(arena: Int) -> Int {
        let a = arenaOffset(arena)
        let value = atomic64(a + A.freeBytes).load(ordering: .relaxed)
        let start = u64(a + A.start), end = u64(a + A.end)
        return Int(truncatingIfNeeded: min(value, end > start ? min(end - start, UInt64(Int.max)) : 0))
    }
    /// Free bytes of the whole segment.
    var freeBytes: Int { (0..<arenaCount).reduce(0) { $0 + freeBytes(arena: $1) } }
    /// Bytes of the heap (what an empty segment reports as free).
    var heapBytes: Int { segmentSize - heapOffset }
    /// How often arenas were rebuilt after a lock holder died.
    var repairs: Int { (0..<arenaCount).reduce(0) { $0 + Int(truncatingIfNeeded: u64(arenaOffset($1) + A.repairs)) } }

    // MARK: Formatting

    /// Formats a fresh (zero or garbage) segment. The caller holds the session lock, so no
    /// other process looks at the segment yet; `state = ready` is stored last.
    /// - Parameter flags: ``SegmentLayout/Flags`` bits, fixed for the segment's life.
    static func format(
        base: UnsafeMutableRawPointer, size: Int, segmentID: UInt16, strategy: AllocationStrategy, arenaCount: Int,
        flags: UInt8 = 0
    ) {
        let heap = SegmentHeap(base: base)
        heap.atomic32(SegmentLayout.Header.state).store(SegmentLayout.unformatted, ordering: .sequentiallyConsistent)
        let heapOffset = SegmentLayout.heapOffset(arenaCount: arenaCount)
        memset(base, 0, heapOffset)
        heap.setU64(SegmentLayout.Header.magic, SegmentLayout.magic)
        heap.setU32(SegmentLayout.Header.layoutVersion, SegmentLayout.version)
        heap.setU64(SegmentLayout.Header.segmentSize, UInt64(size))
        base.storeBytes(of: segmentID, toByteOffset: SegmentLayout.Header.segmentID, as: UInt16.self)
        base.storeBytes(of: strategy.code, toByteOffset: SegmentLayout.Header.allocator, as: UInt8.self)
        base.storeBytes(of: flags, toByteOffset: SegmentLayout.Header.flags, as: UInt8.self)
        heap.setU32(SegmentLayout.Header.arenaCount, UInt32(arenaCount))
        heap.setU64(SegmentLayout.Header.heapOffset, UInt64(heapOffset))
        base.storeBytes(of: getpid(), toByteOffset: SegmentLayout.Header.creatorPID, as: Int32.self)

        // Arena 0 gets half of the heap (it serves big blocks); the others share the rest.
        let heapBytes = (size - heapOffset) & ~15
        var bounds: [Int] = [heapOffset]
        if arenaCount == 1 {
            bounds.append(heapOffset + heapBytes)
        } else {
            let big = (heapBytes / 2) & ~4095
            bounds.append(heapOffset + big)
            let small = ((heapBytes - big) / (arenaCount - 1)) & ~15
            for i in 1..<arenaCount {
                bounds.append(i == arenaCount - 1 ? heapOffset + heapBytes : bounds[i] + small)
            }
        }
        for i in 0..<arenaCount {
            let a = heap.arenaOffset(i)
            heap.lock(i).initialise()
            let start = bounds[i]
            let end = bounds[i + 1]
            heap.setU64(a + A.start, UInt64(start))
            heap.setU64(a + A.end, UInt64(end))
            heap.setU64(start + C.sizeWord, UInt64(end - start))
            heap.setU64(start + C.prevSize, 0)
            heap.setU64(a + A.freeBytes, 0)
            heap.insertFree(arena: i, chunk: start, size: end - start)
        }
        heap.atomic32(SegmentLayout.Header.state).store(SegmentLayout.ready, ordering: .releasing)
    }

    // MARK: Locking

    /// Locks an arena; rebuilds it first when the previous holder died holding the lock. Waits
    /// for as long as the holder lives (it holds the lock for a heap operation).
    @inline(__always) func lock(arena: Int) {
        _ = lock(arena).lock(timeoutNanoseconds: nil) { repair(arena: arena) }
    }

    @inline(__always) func unlock(arena: Int) {
        lock(arena).unlock()
    }

    // MARK: Size classes

    /// Bins 3...63 hold exactly one chunk size each (size / 16); from 1024 bytes on, four bins
    /// per power of two.
    @inline(__always) static func bin(for size: Int) -> Int {
        if size < 1024 { return size >> 4 }
        let e = (Int.bitWidth - 1) - size.leadingZeroBitCount
        return 64 + (e - 10) * 4 + ((size >> (e - 2)) & 3)
    }

    @inline(__always) func binHead(_ a: Int, _ bin: Int) -> Int { a + A.bins + bin * 8 }

    @inline(__always) func setBit(_ a: Int, _ bin: Int, _ on: Bool) {
        let w = a + A.bitmap + (bin >> 6) * 8
        let bit = UInt64(1) << UInt64(bin & 63)
        setU64(w, on ? (u64(w) | bit) : (u64(w) & ~bit))
    }

    /// The first non-empty bin at or above `bin`, or nil.
    @inline(__always) func nextNonEmptyBin(_ a: Int, from bin: Int) -> Int? {
        var word = bin >> 6
        var mask = ~UInt64(0) << UInt64(bin & 63)
        while word < 4 {
            let bits = u64(a + A.bitmap + word * 8) & mask
            if bits != 0 { return word * 64 + bits.trailingZeroBitCount }
            word += 1
            mask = ~0
        }
        return nil
    }

    // MARK: Free lists (caller holds the arena lock)

    @inline(__always) func listBin(_ size: Int) -> Int { strategy == .simpleSeqFit ? 0 : Self.bin(for: size) }

    func insertFree(arena: Int, chunk: Int, size: Int) {
        let a = arenaOffset(arena)
        let bin = listBin(size)
        let head = binHead(a, bin)
        let first = u64(head)
        setU64(chunk + C.next, first)
        setU64(chunk + C.prev, 0)
        if first != 0 { setU64(Int(first) + C.prev, UInt64(chunk)) }
        setU64(head, UInt64(chunk))
        setBit(a, bin, true)
        let free = atomic64(a + A.freeBytes)
        free.store(free.load(ordering: .relaxed) &+ UInt64(size), ordering: .relaxed)
    }

    func removeFree(arena: Int, chunk: Int, size: Int) {
        let a = arenaOffset(arena)
        let bin = listBin(size)
        let next = u64(chunk + C.next)
        let prev = u64(chunk + C.prev)
        if prev != 0 { setU64(Int(prev) + C.next, next) } else { setU64(binHead(a, bin), next) }
        if next != 0 { setU64(Int(next) + C.prev, prev) }
        if prev == 0 && next == 0 { setBit(a, bin, false) }
        let free = atomic64(a + A.freeBytes)
        free.store(free.load(ordering: .relaxed) &- UInt64(size), ordering: .relaxed)
    }

    /// A free chunk of at least `need` bytes, or nil (caller holds the lock).
    func findFit(arena: Int, need: Int) -> Int? {
        let a = arenaOffset(arena)
        if strategy == .simpleSeqFit {
            var c = Int(truncatingIfNeeded: u64(binHead(a, 0)))
            while c != 0 {
                if Int(truncatingIfNeeded: u64(c)) >= need { return c }
                c = Int(truncatingIfNeeded: u64(c + C.next))
            }
            return nil
        }
        let first = Self.bin(for: need)
        guard var bin = nextNonEmptyBin(a, from: first) else { return nil }
        while true {
            let head = Int(truncatingIfNeeded: u64(binHead(a, bin)))
            if bin < 64 { return head }  // exact-size bins: every chunk is the same size
            // Best fit in the bin, looking at up to 64 chunks.
            var best = 0
            var bestSize = Int.max
            var c = head
            var looked = 0
            while c != 0 && looked < 64 {
                let s = Int(truncatingIfNeeded: u64(c))
                if s >= need && s < bestSize {
                    best = c
                    bestSize = s
                    if s == need { break }
                }
                c = Int(truncatingIfNeeded: u64(c + C.next))
                looked += 1
            }
            if best != 0 { return best }
            guard bin + 1 < A.binCount, let next = nextNonEmptyBin(a, from: bin + 1) else { return nil }
            bin = next
        }
    }

    // MARK: Allocation

    /// Chunk size that surely holds `size` bytes at `alignment` (a power of two).
    @inline(__always) static func chunkSize(size: Int, alignment: Int) -> Int {
        let pad = alignment > 16 ? alignment - 16 : 0
        return max(C.minimumSize, (C.headerSize + B.headerSize + size + pad + 15) & ~15)
    }

    /// Allocates in one arena; returns the payload offset, or nil when the arena has no room.
    /// - Parameter owner: the block header's `cacheOwner` (0: nobody's).
    func allocate(arena: Int, size: Int, alignment: Int, owner: UInt16) -> Int? {
        lock(arena: arena)
        defer { unlock(arena: arena) }
        return allocateLocked(arena: arena, size: size, alignment: alignment, owner: owner)
    }

    /// Allocates a block for each of `sizes` in one arena under one lock hold (FairMQ #480's bulk
    /// allocation): all or none. Writes the payload offsets to `payloads` (as many as `sizes`).
    func allocate(
        arena: Int, sizes: some Collection<Int>, alignment: Int, owner: UInt16, into payloads: UnsafeMutableBufferPointer<Int>
    ) -> Bool {
        lock(arena: arena)
        var done = 0
        for size in sizes {
            guard let p = allocateLocked(arena: arena, size: size, alignment: alignment, owner: owner) else { break }
            payloads[done] = p
            done += 1
        }
        unlock(arena: arena)
        if done == sizes.count { return true }
        for i in 0..<done { free(payload: payloads[i]) }
        return false
    }

    private func allocateLocked(arena: Int, size: Int, alignment: Int, owner: UInt16) -> Int? {
        let need = Self.chunkSize(size: size, alignment: alignment)
        guard let c = findFit(arena: arena, need: need) else { return nil }
        let total = Int(truncatingIfNeeded: u64(c))
        removeFree(arena: arena, chunk: c, size: total)
        let payload = (c + C.headerSize + B.headerSize + alignment - 1) & ~(alignment - 1)
        let used = max(C.minimumSize, (payload + size - c + 15) & ~15)
        let end = arenaRange(arena).end
        if total - used >= C.minimumSize {
            // Write the remainder's header first: it lies inside the chunk, invisible to a walk
            // until the single store that shrinks the chunk.
            let r = c + used
            setU64(r + C.sizeWord, UInt64(total - used))
            setU64(r + C.prevSize, UInt64(used))
            setU64(c + C.sizeWord, UInt64(used) | C.usedBit)
            if r + (total - used) < end { setU64(r + (total - used) + C.prevSize, UInt64(total - used)) }
            insertFree(arena: arena, chunk: r, size: total - used)
        } else {
            setU64(c + C.sizeWord, UInt64(total) | C.usedBit)
        }
        let h = payload - B.headerSize
        setU32(h + B.magic, B.magicValue)
        atomic32(h + B.refCount).store(1, ordering: .relaxed)
        setU32(h + B.chunkDelta, UInt32(payload - c))
        base.storeBytes(of: UInt16(arena), toByteOffset: h + B.arena, as: UInt16.self)
        base.storeBytes(of: owner, toByteOffset: h + B.cacheOwner, as: UInt16.self)
        return payload
    }

    /// Returns the chunk of a payload to its arena's free lists, coalescing with free neighbours,
    /// and wakes processes waiting for room in the segment.
    func free(payload: Int) {
        freeLocked(payload: payload)
        RoomSignal(self).notify()
    }

    private func freeLocked(payload: Int) {
        let h = payload - B.headerSize
        let arena = Int(base.load(fromByteOffset: h + B.arena, as: UInt16.self))
        var c = payload - Int(u32(h + B.chunkDelta))
        lock(arena: arena)
        defer { unlock(arena: arena) }
        setU32(h + B.magic, 0)  // a stale name of this block no longer validates
        let (start, end) = arenaRange(arena)
        var size = Int(truncatingIfNeeded: u64(c) & ~C.usedBit)
        setU64(c + C.sizeWord, UInt64(size))  // now free, still walkable
        absorbNextIfFree(arena: arena, chunk: c, size: &size, end: end)
        if c > start {
            let p = c - Int(truncatingIfNeeded: u64(c + C.prevSize))
            let ps = u64(p)
            if ps & C.usedBit == 0 {
                removeFree(arena: arena, chunk: p, size: Int(ps))
                size += Int(ps)
                setU64(p + C.sizeWord, UInt64(size))
                c = p
            }
        }
        if c + size < end { setU64(c + size + C.prevSize, UInt64(size)) }
        insertFree(arena: arena, chunk: c, size: size)
    }

    /// Merges the chunk after the free chunk `chunk` (of `size` bytes) into it when that one is
    /// free too: it leaves its free list first, then one store of the grown size word, so the
    /// heap stays walkable at every step (see docs/shmcore.md). Caller holds the arena lock.
    private func absorbNextIfFree(arena: Int, chunk: Int, size: inout Int, end: Int) {
        let next = chunk + size
        guard next < end else { return }
        let nextSize = u64(next)
        guard nextSize & C.usedBit == 0 else { return }
        removeFree(arena: arena, chunk: next, size: Int(nextSize))
        size += Int(nextSize)
        setU64(chunk + C.sizeWord, UInt64(size))
    }

    /// Shrinks a used block in place so that its payload holds `newSize` bytes; the tail goes
    /// back to the free lists when it is big enough to be a chunk.
    func shrink(payload: Int, to newSize: Int) {
        shrinkLocked(payload: payload, to: newSize)
        RoomSignal(self).notify()
    }

    private func shrinkLocked(payload: Int, to newSize: Int) {
        let h = payload - B.headerSize
        let arena = Int(base.load(fromByteOffset: h + B.arena, as: UInt16.self))
        let c = payload - Int(u32(h + B.chunkDelta))
        lock(arena: arena)
        defer { unlock(arena: arena) }
        let total = Int(truncatingIfNeeded: u64(c) & ~C.usedBit)
        let used = max(C.minimumSize, (payload + newSize - c + 15) & ~15)
        guard total - used >= C.minimumSize else { return }
        let end = arenaRange(arena).end
        let r = c + used
        var rs = total - used
        setU64(r + C.sizeWord, UInt64(rs))
        setU64(r + C.prevSize, UInt64(used))
        setU64(c + C.sizeWord, UInt64(used) | C.usedBit)
        absorbNextIfFree(arena: arena, chunk: r, size: &rs, end: end)
        if r + rs < end { setU64(r + rs + C.prevSize, UInt64(rs)) }
        insertFree(arena: arena, chunk: r, size: rs)
    }

    // MARK: Recovery

    /// Rebuilds an arena after its lock holder died: walks the chunks in address order by their
    /// sizes (always walkable), merges neighbouring free chunks, fixes `prevSize`, and rebuilds
    /// the bins and `freeBytes` from scratch. Idempotent: a repairer that dies is repaired again.
    func repair(arena: Int) {
        let a = arenaOffset(arena)
        let (start, end) = arenaRange(arena)
        memset(base + a + A.bitmap, 0, 32)
        memset(base + a + A.bins, 0, A.binCount * 8)
        atomic64(a + A.freeBytes).store(0, ordering: .relaxed)
        var c = start
        var prev = 0
        var prevFree = false
        var freeChunks: [(Int, Int)] = []
        while c < end {
            let word = u64(c)
            let size = Int(word & ~C.usedBit)
            guard size >= C.minimumSize, size & 15 == 0, c + size <= end else {
                // Cannot happen with the store order above; leave the rest unused rather than
                // risk handing out memory twice.
                break
            }
            if word & C.usedBit == 0 && prevFree {
                let merged = freeChunks[freeChunks.count - 1].1 + size
                setU64(prev + C.sizeWord, UInt64(merged))
                freeChunks[freeChunks.count - 1].1 = merged
                c = prev + merged
                continue
            }
            setU64(c + C.prevSize, prev == 0 ? 0 : UInt64(c - prev))
            if word & C.usedBit == 0 { freeChunks.append((c, size)) }
            prevFree = word & C.usedBit == 0
            prev = c
            c += size
        }
        for (chunk, size) in freeChunks { insertFree(arena: arena, chunk: chunk, size: size) }
        setU64(a + A.repairs, u64(a + A.repairs) &+ 1)
    }

    /// Frees the blocks a dead process kept in its local cache: used chunks whose header is
    /// intact, whose reference count is 0 and whose `cacheOwner` is `owner`. The caller holds
    /// the session lock and has established that the owner is dead, so nobody else uses them;
    /// a block already freed has lost its magic and is not seen twice.
    /// - Returns: how many blocks were freed.
    @discardableResult
    func reclaimCached(owner: UInt16) -> Int {
        var found: [Int] = []
        for arena in 0..<arenaCount {
            forEachChunk(arena: arena) { c, _, used in
                let h = c + 32 - B.headerSize
                if used && u32(h + B.magic) == B.magicValue && u32(h + B.chunkDelta) == 32
                    && base.load(fromByteOffset: h + B.cacheOwner, as: UInt16.self) == owner
                    && atomic32(h + B.refCount).load(ordering: .acquiring) == 0
                {
                    found.append(c + 32)
                }
            }
        }
        for payload in found { free(payload: payload) }
        return found.count
    }

    /// Used chunks by what their block header says (for leak diagnostics in tests): key
    /// "live" (reference count > 0), "cached" (count 0, a cache mark), "released" (count 0, an
    /// allocator's mark: in a remote-free list or in flight) or "other"; value (blocks, bytes).
    /// "in remote-free lists" counts the blocks the lists' heads reach.
    func usedCensus() -> [String: (blocks: Int, bytes: Int)] {
        var census: [String: (blocks: Int, bytes: Int)] = [:]
        for arena in 0..<arenaCount {
            forEachChunk(arena: arena) { c, size, used in
                guard used else { return }
                let h = c + 32 - B.headerSize
                let mark = base.load(fromByteOffset: h + B.cacheOwner, as: UInt16.self)
                let rc = atomic32(h + B.refCount).load(ordering: .relaxed)
                let key = u32(h + B.magic) != B.magicValue ? "other" : rc > 0 ? "live" : mark & 0x8000 != 0 ? "released" : mark != 0 ? "cached" : "other"
                census[key, default: (0, 0)].blocks += 1
                census[key, default: (0, 0)].bytes += size
            }
        }
        var listed = 0
        for slot in 0..<SegmentLayout.remoteFreeSlots {
            var next = RemoteFreeList(self, slot: slot).head.load(ordering: .acquiring)
            while next != 0 && next != RemoteFreeList.closed && listed < 1_000_000 {
                listed += 1
                next = u64(Int(next))
            }
        }
        census["in remote-free lists"] = (listed, 0)
        return census
    }

    /// Used blocks with a reference count above 0 whose owner mark is `mark` (a process's
    /// allocation mark): what that process allocated and someone still holds.
    func liveBlocks(mark: UInt16) -> Int {
        var count = 0
        for arena in 0..<arenaCount {
            forEachChunk(arena: arena) { c, _, used in
                guard used else { return }
                let h = c + 32 - B.headerSize
                guard u32(h + B.magic) == B.magicValue, base.load(fromByteOffset: h + B.cacheOwner, as: UInt16.self) == mark,
                    atomic32(h + B.refCount).load(ordering: .relaxed) > 0
                else { return }
                count += 1
            }
        }
        return count
    }

    /// Zeroes the free memory of every arena (FairMQ's `--shm-zero-segment`).
    func zeroFreeMemory() {
        for arena in 0..<arenaCount {
            forEachChunk(arena: arena) { c, size, used in
                if !used { memset(base + c + 32, 0, size - 32) }
            }
        }
    }

    /// Calls `body(chunk, size, used)` for each chunk of `arena` in address order, holding the
    /// arena's lock. The walk stops at a chunk whose size word is implausible, so a damaged
    /// arena is never read past its end.
    private func forEachChunk(arena: Int, _ body: (_ chunk: Int, _ size: Int, _ used: Bool) -> Void) {
        lock(arena: arena)
        defer { unlock(arena: arena) }
        let (start, end) = arenaRange(arena)
        var c = start
        while c < end {
            let word = u64(c)
            let size = Int(truncatingIfNeeded: word & ~C.usedBit)
            if size < C.minimumSize || c + size > end { break }
            body(c, size, word & C.usedBit != 0)
            c += size
        }
    }

    /// Checks every invariant of every arena (walk, free lists, bins, counters); for tests.
    /// - Returns: a description of the first broken invariant, or nil.
    func verify() -> String? {
        for arena in 0..<arenaCount {
            lock(arena: arena)
            defer { unlock(arena: arena) }
            let a = arenaOffset(arena)
            let (start, end) = arenaRange(arena)
            var c = start
            var prev = 0
            var walkedFree = Set<Int>()
            var freeSum = 0
            var lastFree = false
            while c < end {
                let word = u64(c)
                let size = Int(word & ~C.usedBit)
                if size < C.minimumSize || size & 15 != 0 || c + size > end {
                    return "arena \(arena): bad chunk size \(size) at \(c)"
                }
                if Int(truncatingIfNeeded: u64(c + C.prevSize)) != (prev == 0 ? 0 : c - prev) {
                    return "arena \(arena): prevSize of chunk \(c) is \(u64(c + C.prevSize)), expected \(c - prev)"
                }
                let isFree = word & C.usedBit == 0
                if isFree && lastFree { return "arena \(arena): two free neighbours at \(prev) and \(c)" }
                if isFree {
                    walkedFree.insert(c)
                    freeSum += size
                }
                lastFree = isFree
                prev = c
                c += size
            }
            if c != end { return "arena \(arena): walk ends at \(c), not \(end)" }
            var listed = Set<Int>()
            for bin in 0..<A.binCount {
                var f = Int(truncatingIfNeeded: u64(binHead(a, bin)))
                let bit = (u64(a + A.bitmap + (bin >> 6) * 8) >> UInt64(bin & 63)) & 1
                if (f != 0) != (bit == 1) { return "arena \(arena): bitmap bit \(bin) disagrees with its list" }
                var back = 0
                while f != 0 {
                    if !walkedFree.contains(f) || listed.contains(f) { return "arena \(arena): bin \(bin) lists \(f)" }
                    if Int(truncatingIfNeeded: u64(f + C.prev)) != back { return "arena \(arena): broken back link at \(f)" }
                    if listBin(Int(truncatingIfNeeded: u64(f))) != bin { return "arena \(arena): chunk \(f) in wrong bin \(bin)" }
                    listed.insert(f)
                    back = f
                    f = Int(truncatingIfNeeded: u64(f + C.next))
                }
            }
            if listed != walkedFree { return "arena \(arena): \(walkedFree.count - listed.count) free chunks not listed" }
            if freeSum != freeBytes(arena: arena) {
                return "arena \(arena): freeBytes \(freeBytes(arena: arena)) but free chunks sum to \(freeSum)"
            }
        }
        return nil
    }
}
