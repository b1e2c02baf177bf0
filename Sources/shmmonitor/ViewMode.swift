import Logging
import ShmCleanup
import SystemPackage

/// `--view/-v` (and no mode): prints the selected sessions once.
struct ViewMode {
    let selection: SessionSelection
    let directory: FilePath
    let logger: Logger

    private struct Result: Encodable {
        let directory: String
        let sessions: [ShmSession]
        let missing: [ShmID]
    }

    func run(output: Output) throws {
        let targets = try selection.resolve().map(\.id)
        let scan = try SessionScanner(directory: directory, logger: logger).scan(only: Set(targets))
        let found = Set(scan.sessions.map(\.shmID))
        let missing = targets.filter { !found.contains($0) }
        if output.json {
            try output.emit(Result(directory: scan.directory, sessions: scan.sessions, missing: missing))
            return
        }
        let printer = SessionPrinter(output: output)
        for session in scan.sessions { printer.print(session) }
        if scan.sessions.isEmpty { output.line("No segments found.") }
    }
}
