import Foundation
import ShmCleanup
import ShmTestSupport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shmmonitor -m` run as a real process watching a real holder process.
@Suite struct MonitorModeTests {
    @Test func cleansAKilledSessionAfterTheTimeoutAndExits() throws {
        let dir = try ShmFixtureDirectory("mon-kill")
        defer { dir.remove() }
        let session = ShmFixtureDirectory.uniqueSession("mon-kill")
        let holder = try KeepAliveChild(session: session, directory: dir.path)
        let monitor = try startTool("shmmonitor", ["-m", "-x", "-t", "500", "-s", session.rawValue, "--shm-dir", dir.path])
        defer { if monitor.isRunning { monitor.terminate() } }
        #expect(waitUntil(seconds: 5) { dir.entries().contains("sem.fmq_\(holder.shmID)_ms") })

        // While the holder lives, nothing is removed, however long it takes.
        usleep(1_200_000)
        #expect(dir.entries() == ["fmq_\(holder.shmID)_m_0", "fmq_\(holder.shmID)_mng", "sem.fmq_\(holder.shmID)_ms"])

        holder.kill()
        #expect(waitUntil(seconds: 5) { dir.entries().isEmpty }, "\(dir.entries())")
        #expect(waitUntil(seconds: 5) { !monitor.isRunning })
        #expect(monitor.terminationStatus == 0)
    }

    @Test func aSecondMonitorForTheSameSessionExitsZero() throws {
        let dir = try ShmFixtureDirectory("mon-two")
        defer { dir.remove() }
        let session = ShmFixtureDirectory.uniqueSession("mon-two")
        let first = try startTool("shmmonitor", ["-m", "-s", session.rawValue, "--shm-dir", dir.path])
        defer { first.terminate(); first.waitUntilExit() }
        let id = ShmID(session: session)
        #expect(waitUntil(seconds: 5) { dir.entries() == ["sem.fmq_\(id)_ms"] })
        let second = try runTool("shmmonitor", ["-m", "-s", session.rawValue, "--shm-dir", dir.path])
        #expect(second.status == 0)
        #expect(second.stderr.contains("another monitor (pid \(first.processIdentifier)) is running"))
        first.terminate()
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        #expect(dir.entries().isEmpty, "the monitor removes its flag on exit")
    }

    @Test func aStaleFlagOfAKilledMonitorIsTakenOver() throws {
        let dir = try ShmFixtureDirectory("mon-stale")
        defer { dir.remove() }
        let session = ShmFixtureDirectory.uniqueSession("mon-stale")
        let id = ShmID(session: session)
        let killed = try startTool("shmmonitor", ["-m", "-s", session.rawValue, "--shm-dir", dir.path])
        #expect(waitUntil(seconds: 5) { dir.entries() == ["sem.fmq_\(id)_ms"] })
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        let next = try startTool("shmmonitor", ["-m", "-x", "-t", "200", "-s", session.rawValue, "--shm-dir", dir.path])
        #expect(waitUntil(seconds: 5) { !next.isRunning }, "gives up after 2 × timeout with nothing to watch")
        #expect(next.terminationStatus == 0)
        #expect(dir.entries().isEmpty)
    }

    @Test func cleanOnExitRemovesTheSessionOnSIGTERM() throws {
        let dir = try ShmFixtureDirectory("mon-exit")
        defer { dir.remove() }
        let session = ShmFixtureDirectory.uniqueSession("mon-exit")
        let holder = try KeepAliveChild(session: session, directory: dir.path)
        holder.kill()
        let monitor = try startTool("shmmonitor", ["-m", "-e", "-t", "60000", "-s", session.rawValue, "--shm-dir", dir.path])
        #expect(waitUntil(seconds: 5) { dir.entries().contains("sem.fmq_\(holder.shmID)_ms") })
        #expect(dir.entries().count == 3, "a long timeout: nothing cleaned yet")
        monitor.terminate()
        monitor.waitUntilExit()
        #expect(monitor.terminationStatus == 0)
        #expect(dir.entries().isEmpty)
    }

    @Test func daemonizeReturnsAtOnceAndTheDaemonDoesTheWork() throws {
        let dir = try ShmFixtureDirectory("mon-daemon")
        defer { dir.remove() }
        let session = ShmFixtureDirectory.uniqueSession("mon-daemon")
        let holder = try KeepAliveChild(session: session, directory: dir.path)
        let started = try runTool("shmmonitor", ["-m", "-x", "-d", "-t", "300", "-s", session.rawValue, "--shm-dir", dir.path])
        #expect(started.status == 0)
        #expect(waitUntil(seconds: 5) { dir.entries().contains("sem.fmq_\(holder.shmID)_ms") })
        holder.kill()
        #expect(waitUntil(seconds: 5) { dir.entries().isEmpty }, "\(dir.entries())")
    }

    /// As in FairMQ: -x and -d without -m leave a view-only monitor that prints once; -e (also
    /// spelled --cleanup-on-exit) cleans the session after the view.
    @Test func selfDestructDaemonizeAndCleanOnExitWithoutMonitor() throws {
        let dir = try ShmFixtureDirectory("mon-nom")
        defer { dir.remove() }
        let session = ShmFixtureDirectory.uniqueSession("mon-nom")
        let holder = try KeepAliveChild(session: session, directory: dir.path)
        holder.kill()  // a dead session: its objects stay
        let before = dir.entries()
        #expect(!before.isEmpty)
        let view = try runTool("shmmonitor", ["-x", "-d", "-s", session.rawValue, "--shm-dir", dir.path])
        #expect(view.status == 0, "\(view.stderr)")
        #expect(view.stdout.contains("\(holder.shmID)"), "the view names the session: \(view.stdout)")
        #expect(dir.entries() == before, "a view removes nothing")
        for spelling in ["-e", "--cleanup-on-exit"] {
            let again = try KeepAliveChild(session: session, directory: dir.path)
            again.kill()
            let clean = try runTool("shmmonitor", [spelling, "-s", session.rawValue, "--shm-dir", dir.path])
            #expect(clean.status == 0, "\(spelling): \(clean.stderr)")
            #expect(clean.stdout.contains("\(again.shmID)"), "\(spelling) prints the view first: \(clean.stdout)")
            #expect(dir.entries().isEmpty, "\(spelling) cleans after the view: \(dir.entries())")
        }
    }

    @Test(arguments: [
        (["-e", "-c", "-s", "a"], "applies to a view or a monitor"),
        (["-m", "-s", "a", "-s", "b"], "watches one session"),
        (["-m", "-c", "-s", "a"], "separate modes"),
        (["-m", "-t", "0", "-s", "a"], "--timeout 0"),
    ])
    func badMonitorUsage(arguments: [String], message: String) throws {
        let result = try runTool("shmmonitor", arguments)
        #expect(result.status == 2)
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }
}
