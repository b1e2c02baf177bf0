import ArgumentParser
import Logging
import ShmCleanup
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shmmonitor`: inspect, monitor and clean up the shared memory of transport sessions.
///
/// Every `fairmq-shmmonitor` flag implemented here has the same meaning as in FairMQ; the
/// extra flags are ours. The modes exclude each other (see `validate()`); `run()` picks
/// get-shmid, cleanup, reset-content, debug, monitor, interactive, metrics, list-all, else view (the default),
/// the original's order for the modes it has.
@main
struct ShmMonitorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shmmonitor",
        abstract: "Inspect, monitor and clean up the shared memory of transport sessions (FairMQ-compatible).",
        discussion: """
            Sessions are named by session id (-s) and user id, which give an 8-hex-digit shm id \
            (--get-shmid); objects live in /dev/shm (or --shm-dir / SHMTRANSPORT_SHM_DIR).

            --monitor (-m) watches one session and cleans it once no live process has used it \
            for --timeout ms: "dead" is computed from the processes mapping or registered in the \
            session, not from heartbeats.

            Exit codes: 0 done; 1 nothing matched (only with --require-match); 2 bad usage or \
            an error; 3 refused because the session is in use (add --force). \
            --fairmq-compat makes cleanup always exit 0, as fairmq-shmmonitor does.
            """,
        version: ShmTransportVersion.current)

    @OptionGroup var selection: SessionSelection

    /// FairMQ `--cleanup/-c`.
    @Flag(name: [.customShort("c"), .long], help: "Remove the shared memory of the given sessions and exit.")
    var cleanup = false

    /// FairMQ `--view/-v`.
    @Flag(name: [.customShort("v"), .long], help: "Print the segments of the given sessions and exit (the default).")
    var view = false

    /// FairMQ `--interactive/-i`.
    @Flag(name: [.customShort("i"), .long], help: "Show the session, redrawn every --interval ms; keys: q quit, x clean (not with -v), h help.")
    var interactive = false

    /// FairMQ `--interval`.
    @Option(help: "With -i: milliseconds between redraws.")
    var interval: Int = 1000

    /// FairMQ `--reset-content/-r`.
    @Flag(
        name: [.customShort("r"), .customLong("reset-content")],
        help: "Rebuild the content of a session no process uses: segments formatted anew (messages gone), region queues emptied, the management segment rewritten from the objects found (recovers a damaged one); exit 3 while in use.")
    var resetContent = false

    /// FairMQ `--debug/-b`.
    @Flag(
        name: [.customShort("b"), .long],
        help: "Print the live messages of the given sessions (segment, offset, size, creator pid, time, age) and exit; needs segments created with message records (--shm-message-records true).")
    var debug = false

    /// FairMQ `--get-shmid`.
    @Flag(name: .customLong("get-shmid"), help: "Print the shm id of the session (-s) for the user (--user-id) and exit.")
    var getShmID = false

    /// FairMQ `--list-all`.
    @Flag(name: .customLong("list-all"), help: "Print every session found in the shm directory and exit.")
    var listAll = false

    /// FairMQ `--list-all-path`: where `--list-all` looks.
    @Option(name: .customLong("list-all-path"), help: "Directory --list-all scans (default: the shm directory).")
    var listAllPath: String?

    /// FairMQ `--severity`.
    @Option(help: "Log severity: trace, debug, info (FairMQ's default), notice, warn(ing), error, fatal/critical, nolog.")
    var severity: String = "info"

    /// FairMQ `--verbose`.
    @Flag(help: "Log every step (same as --severity debug).")
    var verbose = false

    @OptionGroup var cleanupOptions: CleanupOptions

    @OptionGroup var monitorOptions: MonitorOptions

    /// Ours: the node's state for operators.
    @Flag(help: "Print every session's state in the OpenMetrics text format (sessions, bytes per session and user, live processes, segment sizes and free bytes) and exit.")
    var metrics = false

    /// Ours: where `--metrics` (or `-m`, every second) writes.
    @Option(help: "With --metrics: write to this file atomically instead of standard output (node_exporter's textfile collector); with -m: keep it current.")
    var metricsFile: String?

    /// Ours: machine-readable output.
    @Flag(help: "Print listings and reports as JSON on standard output.")
    var json = false

    mutating func validate() throws {
        let modes = [getShmID, cleanup, resetContent, debug, listAll, monitorOptions.monitor, metrics, interactive].filter { $0 }.count
        if modes > 1 {
            throw ValidationError(
                "'--get-shmid', '--cleanup', '--reset-content', '--debug', '--list-all', '--monitor', '--metrics' and '--interactive' are separate modes; give one of them")
        }
        if interactive && (selection.session.count + selection.shmid.count > 1 || json) {
            throw ValidationError("'--interactive' shows one session on a terminal: give one '-s' or '--shmid', without '--json'")
        }
        if interval < 10 || interval > 3_600_000 {
            throw ValidationError("'--interval \(interval)' must be 10 ... 3600000 milliseconds")
        }
        if metricsFile != nil && !metrics && !monitorOptions.monitor {
            throw ValidationError("'--metrics-file' applies with '--metrics' or '--monitor'")
        }
        // As in FairMQ, -x, -d and -e without -m are accepted: the monitor is then view-only
        // (-x and -d change nothing), and -e cleans the session after the view is printed.
        if monitorOptions.cleanOnExit && !monitorOptions.monitor && (cleanup || resetContent || debug || listAll || getShmID) {
            throw ValidationError(
                "'--clean-on-exit' applies to a view or a monitor; leave it out with '--cleanup', '--reset-content', '--debug', '--list-all' and '--get-shmid'")
        }
        if resetContent && selection.session.count + selection.shmid.count > 1 {
            throw ValidationError("'--reset-content' resets one session: give one '-s' or '--shmid'")
        }
        if monitorOptions.monitor && (selection.session.count + selection.shmid.count > 1 || view) {
            throw ValidationError("'--monitor' watches one session: give one '-s' or '--shmid', without '--view'")
        }
        if monitorOptions.monitor && monitorOptions.timeout == 0 {
            throw ValidationError("'--timeout 0' would clean sessions at once; give milliseconds > 0")
        }
        if !Severity.isValid(severity) {
            throw ValidationError("unknown --severity '\(severity)'; use trace, debug, info, notice, warn, error, fatal or nolog")
        }
        if !cleanup && (cleanupOptions.isSweep || cleanupOptions.force || cleanupOptions.dryRun) {
            throw ValidationError("'--force', '--dry-run', '--all-sessions', '--job' and '--session-prefix' only apply with '--cleanup'")
        }
        if cleanupOptions.isSweep && (!selection.session.isEmpty || !selection.shmid.isEmpty) {
            throw ValidationError("'--all-sessions', '--job' and '--session-prefix' select sessions themselves; leave out '-s' and '--shmid'")
        }
        if selection.userID < -1 {
            throw ValidationError("'--user-id \(selection.userID)' is not a user id; give a number ≥ 0 (or leave it out for the current user)")
        }
    }

    func run() async throws {
        let level = verbose ? .debug : Severity.level(severity)
        LoggingSystem.bootstrap { label in
            guard let level else { return SwiftLogNoOpLogHandler() }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "shmmonitor")
        let output = Output(json: json)

        if getShmID {
            try GetShmIDMode(selection: selection).run(output: output)
        } else if cleanup {
            try CleanupMode(selection: selection, options: cleanupOptions, directory: directory(), logger: logger)
                .run(output: output)
        } else if resetContent {
            try ResetMode(selection: selection, directory: directory(), logger: logger).run(output: output)
        } else if debug {
            try DebugMode(selection: selection, directory: directory(), logger: logger).run(output: output)
        } else if monitorOptions.monitor {
            let target = try selection.resolve()[0].id
            try await MonitorMode(
                id: target, directory: try directory(), options: monitorOptions, verbose: verbose, metricsFile: metricsFile,
                logger: logger
            ).run()
        } else if interactive {
            try InteractiveMode(
                selection: selection, directory: try directory(), intervalMilliseconds: interval, readOnly: view, logger: logger
            ).run(output: output)
        } else if metrics {
            try MetricsMode(directory: try listDirectory(), logger: logger).run(file: metricsFile)
        } else if listAll {
            try ListAllMode(directory: try listDirectory(), logger: logger).run(output: output)
        } else {
            try ViewMode(selection: selection, directory: directory(), logger: logger).run(output: output)
            if monitorOptions.cleanOnExit {
                // FairMQ's view-only monitor with -e runs its cleanup when it ends.
                try CleanupMode(selection: selection, options: cleanupOptions, directory: directory(), logger: logger)
                    .run(output: output)
            }
        }
    }

    private func directory() throws -> FilePath {
        selection.shmDir.map { FilePath($0) } ?? SessionScanner.defaultDirectory
    }

    private func listDirectory() throws -> FilePath {
        if let listAllPath { return FilePath(listAllPath) }
        return try directory()
    }

    /// Runs the command with the exit codes of the discussion above: usage errors exit 2, not 64.
    static func main() async {
        do {
            // No subcommands: parsing gives this command (or throws, also for --help).
            try await parse().run()
        } catch let error as ShmCleanupError {
            Output.printError(error.description)
            Foundation_exit(2)
        } catch let code as ExitCode {
            Foundation_exit(code.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation_exit(0)
            }
            Output.printError(fullMessage(for: error))
            Foundation_exit(2)
        }
    }
}

/// Which sessions a mode acts on.
struct SessionSelection: ParsableArguments {
    /// FairMQ `--session/-s` (repeatable here).
    @Option(name: [.customShort("s"), .long], help: "Session id (repeat for several; default 'default').")
    var session: [String] = []

    /// FairMQ `--shmid` (repeatable here).
    @Option(help: "Shm id: 8 hex digits, as printed by --get-shmid (repeat for several).")
    var shmid: [String] = []

    /// FairMQ `--user-id`; here it also selects whose session -s names in --cleanup and --view.
    @Option(name: .customLong("user-id"), help: "User id for deriving shm ids from -s (default: the current user).")
    var userID: Int = -1

    /// Ours: the shm directory.
    @Option(name: .customLong("shm-dir"), help: "Shm directory (default: $SHMTRANSPORT_SHM_DIR or /dev/shm).")
    var shmDir: String?

    /// The shm ids to act on: one per --shmid and per -s (default session 'default').
    func resolve() throws(ShmCleanupError) -> [(id: ShmID, session: SessionID?)] {
        var ids: [(ShmID, SessionID?)] = []
        for text in shmid { ids.append((try ShmID(validating: text), nil)) }
        let sessions = session.isEmpty && shmid.isEmpty ? [SessionID.default.rawValue] : session
        let uid = userID >= 0 ? uid_t(userID) : geteuid()
        for name in sessions {
            let sessionID = try SessionID(name)
            ids.append((ShmID(session: sessionID, userID: uid), sessionID))
        }
        return ids
    }
}

/// Options of `--cleanup`.
struct CleanupOptions: ParsableArguments {
    @Flag(help: "Remove sessions even when live processes use them.")
    var force = false

    @Flag(name: .customLong("dry-run"), help: "Print what would be removed; remove nothing.")
    var dryRun = false

    @Flag(
        name: .customLong("all-sessions"),
        help: "Clean every session of the user (--user-id, default the caller) that no live process uses.")
    var allSessions = false

    @Option(help: "Clean every session recorded as belonging to this Slurm job id (repeatable).")
    var job: [UInt32] = []

    @Option(
        name: .customLong("session-prefix"),
        help: "Clean every session of the user whose recorded session id starts with this prefix.")
    var sessionPrefix: String?

    @Flag(name: .customLong("require-match"), help: "Exit 1 when no object matched.")
    var requireMatch = false

    @Flag(name: .customLong("fairmq-compat"), help: "Always exit 0 after a cleanup, as fairmq-shmmonitor does.")
    var fairmqCompat = false

    var isSweep: Bool { allSessions || !job.isEmpty || sessionPrefix != nil }
}
