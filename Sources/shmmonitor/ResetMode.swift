import ArgumentParser
import Logging
import ShmCleanup
import ShmCore
import SystemPackage

/// `--reset-content/-r`: rebuilds the content of one session no process is attached to
/// (``ContentReset``): segments formatted anew, region queues and pools emptied, the management
/// segment rewritten from the objects found. Refused (exit 3) while live processes use it.
struct ResetMode {
    let selection: SessionSelection
    let directory: FilePath
    let logger: Logger

    func run(output: Output) throws {
        let target = try selection.resolve()[0]
        let report: ContentReset.Report?
        do {
            report = try ContentReset.reset(target.id, session: target.session, directory: directory, logger: logger)
        } catch {
            Output.printError(error.description)
            throw ExitCode(error.code == .sessionInUse ? 3 : 2)
        }
        guard let report else {
            if output.json {
                try output.emit(["shmid": target.id.rawValue, "result": "not found"])
            } else {
                output.line("No shared memory found for shm id \(target.id); nothing to reset.")
            }
            return
        }
        if output.json {
            try output.emit(report)
            return
        }
        let name = report.sessionName.isEmpty ? "unknown" : "'\(report.sessionName)'"
        output.line(
            "Reset the content of shm id \(report.shmID) (session \(name)); its management segment was \(report.previousManagement) and is written anew.")
        for s in report.segments {
            output.line(
                "   segment \(s.id): \(s.size) bytes, \(s.allocator), \(s.arenas) arena\(s.arenas == 1 ? "" : "s")\(s.messageRecords ? ", message records" : ""): formatted anew, every message in it is gone")
        }
        for r in report.regions {
            let pool = r.referenceCountPoolSize > 0 ? ", reference-count pool of \(r.referenceCountPoolSize) bytes freed" : ""
            let file = r.path.isEmpty ? "" : " (file-backed in '\(r.path)')"
            output.line("   region \(r.id): \(r.size) bytes\(file): memory kept, release queues emptied\(pool)")
        }
        for line in report.removed { output.line("   removed \(line)") }
    }
}
