import Logging
import ShmCleanup
import ShmCore
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
        for session in scan.sessions {
            // Segments with message records give the `msgs:` column its count.
            let records = (try? MessageRecords.read(session.shmID, directory: directory, logger: logger)) ?? []
            let counts = Dictionary(
                records.filter(\.recordsMessages).map { ($0.segmentID, $0.messages.count) }, uniquingKeysWith: { a, _ in a })
            printer.print(session, messageCounts: counts)
        }
        if scan.sessions.isEmpty { output.line("No segments found.") }
    }
}
