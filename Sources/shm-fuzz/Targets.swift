import Foundation
import Logging
import ShmCleanup
import ShmCore
import ShmTestSupport
import ShmTransport
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A reader of hostile bytes: `run` must return (accepting or refusing the input) for every
/// input — never crash, never read outside what it was given, never hang.
protocol FuzzTarget {
    /// Valid inputs to start from.
    var seeds: [[UInt8]] { get }
    /// The next input of a seeded run.
    func generate(_ mutator: inout Mutator) -> [UInt8]
    /// Feeds one input to the readers; whether they accepted it.
    func run(_ input: UnsafeRawBufferPointer) -> Bool
}

extension FuzzTarget {
    func generate(_ mutator: inout Mutator) -> [UInt8] {
        var input = seeds[mutator.random.below(seeds.count)]
        mutator.mutate(&input, resizable: true, focus: 128)
        return input
    }
}

/// Reads every byte of `count` bytes at `base` that a receiver would use first and last (a
/// read outside the mapping faults here, under the fuzzer, instead of later in a user's code).
@inline(never)
func touch(_ base: UnsafeRawPointer, _ count: Int) -> UInt8 {
    guard count > 0 else { return 0 }
    return base.load(as: UInt8.self) &+ base.load(fromByteOffset: count - 1, as: UInt8.self)
}

/// A metadata frame from a peer, decoded and then checked against the session's memory exactly
/// as a receiving socket does before it takes the block.
struct MetadataTarget: FuzzTarget {
    let fixture: FuzzSession
    let seeds: [[UInt8]]

    init(_ fixture: FuzzSession) {
        self.fixture = fixture
        let number = fixture.id.number
        var parts = fixture.liveBlocks.map { BlockDescriptor(segmentID: $0.segmentID, offset: $0.offset, size: $0.size) }
        parts.append(.empty)
        parts.append(BlockDescriptor(regionID: fixture.region.id, offset: 128, size: 512, hint: 7, counter: .none))
        parts.append(BlockDescriptor(regionID: fixture.region.id, offset: 0, size: 1 << 16, hint: 0, counter: .managed(fixture.liveBlocks[0])))
        var seeds = MetadataCodec.encode(shmID: number, parts: parts)
        seeds += MetadataCodec.encode(shmID: number, parts: Array(parts.prefix(2)), minimumSize: 256)
        self.seeds = seeds
    }

    func run(_ input: UnsafeRawBufferPointer) -> Bool {
        guard let (partCount, part) = try? MetadataCodec.decode(input, expectedShmID: fixture.id.number), partCount >= 1 else { return false }
        if part.isEmpty { return true }
        let memory = fixture.memory
        if part.inRegion {
            guard let region = try? memory.validatedRegionBlock(regionID: part.regionID, offset: part.offset, size: part.size, counter: part.counter)
            else { return false }
            _ = touch(region.base + Int(part.offset), Int(part.size))
        } else {
            guard let block = try? memory.validatedBlock(segmentID: part.segmentID, offset: part.offset, size: part.size) else { return false }
            _ = touch(memory.address(of: block), Int(block.size))
        }
        return true
    }
}

/// A management segment as the cleanup engine and the monitor decode it, and its geometry as
/// an attaching process checks it.
struct ManagementTarget: FuzzTarget {
    let seeds: [[UInt8]]

    init(_ fixture: FuzzSession) {
        // the whole object: header, process, segment and region tables, the session's strings
        seeds = [fixture.bytes(of: .management)]
    }

    func generate(_ mutator: inout Mutator) -> [UInt8] {
        var input = seeds[mutator.random.below(seeds.count)]
        mutator.mutate(&input, resizable: mutator.random.below(8) == 0, focus: 4096)
        return input
    }

    func run(_ input: UnsafeRawBufferPointer) -> Bool {
        _ = ManagementLayout.Geometry.read(input, objectSize: input.count)
        guard let record = try? ManagementRecord(bytes: input) else { return false }
        _ = record.sessionName.utf8.count + record.processes.count + record.segments.count + record.regions.count
        for region in record.regions { _ = region.path.utf8.count }
        return true
    }
}

/// A managed segment of a session no process uses, damaged in place, then read as the monitor
/// reads it: `SessionMemory.inspect` (the view's segment sizes and free bytes) and
/// `MessageRecords.read` (`shmmonitor -b`, which walks every chunk). An input is a list of
/// 12-byte patches: a 32-bit offset into the segment and the 64-bit value written there.
final class SegmentTarget: FuzzTarget {
    let fixture: FuzzSession
    let base: UnsafeMutableRawPointer
    let size: Int
    let pristine: [UInt8]
    let seeds: [[UInt8]]
    /// Offsets of the live blocks' payloads (their chunk headers and records are near them).
    let payloads: [Int]

