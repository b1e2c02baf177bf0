import Foundation
import ShmTransport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Everything a run measured, behind the table, `results.json`, `results.md` and the plot.
struct Report: Encodable {
    struct Machine: Encodable {
        var cpu: String
        var cores: Int
        var memoryGiB: Double
        var kernel: String
        var hostname: String
    }

    struct Settings: Encodable {
        var sizes: [Int]
        var transports: [String]
        var secondsPerPoint: Double
        var warmupSeconds: Double
        var repetitions: Int
        var memset: Bool
        var segmentSize: Int
        var latencySizes: [Int]
        /// Sizes of the shmem runs with region messages (`shmem-region` rows).
        var regionSizes: [Int]
        var wait: [String]
        var spinMicroseconds: Int
        var pattern = "PUSH/PULL over ipc, sampler and sink devices in two processes, a new message payload every iteration"
        var latencyPattern = "PAIR over ipc, ping and pong in two processes, a new message every round trip; one-way = round trip / 2"
    }

    /// One repetition of one throughput point.
    struct Repetition: Encodable {
        var repetition: Int
        var messagesPerSecond: Double
        var messages: UInt64
        var seconds: Double
        var cpuMicrosecondsPerMessage: Double
        var samplerAllocationsPerMessage: Double
        var samplerLibzmqAllocationsPerMessage: Double
        var sinkAllocationsPerMessage: Double
        var sinkLibzmqAllocationsPerMessage: Double
    }

    struct Throughput: Encodable {
        var transport: String
        var size: Int
        var repetitions: [Repetition] = []
        var medianMessagesPerSecond: Double = 0
        var minMessagesPerSecond: Double = 0
        var maxMessagesPerSecond: Double = 0
        var gigabytesPerSecond: Double = 0
        var cpuMicrosecondsPerMessage: Double = 0
        /// Heap allocations per message of the median repetition, both processes, ours and libzmq's.
        var allocationsPerMessage: Double = 0
        var libzmqAllocationsPerMessage: Double = 0
        var fairmqMessagesPerSecond: [Double] = []
        var fairmqMedianMessagesPerSecond: Double?
        /// Ours over FairMQ's, medians.
        var ratioToFairMQ: Double?
    }

    struct Latency: Encodable {
        var transport: String
        var size: Int
        var wait: String
        var roundTrips: UInt64
        var p50Microseconds: Double
        var p99Microseconds: Double
        var p999Microseconds: Double
        var minMicroseconds: Double
        var maxMicroseconds: Double
        var allocationsPerRoundTrip: Double
        var cpuMicrosecondsPerRoundTrip: Double
    }

    var date: String
    var command: String
    var machine: Machine
    var settings: Settings
    var fairmq: String?
    var throughput: [Throughput] = []
    var latency: [Latency] = []
    var problems: [String] = []
    private var stamp: String

