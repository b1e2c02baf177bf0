import Foundation
import ShmCleanup
import ShmTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shmmonitor -m` against stopped processes, each of `-x`'s three exits, and a daemonized
/// monitor's detachment and log.
@Suite struct MonitorLifecycleTests {
    @Test func aStoppedDeviceKeepsItsSessionForThreeTimeouts() throws {
        let dir = try ShmFixtureDirectory("mon-stop")
        defer { dir.remove() }
        let holder = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("mon-stop"), directory: dir.path)
        let monitor = try startTool("shmmonitor", ["-m", "-t", "500", "--shmid", "\(holder.shmID)", "--shm-dir", dir.path])
        defer { if monitor.isRunning { monitor.terminate() } }
        #expect(waitUntil(seconds: 5) { dir.entries().contains("sem.fmq_\(holder.shmID)_ms") })
        let held = dir.entries()
        kill(holder.pid, SIGSTOP)
        usleep(1_500_000)  // three timeouts
        #expect(dir.entries() == held, "a stopped process still uses its session")
        kill(holder.pid, SIGCONT)
        usleep(300_000)
        #expect(dir.entries() == held)
        holder.stop()  // SIGTERM: the keep-alive, working again, removes its memory itself
        #expect(waitUntil(seconds: 5) { dir.entries() == ["sem.fmq_\(holder.shmID)_ms"] }, "\(dir.entries())")
        #expect(monitor.isRunning, "without -x the monitor keeps watching")
        monitor.terminate()
        monitor.waitUntilExit()
        #expect(dir.entries().isEmpty, "the monitor's flag goes with it")
    }

    @Test func selfDestructWhenNothingAppears() throws {
        let dir = try ShmFixtureDirectory("mon-x-none")
        defer { dir.remove() }
        let started = Date()
        let result = try runTool("shmmonitor", ["-m", "-x", "-t", "300", "-s", ShmFixtureDirectory.uniqueSession("none").rawValue, "--shm-dir", dir.path])
        let took = Date().timeIntervalSince(started)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(took >= 0.6 && took < 5, "exits after twice the timeout: \(took) s")
        #expect(result.stderr.contains("no segments observed within (timeout * 2) since start"), "\(result.stderr)")
        #expect(dir.entries().isEmpty)
    }

    @Test func selfDestructWhenTheSessionGoesAwayOrderly() throws {
        let dir = try ShmFixtureDirectory("mon-x-gone")
        defer { dir.remove() }
        let holder = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("gone"), directory: dir.path)
        let monitor = try startTool("shmmonitor", ["-m", "-x", "-t", "5000", "--shmid", "\(holder.shmID)", "--shm-dir", dir.path])
        defer { if monitor.isRunning { monitor.terminate() } }
        #expect(waitUntil(seconds: 5) { dir.entries().contains("sem.fmq_\(holder.shmID)_ms") })
        holder.stop()
        #expect(waitUntil(seconds: 3) { !monitor.isRunning }, "exits once the session it saw is gone, long before its 5 s timeout")
        #expect(monitor.terminationStatus == 0)
        #expect(dir.entries().isEmpty)
    }

    @Test func aDaemonHasItsOwnSessionNoTerminalAndWritesItsLog() throws {
        let dir = try ShmFixtureDirectory("mon-daemon-log")
        defer { dir.remove() }
        let logDirectory = try FileManager.default.url(
            for: .itemReplacementDirectory, in: .userDomainMask, appropriateFor: URL(fileURLWithPath: "/tmp"), create: true)
        defer { try? FileManager.default.removeItem(at: logDirectory) }
        let holder = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("daemon-log"), directory: dir.path)
        let starter = Process()
        starter.executableURL = builtProductsDirectory().appendingPathComponent("shmmonitor")
        starter.arguments = ["-m", "-x", "-d", "--verbose", "-t", "300", "--shmid", "\(holder.shmID)", "--shm-dir", dir.path]
        starter.currentDirectoryURL = logDirectory
        starter.standardOutput = FileHandle.nullDevice
        starter.standardError = FileHandle.nullDevice
        try starter.run()
        starter.waitUntilExit()
        #expect(starter.terminationStatus == 0)
        var daemon: pid_t = 0
        #expect(waitUntil(seconds: 5) {
            if case .live(let pid) = MonitorFlag(holder.shmID, directory: FilePath(dir.path)).holder() { daemon = pid }
            return daemon != 0
        })
        let stat = (try? String(contentsOfFile: "/proc/\(daemon)/stat", encoding: .utf8)) ?? ""
        let fields = stat[(stat.lastIndex(of: ")").map { stat.index($0, offsetBy: 2) } ?? stat.startIndex)...].split(separator: " ")
        // Fields after the command: state, ppid, pgrp, session, tty_nr, ...
        #expect(fields.count > 4 && fields[3] == "\(daemon)", "the daemon leads its own session: \(stat)")
        #expect(fields.count > 4 && fields[4] == "0", "no controlling terminal: \(stat)")
        holder.kill()
        #expect(waitUntil(seconds: 5) { dir.entries().isEmpty }, "\(dir.entries())")
        #expect(waitUntil(seconds: 5) { kill(daemon, 0) != 0 || ((try? String(contentsOfFile: "/proc/\(daemon)/stat", encoding: .utf8))?.contains(") Z ") ?? true) },
                "the daemon exits after its cleanup (-x)")
        let logs = try FileManager.default.contentsOfDirectory(atPath: logDirectory.path).filter { $0.hasPrefix("shmmonitor_") && $0.hasSuffix(".log") }
        try #require(logs.count == 1, "one log file in the daemon's directory: \(logs)")
        let log = try String(contentsOfFile: logDirectory.path + "/" + logs[0], encoding: .utf8)
        #expect(log.contains("watching") && log.contains("cleaning and exiting"), "\(log)")
    }
}
