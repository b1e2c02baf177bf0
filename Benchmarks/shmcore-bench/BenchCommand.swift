import ArgumentParser
import Foundation
import Logging
import ShmCleanup
import ShmCore
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Allocate+free pairs per second: `SessionMemory` next to the system `malloc`, in one process
/// and in two processes at once, measured in the same run. Prints a Markdown table.
@main
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shmcore-bench",
        abstract: "Benchmark SessionMemory allocate+release pairs against malloc+free.",
        subcommands: [Compare.self, Child.self, PagesAndBulk.self], defaultSubcommand: Compare.self)
}

func monotonicNanos() -> UInt64 { MonotonicClock.nanoseconds() }

/// Every allocated address is folded into this, so the optimiser cannot drop a malloc+free pair.
nonisolated(unsafe) var sink: UInt = 0

/// The timed loops. Each pair writes one byte into the block so neither side can skip work.
enum Loop {
    static func malloc(size: Int, pairs: Int) -> UInt64 {
        let start = monotonicNanos()
        for i in 0..<pairs {
            let p = Glibc.malloc(size)!
            p.storeBytes(of: UInt8(truncatingIfNeeded: i), as: UInt8.self)
            sink &+= UInt(bitPattern: p)
            free(p)
        }
        return monotonicNanos() - start
    }

    static func shm(_ memory: SessionMemory, size: Int, pairs: Int) throws -> UInt64 {
        let start = monotonicNanos()
        for i in 0..<pairs {
            let block = try memory.allocate(size: size)
            let p = memory.address(of: block)
            p.storeBytes(of: UInt8(truncatingIfNeeded: i), as: UInt8.self)
            sink &+= UInt(bitPattern: p)
            memory.release(block)
        }
        return monotonicNanos() - start
    }
}