    init(_ fixture: FuzzSession) throws {
        self.fixture = fixture
        let path = fixture.stoppedDirectory + "/" + ShmObjectName(fixture.id, .segment(0)).fileName
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw FuzzFailure("cannot open \(path)") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        size = Int(st.st_size)
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw FuzzFailure("cannot map \(path)")
        }
        base = mapped
        pristine = [UInt8](UnsafeRawBufferPointer(start: mapped, count: size))
        payloads = fixture.liveBlocks.map { Int($0.offset) }
        seeds = [[]]
    }

    deinit { munmap(base, size) }

    func generate(_ mutator: inout Mutator) -> [UInt8] {
        var input: [UInt8] = []
        for _ in 0..<(1 + mutator.random.below(6)) {
            let offset: Int
            switch mutator.random.below(10) {
            case 0..<5: offset = mutator.random.below(4096)  // header, arena table
            case 5..<9:  // chunk headers and records around a live block
                offset = max(0, payloads[mutator.random.below(payloads.count)] - 64 + mutator.random.below(128))
            default: offset = mutator.random.below(size)
            }
            let value = mutator.interestingValue()
            for k in 0..<4 { input.append(UInt8(truncatingIfNeeded: offset >> (8 * k))) }
            for k in 0..<8 { input.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(k)))) }
        }
        return input
    }

    func run(_ input: UnsafeRawBufferPointer) -> Bool {
        var patched: [Int] = []
        var at = 0
        while at + 12 <= input.count {
            let offset = Int(input.loadUnaligned(fromByteOffset: at, as: UInt32.self)) % max(1, size - 7)
            (base + offset).storeBytes(of: input.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self), as: UInt64.self)
            patched.append(offset)
            at += 12
        }
        defer {
            for offset in patched {
                pristine.withUnsafeBytes { (base + offset).copyMemory(from: $0.baseAddress! + offset, byteCount: 8) }
            }
        }
        let directory = FilePath(fixture.stoppedDirectory)
        let status = try? SessionMemory.inspect(session: fixture.session, directory: directory)
        let records = try? MessageRecords.read(fixture.id, directory: directory, logger: Logger(label: "shm-fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
        for segment in records ?? [] { for message in segment.messages { _ = message.size } }
        return status?.isHealthy == true
    }
}

/// The tables of an unmanaged region other processes write into: the release queue its
/// controller drains (first input byte even) and the reference-count pool the monitor reads
/// (odd), each from the bytes after the first.
final class RegionTablesTarget: FuzzTarget {
    let poolPath: String
    let seeds: [[UInt8]]
    private let buffer: UnsafeMutableRawPointer
    private let capacity = 1 << 20

    init(_ fixture: FuzzSession) {
        poolPath = fixture.directory + "/fuzz-pool"
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        let queueSize = RegionReleaseQueue.size(laneCount: 4, laneCapacity: 8)
        RegionReleaseQueue.format(base: buffer, laneCount: 4, laneCapacity: 8)
        let queue = RegionReleaseQueue(base: buffer, size: queueSize)!
        let releases = (0..<5).map { RegionRelease(offset: UInt64($0) * 64, size: 64, hint: UInt64($0)) }
        releases.withUnsafeBufferPointer { _ = queue.push(lane: 0, $0) }
        releases.prefix(3).withUnsafeBufferPointer { _ = queue.push(lane: 2, $0) }
        let queueBytes = [UInt8](UnsafeRawBufferPointer(start: buffer, count: queueSize))
        seeds = [[0] + queueBytes, [1] + fixture.bytes(of: .regionRefCount(UInt32(fixture.region.id)))]
    }

    deinit {
        buffer.deallocate()
        unlink(poolPath)
    }

    func generate(_ mutator: inout Mutator) -> [UInt8] {
        var input = seeds[mutator.random.below(seeds.count)]
        var body = Array(input.dropFirst())
        mutator.mutate(&body, resizable: mutator.random.below(8) == 0, focus: 256)
        input = [input[0]] + body
        return input
    }

    func run(_ input: UnsafeRawBufferPointer) -> Bool {
        guard let selector = input.first else { return false }
        let body = UnsafeRawBufferPointer(rebasing: input.dropFirst())
        if selector & 1 == 0 {
            let count = min(body.count, capacity)
            if count > 0 { buffer.copyMemory(from: body.baseAddress!, byteCount: count) }
            guard let queue = RegionReleaseQueue(base: buffer, size: count) else { return false }
            var drained: [RegionRelease] = []
            _ = queue.drain(into: &drained)
            _ = queue.drain(into: &drained)
            guard drained.count <= queue.laneCount * queue.laneCapacity else {
                fatalError("drained \(drained.count) entries from \(queue.laneCount) lanes of \(queue.laneCapacity)")
            }
            return true
        }
        let fd = open(poolPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fatalError("cannot write \(poolPath): \(String(cString: strerror(errno)))") }
        if let start = body.baseAddress { _ = write(fd, start, body.count) }
        close(fd)
        guard let usage = RegionPoolLayout.usage(atPath: poolPath) else { return false }
        guard usage.inUse >= 0, usage.inUse <= usage.capacity else { fatalError("pool usage \(usage) out of range") }
        return true
    }
}
