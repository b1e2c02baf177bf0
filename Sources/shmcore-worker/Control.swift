import Atomics
@_spi(Testing) import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The shared control object of one multi-process test (a file the test creates next to the
/// session's objects and removes at the end). It holds one hand-over inbox per worker, a
/// per-worker progress stamp, a stop flag, and an ownership bitmap of the segment (one bit per
/// 16 bytes) that proves no byte is ever handed out to two live blocks at once.
///
/// ```
/// 0      8  magic "SHMCWORK"
/// 8      4  stop (atomic): 1 = stop producing, drain, exit
/// 12     4  stopped (atomic): workers that acknowledged stop
/// 16     4  workers
/// 24     8  segmentSize (bytes covered by the bitmap)
/// 64 + 64*i   worker i: 0 progress (atomic), 8 lastProgressNanos (atomic)
/// inboxOffset + i*inboxStride  inbox i: lock (SharedLock, 64 bytes room), head u64 @64, tail u64 @72,
///             then inboxCapacity entries of 32 bytes (segment u64, offset, size, tag)
/// bitmapOffset  segmentSize/16 bits
/// ```
struct Control: @unchecked Sendable {
    static let magic: UInt64 = 0x4b52_4f57_434d_4853
    static let maxWorkers = 16
    static let inboxCapacity = 4096
    static let entrySize = 32
    static let inboxStride = 128 + inboxCapacity * entrySize
    static let inboxOffset = 4096
    static var bitmapOffset: Int { inboxOffset + maxWorkers * inboxStride }

    static func size(segmentSize: Int) -> Int { bitmapOffset + (segmentSize / 16 + 7) / 8 + 64 }

    let base: UnsafeMutableRawPointer

    static func create(path: String, workers: Int, segmentSize: Int) -> Control? {
        let size = size(segmentSize: segmentSize)
        let fd = Glibc.open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0, posix_fallocate(fd, 0, off_t(size)) == 0 else { return nil }
        defer { close(fd) }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else { return nil }
        let control = Control(base: base)
        base.storeBytes(of: UInt32(workers), toByteOffset: 16, as: UInt32.self)
        base.storeBytes(of: UInt64(segmentSize), toByteOffset: 24, as: UInt64.self)
        for i in 0..<maxWorkers { control.inboxLock(i).initialise() }
        base.storeBytes(of: magic, toByteOffset: 0, as: UInt64.self)
        return control
    }

    static func open(path: String) -> Control? {
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        guard let base = mmap(nil, Int(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            return nil
        }
        guard base.load(as: UInt64.self) == magic else { return nil }
        return Control(base: base)
    }

    func a32(_ o: Int) -> UnsafeAtomic<UInt32> { UnsafeAtomic(at: (base + o).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self)) }
    func a64(_ o: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: (base + o).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self)) }

    var stop: UnsafeAtomic<UInt32> { a32(8) }
    var stopped: UnsafeAtomic<UInt32> { a32(12) }
    var workers: Int { Int(base.load(fromByteOffset: 16, as: UInt32.self)) }
    func progress(_ i: Int) -> UnsafeAtomic<UInt64> { a64(64 + 64 * i) }
    func lastProgress(_ i: Int) -> UnsafeAtomic<UInt64> { a64(64 + 64 * i + 8) }

    func inbox(_ i: Int) -> Int { Self.inboxOffset + i * Self.inboxStride }
    func inboxLock(_ i: Int) -> SharedLock { SharedLock(at: base + inbox(i)) }

    /// Runs `body` with inbox `i` locked (robust: a dead holder's half-done push is invisible,
    /// because the tail is stored last).
    func withInbox<T>(_ i: Int, _ body: () -> T) -> T {
        let lock = inboxLock(i)
        _ = lock.lock(timeoutNanoseconds: nil) {}
        defer { lock.unlock() }
        return body()
    }

    struct Entry {
        var segment: UInt16
        var offset: UInt64
        var size: UInt64
        var tag: UInt64
    }

    /// Appends to inbox `i`; false when full.
    func push(_ i: Int, _ e: Entry) -> Bool {
        withInbox(i) {
            let box = inbox(i)
            let head = base.load(fromByteOffset: box + 64, as: UInt64.self)
            let tail = base.load(fromByteOffset: box + 72, as: UInt64.self)
            if tail - head >= UInt64(Self.inboxCapacity) { return false }
            let slot = box + 128 + Int(tail % UInt64(Self.inboxCapacity)) * Self.entrySize
            base.storeBytes(of: UInt64(e.segment), toByteOffset: slot, as: UInt64.self)
            base.storeBytes(of: e.offset, toByteOffset: slot + 8, as: UInt64.self)
            base.storeBytes(of: e.size, toByteOffset: slot + 16, as: UInt64.self)
            base.storeBytes(of: e.tag, toByteOffset: slot + 24, as: UInt64.self)
            base.storeBytes(of: tail + 1, toByteOffset: box + 72, as: UInt64.self)
            return true
        }
    }

    /// Takes up to `max` entries from inbox `i`.
    func pop(_ i: Int, max: Int, into out: inout [Entry]) {
        withInbox(i) {
            let box = inbox(i)
            var head = base.load(fromByteOffset: box + 64, as: UInt64.self)
            let tail = base.load(fromByteOffset: box + 72, as: UInt64.self)
            var n = 0
            while head < tail && n < max {
                let slot = box + 128 + Int(head % UInt64(Self.inboxCapacity)) * Self.entrySize
                out.append(
                    Entry(
                        segment: UInt16(truncatingIfNeeded: base.load(fromByteOffset: slot, as: UInt64.self)),
                        offset: base.load(fromByteOffset: slot + 8, as: UInt64.self),
                        size: base.load(fromByteOffset: slot + 16, as: UInt64.self),
                        tag: base.load(fromByteOffset: slot + 24, as: UInt64.self)))
                head += 1
                n += 1
            }
            base.storeBytes(of: head, toByteOffset: box + 64, as: UInt64.self)
        }
    }

    func inboxCount(_ i: Int) -> Int {
        withInbox(i) {
            let box = inbox(i)
            return Int(base.load(fromByteOffset: box + 72, as: UInt64.self) - base.load(fromByteOffset: box + 64, as: UInt64.self))
        }
    }

    /// Marks the 16-byte granules of [offset, offset+size) owned; returns false if any was owned
    /// already (the allocator handed out memory that a live block still holds).
    func claim(offset: UInt64, size: UInt64) -> Bool {
        var ok = true
        forEachWord(offset: offset, size: size) { word, mask in
            let old = word.loadThenBitwiseOr(with: mask, ordering: .acquiringAndReleasing)
            if old & mask != 0 { ok = false }
        }
        return ok
    }

    /// Clears the granules of a block about to be released.
    func unclaim(offset: UInt64, size: UInt64) {
        forEachWord(offset: offset, size: size) { word, mask in
            _ = word.loadThenBitwiseAnd(with: ~mask, ordering: .acquiringAndReleasing)
        }
    }

    private func forEachWord(offset: UInt64, size: UInt64, _ body: (UnsafeAtomic<UInt64>, UInt64) -> Void) {
        let first = Int(offset / 16)
        let last = Int((offset + max(size, 1) - 1) / 16)
        var g = first
        while g <= last {
            let word = g / 64
            let bit = g % 64
            let count = min(64 - bit, last - g + 1)
            let mask = count == 64 ? ~UInt64(0) : ((UInt64(1) << UInt64(count)) - 1) << UInt64(bit)
            body(a64(Self.bitmapOffset + word * 8), mask)
            g += count
        }
    }
}
