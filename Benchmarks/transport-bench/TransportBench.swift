import ArgumentParser
import CMallocCounter
import Foundation
import Logging
import ShmCleanup
import ShmCore
import ShmTransport
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `transport-bench`: moves messages from a sampler (this process) to a sink (a child process)
/// over each transport, like FairMQ's bsampler/sink pair, and prints a Markdown table.
///
/// Every point (transport × message size) runs for `--seconds` after a warm-up, `--repetitions`
/// times, the transports alternating within each repetition; the table gives the median rate and
/// the spread (min–max), heap allocations per message on each side (counted by the linked
/// `CMallocCounter`, every thread of the process) and CPU time per message of both processes.
/// The sampler makes a new message payload every iteration (as FairMQ's bsampler does), in the
/// same message handle (`rebuild(size:)`), and writes a sequence number into its first 8 bytes
/// (`--memset` fills it all); the sink checks the sequence. Raw results (one JSON line a run)
/// go to `--results`. Each run uses its own session, which is gone when the run ends.
@main
struct TransportBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport-bench",
        abstract: "Throughput of the shmem and zeromq transports between two processes (sampler -> sink).")

    @Option(help: "Transports to measure, comma-separated: shmem, zeromq, and zmq-frames (raw libzmq frames of --frame-size bytes, the yardstick of the shmem path).")
    var transports: String = "shmem,zeromq,zmq-frames"
    @Option(help: "Message sizes in bytes, comma-separated.")
    var sizes: String = "64,1024,65536,1048576,16777216"
    @Option(help: "Seconds each point is timed (after the warm-up).")
    var seconds: Double = 1.0
    @Option(help: "Seconds of warm-up before timing starts.")
    var warmupSeconds: Double = 0.2
    @Option(help: "Repetitions of every point.")
    var repetitions: Int = 3
    @Flag(help: "Fill every message completely (adds page-touch and write cost, as FairMQ's --memset).")
    var memset = false
    @Option(help: "Endpoint kind: ipc or tcp.")
    var endpoint: String = "ipc"
    @Option(name: .customLong("shm-dir"), help: "Shm directory (default: $SHMTRANSPORT_SHM_DIR or /dev/shm).")
    var shmDir: String?
    @Option(name: .customLong("segment-size"), help: "Shared-memory segment size in bytes (FairMQ's default).")
    var segmentSize: Int = 2_147_483_648
    @Option(help: "Send and receive high-water marks in messages (FairMQ's channel default).")
    var highWaterMark: Int = 1000
    @Option(help: "Frame size of the zmq-frames yardstick (a shmem metadata frame is 32 bytes).")
    var frameSize: Int = 32
    @Option(help: "Directory for the raw results (one JSON line a run); created if missing.")
    var results: String = "results"

    // Internal: run as the sink child.
    @Option(help: .hidden) var sinkConnect: String?
    @Option(help: .hidden) var transport: String = "shmem"
    @Option(help: .hidden) var session: String = ""
    @Option(help: .hidden) var size: Int = 0

    static let yardstick = "zmq-frames"
    /// The sequence number that ends a run.
    static let endMark = UInt64.max

    var kinds: [String] { transports.split(separator: ",").map(String.init) }
    var sizeList: [Int] { sizes.split(separator: ",").compactMap { Int($0) } }

    mutating func validate() throws {
        guard !kinds.isEmpty, kinds.allSatisfy({ TransportKind(rawValue: $0) != nil || $0 == Self.yardstick }) else {
            throw ValidationError("--transports takes shmem, zeromq and zmq-frames, comma-separated")
        }
        guard sinkConnect != nil || (!sizeList.isEmpty && sizeList.count == sizes.split(separator: ",").count && sizeList.allSatisfy({ $0 >= 8 })) else {
            throw ValidationError("--sizes takes byte counts of at least 8, comma-separated, e.g. 64,1024,1048576")
        }
        guard seconds >= 0.01, warmupSeconds >= 0, repetitions >= 1 else {
            throw ValidationError("--seconds must be >= 0.01, --warmup-seconds >= 0, --repetitions >= 1")
        }
        guard endpoint == "ipc" || endpoint == "tcp" else { throw ValidationError("--endpoint must be ipc or tcp") }
        guard (16...(1 << 20)).contains(frameSize) else { throw ValidationError("--frame-size must be 16 ... 1048576 bytes") }
    }

    func makeConfiguration(session: SessionID) -> TransportConfiguration {
        var configuration = TransportConfiguration(session: session)
        if let shmDir { configuration.shmDirectory = FilePath(shmDir) }
        configuration.segmentSize = segmentSize
        configuration.badAlloc = .forever(intervalMilliseconds: 50)  // as FairMQ's benchmark: wait, never throw
        configuration.defaultLinger = 5000
        return configuration
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        guard cmc_is_active() == 1, cmc_separate_libzmq() > 0 else {
            throw ValidationError("the allocation counter is not active in this build, or cannot find libzmq's code")
        }
        if let sinkConnect {
            try runSink(connect: sinkConnect)
            return
        }
        try FileManager.default.createDirectory(atPath: results, withIntermediateDirectories: true)
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let rawPath = "\(results)/transport-bench-\(stamp).jsonl"
        _ = FileManager.default.createFile(atPath: rawPath, contents: nil)
        guard let raw = FileHandle(forWritingAtPath: rawPath) else { throw ValidationError("cannot write \(rawPath)") }
        defer { try? raw.close() }

        var runs: [String: [Run]] = [:]
        for repetition in 1...repetitions {
            for size in sizeList {
                for kind in kinds where kind != Self.yardstick || size == sizeList[0] {
                    let run = try measure(kind, size: kind == Self.yardstick ? frameSize : size)
                    runs["\(kind) \(size)", default: []].append(run)
                    raw.write(Data((run.json(kind: kind, repetition: repetition, endpoint: endpoint, memset: memset) + "\n").utf8))
                }
            }
        }
        print("| transport | size | msgs/s (median) | spread (min–max) | GiB/s | allocs/msg sampler (ours + libzmq) | allocs/msg sink (ours + libzmq) | CPU µs/msg (both) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for size in sizeList {
            for kind in kinds where kind != Self.yardstick || size == sizeList[0] {
                let list = runs["\(kind) \(size)"]!
                let rates = list.map(\.rate).sorted()
                let median = rates[rates.count / 2]
                let shown = kind == Self.yardstick ? frameSize : size
                let best = list.min { abs($0.rate - median) < abs($1.rate - median) }!
                print(
                    "| \(kind) | \(Self.bytes(shown)) | \(Self.count(median)) | \(Self.count(rates.first!))–\(Self.count(rates.last!)) | \(String(format: "%.2f", median * Double(shown) / Double(1 << 30))) | \(best.samplerAllocations.perMessage(best.samplerMessages)) | \(best.sinkAllocations.perMessage(best.messages)) | \(String(format: "%.2f", best.cpuMicrosecondsPerMessage)) |"
                )
            }
        }
        print("")
        print("raw results: \(rawPath)")
    }

    static func bytes(_ n: Int) -> String {
        if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
        if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
        return "\(n) B"
    }

    static func count(_ rate: Double) -> String {
        rate >= 1e6 ? String(format: "%.2f M", rate / 1e6) : String(format: "%.0f k", rate / 1e3)
    }

    /// One timed run of one point.
    struct Run {
        var size: Int
        var messages: UInt64
        var seconds: Double
        var samplerAllocations: Allocations
        var samplerMessages: UInt64
        var sinkAllocations: Allocations
        var cpuSeconds: Double
        var rate: Double { Double(messages) / seconds }
        var cpuMicrosecondsPerMessage: Double { cpuSeconds * 1e6 / Double(max(1, messages)) }

        func json(kind: String, repetition: Int, endpoint: String, memset: Bool) -> String {
            "{\"transport\":\"\(kind)\",\"size\":\(size),\"repetition\":\(repetition),\"endpoint\":\"\(endpoint)\",\"memset\":\(memset),\"messages\":\(messages),\"seconds\":\(seconds),\"messages_per_second\":\(rate),\"sampler_allocations\":\(samplerAllocations.ours),\"sampler_libzmq_allocations\":\(samplerAllocations.libzmq),\"sampler_messages\":\(samplerMessages),\"sink_allocations\":\(sinkAllocations.ours),\"sink_libzmq_allocations\":\(sinkAllocations.libzmq),\"cpu_seconds\":\(cpuSeconds)}"
        }
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Runs a sampler here and a sink child for one point; returns the sink's timed figures.
    func measure(_ kind: String, size: Int) throws -> Run {
        let session = try SessionID("bench-\(getpid())-\(kind)-\(size)")
        var ipcDirectory: String?
        if endpoint == "ipc" {
            var template = Array("/tmp/tbench.XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
                throw ValidationError("mkdtemp failed under /tmp")
            }
            ipcDirectory = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        }
        defer { if let ipcDirectory { try? FileManager.default.removeItem(atPath: ipcDirectory) } }
        let wanted = ipcDirectory.map { "ipc://\($0)/data" } ?? "tcp://127.0.0.1:*"
        let sampler: any Sampler = kind == Self.yardstick
            ? try FrameSampler(bind: wanted, frameSize: size, highWaterMark: highWaterMark)
            : try MessageSampler(
                kind: TransportKind(rawValue: kind)!, configuration: makeConfiguration(session: session), bind: wanted,
                size: size, memset: memset, highWaterMark: highWaterMark)

        let sink = Process()
        sink.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        sink.arguments = [
            "--sink-connect", sampler.address, "--transport", kind, "--session", session.rawValue, "--size", "\(size)",
            "--segment-size", "\(segmentSize)", "--high-water-mark", "\(highWaterMark)",
        ] + (shmDir.map { ["--shm-dir", $0] } ?? [])
        let output = Pipe()
        sink.standardOutput = output
        try sink.run()
        let cpuBefore = Self.cpuSeconds()
        let sent = try sampler.run(warmup: warmupSeconds, seconds: seconds)
        let cpuSampler = Self.cpuSeconds() - cpuBefore
        let reply = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        sink.waitUntilExit()
        let fields = reply.split(whereSeparator: \.isWhitespace)
        guard sink.terminationStatus == 0, fields.count == 6, fields[0] == "received",
            let messages = UInt64(fields[1]), let timed = Double(fields[2]), let ours = UInt64(fields[3]),
            let libzmq = UInt64(fields[4]), let cpuSink = Double(fields[5])
        else {
            throw ValidationError("\(kind) \(size): the sink failed (status \(sink.terminationStatus)): \(reply)")
        }
        return Run(
            size: size, messages: messages, seconds: timed, samplerAllocations: sent.allocations, samplerMessages: sent.messages,
            sinkAllocations: Allocations(ours: ours, libzmq: libzmq), cpuSeconds: cpuSampler * Double(messages) / Double(max(1, sent.messages)) + cpuSink)
    }

    func runSink(connect: String) throws {
        let receiver: any Receiver = transport == Self.yardstick
            ? try FrameReceiver(connect: connect, frameSize: size, highWaterMark: highWaterMark)
            : try MessageReceiver(
                kind: TransportKind(rawValue: transport)!, configuration: makeConfiguration(session: try SessionID(session)),
                connect: connect, size: size, highWaterMark: highWaterMark)
        // The sampler's warm-up messages carry sequence numbers with the top bit set; the timed
        // ones count from 0; the end mark stops the run.
        var expected: UInt64 = 0
        var start = 0.0
        var allocationsBefore = Allocations.now()
        var cpuBefore = 0.0
        var counted: UInt64 = 0
        while true {
            let sequence = try receiver.receive()
            if sequence == Self.endMark { break }
            if sequence & (1 << 63) != 0 { continue }
            guard sequence == expected else { throw ValidationError("sink: expected message \(expected), got \(sequence)") }
            if sequence == 0 {
                start = Self.now()
                allocationsBefore = Allocations.now()
                cpuBefore = Self.cpuSeconds()
            }
            expected += 1
            counted += 1
        }
        let elapsed = Self.now() - start
        let allocations = Allocations.now() - allocationsBefore
        let cpu = Self.cpuSeconds() - cpuBefore
        guard counted > 0 else { throw ValidationError("sink: no timed message arrived") }
        print("received \(counted) \(elapsed) \(allocations.ours) \(allocations.libzmq) \(cpu)")
    }
}

