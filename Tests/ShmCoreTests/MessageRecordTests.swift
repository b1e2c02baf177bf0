import Logging
import ShmCleanup
import ShmTestSupport
import Testing

@testable import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Message records (``SessionConfiguration/messageRecords``): what `shmmonitor --debug` reads.
@Suite("Message records")
struct MessageRecordTests {
    /// Random allocations (single, bulk, aligned, from the local cache), frees and shrinks in a
    /// segment of several arenas: after every step the read-only walk lists exactly the blocks
    /// held, with their sizes, this pid and a creation time inside the step, and the heap's
    /// invariants hold.
    @Test("the records list exactly the live blocks through allocation, cache reuse, bulk, shrink and free", arguments: [1, 4])
    func recordsFollowEveryBlock(arenas: Int) throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        var config = testConfiguration("records", directory: dir, segmentSize: 64 << 20, arenas: arenas)
        config.messageRecords = true
        let memory = try SessionMemory(config, logger: testLogger)
        defer { memory.detach() }
        var held: [ShmBlock: (UInt64, UInt64)] = [:]  // block -> (created after, created before)
        var rng = SplitMix64(seed: 0x5EC0_4D5)
        for step in 0..<400 {
            let start = WallClock.nanoseconds()
            switch rng.below(6) {
            case 0, 1:
                let block = try memory.allocate(size: [0, 1, 64, 700, 4096, 70_000][rng.below(6)])
                held[block] = (start, 0)
            case 2:
                let block = try memory.allocate(size: 1 + rng.below(3000), alignment: [32, 256, 4096][rng.below(3)])
                #expect(Int(block.offset) % 32 == 0)
                held[block] = (start, 0)
            case 3:
                for block in try memory.allocate(sizes: [64, 128, 1 + rng.below(2000)]) { held[block] = (start, 0) }
            case 4:
                if let victim = held.keys.randomElement(using: &rng) {
                    held[victim] = nil
                    memory.release(victim)
                }
            default:
                if let victim = held.keys.randomElement(using: &rng), victim.size > 1 {
                    let times = held.removeValue(forKey: victim)!
                    held[memory.shrink(victim, to: victim.size / 2)] = times
                }
            }
            let end = WallClock.nanoseconds()
            for (block, times) in held where times.1 == 0 { held[block] = (times.0, end) }
            let segments = try MessageRecords.read(memory.id, directory: dir.filePath, logger: testLogger)
            try #require(segments.count == 1 && segments[0].recordsMessages && segments[0].problem == nil, "step \(step): \(segments)")
            let listed = segments[0].messages
            #expect(
                Set(listed.map { ShmBlock(segmentID: $0.segmentID, offset: $0.offset, size: $0.size) }) == Set(held.keys),
                "step \(step)")
            for m in listed {
                #expect(m.creatorPID == getpid())
                if let (after, before) = held[ShmBlock(segmentID: m.segmentID, offset: m.offset, size: m.size)] {
                    #expect(m.createdAtNanos >= after && m.createdAtNanos <= before, "step \(step): \(m)")
                }
            }
            if step % 50 == 0 { #expect(memory.verifySegment(0) == nil, "step \(step)") }
        }
        for block in held.keys { memory.release(block) }
        #expect(try MessageRecords.read(memory.id, directory: dir.filePath, logger: testLogger)[0].messages.isEmpty)
        #expect(memory.verifySegment(0) == nil)
    }

    /// Without the option a segment has no records and costs nothing: a walk reports records off,
    /// and an attacher asking for records keeps the segment's choice.
    @Test func aSegmentWithoutRecordsStaysWithout() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("norecords", directory: dir)
        let first = try SessionMemory(config, logger: testLogger)
        defer { first.detach() }
        var asking = config
        asking.messageRecords = true
        let second = try SessionMemory(asking, logger: testLogger)
        defer { second.detach() }
        let block = try second.allocate(size: 100)
        defer { second.release(block) }
        let segments = try MessageRecords.read(first.id, directory: dir.filePath, logger: testLogger)
        #expect(segments.count == 1 && !segments[0].recordsMessages && segments[0].messages.isEmpty)
    }
}
