import Logging
import ShmCleanup
import SystemPackage

/// `--list-all`: every session in a shm directory, each once, with its objects and sizes.
struct ListAllMode {
    let directory: FilePath
    let logger: Logger

    func run(output: Output) throws {
        let scan = try Monitor(directory: directory, logger: logger).listAll()
        if output.json {
            try output.emit(scan)
            return
        }
        if scan.sessions.isEmpty && scan.foreignEntries.isEmpty {
            output.line("directory \"\(directory)\" is empty.")
            return
        }
        let printer = SessionPrinter(output: output)
        for session in scan.sessions {
            output.line()
            output.line("Found shmid '\(session.shmID)':")
            printer.print(session)
        }
        for name in scan.foreignEntries {
            output.line("The file '\(name)' does not belong to the transport, skipping...")
        }
    }
}