// MARK: The two ends

protocol Sampler {
    var address: String { get }
    /// Sends warm-up messages for `warmup` seconds, timed ones for `seconds`, then the end mark.
    func run(warmup: Double, seconds: Double) throws -> (messages: UInt64, allocations: Allocations)
}

/// Heap allocations of this process (every thread): ours, and those libzmq made itself.
struct Allocations {
    var ours: UInt64
    var libzmq: UInt64

    static func now() -> Allocations {
        let libzmq = cmc_process_libzmq_allocations()
        return Allocations(ours: cmc_process_allocations() - libzmq, libzmq: libzmq)
    }

    static func - (a: Allocations, b: Allocations) -> Allocations {
        Allocations(ours: a.ours - b.ours, libzmq: a.libzmq - b.libzmq)
    }

    func perMessage(_ messages: UInt64) -> String {
        let n = Double(max(1, messages))
        return String(format: "%.3f + %.3f", Double(ours) / n, Double(libzmq) / n)
    }
}

protocol Receiver {
    /// Receives one message and returns its sequence number.
    func receive() throws -> UInt64
}

extension Sampler {
    /// The loop both samplers share: `send(sequence)` sends one message.
    func loop(warmup: Double, seconds: Double, send: (UInt64) throws -> Void) throws -> (messages: UInt64, allocations: Allocations) {
        var sequence: UInt64 = 1 << 63
        let warmupEnd = TransportBench.now() + warmup
        while TransportBench.now() < warmupEnd {
            try send(sequence)
            sequence += 1
        }
        let allocationsBefore = Allocations.now()
        sequence = 0
        let end = TransportBench.now() + seconds
        while true {
            // Read the clock every 64 messages: a clock read costs about as much as a small message.
            if sequence & 63 == 0 && TransportBench.now() >= end { break }
            try send(sequence)
            sequence += 1
        }
        let allocations = Allocations.now() - allocationsBefore
        try send(TransportBench.endMark)
        return (sequence, allocations)
    }
}

