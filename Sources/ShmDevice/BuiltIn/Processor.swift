import ArgumentParser
import Logging
import ShmTransport

/// The options of the pass-through processor.
public struct ProcessorOptions: ParsableArguments, Sendable {
    public init() {}
    @Option(help: "Name of the channel to receive on.")
    public var inChannel: String = "data-in"
    @Option(help: "Name of the channel to send on.")
    public var outChannel: String = "data-out"
    @Option(help: "Messages to forward, then stop (0: no limit).")
    public var maxIterations: UInt64 = 0
}

/// Forwards every message (single or multipart) from the in channel to the out channel:
/// zero-copy when both use the same transport, one copy when they differ (a `shmem` input
/// relayed over `zeromq` to another node).
public enum Processor {
    public static func run(_ device: Device, _ options: ProcessorOptions) throws -> UInt64 {
        let input = try device.channel(options.inChannel)
        let output = try device.channel(options.outChannel)
        var parts: [Message] = [input.makeMessage()]
        var forwarded: UInt64 = 0
        try device.run {
            if options.maxIterations > 0 && forwarded >= options.maxIterations { return false }
            switch input.receive(reusing: &parts) {
            case .transferred: break
            case .timeout: return true
            case .interrupted: return false
            case .error(let error): throw error
            }
            while true {
                let result = parts.count == 1 ? output.send(parts[0]) : output.send(parts)
                switch result {
                case .transferred:
                    forwarded += 1
                    return true
                case .timeout: continue
                case .interrupted: return false
                case .error(let error): throw error
                }
            }
        }
        device.logger.info("Forwarded \(forwarded) messages from \(input.label) to \(output.label).")
        return forwarded
    }
}
