import Foundation
import Logging
import ShmCleanup
import ShmCore
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `--interactive/-i`: the view of one session, redrawn every `--interval` ms, with FairMQ's keys:
/// `q` quits, `x` cleans the session, `b` shows or hides the live messages (``DebugMode``),
/// `h` shows or hides the help. With `-v` it is read-only:
/// `x` is refused. Without `-v` it holds the session's monitor flag, as the original's non-view
/// monitor does, so a second one (or a device's auto-launched daemon) does not start.
/// As in the original, there is no timeout cleanup in this mode.
struct InteractiveMode {
    let selection: SessionSelection
    let directory: FilePath
    let intervalMilliseconds: Int
    let readOnly: Bool
    let logger: Logger

    static let help = [
        "[q] quit   [x] clean the session (not with -v)   [b] show/hide the live messages   [h] show/hide this help",
    ]

    func run(output: Output) throws {
        let target = try selection.resolve()[0]
        let flag = MonitorFlag(target.id, directory: directory)
        if !readOnly, let holder = try flag.acquire() {
            if case .live(let pid) = holder {
                Output.printError("another monitor (pid \(pid)) is running for shm id \(target.id); stop it, or use -v -i to look without it")
            } else {
                Output.printError("a monitor flag of another program exists for shm id \(target.id); run 'shmmonitor --cleanup --shmid \(target.id)' if no monitor runs")
            }
            return  // FairMQ's DaemonPresent: exit 0
        }
        defer { if !readOnly { flag.release() } }
        let terminal = Terminal()
        defer { terminal.restore() }
        let view = ViewMode(selection: selection, directory: directory, logger: logger)
        var showHelp = false
        var showMessages = false
        var note = ""
        var refresh = 0
        while true {
            refresh += 1
            print("\u{1B}[H\u{1B}[2J", terminator: "")
            print("shmmonitor -i\(readOnly ? " (read-only, -v)" : ""): shm id \(target.id)\(target.session.map { ", session '\($0)'" } ?? ""), refresh \(refresh) every \(intervalMilliseconds) ms — h for help")
            print("")
            try view.run(output: output)
            print("")
            if showMessages {
                let records = (try? MessageRecords.read(target.id, directory: directory, logger: logger)) ?? []
                for line in DebugMode.lines(records, shmID: target.id, now: WallClock.nanoseconds()) { print(line) }
                print("")
            }
            if showHelp { for line in Self.help { print(line) } }
            if !note.isEmpty { print(note) }
            fflush(nil)
            guard let key = terminal.readKey(timeoutMilliseconds: intervalMilliseconds) else { continue }
            switch key {
            case "q":
                return
            case "h":
                showHelp.toggle()
            case "b":
                showMessages.toggle()
            case "x":
                if readOnly {
                    note = "x: refused, this monitor is read-only (-v); run 'shmmonitor -i' without -v, or 'shmmonitor -c', to clean"
                } else {
                    let report = try Monitor(directory: directory, logger: logger).clean([target.id], options: .init(keepMonitorFlag: !readOnly))
                    note = "x: " + (report.sessions.first.map { "\($0.status.rawValue)\($0.message.map { " (\($0))" } ?? "")" } ?? "nothing to clean")
                }
            default:
                note = "unknown key '\(key)'; h for help"
            }
        }
    }
}

/// Standard input as a key source: unbuffered and without echo while the mode runs (when it is a
/// terminal), restored afterwards.
final class Terminal {
    private var saved = termios()
    private let isTerminal = isatty(0) == 1

    init() {
        guard isTerminal else { return }
        tcgetattr(0, &saved)
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        tcsetattr(0, TCSANOW, &raw)
    }

    func restore() {
        if isTerminal { tcsetattr(0, TCSANOW, &saved) }
    }

    /// The next key pressed within the timeout, `nil` when none was (or input ended: then it
    /// waits out the timeout, so a closed stdin does not spin).
    func readKey(timeoutMilliseconds: Int) -> Character? {
        var descriptor = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(timeoutMilliseconds)) > 0 else { return nil }
        var byte: UInt8 = 0
        guard read(0, &byte, 1) == 1 else {
            usleep(UInt32(timeoutMilliseconds) * 1000)
            return nil
        }
        return Character(UnicodeScalar(byte))
    }
}