/// A sampler of the ShmTransport API: a new payload every message, in one reused handle.
struct MessageSampler: Sampler {
    let factory: TransportFactory
    let socket: Socket
    let address: String
    let size: Int
    let memset: Bool

    init(kind: TransportKind, configuration: TransportConfiguration, bind: String, size: Int, memset: Bool, highWaterMark: Int) throws {
        factory = try TransportFactory(kind, configuration: configuration, logger: Logger(label: "transport-bench"))
        socket = try factory.makeSocket(.push)
        try socket.setOption(.sendHighWaterMark, highWaterMark)
        address = try socket.bind(bind)
        self.size = size
        self.memset = memset
    }

    func run(warmup: Double, seconds: Double) throws -> (messages: UInt64, allocations: Allocations) {
        let message = factory.makeMessage()
        let size = self.size
        let memset = self.memset
        let socket = self.socket
        return try loop(warmup: warmup, seconds: seconds) { sequence in
            try message.rebuild(size: size)
            message.withUnsafeMutableBytes { bytes in
                if memset { _ = Glibc.memset(bytes.baseAddress!, Int32(truncatingIfNeeded: sequence), bytes.count) }
                bytes.storeBytes(of: sequence, toByteOffset: 0, as: UInt64.self)
            }
            let result = socket.send(message, timeout: 30_000)
            guard case .transferred = result else { throw ValidationError("send \(sequence) failed: \(result)") }
        }
    }
}

struct MessageReceiver: Receiver {
    let factory: TransportFactory
    let socket: Socket
    let message: Message
    let size: Int

    init(kind: TransportKind, configuration: TransportConfiguration, connect: String, size: Int, highWaterMark: Int) throws {
        factory = try TransportFactory(kind, configuration: configuration, logger: Logger(label: "transport-bench-sink"))
        socket = try factory.makeSocket(.pull)
        try socket.setOption(.receiveHighWaterMark, highWaterMark)
        try socket.connect(connect)
        message = factory.makeMessage()
        self.size = size
    }

    func receive() throws -> UInt64 {
        let result = socket.receive(message, timeout: 30_000)
        guard case .transferred(let n) = result, n == size else { throw ValidationError("sink: receive: \(result)") }
        return message.withUnsafeBytes { $0.load(fromByteOffset: 0, as: UInt64.self) }
    }
}
