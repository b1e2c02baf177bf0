import Foundation
import Logging
import ShmCleanup
import ShmTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The library's `Monitor`: presence, use, watching, free memory and cleanup of a real session
/// held by a `shm-keepalive` process.
@Suite struct MonitorTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    @Test func inspectsWatchesAndCleansALiveThenDeadSession() throws {
        let dir = try ShmFixtureDirectory("monitor-api")
        defer { dir.remove() }
        let monitor = Monitor(directory: FilePath(dir.path), logger: logger)
        let holder = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("monitor-api"), directory: dir.path, segments: ["0,1048576"])
        #expect(try monitor.isPresent(holder.shmID))
        #expect(try monitor.isInUse(holder.shmID))
        #expect(try monitor.inspect(holder.shmID)?.users.map(\.pid) == [holder.pid])
        let free = try monitor.freeBytes(holder.shmID)
        #expect(free.keys.sorted() == [0] && (free[0] ?? 0) > 0 && (free[0] ?? .max) <= 1_048_576)
        var watch = SessionWatch(timeoutMilliseconds: 100, selfDestruct: true, now: 0)
        #expect(try monitor.observe(holder.shmID, with: &watch, now: 1) == .keepWatching)
        holder.kill()
        #expect(try !monitor.isInUse(holder.shmID), "the registered process is dead and nothing maps the session")
        #expect(try monitor.observe(holder.shmID, with: &watch, now: 50) == .keepWatching)
        guard case .cleanupAndExit = try monitor.observe(holder.shmID, with: &watch, now: 200) else {
            Issue.record("a session unused for longer than the timeout is to be cleaned")
            return
        }
        #expect(try monitor.clean([holder.shmID]).sessions.first?.status == .removed)
        #expect(try !monitor.isPresent(holder.shmID))
        #expect(try monitor.inspect(holder.shmID) == nil)
        #expect(dir.entries().isEmpty)
    }
}
