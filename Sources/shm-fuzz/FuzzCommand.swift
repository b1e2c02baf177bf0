import ArgumentParser
import Foundation
import Logging
import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shm-fuzz`: feeds hostile bytes to every reader of what other processes write — metadata
/// frames, management segments, segment headers and chunks, region queues and pools — and
/// checks that each returns (accepting or refusing) without crashing. Seeded mode (the default)
/// mutates valid inputs deterministically, so a seed repeats a run; in a libFuzzer build
/// (`swift build -Xswiftc -sanitize=fuzzer ...`, see docs/reliability.md) `--libfuzzer` hands the
/// target to libFuzzer's coverage-guided driver. An input that crashes the process is written
/// to `--crash-file` first; `--replay` runs one saved input. Exit status: 0 every input
/// returned, 1 a reader went wrong (or a crash, by its signal), 2 bad usage.
@main
struct FuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shm-fuzz", abstract: "Feed hostile bytes to the readers of shared-memory tables and metadata frames.")

    enum Target: String, ExpressibleByArgument, CaseIterable {
        case metadata, management, segment, regions, all
    }

    @Argument(help: "metadata, management, segment, regions, or all (each in turn).")
    var target: Target
    @Option(help: "Inputs per target (seeded mode).")
    var inputs: Int = 100_000
    @Option(help: "Seed of the seeded mode (printed; the same seed gives the same inputs).")
    var seed: UInt64 = 1
    @Option(help: "Where an input that crashes the process is written (default: results/fuzz/crash-<target>-<pid>.bin).")
    var crashFile: String?
    @Option(help: "Run the target once on the bytes of this file (a saved crash) and exit.")
    var replay: String?
    @Flag(help: "Hand the target to libFuzzer (a build with -sanitize=fuzzer only); arguments after -- go to libFuzzer.")
    var libfuzzer = false
    @Argument(parsing: .postTerminator, help: "libFuzzer's arguments (after --), e.g. -runs=1000000 -max_len=8192.")
    var libfuzzerArguments: [String] = []

    func validate() throws {
        guard inputs > 0 else { throw ValidationError("--inputs \(inputs) must be 1 or more") }
        guard !(libfuzzer || replay != nil) || target != .all else { throw ValidationError("--libfuzzer and --replay take one target, not 'all'") }
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .critical  // refusals are the point; only a failure to start speaks
            return handler
        }
        let fixture = try FuzzSession(logger: Logger(label: "shm-fuzz"))
        var failure: (any Error)?
        do {
            let targets = target == .all ? Target.allCases.filter { $0 != .all } : [target]
            for name in targets { try run(name, fixture) }
        } catch { failure = error }
        let left = fixture.remove()
        if let failure { throw failure }
        if !left.isEmpty { throw FuzzFailure("the run left \(left.joined(separator: ", "))") }
    }

    private func run(_ name: Target, _ fixture: FuzzSession) throws {
        let target: any FuzzTarget
        switch name {
        case .metadata: target = MetadataTarget(fixture)
        case .management: target = ManagementTarget(fixture)
        case .segment: target = try SegmentTarget(fixture)
        case .regions: target = RegionTablesTarget(fixture)
        case .all: return
        }
        if let replay {
            guard let bytes = FileManager.default.contents(atPath: replay) else { throw FuzzFailure("cannot read --replay \(replay)") }
            let accepted = [UInt8](bytes).withUnsafeBytes { target.run($0) }
            print("shm-fuzz: \(name): replayed \(bytes.count) bytes: \(accepted ? "accepted" : "refused"), no crash")
            return
        }
        if libfuzzer {
            // libFuzzer saves crashing inputs itself and ends the process with exit(): the
            // fixture session goes then
            LibFuzzer.atExit = { _ = fixture.remove() }
            try LibFuzzer.run(target, arguments: ["shm-fuzz"] + libfuzzerArguments)
            return
        }
        let crashPath = crashFile ?? "results/fuzz/crash-\(name)-\(getpid()).bin"
        try CrashCapture.arm(path: crashPath)
        defer { CrashCapture.disarm() }
        var mutator = Mutator(seed: seed)
        var accepted = 0
        let start = Date()
        for seedInput in target.seeds where !seedInput.isEmpty {
            guard seedInput.withUnsafeBytes({ CrashCapture.running($0) { target.run($0) } }) else {
                throw FuzzFailure("\(name): a valid seed input was refused; the target is set up wrongly")
            }
        }
        for _ in 0..<inputs {
            let input = target.generate(&mutator)
            if input.withUnsafeBytes({ CrashCapture.running($0) { target.run($0) } }) { accepted += 1 }
        }
        let seconds = Date().timeIntervalSince(start)
        print("shm-fuzz: \(name): \(inputs) inputs (seed \(seed)), 0 crashes, \(accepted) accepted, \(inputs - accepted) refused, \(String(format: "%.1f", seconds)) s")

    }
}
