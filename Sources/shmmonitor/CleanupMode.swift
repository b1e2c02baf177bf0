import ArgumentParser
import Logging
import ShmCleanup
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `--cleanup/-c`: removes the selected sessions (FairMQ's `CleanupFull`) or, with
/// `--all-sessions`, `--job` or `--session-prefix`, sweeps every matching session that no live
/// process uses.
struct CleanupMode {
    let selection: SessionSelection
    let options: CleanupOptions
    let directory: FilePath
    let logger: Logger

    func run(output: Output) throws {
        let monitor = Monitor(directory: directory, logger: logger)
        let engineOptions = SessionCleaner.Options(force: options.force, dryRun: options.dryRun)
        let report: CleanupReport
        var sessionOf: [ShmID: SessionID] = [:]
        if options.isSweep {
            let uid = UInt32(selection.userID >= 0 ? uid_t(selection.userID) : geteuid())
            let rule: SweepSelection.Rule =
                !options.job.isEmpty ? .slurmJobs(Set(options.job))
                : options.sessionPrefix.map { .sessionPrefix($0) } ?? .allSessions
            report = try monitor.sweep(SweepSelection(rule, userID: uid), options: engineOptions)
        } else {
            let targets = try selection.resolve()
            for t in targets { if let s = t.session { sessionOf[t.id] = s } }
            report = try monitor.clean(targets.map(\.id), options: engineOptions)
        }

        if output.json {
            try output.emit(report)
        } else {
            for outcome in report.sessions { print(outcome, session: sessionOf[outcome.shmID], output: output) }
            if options.isSweep && report.sessions.isEmpty { output.line("No matching sessions found.") }
        }
        throw ExitCode(exitStatus(report))
    }

    private func exitStatus(_ report: CleanupReport) -> Int32 {
        if options.fairmqCompat { return 0 }
        if report.hasErrors { return 2 }
        if report.refusedInUse && !options.isSweep { return 3 }
        if options.requireMatch && !report.matchedAnything { return 1 }
        return 0
    }

    private func print(_ outcome: CleanupReport.SessionOutcome, session: SessionID?, output: Output) {
        if let session {
            output.line("Cleanup called with session id '\(session)', translating to shared memory id '\(outcome.shmID)'")
        }
        let name = outcome.sessionName.map { " (session '\($0)')" } ?? ""
        output.line("Cleaning up for shared memory id '\(outcome.shmID)'\(name)...")
        switch outcome.status {
        case .nothingFound:
            output.line("No objects of shared memory id '\(outcome.shmID)' found. Nothing to clean.")
        case .refusedInUse, .refusedNotOwner:
            Output.printError(outcome.message ?? "refused")
        default:
            for object in outcome.objects {
                switch object.action {
                case .removed: output.line("Successfully removed '\(object.path)'.")
                case .alreadyGone: output.line("Did not remove '\(object.path)'. Already removed?")
                case .wouldRemove: output.line("Would remove '\(object.path)' (\(object.size) bytes).")
                case .kept: output.line("Kept '\(object.path)': \(object.reason ?? "kept").")
                case .failed: Output.printError("could not remove '\(object.path)': \(object.reason ?? "error")")
                }
            }
            if let message = outcome.message { Output.printError(message) }
        }
    }
}
