import Foundation
import Logging
import ShmCleanup
import ShmTestSupport
import Testing

@testable import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

@Suite("Segments meet the environment: a small tmpfs, the monitor")
struct EnvironmentTests {
    /// Runs a shell script in a private mount namespace (root only); returns status and output.
    func inPrivateMountNamespace(_ script: String, environment: [String: String] = [:]) throws -> ToolResult {
        try runTool("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", script], environment: environment)
    }

    @Test(
        "a segment that does not fit a small tmpfs fails at creation with size wanted, space free and the fix, leaving nothing",
        .enabled(if: geteuid() == 0, "mounting a tmpfs needs root"))
    func smallTmpfs() throws {
        let mountDirectory = try ShmFixtureDirectory("shmcore-tmpfs")
        let mountPoint = mountDirectory.path
        defer { #expect(mountDirectory.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("tmpfs").rawValue
        // 8 MiB tmpfs: a 64 MiB segment must fail at creation, a 4 MiB one must work. The
        // directory comes from SHMTRANSPORT_SHM_DIR, as devices get it.
        let script = """
            mount -t tmpfs -o size=8m tmpfs '\(mountPoint)' || exit 97
            '\(workerPath)' attach -s '\(session)' --segment-size \(64 << 20); echo "status=$?"
            echo "left=[$(ls -A '\(mountPoint)')]"
            '\(workerPath)' attach -s '\(session)' --segment-size \(4 << 20); echo "status=$?"
            echo "left=[$(ls -A '\(mountPoint)')]"
            """
        let result = try inPrivateMountNamespace(script, environment: ["SHMTRANSPORT_SHM_DIR": mountPoint])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "status=2", "\(result.stdout)")
        #expect(lines.dropFirst().first == "left=[]", "a failed creation must remove what it created")
        #expect(lines.contains { $0.hasPrefix("attached ") }, "\(result.stdout) \(result.stderr)")
        #expect(lines.suffix(2) == ["status=0", "left=[]"], "\(result.stdout)")
        let error = result.stderr
        #expect(error.contains("cannot reserve 67108864 bytes (64.0 MiB)"), "\(error)")
        #expect(error.contains("m_0"), "\(error)")
        #expect(error.contains(mountPoint), "\(error)")
        #expect(error.contains("free there"), "\(error)")
        #expect(error.contains("use a smaller segment size"), "\(error)")
        // The namespace's tmpfs is gone with it: the host directory is untouched.
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: mountPoint)) ?? ["?"]).isEmpty)
    }

    @Test(
        "a segment that cannot be mapped (address-space limit) fails naming ulimit -v and is removed again",
        .disabled(
            if: ProcessInfo.processInfo.environment["SHMTRANSPORT_SANITIZER"] != nil,
            "a sanitizer reserves terabytes of shadow address space: under ulimit -v no program starts"))
    func segmentBeyondAddressSpaceLimit() throws {
        let dir = try ShmFixtureDirectory("shmcore-ulimit", in: "/dev/shm")
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("ulimit").rawValue
        // 800 MB of address space runs the worker but cannot hold a 1 GiB mapping. Reserving the
        // tmpfs pages (posix_fallocate) does not count against that limit, so the mapping fails.
        let script = """
            ulimit -v 800000 || exit 97
            '\(workerPath)' attach -s '\(session)' --shm-dir '\(dir.path)' --segment-size \(1 << 30); echo "status=$?"
            echo "left=[$(ls -A '\(dir.path)')]"
            """
        let result = try runTool("/bin/sh", ["-c", script])
        #expect(result.stdout.split(separator: "\n").map(String.init) == ["status=2", "left=[]"], "\(result.stdout) \(result.stderr)")
        #expect(result.stderr.contains("fmq_\(ShmID(session: try SessionID(session)))_m_0"), "\(result.stderr)")
        #expect(result.stderr.contains("ulimit -v"), "\(result.stderr)")
    }

    @Test("shmmonitor --view and --list-all show session name, creator, attached processes and per-segment total/used/free")
    func monitorView() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("view", directory: dir, segmentSize: 8 << 20)
        let memory = try SessionMemory(config, logger: testLogger)
        let blocks = try (0..<10).map { _ in try memory.allocate(size: 100_000) }
        let free = memory.freeMemory(segmentID: 0)
        // The heartbeat publishes free memory every 100 ms.
        let published = waitUntil(seconds: 5) {
            (try? readRecord(dir: dir, id: ShmID(session: config.session)))?.segments.first?.freeBytes == UInt64(free)
        }
        #expect(published)
        let used = (8 << 20) - free
        let view = try runTool("shmmonitor", ["--view", "-s", config.session.rawValue, "--shm-dir", dir.path])
        #expect(view.status == 0, "\(view.stderr)")
        let text = view.stdout
        #expect(text.contains("session: \(config.session.rawValue)"), "\(text)")
        #expect(text.contains("creator id: \(geteuid())"), "\(text)")
        #expect(text.contains("[0]: total: \(8 << 20)"), "\(text)")
        #expect(text.contains("free: \(free), used: \(used)"), "\(text)")
        #expect(used > 1_000_000)
        #expect(text.contains("allocator: rbtree_best_fit"), "\(text)")
        #expect(text.contains("pid \(getpid()), uid \(geteuid()), segment 0"), "\(text)")
        #expect(text.contains("alive"), "\(text)")
        let list = try runTool("shmmonitor", ["--list-all", "--shm-dir", dir.path])
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains(config.session.rawValue), "\(list.stdout)")
        for b in blocks { memory.release(b) }
        memory.detach()
        #expect(dir.entries().isEmpty)
    }

    @Test("noCleanup keeps the memory after the last process leaves; shmmonitor -c removes it")
    func noCleanup() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        var config = testConfiguration("keep", directory: dir, segmentSize: 4 << 20)
        config.noCleanup = true
        let id = ShmID(session: config.session)
        let memory = try SessionMemory(config, logger: testLogger)
        let block = try memory.allocate(size: 100)
        memory.release(block)
        memory.detach()
        #expect(dir.entries() == ["fmq_\(id)_m_0", "fmq_\(id)_mng"])
        let record = try readRecord(dir: dir, id: id)
        #expect(record.processes.isEmpty)
        #expect(record.flags & ManagementLayout.Flags.noCleanup != 0)
        // A later device reuses the kept memory; the creator's flag keeps it again.
        config.noCleanup = false
        let again = try SessionMemory(config, logger: testLogger)
        #expect(!again.createdSession)
        again.detach()
        #expect(dir.entries().count == 2)
        let cleaned = try runTool("shmmonitor", ["-c", "-s", config.session.rawValue, "--shm-dir", dir.path])
        #expect(cleaned.status == 0, "\(cleaned.stderr)")
        #expect(dir.entries().isEmpty)
    }

    @Test("a registered segment removed by a process killed while cleaning up is recreated by the next device")
    func segmentRemovedByDyingLastProcess() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        var config = testConfiguration("dying", directory: dir, segmentSize: 4 << 20)
        config.noCleanup = true
        let id = ShmID(session: config.session)
        let first = try SessionMemory(config, logger: testLogger)
        first.detach()
        // What a last process killed between unlinking the segment and the management segment leaves.
        #expect(unlink("\(dir.path)/fmq_\(id)_m_0") == 0)
        config.noCleanup = false
        let next = try SessionMemory(config, logger: testLogger)
        let block = try next.allocate(size: 1000)
        next.release(block)
        #expect(next.verifySegment(0) == nil)
        #expect(next.segmentSize(segmentID: 0) == 4 << 20)
        next.detach()
        let cleaned = try runTool("shmmonitor", ["-c", "-s", config.session.rawValue, "--shm-dir", dir.path])
        #expect(cleaned.status == 0, "\(cleaned.stderr)")
    }
}
