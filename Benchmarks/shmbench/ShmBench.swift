import ArgumentParser
import CMallocCounter
import Foundation
import Logging
import ShmCleanup
import ShmDevice
import ShmTransport
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shmbench`, the main job: what a FairMQ user needs to decide whether to switch, measured on
/// their own machine in one run.
///
/// Throughput: a sampler and a sink device, two processes in a fresh session, PUSH/PULL over
/// ipc, a new message payload every iteration (as FairMQ's bsampler), every point timed for
/// `--seconds` after a warm-up, `--repetitions` times with the transports alternating.
/// Latency: a ping-pong (PAIR) with a new message every round trip, the receivers sleeping in a
/// blocking receive or spinning for a bounded time. With `--compare-fairmq DIR` (or
/// `$FAIRMQ_BIN`) the original's fairmq-bsampler and fairmq-sink run at the same sizes in the
/// same repetitions. Prints one table, and writes `results.json`, `results.md`, `runs.jsonl`
/// and `throughput.png` under `--results`/<date-time>/.
@main
struct ShmBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shmbench",
        abstract: "Throughput and latency of the shmem and zeromq transports between two device processes (optionally against C++ FairMQ).",
        discussion: "Exit status: 0 done, 1 a run failed or left shared memory behind, 2 bad usage.",
        version: ShmTransportVersion.current)

    @Option(help: "Message sizes in bytes, comma-separated.")
    var sizes: String = "64,1024,65536,1048576,16777216"
    @Option(help: "Transports, comma-separated: shmem, zeromq.")
    var transports: String = "shmem,zeromq"
    @Option(help: "Seconds each point is timed, after the warm-up (record with 1 or more).")
    var seconds: Double = 1
    @Option(help: "Seconds of warm-up before each point.")
    var warmupSeconds: Double = 0.2
    @Option(help: "Repetitions of every point.")
    var repetitions: Int = 3
    @Option(help: "Sizes of the shmem runs whose messages point into an unmanaged region, comma-separated (empty: none).")
    var regionSizes: String = "64,1048576"
    @Option(help: "Sizes of the latency ping-pong, comma-separated (empty: no latency runs).")
    var latencySizes: String = "64,1048576"
    @Option(help: "How ping-pong receivers wait: sleep, spin or both.")
    var wait: String = "sleep,spin"
    @Option(help: "With spin: microseconds a receiver spins before it blocks.")
    var spinMicroseconds: Int = 200
    @Flag(help: "Fill every message completely (as FairMQ's --memset).")
    var memset = false
    @Option(help: "Size of the shared-memory segment in bytes (FairMQ's default).")
    var segmentSize: Int = 2_147_483_648
    @Option(help: "A directory with C++ FairMQ's fairmq-bsampler and fairmq-sink to compare against (default: $FAIRMQ_BIN).")
    var compareFairmq: String?
    @Option(help: "Where the run's folder <date-time>/ is made.")
    var results: String = "results"
    @Flag(help: "Print only results.json on standard output (no table, no progress).")
    var json = false

    // A child's role and settings (internal).
    @Option(help: .hidden) var role: String?
    @Option(help: .hidden) var transport: String = "shmem"
    @Option(help: .hidden) var session: String = ""
    @Option(help: .hidden) var endpoint: String = ""
    @Option(help: .hidden) var size: Int = 0

    var sizeList: [Int] { sizes.split(separator: ",").compactMap { Int($0) } }
    var regionSizeList: [Int] { regionSizes.split(separator: ",").compactMap { Int($0) } }
    var latencySizeList: [Int] { latencySizes.split(separator: ",").compactMap { Int($0) } }
    var kinds: [TransportKind] { transports.split(separator: ",").compactMap { TransportKind(rawValue: String($0)) } }
    var waits: [WaitMode] { wait.split(separator: ",").compactMap { WaitMode(rawValue: String($0)) } }

    mutating func validate() throws {
        guard !sizeList.isEmpty, sizeList.count == sizes.split(separator: ",").count, sizeList.allSatisfy({ $0 >= 8 }) else {
            throw ValidationError("--sizes takes byte counts of at least 8, comma-separated, e.g. 64,1024,1048576")
        }
        guard regionSizeList.count == regionSizes.split(separator: ",").count, regionSizeList.allSatisfy({ $0 >= 8 }) else {
            throw ValidationError("--region-sizes takes byte counts of at least 8, comma-separated, or nothing")
        }
        guard latencySizeList.count == latencySizes.split(separator: ",").count, latencySizeList.allSatisfy({ $0 >= 8 }) else {
            throw ValidationError("--latency-sizes takes byte counts of at least 8, comma-separated, or nothing")
        }
        guard !kinds.isEmpty, kinds.count == transports.split(separator: ",").count else {
            throw ValidationError("--transports takes shmem and zeromq, comma-separated")
        }
        guard !waits.isEmpty, waits.count == wait.split(separator: ",").count else {
            throw ValidationError("--wait takes sleep, spin, or sleep,spin")
        }
        guard seconds >= 0.05, warmupSeconds >= 0, repetitions >= 1, spinMicroseconds >= 0 else {
            throw ValidationError("--seconds must be >= 0.05, --warmup-seconds >= 0, --repetitions >= 1, --spin-microseconds >= 0")
        }
        guard segmentSize >= 2 * (sizeList + latencySizeList).max()! + (1 << 20) else {
            throw ValidationError("--segment-size \(segmentSize) is too small for the largest message; give at least twice its size plus 1 MiB")
        }
        if let role { guard Role(rawValue: role) != nil else { throw ValidationError("unknown role \(role)") } }
    }

    static func main() { CommandMain.run(Self.self) }

    func run() throws {
        if let role { return try runChild(Role(rawValue: role)!) }
        Self.bootstrapLogging()
        let fairmq = try FairMQ(directory: compareFairmq ?? ProcessInfo.processInfo.environment["FAIRMQ_BIN"])
        let run = try BenchRun(options: self, fairmq: fairmq)
        let report = try run.execute()
        let folder = try report.write(under: results)
        if json {
            FileHandle.standardOutput.write(try report.jsonData())
            FileHandle.standardOutput.write(Data("\n".utf8))
        } else {
            print(report.markdownTable())
            print("")
            print("results: \(folder)/results.json, results.md, throughput.png (raw runs: runs.jsonl)")
        }
        if !report.problems.isEmpty {
            for problem in report.problems { FileHandle.standardError.write(Data("shmbench: \(problem)\n".utf8)) }
            throw ExitCode(1)
        }
    }

    /// Warnings and worse on standard error, in the parent and in every child.
    private static func bootstrapLogging() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
    }

    private func runChild(_ role: Role) throws {
        Self.bootstrapLogging()
        guard cmc_is_active() == 1, cmc_separate_libzmq() > 0 else {
            throw BenchError("the allocation counter is not active in this build, or cannot find libzmq's code")
        }
        let settings = ChildSettings(
            role: role, transport: TransportKind(rawValue: transport) ?? .shmem, session: try SessionID(session), endpoint: endpoint,
            size: size, seconds: seconds, warmup: warmupSeconds, memset: memset, segmentSize: segmentSize,
            wait: waits.first ?? .sleep, spinMicroseconds: spinMicroseconds)
        let report = try settings.run(logger: Logger(label: "shmbench-\(role)"))
        FileHandle.standardOutput.write(try JSONEncoder().encode(report))
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}
