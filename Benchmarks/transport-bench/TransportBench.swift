import ArgumentParser
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
/// The sampler makes a new message every iteration (as FairMQ's sampler does) and writes a
/// sequence number into its first 8 bytes (`--memset` fills it all); the sink checks the
/// sequence and times the messages after the warm-up. Both use one unique session, which is
/// gone when the run ends.
@main
struct TransportBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport-bench",
        abstract: "Throughput of the shmem and zeromq transports between two processes (sampler -> sink).")

    @Option(help: "Transports to measure, comma-separated.")
    var transports: String = "shmem,zeromq"
    @Option(help: "Message size in bytes.")
    var size: Int = 1 << 20
    @Option(help: "Messages timed per transport (after the warm-up).")
    var messages: Int = 4000
    @Option(help: "Messages sent before timing starts.")
    var warmup: Int = 200
    @Flag(help: "Fill every message completely (adds page-touch and write cost, as FairMQ's --memset).")
    var memset = false
    @Option(help: "Endpoint kind: ipc or tcp.")
    var endpoint: String = "ipc"
    @Option(name: .customLong("shm-dir"), help: "Shm directory (default: $SHMTRANSPORT_SHM_DIR or /dev/shm).")
    var shmDir: String?
    @Option(name: .customLong("segment-size"), help: "Shared-memory segment size in bytes.")
    var segmentSize: Int = 1 << 30

    // Internal: run as the sink child.
    @Option(help: .hidden) var sinkConnect: String?
    @Option(help: .hidden) var transport: String = "shmem"
    @Option(help: .hidden) var session: String = ""

    mutating func validate() throws {
        let kinds = transports.split(separator: ",").map(String.init)
        guard !kinds.isEmpty, kinds.allSatisfy({ TransportKind(rawValue: $0) != nil }) else {
            throw ValidationError("--transports takes shmem and/or zeromq, comma-separated")
        }
        guard size >= 8 else { throw ValidationError("--size must be at least 8 bytes") }
        guard messages > 0, warmup >= 0 else { throw ValidationError("--messages must be > 0 and --warmup >= 0") }
        guard endpoint == "ipc" || endpoint == "tcp" else { throw ValidationError("--endpoint must be ipc or tcp") }
    }

    func makeConfiguration(session: SessionID) -> TransportConfiguration {
        var configuration = TransportConfiguration(session: session)
        if let shmDir { configuration.shmDirectory = FilePath(shmDir) }
        configuration.segmentSize = segmentSize
        configuration.badAlloc = .forever(intervalMilliseconds: 1)  // as FairMQ's benchmark: wait, never throw
        configuration.defaultLinger = 5000
        return configuration
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        if let sinkConnect {
            try runSink(connect: sinkConnect)
            return
        }
        print("| transport | message size | messages | seconds | messages/s | GiB/s |")
        print("|---|---:|---:|---:|---:|---:|")
        var rates: [String: Double] = [:]
        for kind in transports.split(separator: ",").map(String.init) {
            let seconds = try runSampler(TransportKind(rawValue: kind)!)
            let rate = Double(messages) / seconds
            rates[kind] = rate
            let gib = rate * Double(size) / Double(1 << 30)
            print("| \(kind) | \(size) | \(messages) | \(String(format: "%.3f", seconds)) | \(String(format: "%.0f", rate)) | \(String(format: "%.2f", gib)) |")
        }
        if let shm = rates["shmem"], let zmq = rates["zeromq"] {
            print("")
            print("shmem/zeromq speed-up: \(String(format: "%.1f", shm / zmq))x")
        }
    }

    /// Sends warmup + messages; returns the sink's timed seconds.
    func runSampler(_ kind: TransportKind) throws -> Double {
        let session = try SessionID("bench-\(getpid())-\(kind)")
        let logger = Logger(label: "transport-bench")
        let factory = try TransportFactory(kind, configuration: makeConfiguration(session: session), logger: logger)
        let push = try factory.makeSocket(.push)
        try push.setOption(.sendHighWaterMark, 64)
        var ipcDirectory: String?
        let address: String
        if endpoint == "ipc" {
            var template = Array("/tmp/tbench.XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
                throw ValidationError("mkdtemp failed under /tmp")
            }
            ipcDirectory = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
            address = try push.bind("ipc://\(ipcDirectory!)/data")
        } else {
            address = try push.bind("tcp://127.0.0.1:*")
        }
        defer { if let ipcDirectory { try? FileManager.default.removeItem(atPath: ipcDirectory) } }

        let sink = Process()
        sink.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        sink.arguments = [
            "--sink-connect", address, "--transport", kind.rawValue, "--session", session.rawValue,
            "--size", "\(size)", "--messages", "\(messages)", "--warmup", "\(warmup)", "--segment-size", "\(segmentSize)",
        ] + (shmDir.map { ["--shm-dir", $0] } ?? [])
        let output = Pipe()
        sink.standardOutput = output
        try sink.run()
        for sequence in 0..<(warmup + messages) {
            let message = try factory.makeMessage(size: size)
            message.withUnsafeMutableBytes { bytes in
                if memset { _ = Glibc.memset(bytes.baseAddress!, Int32(sequence & 0xFF), bytes.count) }
                bytes.storeBytes(of: UInt64(sequence), toByteOffset: 0, as: UInt64.self)
            }
            let result = push.send(message, timeout: 30_000)
            guard case .transferred = result else { throw ValidationError("\(kind): send \(sequence) failed: \(result)") }
        }
        let reply = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        sink.waitUntilExit()
        guard sink.terminationStatus == 0, let seconds = Double(reply.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") else {
            throw ValidationError("\(kind): the sink failed (status \(sink.terminationStatus)): \(reply)")
        }
        return seconds
    }

    func runSink(connect: String) throws {
        let kind = TransportKind(rawValue: transport)!
        let factory = try TransportFactory(kind, configuration: makeConfiguration(session: try SessionID(session)), logger: Logger(label: "transport-bench-sink"))
        let pull = try factory.makeSocket(.pull)
        try pull.setOption(.receiveHighWaterMark, 64)
        try pull.connect(connect)
        let message = factory.makeMessage()
        var start: UInt64 = 0
        for sequence in 0..<(warmup + messages) {
            if sequence == warmup { start = DispatchTime.now().uptimeNanoseconds }
            let result = pull.receive(message, timeout: 30_000)
            guard case .transferred(let n) = result, n == size else { throw ValidationError("sink: receive \(sequence): \(result)") }
            let got = message.withUnsafeBytes { $0.load(fromByteOffset: 0, as: UInt64.self) }
            guard got == UInt64(sequence) else { throw ValidationError("sink: message \(sequence) carried \(got)") }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        print("received \(messages) in \(seconds)")
    }
}