    init(options: ShmBench, started: Date, fairmq: String?) {
        let formatter = ISO8601DateFormatter()
        date = formatter.string(from: started)
        stamp = date.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: "-", with: "")
        command = CommandLine.arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
        machine = Self.machine()
        settings = Settings(
            sizes: options.sizeList, transports: options.kinds.map(\.rawValue), secondsPerPoint: options.seconds,
            warmupSeconds: options.warmupSeconds, repetitions: options.repetitions, memset: options.memset,
            segmentSize: options.segmentSize, latencySizes: options.latencySizeList,
            regionSizes: options.regionSizeList, wait: options.waits.map(\.rawValue),
            spinMicroseconds: options.spinMicroseconds)
        self.fairmq = fairmq
    }

    private mutating func entry(_ transport: String, _ size: Int) -> Int {
        if let i = throughput.firstIndex(where: { $0.transport == transport && $0.size == size }) { return i }
        throughput.append(Throughput(transport: transport, size: size))
        return throughput.count - 1
    }

    mutating func add(throughput point: BenchRun.ThroughputPoint, transport: String, size: Int, repetition: Int) {
        let i = entry(transport, size)
        let sink = point.sink
        let sampler = point.sampler
        let rate = Double(sink.messages) / max(sink.seconds, 1e-9)
        let perSampled = { (n: UInt64) in Double(n) / Double(max(1, sampler.messages)) }
        let perSunk = { (n: UInt64) in Double(n) / Double(max(1, sink.messages)) }
        throughput[i].repetitions.append(Repetition(
            repetition: repetition, messagesPerSecond: rate, messages: sink.messages, seconds: sink.seconds,
            cpuMicrosecondsPerMessage: (sampler.cpuSeconds / Double(max(1, sampler.messages)) + sink.cpuSeconds / Double(max(1, sink.messages))) * 1e6,
            samplerAllocationsPerMessage: perSampled(sampler.allocations), samplerLibzmqAllocationsPerMessage: perSampled(sampler.libzmqAllocations),
            sinkAllocationsPerMessage: perSunk(sink.allocations), sinkLibzmqAllocationsPerMessage: perSunk(sink.libzmqAllocations)))
        summarize(i)
    }

    mutating func add(fairmqRate rate: Double, transport: String, size: Int, repetition: Int) {
        let i = entry(transport, size)
        throughput[i].fairmqMessagesPerSecond.append(rate)
        summarize(i)
    }

    mutating func add(latency ping: ChildReport, transport: String, size: Int, wait: WaitMode) {
        guard let l = ping.latency else { return }
        latency.append(Latency(
            transport: transport, size: size, wait: wait.rawValue, roundTrips: ping.messages, p50Microseconds: l.p50,
            p99Microseconds: l.p99, p999Microseconds: l.p999, minMicroseconds: l.min, maxMicroseconds: l.max,
            allocationsPerRoundTrip: Double(ping.allocations + ping.libzmqAllocations) / Double(max(1, ping.messages)),
            cpuMicrosecondsPerRoundTrip: ping.cpuSeconds * 1e6 / Double(max(1, ping.messages))))
    }

    private mutating func summarize(_ i: Int) {
        var t = throughput[i]
        if !t.repetitions.isEmpty {
            let sorted = t.repetitions.sorted { $0.messagesPerSecond < $1.messagesPerSecond }
            let median = sorted[sorted.count / 2]
            t.medianMessagesPerSecond = median.messagesPerSecond
            t.minMessagesPerSecond = sorted.first!.messagesPerSecond
            t.maxMessagesPerSecond = sorted.last!.messagesPerSecond
            t.gigabytesPerSecond = median.messagesPerSecond * Double(t.size) / 1e9
            t.cpuMicrosecondsPerMessage = median.cpuMicrosecondsPerMessage
            t.allocationsPerMessage = median.samplerAllocationsPerMessage + median.sinkAllocationsPerMessage
            t.libzmqAllocationsPerMessage = median.samplerLibzmqAllocationsPerMessage + median.sinkLibzmqAllocationsPerMessage
        }
        if !t.fairmqMessagesPerSecond.isEmpty {
            let sorted = t.fairmqMessagesPerSecond.sorted()
            t.fairmqMedianMessagesPerSecond = sorted[sorted.count / 2]
            if t.medianMessagesPerSecond > 0, let f = t.fairmqMedianMessagesPerSecond, f > 0 { t.ratioToFairMQ = t.medianMessagesPerSecond / f }
        }
        throughput[i] = t
    }

    // MARK: Output

    func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return try encoder.encode(self)
    }

    static func bytes(_ n: Int) -> String {
        if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
        if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
        return "\(n) B"
    }

    static func rate(_ r: Double) -> String {
        r >= 1e6 ? String(format: "%.2f M", r / 1e6) : r >= 1e3 ? String(format: "%.1f k", r / 1e3) : String(format: "%.0f", r)
    }

    /// One table: a row per transport and size; latency columns where the ping-pong ran.
    func markdownTable() -> String {
        let compare = fairmq != nil
        var header = "| transport | size | msgs/s (median) | spread (min–max) | GB/s | CPU µs/msg | mallocs/msg (ours + libzmq) |"
        var rule = "|---|---:|---:|---:|---:|---:|---:|"
        if compare {
            header += " FairMQ msgs/s | ours / FairMQ |"
            rule += "---:|---:|"
        }
        header += " one-way latency p50 / p99, sleeping | … spinning |"
        rule += "---:|---:|"
        var lines = [header, rule]
        for t in throughput {
            var line = "| \(t.transport) | \(Self.bytes(t.size)) | \(Self.rate(t.medianMessagesPerSecond)) | \(Self.rate(t.minMessagesPerSecond))–\(Self.rate(t.maxMessagesPerSecond)) | \(String(format: "%.2f", t.gigabytesPerSecond)) | \(String(format: "%.2f", t.cpuMicrosecondsPerMessage)) | \(String(format: "%.3f + %.3f", t.allocationsPerMessage, t.libzmqAllocationsPerMessage)) |"
            if compare {
                line += " \(t.fairmqMedianMessagesPerSecond.map(Self.rate) ?? "–") | \(t.ratioToFairMQ.map { String(format: "%.2f×", $0) } ?? "–") |"
            }
            for wait in ["sleep", "spin"] {
                if let l = latency.first(where: { $0.transport == t.transport && $0.size == t.size && $0.wait == wait }) {
                    line += String(format: " %.1f / %.1f µs |", l.p50Microseconds, l.p99Microseconds)
                } else {
                    line += " – |"
                }
            }
            lines.append(line)
        }
        for l in latency where !throughput.contains(where: { $0.transport == l.transport && $0.size == l.size }) {
            lines.append("| \(l.transport) | \(Self.bytes(l.size)) | – | – | – | – | – |\(compare ? " – | – |" : "") \(l.wait == "sleep" ? String(format: "%.1f / %.1f µs", l.p50Microseconds, l.p99Microseconds) : "–") | \(l.wait == "spin" ? String(format: "%.1f / %.1f µs", l.p50Microseconds, l.p99Microseconds) : "–") |")
        }
        return lines.joined(separator: "\n")
    }

    func markdown() -> String {
        """
        # shmbench run \(date)

        Command: `\(command)`

        Machine: \(machine.cpu), \(machine.cores) cores, \(String(format: "%.0f", machine.memoryGiB)) GiB, Linux \(machine.kernel)

        Throughput: \(settings.pattern); each point timed \(settings.secondsPerPoint) s after \(settings.warmupSeconds) s of warm-up, \(settings.repetitions) repetitions, transports alternating\(settings.memset ? ", every byte written" : ""). \
        Latency: \(settings.latencyPattern); spinning receivers spin up to \(settings.spinMicroseconds) µs before they block.\(fairmq.map { " FairMQ: `\($0)`." } ?? "")

        \(markdownTable())
        \(problems.isEmpty ? "" : "\nProblems:\n" + problems.map { "- \($0)" }.joined(separator: "\n") + "\n")
        ![throughput](throughput.png)
        """
    }

    /// Writes the run's folder; returns its path.
    func write(under results: String) throws -> String {
        let folder = "\(results)/\(stamp)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try jsonData().write(to: URL(fileURLWithPath: "\(folder)/results.json"))
        try Data((markdown() + "\n").utf8).write(to: URL(fileURLWithPath: "\(folder)/results.md"))
        var runs = ""
        for t in throughput {
            for r in t.repetitions {
                runs += String(format: "{\"transport\":\"%@\",\"size\":%d,\"repetition\":%d,\"messages\":%llu,\"seconds\":%.6f,\"messages_per_second\":%.1f}\n", t.transport, t.size, r.repetition, r.messages, r.seconds, r.messagesPerSecond)
            }
            for (i, f) in t.fairmqMessagesPerSecond.enumerated() {
                runs += String(format: "{\"transport\":\"fairmq-%@\",\"size\":%d,\"repetition\":%d,\"messages_per_second\":%.1f}\n", t.transport, t.size, i + 1, f)
            }
        }
        try Data(runs.utf8).write(to: URL(fileURLWithPath: "\(folder)/runs.jsonl"))
        try Plot(report: self).draw(into: folder)
        return folder
    }

    private static func machine() -> Machine {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        var name = utsname()
        uname(&name)
        let kernel = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let host = withUnsafeBytes(of: &name.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return Machine(
            cpu: model, cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            memoryGiB: Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30), kernel: kernel, hostname: host)
    }
}
