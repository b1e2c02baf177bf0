import ArgumentParser
import Foundation
import Logging
import ShmCleanup
import ShmTransport

/// The options of FairMQ's `fairmq-sink`, with its names and defaults.
public struct SinkOptions: ParsableArguments, Sendable {
    public init() {}
    @Option(help: "Name of the channel to receive on.")
    public var inChannel: String = "data"
    @Option(help: "Messages to receive, then stop (0: no limit).")
    public var maxIterations: UInt64 = 0
    @Option(help: "Receive multipart messages.")
    public var multipart = BooleanValue(false)
    @Option(help: "Write the received payloads to this file (empty: do not write).")
    public var outFilename: String = ""
    @Option(help: "Stop writing to --out-filename after this many bytes.")
    public var maxFileSize: Int = 2_000_000_000
    @Option(help: "Ours: 'sequence' checks every byte and the order of what shm-bsampler --content sequence sent.")
    public var content: MessageContent = .none
}

/// A message that did not hold what the sampler wrote, or came out of order.
public struct ContentError: Error, CustomStringConvertible {
    public let description: String
}

/// FairMQ's sink: receives on the in channel until `--max-iterations` or a stop; optionally
/// writes what it receives to a file and (ours) checks the content.
public enum BenchmarkSink {
    /// What a run did.
    public struct Outcome: Sendable {
        public var messages: UInt64
        public var bytes: Int
        public var nanoseconds: UInt64
    }

    public static func run(_ device: Device, _ options: SinkOptions) throws -> Outcome {
        let channel = try device.channel(options.inChannel)
        let logger = device.logger
        var file: FileHandle?
        if !options.outFilename.isEmpty {
            guard FileManager.default.createFile(atPath: options.outFilename, contents: nil), let handle = FileHandle(forWritingAtPath: options.outFilename) else {
                throw DeviceConfigurationError(device: device.configuration.id, field: "--out-filename", "cannot create '\(options.outFilename)'; check the directory and its permissions")
            }
            file = handle
        }
        defer { try? file?.close() }
        var written = 0
        var received: UInt64 = 0
        var bytes = 0
        var parts: [Message] = [channel.makeMessage()]
        var start: UInt64 = 0
        logger.info("Starting sink, expecting \(options.maxIterations == 0 ? "any number of" : "\(options.maxIterations)") messages")
        try device.run {
            if options.maxIterations > 0 && received >= options.maxIterations { return false }
            let result = options.multipart.value ? channel.receive(reusing: &parts) : channel.receive(parts[0])
            switch result {
            case .transferred(let n):
                if received == 0 { start = MonotonicClock.nanoseconds() }
                bytes += n
                if options.content == .sequence { try check(parts, sequence: received, multipart: options.multipart.value) }
                if let file, written < options.maxFileSize {
                    for part in parts where !part.isEmpty {
                        let count = min(part.size, options.maxFileSize - written)
                        part.withUnsafeBytes { file.write(Data($0.prefix(count))) }
                        written += count
                    }
                }
                received += 1
            case .timeout: break
            case .interrupted: return false
            case .error(let error): throw error
            }
            return true
        }
        let elapsed = received > 0 ? MonotonicClock.nanoseconds() - start : 0
        logger.info("Received \(received) messages in \(String(format: "%.3f", Double(elapsed) / 1e6))ms.")
        return Outcome(messages: received, bytes: bytes, nanoseconds: elapsed)
    }

    private static func check(_ parts: [Message], sequence: UInt64, multipart: Bool) throws {
        for (index, part) in (multipart ? parts : [parts[0]]).enumerated() {
            try part.withUnsafeBytes { bytes in
                guard MessageContent.check(bytes, sequence: sequence, part: index) else {
                    let got = MessageContent.sequence(of: bytes).map { "sequence number \($0)" } ?? "\(bytes.count) bytes"
                    throw ContentError(description: "message \(sequence), part \(index) (\(bytes.count) bytes) holds \(got) or damaged bytes: a message was lost, reordered or changed")
                }
            }
        }
    }
}
