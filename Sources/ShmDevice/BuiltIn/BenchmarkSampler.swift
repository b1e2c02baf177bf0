import ArgumentParser
import Foundation
import Logging
import ShmCleanup
import ShmTransport

/// The options of FairMQ's `fairmq-bsampler`, with its names and defaults.
public struct SamplerOptions: ParsableArguments, Sendable {
    public init() {}
    @Option(help: "Name of the channel to send on.")
    public var outChannel: String = "data"
    @Option(help: "Message size in bytes.")
    public var msgSize: Int = 1_000_000
    @Option(help: "Parts of a multipart message (with --multipart true).")
    public var numParts: Int = 1
    @Option(help: "Send --num-parts parts of --msg-size bytes as one multipart message.")
    public var multipart = BooleanValue(false)
    @Option(help: "Set every byte of each message (to 0).")
    public var memset = BooleanValue(false)
    @Option(help: "Alignment of each message's first byte (0: the default).")
    public var msgAlignment: Int = 0
    @Option(help: "Messages to send, then stop (0: no limit).")
    public var maxIterations: UInt64 = 0
    @Option(help: "Messages per second (0: as fast as possible).")
    public var msgRate: Double = 0
    @Option(help: "Ours: 'sequence' writes a checkable sequence into every message (see shm-sink --content).")
    public var content: MessageContent = .none

    public mutating func validate() throws {
        guard msgSize >= 0 else { throw ValidationError("--msg-size \(msgSize) must be 0 or more bytes") }
        guard numParts >= 1, numParts <= 64 else { throw ValidationError("--num-parts \(numParts) must be 1 ... 64") }
        guard msgRate >= 0, msgRate.isFinite else { throw ValidationError("--msg-rate \(msgRate) must be 0 or more") }
        guard content == .none || msgSize >= 8 else { throw ValidationError("--content sequence needs --msg-size of at least 8 bytes") }
    }
}

/// FairMQ's benchmark sampler: a new message (or multipart message) every iteration, sent on the
/// out channel, until `--max-iterations` or a stop.
public enum BenchmarkSampler {
    /// What a run did.
    public struct Outcome: Sendable {
        public var messages: UInt64
        public var nanoseconds: UInt64
    }

    /// Runs the sampler on `device` (called on the device's run thread).
    public static func run(_ device: Device, _ options: SamplerOptions) throws -> Outcome {
        let channel = try device.channel(options.outChannel)
        let parts = options.multipart.value ? options.numParts : 1
        let logger = device.logger
        logger.info(
            "Starting the benchmark with message size of \(options.msgSize) and number of messages \(options.maxIterations)\(parts > 1 ? " of \(parts) parts" : "")")
        var limiter = RateLimiter(rate: options.msgRate)
        var sent: UInt64 = 0
        let message = channel.factory.makeMessage(alignment: options.msgAlignment)
        var multipart: [Message] = []
        let start = MonotonicClock.nanoseconds()
        try device.run {
            if options.maxIterations > 0 && sent >= options.maxIterations { return false }
            let result: TransferResult
            if parts == 1 {
                try message.rebuild(size: options.msgSize, alignment: options.msgAlignment)
                fill(message, options, sequence: sent, part: 0)
                result = channel.send(message)
            } else {
                multipart = try channel.factory.makeMessages(sizes: Array(repeating: options.msgSize, count: parts), alignment: options.msgAlignment)
                for (index, part) in multipart.enumerated() { fill(part, options, sequence: sent, part: index) }
                result = channel.send(multipart)
            }
            switch result {
            case .transferred: sent += 1
            case .timeout: break
            case .interrupted: return false
            case .error(let error): throw error
            }
            limiter.pace()
            return true
        }
        let elapsed = MonotonicClock.nanoseconds() - start
        logger.info("Done \(sent) iterations in \(String(format: "%.3f", Double(elapsed) / 1e6))ms.")
        return Outcome(messages: sent, nanoseconds: elapsed)
    }

    private static func fill(_ message: Message, _ options: SamplerOptions, sequence: UInt64, part: Int) {
        switch options.content {
        case .sequence:
            message.withUnsafeMutableBytes { MessageContent.fill($0, sequence: sequence, part: part) }
        case .none:
            if options.memset.value { _ = message.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 0) } }
        }
    }
}
