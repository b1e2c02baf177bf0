import ArgumentParser
import CShmTransport
import Logging
import ServiceLifecycle
import ShmCleanup
import SystemPackage
import UnixSignals

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Options of `--monitor/-m` (FairMQ's flags, same meanings; "dead" is computed here).
struct MonitorOptions: ParsableArguments {
    @Flag(name: [.customShort("m"), .long], help: "Watch the session; clean it when no live process has used it for --timeout ms.")
    var monitor = false

    @Flag(name: [.customShort("x"), .customLong("self-destruct")], help: "With -m: exit after a cleanup, when the session goes away, or when none appears within 2 × --timeout.")
    var selfDestruct = false

    @Option(name: [.customShort("t"), .long], help: "With -m: milliseconds without a live user before the session is cleaned.")
    var timeout: UInt64 = 5000

    @Flag(name: [.customShort("d"), .long], help: "With -m: detach from the terminal and run in the background (logs to shmmonitor_<time>.log with --verbose).")
    var daemonize = false

    @Flag(
        name: [.customShort("e"), .customLong("clean-on-exit"), .customLong("cleanup-on-exit")],
        help: "Clean the session when the monitor ends: with -m when it is stopped (SIGTERM/SIGINT), else after the view. --cleanup-on-exit is the spelling of FairMQ's README.")
    var cleanOnExit = false

}

/// `--monitor/-m`: one long-running watcher of one session.
struct MonitorMode {
    /// Set in the environment of the detached copy so it does not detach again.
    static let daemonizedVariable = "SHMMONITOR_DAEMONIZED"

    let id: ShmID
    let directory: FilePath
    let options: MonitorOptions
    let verbose: Bool
    /// With `--metrics-file`: the file the monitor keeps current (rewritten every second).
    var metricsFile: String? = nil
    let logger: Logger

    func run() async throws {
        if options.daemonize && getenv(Self.daemonizedVariable) == nil {
            try detach()
            return
        }
        let service = MonitorService(id: id, directory: directory, options: options, logger: logger, metricsFile: metricsFile)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint, .sighup],
                logger: logger))
        try await group.run()
    }

    /// Starts a copy of this command in a new session with standard streams on /dev/null (or the
    /// log file with --verbose), and returns at once.
    private func detach() throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var output = "/dev/null"
        if verbose {
            var now = time(nil)
            var tm = tm()
            localtime_r(&now, &tm)
            var buffer = [UInt8](repeating: 0, count: 32)
            let length = buffer.withUnsafeMutableBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { strftime($0.baseAddress, $0.count, "%Y-%m-%d_%H_%M_%S", &tm) }
            }
            output = "shmmonitor_\(String(decoding: buffer.prefix(length), as: UTF8.self)).log"
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // A daemon must not hold its caller's pipes open: whoever reads them would wait forever.
        _ = cshm_posix_spawn_file_actions_addclosefrom(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, cshm_posix_spawn_setsid_flag())

        setenv(Self.daemonizedVariable, "1", 1)
        let arguments = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, &argv, environ)
        unsetenv(Self.daemonizedVariable)
        guard rc == 0 else {
            throw ShmCleanupError(.systemCall, "cannot start the monitor in the background", errno: rc)
        }
        logger.notice("monitor running in the background", metadata: ["pid": "\(pid)", "shm.id": "\(id)"])
    }
}

/// The watch loop as a service: graceful shutdown on SIGTERM/SIGINT/SIGHUP runs the final
/// cleanup when `--clean-on-exit` is set.
struct MonitorService: Service {
    let id: ShmID
    let directory: FilePath
    let options: MonitorOptions
    let logger: Logger
    var metricsFile: String? = nil

    /// How often the session is looked at.
    private var checkInterval: Duration { .milliseconds(max(50, min(200, options.timeout / 4))) }

    func run() async throws {
        // Taken here, not before the group starts: by now the group traps SIGTERM/SIGINT/SIGHUP,
        // so whoever sees the flag may signal us and gets a graceful stop, never a default death.
        let flag = MonitorFlag(id, directory: directory)
        if let holder = try flag.acquire() {
            if case .live(let pid) = holder {
                logger.error(
                    "another monitor (pid \(pid)) is running for this shm id; stop it, or run 'shmmonitor --cleanup --shmid \(id)'")
            } else {  // .foreign: acquire() takes a stale flag over itself
                logger.error(
                    "a monitor flag of another program exists for this shm id; run 'shmmonitor --cleanup --shmid \(id)' if no monitor runs")
            }
            return  // FairMQ's DaemonPresent: exit 0
        }
        defer { flag.release() }
        let monitor = Monitor(directory: directory, logger: logger)
        var metricsDue: UInt64 = 0
        var watch = SessionWatch(
            timeoutMilliseconds: options.timeout, selfDestruct: options.selfDestruct, now: Self.nowMilliseconds())
        logger.info("watching", metadata: ["shm.id": "\(id)", "shm.timeout_ms": "\(options.timeout)"])

        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            switch try monitor.observe(id, with: &watch, now: Self.nowMilliseconds(), ignoring: getpid()) {
            case .keepWatching:
                break
            case .cleanup(let reason):
                logger.notice("\(reason), cleaning...", metadata: ["shm.id": "\(id)"])
                try clean(monitor)
            case .cleanupAndExit(let reason):
                logger.notice("\(reason), cleaning and exiting", metadata: ["shm.id": "\(id)"])
                try clean(monitor)
                return
            case .exit(let reason):
                logger.notice("\(reason), exiting", metadata: ["shm.id": "\(id)"])
                return
            }
            if let metricsFile, Self.nowMilliseconds() >= metricsDue {
                do {
                    try MetricsMode.write(MetricsMode.exposition(of: try monitor.listAll()), to: metricsFile)
                } catch {
                    logger.warning("cannot update the metrics file: \(error)", metadata: ["shm.id": "\(id)"])
                }
                metricsDue = Self.nowMilliseconds() + 1000
            }
            try? await Task.sleep(for: checkInterval)
        }
        if options.cleanOnExit {
            logger.notice("stopping: cleaning up on exit", metadata: ["shm.id": "\(id)"])
            try clean(monitor)
        }
    }

    private func clean(_ monitor: Monitor) throws {
        let report = try monitor.clean([id], options: .init(keepMonitorFlag: true))
        for outcome in report.sessionsLeft {
            logger.notice("cleanup: \(outcome.status.rawValue)", metadata: ["shm.id": "\(id)", "reason": "\(outcome.message ?? "")"])
        }
    }

    private static func nowMilliseconds() -> UInt64 { MonotonicClock.nanoseconds() / 1_000_000 }
}