struct Child: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One timed process (started by compare).", shouldDisplay: false)

    @Option var kind: String
    @Option var size: Int
    @Option var pairs: Int
    @Option var startAt: UInt64
    @Option var session: String = ""
    @Option var dir: String = ""
    @Option var segmentSize: Int = 0
    @Option var arenas: Int?
    @Option var cacheBytes: Int?
    @Flag var messageRecords = false

    func run() throws {
        var memory: SessionMemory?
        if kind == "shm" {
            let config = SessionConfiguration(
                session: try SessionID(session), directory: FilePath(dir), segmentSize: segmentSize, arenaCount: arenas,
                localCacheBytes: cacheBytes, messageRecords: messageRecords)
            memory = try SessionMemory(config, logger: Logger(label: "shmcore-bench"))
            _ = try Loop.shm(memory!, size: size, pairs: min(pairs, 10_000))  // warm up
        } else {
            _ = Loop.malloc(size: size, pairs: min(pairs, 10_000))
        }
        while monotonicNanos() < startAt { usleep(100) }
        let elapsed = try memory.map { try Loop.shm($0, size: size, pairs: pairs) } ?? Loop.malloc(size: size, pairs: pairs)
        print(elapsed)
        if sink == 1 { print("") }
        memory?.detach()
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run every case and print a Markdown table.")

    @Option(help: "Directory for the benchmark's session (a tmpfs).") var dir: String
    @Option(help: "Pairs per process for 64 B and 4 KiB blocks.") var pairs: Int = 2_000_000
    @Option(help: "Pairs per process for 1 MiB blocks.") var largePairs: Int = 500_000
    @Option(help: "Segment size.") var segmentSize: Int = 256 << 20
    @Option(help: "Designs to compare (comma separated): 'default' (arenas + per-process cache), 'records' (the default with message records), 'arenas' (arenas, no cache), 'single' (one lock per segment and no cache, as FairMQ).")
    var variants: String = "default,arenas,single"
    @Option(help: "Repetitions; the best is kept.") var repeats: Int = 3

    func run() throws {
        let choices: [(name: String, arenas: Int?, cache: Int?, records: Bool)] = try variants.split(separator: ",").map {
            switch $0 {
            case "default": return ("arenas + cache", nil, nil, false)
            case "records": return ("arenas + cache + message records", nil, nil, true)
            case "arenas": return ("arenas, no cache", nil, 0, false)
            case "single": return ("one lock, no cache", 1, 0, false)
            default: throw ValidationError("unknown variant '\($0)'; use default, records, arenas or single")
            }
        }
        var logger = Logger(label: "shmcore-bench")
        logger.logLevel = .warning
        print("| block size | design | malloc, 1 process | shm, 1 process | shm ÷ malloc (1 process) | malloc, 2 processes (sum) | shm, 2 processes (sum) | shm 2 processes ÷ shm 1 process |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (index, choice) in choices.enumerated() {
            let session = try SessionID("shmcore-bench-\(getpid())-\(index)")
            let config = SessionConfiguration(
                session: session, directory: FilePath(dir), segmentSize: segmentSize, arenaCount: choice.arenas,
                localCacheBytes: choice.cache, messageRecords: choice.records)
            let memory = try SessionMemory(config, logger: logger)
            defer { memory.detach() }
            let arenasUsed = "\(choice.name) (\(choice.arenas ?? Self.defaultArenas(segmentSize)) arena\(choice.arenas == 1 ? "" : "s"))"
            for size in [64, 4096, 1 << 20] {
                let n = size >= 1 << 20 ? largePairs : pairs
                var m1 = UInt64.max, s1 = UInt64.max, m2 = UInt64.max, s2 = UInt64.max
                for _ in 0..<repeats {
                    m1 = min(m1, Loop.malloc(size: size, pairs: n))
                    s1 = min(s1, try Loop.shm(memory, size: size, pairs: n))
                    m2 = min(m2, try twoProcesses(kind: "malloc", size: size, pairs: n, config: config))
                    s2 = min(s2, try twoProcesses(kind: "shm", size: size, pairs: n, config: config))
                }
                let rate = { (pairs: Int, nanos: UInt64) in Double(pairs) / (Double(nanos) / 1e9) }
                let rm1 = rate(n, m1), rs1 = rate(n, s1), rm2 = rate(2 * n, m2), rs2 = rate(2 * n, s2)
                print("| \(Self.sizeName(size)) | \(arenasUsed) | \(Self.format(rm1)) | \(Self.format(rs1)) | \(String(format: "%.2f", rs1 / rm1)) | \(Self.format(rm2)) | \(Self.format(rs2)) | \(String(format: "%.2f", rs2 / rs1)) |")
                fflush(nil)
            }
            if sink == 1 { print("") }
            guard memory.freeMemory(segmentID: 0) == memory.heapSize(segmentID: 0) else {
                throw ValidationError("the benchmark leaked shared memory: \(memory.freeMemory(segmentID: 0)) of \(memory.heapSize(segmentID: 0)) free")
            }
        }
    }

    static func defaultArenas(_ size: Int) -> Int { size < 64 << 20 ? 1 : min(8, 1 + (size >> 26)) }

    static func sizeName(_ size: Int) -> String {
        size >= 1 << 20 ? "\(size >> 20) MiB" : size >= 1024 ? "\(size >> 10) KiB" : "\(size) B"
    }

    static func format(_ rate: Double) -> String {
        rate >= 1e6 ? String(format: "%.1f M/s", rate / 1e6) : String(format: "%.0f k/s", rate / 1e3)
    }

    /// Two child processes start the same loop at the same instant; returns the slower's time.
    func twoProcesses(kind: String, size: Int, pairs: Int, config: SessionConfiguration) throws -> UInt64 {
        let startAt = monotonicNanos() + 400_000_000
        var arguments = ["child", "--kind", kind, "--size", "\(size)", "--pairs", "\(pairs)", "--start-at", "\(startAt)"]
        if kind == "shm" {
            arguments += [
                "--session", config.session.rawValue, "--dir", config.directory.string, "--segment-size", "\(config.segmentSize)",
            ]
            if let a = config.arenaCount { arguments += ["--arenas", "\(a)"] }
            if let c = config.localCacheBytes { arguments += ["--cache-bytes", "\(c)"] }
            if config.messageRecords { arguments.append("--message-records") }
        }
        let children = try (0..<2).map { _ -> (Process, Pipe) in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            p.arguments = arguments
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            return (p, out)
        }
        var slowest: UInt64 = 0
        for (p, out) in children {
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            guard p.terminationStatus == 0, let nanos = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw ValidationError("a benchmark child failed (status \(p.terminationStatus)): \(text)")
            }
            slowest = max(slowest, nanos)
        }
        return slowest
    }
}
