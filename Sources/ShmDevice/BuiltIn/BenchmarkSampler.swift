import ArgumentParser
import Foundation
import Logging
import ShmCleanup
import ShmTransport
import Synchronization

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
    @Option(help: "Ours: mixed sizes — every message gets a size between --msg-size and this, spread evenly over the powers of two (0: every message --msg-size).")
    public var msgSizeMax: Int = 0
    @Option(help: "Ours: send from an unmanaged region of this many bytes, cut into blocks of the largest message size, instead of the managed segment; a block is refilled once every receiver let go of it (0: managed segment).")
    public var regionSize: Int = 0

    /// The sizes this sampler sends.
    public var sizes: MessageSizes { MessageSizes(smallest: msgSize, largest: max(msgSize, msgSizeMax)) }

    public mutating func validate() throws {
        guard msgSize >= 0 else { throw ValidationError("--msg-size \(msgSize) must be 0 or more bytes") }
        guard numParts >= 1, numParts <= 64 else { throw ValidationError("--num-parts \(numParts) must be 1 ... 64") }
        guard msgRate >= 0, msgRate.isFinite else { throw ValidationError("--msg-rate \(msgRate) must be 0 or more") }
        guard content == .none || msgSize >= 8 else { throw ValidationError("--content sequence needs --msg-size of at least 8 bytes") }
        guard msgSizeMax == 0 || msgSizeMax >= msgSize else {
            throw ValidationError("--msg-size-max \(msgSizeMax) is smaller than --msg-size \(msgSize); give a larger maximum, or 0 for one size")
        }
        guard regionSize >= 0 else { throw ValidationError("--region-size \(regionSize) must be 0 or more bytes") }
        if regionSize > 0 {
            guard !multipart.value else { throw ValidationError("--region-size sends single-part messages; drop --multipart or --region-size") }
            let block = RegionBlocks.blockSize(for: sizes.largest)
            guard regionSize >= block else {
                throw ValidationError("--region-size \(regionSize) holds no block of \(block) bytes (the largest message, aligned); give at least \(block)")
            }
        }
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
        if options.regionSize > 0 { return try runFromRegion(device, channel, options) }
        let sizes = options.sizes
        var limiter = RateLimiter(rate: options.msgRate)
        var sent: UInt64 = 0
        let message = channel.factory.makeMessage(alignment: options.msgAlignment)
        var multipart: [Message] = []
        let start = MonotonicClock.nanoseconds()
        try device.run {
            if options.maxIterations > 0 && sent >= options.maxIterations { return false }
            let result: TransferResult
            if parts == 1 {
                try message.rebuild(size: sizes.size(of: sent), alignment: options.msgAlignment)
                fill(message, options, sequence: sent, part: 0)
                result = channel.send(message)
            } else {
                multipart = try channel.factory.makeMessages(
                    sizes: (0..<parts).map { sizes.size(of: sent &* UInt64(parts) &+ UInt64($0)) }, alignment: options.msgAlignment)
                for (index, part) in multipart.enumerated() { fill(part, options, sequence: sent, part: index) }
                result = channel.send(multipart)
            }
            return try afterSend(result, sent: &sent, limiter: &limiter)
        }
        return done(logger, sent: sent, since: start)
    }

    /// Counts a sent message and paces to `--msg-rate`; whether the run loop goes on.
    private static func afterSend(_ result: TransferResult, sent: inout UInt64, limiter: inout RateLimiter) throws -> Bool {
        switch result {
        case .transferred: sent += 1
        case .timeout: break
        case .interrupted: return false
        case .error(let error): throw error
        }
        limiter.pace()
        return true
    }

    private static func done(_ logger: Logger, sent: UInt64, since start: UInt64) -> Outcome {
        let elapsed = MonotonicClock.nanoseconds() - start
        logger.info("Done \(sent) iterations in \(String(format: "%.3f", Double(elapsed) / 1e6))ms.")
        return Outcome(messages: sent, nanoseconds: elapsed)
    }

    /// `--region-size`: every message is a block of one unmanaged region, made zero-copy from it
    /// and refilled only after the region's callback returned it.
    private static func runFromRegion(_ device: Device, _ channel: Channel, _ options: SamplerOptions) throws -> Outcome {
        let sizes = options.sizes
        let blocks = RegionBlocks(regionSize: options.regionSize, largest: sizes.largest)
        let region = try channel.factory.makeUnmanagedRegion(size: options.regionSize, callback: .bulk { blocks.release($0) })
        defer { region.destroy() }
        device.logger.info("Sending from region \(region.id): \(blocks.count) blocks of \(blocks.size) bytes")
        var limiter = RateLimiter(rate: options.msgRate)
        var sent: UInt64 = 0
        let start = MonotonicClock.nanoseconds()
        try device.run {
            if options.maxIterations > 0 && sent >= options.maxIterations { return false }
            guard let block = blocks.take() else {
                // every block is still with a receiver: wait for the callback, not in a busy loop
                usleep(200)
                return true
            }
            let message = try region.makeMessage(offset: block * blocks.size, size: sizes.size(of: sent), hint: UInt64(block))
            fill(message, options, sequence: sent, part: 0)
            return try afterSend(channel.send(message), sent: &sent, limiter: &limiter)
        }
        return done(device.logger, sent: sent, since: start)
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

/// The message sizes of a sampler: one size, or (`--msg-size-max`) a size per message spread
/// evenly over the powers of two between the smallest and the largest, the same for the same
/// sequence number in every run.
public struct MessageSizes: Sendable, Hashable {
    /// The smallest size (`--msg-size`).
    public var smallest: Int
    /// The largest size (`--msg-size-max`, or `--msg-size` for one size).
    public var largest: Int

    public init(smallest: Int, largest: Int) {
        self.smallest = smallest
        self.largest = max(smallest, largest)
    }

    /// The size of message `sequence` (of part `sequence * parts + part` in a multipart run).
    public func size(of sequence: UInt64) -> Int {
        guard largest > smallest else { return smallest }
        // SplitMix64 of the sequence number: two independent draws from one 64-bit value
        var z = sequence &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let low = log2(Double(max(smallest, 1))), high = log2(Double(largest))
        let exponent = low + (high - low) * Double(z >> 11) / Double(1 << 53)
        return min(largest, max(smallest, Int(exp2(exponent))))
    }
}

/// The blocks of a sampler's region: fixed-size, handed out by index, given back by the
/// region's callback (on a transport thread).
final class RegionBlocks: Sendable {
    let size: Int
    let count: Int
    private let free: Mutex<[Int]>

    /// Blocks are the largest message rounded up to 64 bytes, so each starts on a cache line.
    static func blockSize(for largest: Int) -> Int { (max(largest, 1) + 63) & ~63 }

    init(regionSize: Int, largest: Int) {
        size = Self.blockSize(for: largest)
        count = regionSize / size
        free = Mutex(Array((0..<count).reversed()))
    }

    func take() -> Int? { free.withLock { $0.popLast() } }

    func release(_ blocks: [RegionBlock]) {
        free.withLock { free in for block in blocks { free.append(Int(block.hint)) } }
    }
}
