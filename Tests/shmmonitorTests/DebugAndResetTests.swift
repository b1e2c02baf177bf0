import Foundation
import Logging
import ShmCleanup
import ShmCore
import ShmTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shmmonitor -b/--debug` (live messages from their records) and `-r/--reset-content`
/// (rebuilding a session's content), run as real processes on real sessions.
@Suite("shmmonitor --debug and --reset-content", .serialized)
struct DebugAndResetTests {
    static let logger = Logger(label: "shmmonitor-tests")

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func padded(_ value: some BinaryInteger, _ width: Int) -> String {
        let text = "\(value)"
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }

    @Test func debugListsEveryLiveMessageWithSegmentOffsetSizeCreatorAndTime() throws {
        let dir = try ShmFixtureDirectory("debug-list")
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("debug-list")
        let before = WallClock.nanoseconds()
        let memory = try SessionMemory(
            SessionConfiguration(session: session, directory: FilePath(dir.path), segmentSize: 1 << 20, messageRecords: true),
            logger: Self.logger)
        defer { memory.detach() }
        var held = [try memory.allocate(size: 100), try memory.allocate(size: 5000), try memory.allocate(size: 0)]
        held.append(try memory.allocate(size: 300, alignment: 4096))
        held += try memory.allocate(sizes: [64, 64])
        memory.release(try memory.allocate(size: 777))  // gone: not listed
        held.append(try memory.allocate(size: 777))  // the same chunk again, from the local cache
        held[1] = memory.shrink(held[1], to: 2000)
        let after = WallClock.nanoseconds()
        let common = ["-s", session.rawValue, "--shm-dir", dir.path]

        let json = try runTool("shmmonitor", ["-b", "--json"] + common)
        #expect(json.status == 0, "\(json.stderr)")
        let sessions = try #require(try Self.json(json.stdout)["sessions"] as? [[String: Any]])
        let segments = try #require(sessions.first?["segments"] as? [[String: Any]])
        #expect(segments.count == 1 && segments[0]["records_messages"] as? Bool == true)
        let messages = try #require(segments[0]["messages"] as? [[String: Any]])
        let listed = Set(messages.map { "\($0["offset"] as? Int ?? -1)/\($0["size"] as? Int ?? -1)" })
        #expect(listed == Set(held.map { "\($0.offset)/\($0.size)" }), "\(messages)")
        for m in messages {
            #expect(m["creator_pid"] as? Int == Int(getpid()))
            #expect(m["segment"] as? Int == 0)
            let created = try #require(m["created_at_ns"] as? UInt64)
            #expect(created >= before && created <= after)
        }

        let text = try runTool("shmmonitor", ["--debug"] + common)
        #expect(text.status == 0)
        #expect(text.stdout.hasPrefix("found 7 messages.\n"), "\(text.stdout)")
        let first = held[0]
        #expect(
            text.stdout.contains(
                "segment:   0, offset: \(Self.padded(first.offset, 12)), size: \(Self.padded(100, 10)), creator PID: \(getpid()), at: "),
            "\(text.stdout)")
        #expect(text.stdout.components(separatedBy: ", age: ").count == 8)

        let view = try runTool("shmmonitor", ["-v"] + common)
        #expect(view.stdout.contains("[0]: total: 1048576, msgs: 7, free: "), "\(view.stdout)")

        for block in held { memory.release(block) }
        #expect(try runTool("shmmonitor", ["-b"] + common).stdout == "found 0 messages.\n")
    }

    @Test func withoutRecordsDebugSaysHowToTurnThemOn() throws {
        let dir = try ShmFixtureDirectory("debug-off")
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("debug-off")
        let memory = try SessionMemory(
            SessionConfiguration(session: session, directory: FilePath(dir.path), segmentSize: 1 << 20), logger: Self.logger)
        defer { memory.detach() }
        let block = try memory.allocate(size: 100)
        defer { memory.release(block) }
        let common = ["-s", session.rawValue, "--shm-dir", dir.path]
        let text = try runTool("shmmonitor", ["-b"] + common)
        #expect(text.status == 0)
        #expect(text.stdout.contains("message records are off"), "\(text.stdout)")
        #expect(text.stdout.contains("'--shm-message-records true'"))
        let json = try runTool("shmmonitor", ["-b", "--json"] + common)
        let segments = try #require((try Self.json(json.stdout)["sessions"] as? [[String: Any]])?.first?["segments"] as? [[String: Any]])
        #expect(segments.first?["records_messages"] as? Bool == false)
        #expect(try runTool("shmmonitor", ["-v"] + common).stdout.contains("msgs: NODEBUG"))
        let missing = try runTool("shmmonitor", ["-b", "-s", "no-such-session-\(getpid())", "--shm-dir", dir.path])
        #expect(missing.status == 0 && missing.stdout.hasPrefix("No segments found"), "\(missing.stdout)")
    }

    /// A session left by a killed keep-alive (two segments, one with records, a region) whose
    /// `_mng` is then overwritten with garbage: `-r` rebuilds it from the objects, and a device
    /// attaches, adopts the region and allocates again.
    @Test func resetRebuildsADamagedManagementSegment() throws {
        let dir = try ShmFixtureDirectory("reset-damaged")
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("reset-damaged")
        let keeper = try KeepAliveChild(session: session, directory: dir.path, segments: ["0,1048576", "1,65536"], regions: ["100,65536"])
        let id = keeper.shmID
        keeper.kill()
        let objects = dir.entries()
        #expect(objects.count == 6, "\(objects)")  // mng, m_0, m_1, rg_100, rgq_100, rrc_100
        // Garbage after the magic and version: ours, damaged.
        var rng = SplitMix64(seed: 0x2E5E7)
        let mngPath = "\(dir.path)/fmq_\(id)_mng"
        let pristine = Array(try Data(contentsOf: URL(fileURLWithPath: mngPath)))
        let garbage = Array(pristine.prefix(12)) + (12..<pristine.count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        try Data(garbage).write(to: URL(fileURLWithPath: mngPath))
        let common = ["-s", session.rawValue, "--shm-dir", dir.path]
        #expect(try runTool("shmmonitor", ["-v"] + common).stdout.contains("management segment: unreadable: "))

        let reset = try runTool("shmmonitor", ["-r"] + common)
        #expect(reset.status == 0, "\(reset.stdout) \(reset.stderr)")
        #expect(reset.stdout.contains("Reset the content of shm id \(id) (session '\(session)'); its management segment was unreadable: "), "\(reset.stdout)")
        #expect(reset.stdout.contains("segment 0: 1048576 bytes, rbtree_best_fit, 1 arena: formatted anew"))
        #expect(reset.stdout.contains("segment 1: 65536 bytes"))
        #expect(reset.stdout.contains("region 100: 65536 bytes: memory kept, release queues emptied"))
        #expect(dir.entries() == objects, "nothing removed or added")

        let view = try runTool("shmmonitor", ["-v", "--json"] + common)
        let record = try #require((try Self.json(view.stdout)["sessions"] as? [[String: Any]])?.first?["record"] as? [String: Any])
        #expect(record["session_name"] as? String == session.rawValue)
        #expect((record["segments"] as? [[String: Any]])?.compactMap { $0["size"] as? Int } == [1_048_576, 65536])
        #expect((record["regions"] as? [[String: Any]])?.compactMap { $0["id"] as? Int } == [100])

        // Garbage all through, magic too: still ours, told by the segments' headers.
        try Data((0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }).write(to: URL(fileURLWithPath: mngPath))
        let foreignLooking = try runTool("shmmonitor", ["-r"] + common)
        #expect(foreignLooking.status == 0, "\(foreignLooking.stderr)")
        #expect(foreignLooking.stdout.contains("its management segment was foreign"), "\(foreignLooking.stdout)")

        // A device uses it again: attaches segment 0, adopts region 100 (same size), exits as the
        // last one out and removes the session.
        let device = try runTool(
            "shm-keepalive", common + ["--segment", "0,1048576", "--region", "100,65536", "--lifetime", "0.1"])
        #expect(device.status == 0, "\(device.stderr)")
        let worker = try runTool(
            builtProductsDirectory().appendingPathComponent("shmcore-worker").path,
            ["attach", "-s", session.rawValue, "--shm-dir", dir.path, "--segment-size", "1048576"])
        #expect(worker.status == 0, "\(worker.stdout) \(worker.stderr)")
        _ = try runTool("shmmonitor", ["-c"] + common)
    }

    /// Messages left in a segment by a process that ended without freeing them are gone after a
    /// reset; the segment's message records stay on; a file-backed region is registered again
    /// with its path, and a device adopts it.
    @Test func resetFreesEveryMessageAndKeepsTheRecords() throws {
        let dir = try ShmFixtureDirectory("reset-free")
        defer { #expect(dir.remove().isEmpty) }
        let files = try TemporaryDirectory()
        let session = ShmFixtureDirectory.uniqueSession("reset-free")
        let common = ["-s", session.rawValue, "--shm-dir", dir.path]
        let configuration = SessionConfiguration(
            session: session, directory: FilePath(dir.path), segmentSize: 1 << 20, noCleanup: true, messageRecords: true)
        let fileRegion = RegionOptions(id: 7, size: 8192, path: files.path + "/", removeOnDestruction: false)
        let id = ShmID(session: session)
        let empty: Int
        do {
            let memory = try SessionMemory(configuration, logger: Self.logger)
            empty = memory.freeMemory(segmentID: 0)
            for size in [1000, 2000, 3000] { _ = try memory.allocate(size: size) }
            _ = try memory.createRegion(fileRegion, onRelease: nil)
            #expect(try runTool("shmmonitor", ["-r"] + common).status == 3, "in use by this process")
            memory.detach()  // --no-cleanup: the memory and its three messages stay
        }  // and every mapping of this process with it
        #expect(try runTool("shmmonitor", ["-b"] + common).stdout.hasPrefix("found 3 messages."))

        let reset = try runTool("shmmonitor", ["-r", "--json"] + common)
        #expect(reset.status == 0, "\(reset.stderr)")
        let report = try Self.json(reset.stdout)
        let segments = try #require(report["segments"] as? [[String: Any]])
        #expect(segments.first?["message_records"] as? Bool == true)
        let regions = try #require(report["regions"] as? [[String: Any]])
        #expect(regions.count == 1 && regions[0]["id"] as? Int == 7 && regions[0]["path"] as? String == files.path + "/", "\(regions)")
        #expect(try runTool("shmmonitor", ["-b"] + common).stdout == "found 0 messages.\n")
        let view = try runTool("shmmonitor", ["-v", "--json"] + common)
        let record = try #require((try Self.json(view.stdout)["sessions"] as? [[String: Any]])?.first?["record"] as? [String: Any])
        #expect((record["segments"] as? [[String: Any]])?.first?["free_bytes"] as? Int == empty)
        // A device adopts the file-backed region as its controller again.
        do {
            let device = try SessionMemory(configuration, logger: Self.logger)
            defer { device.detach() }
            let region = try device.createRegion(fileRegion, onRelease: { _ in })
            #expect(region.size == 8192)
        }
        #expect(try runTool("shmmonitor", ["-c"] + common).status == 0)
        #expect(!FileManager.default.fileExists(atPath: "\(files.path)/fmq_\(id)_rg_7"), "-c removes the file-backed region")
    }

    /// Objects of another layout under our names (a C++ FairMQ session) are never rewritten.
    @Test func resetRefusesASessionOfAnotherLayout() throws {
        let dir = try ShmFixtureDirectory("reset-foreign")
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("reset-foreign")
        let id = ShmID(session: session)
        var rng = SplitMix64(seed: 0xF0_4E16)
        let contents = (0..<65536).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        try dir.createObject("fmq_\(id)_mng", size: 4096, contents: Array(contents.prefix(4096)))
        try dir.createObject("fmq_\(id)_m_0", size: 65536, contents: contents)
        let refused = try runTool("shmmonitor", ["-r", "-s", session.rawValue, "--shm-dir", dir.path])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("of another layout"), "\(refused.stderr)")
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/fmq_\(id)_m_0"))) == contents)
        for name in dir.entries() { unlink("\(dir.path)/\(name)") }
    }

    @Test func resetIsRefusedWhileAProcessUsesTheSessionAndChangesNothing() throws {
        let dir = try ShmFixtureDirectory("reset-busy")
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("reset-busy")
        let keeper = try KeepAliveChild(session: session, directory: dir.path)
        let common = ["-s", session.rawValue, "--shm-dir", dir.path]
        let entries = dir.entries()
        let segment = "\(dir.path)/fmq_\(keeper.shmID)_m_0"
        let segmentBefore = try Data(contentsOf: URL(fileURLWithPath: segment))
        let refused = try runTool("shmmonitor", ["-r"] + common)
        #expect(refused.status == 3)
        #expect(refused.stderr.contains("is in use by pid \(keeper.pid)"), "\(refused.stderr)")
        #expect(refused.stderr.contains("stop them first"))
        // The same objects, and the segment byte for byte (a reset would format it anew; the
        // keep-alive allocates nothing, so only the management segment's heartbeats change).
        #expect(dir.entries() == entries)
        #expect(try Data(contentsOf: URL(fileURLWithPath: segment)) == segmentBefore)
        keeper.stop()

        let nothing = try runTool("shmmonitor", ["-r"] + common)
        #expect(nothing.status == 0 && nothing.stdout.contains("nothing to reset"), "\(nothing.stdout)")
        let two = try runTool("shmmonitor", ["-r", "-s", "a", "-s", "b", "--shm-dir", dir.path])
        #expect(two.status == 2 && two.stderr.contains("'--reset-content' resets one session"), "\(two.stderr)")
    }
}
