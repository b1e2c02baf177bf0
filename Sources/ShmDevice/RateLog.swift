import Foundation
import Logging
import ShmCleanup
import ShmTransport

/// The per-channel rate log of a run loop: every `rateLogging` seconds of each sub-channel, one
/// line with messages and megabytes per second in and out, as FairMQ logs them. Reads the clock
/// once every 64 iterations, so it costs the loop almost nothing.
struct RateLog {
    private struct Entry {
        let channel: Channel
        let interval: UInt64
        var due: UInt64
        var messagesIn = 0, bytesIn = 0, messagesOut = 0, bytesOut = 0
    }

    private var entries: [Entry]
    private let logger: Logger
    private var iterations: UInt = 0

    init(channels: [Channel], logger: Logger) {
        let now = MonotonicClock.nanoseconds()
        entries = channels.filter { $0.configuration.rateLogging > 0 }.map {
            let interval = UInt64($0.configuration.rateLogging) * 1_000_000_000
            return Entry(
                channel: $0, interval: interval, due: now + interval, messagesIn: $0.socket.messagesReceived,
                bytesIn: $0.socket.bytesReceived, messagesOut: $0.socket.messagesSent, bytesOut: $0.socket.bytesSent)
        }
        self.logger = logger
    }

    mutating func tick() {
        iterations &+= 1
        guard !entries.isEmpty, iterations & 63 == 0 else { return }
        let now = MonotonicClock.nanoseconds()
        for i in entries.indices where now >= entries[i].due {
            log(&entries[i], seconds: Double(now - (entries[i].due - entries[i].interval)) / 1e9)
            entries[i].due = now + entries[i].interval
        }
    }

    /// Logs the totals of the run.
    func finish() {
        for entry in entries {
            let socket = entry.channel.socket
            logger.debug(
                "\(entry.channel.label): \(socket.messagesReceived) messages in (\(socket.bytesReceived) bytes), \(socket.messagesSent) out (\(socket.bytesSent) bytes)")
        }
    }

    private func log(_ entry: inout Entry, seconds: Double) {
        let socket = entry.channel.socket
        let rate = { (count: Int, before: Int) in Double(count - before) / max(seconds, 1e-9) }
        let line = String(
            format: "%@: in: %.0f (%.2f MB) out: %.0f (%.2f MB)", entry.channel.label,
            rate(socket.messagesReceived, entry.messagesIn), rate(socket.bytesReceived, entry.bytesIn) / 1e6,
            rate(socket.messagesSent, entry.messagesOut), rate(socket.bytesSent, entry.bytesOut) / 1e6)
        logger.info("\(line)")
        entry.messagesIn = socket.messagesReceived
        entry.bytesIn = socket.bytesReceived
        entry.messagesOut = socket.messagesSent
        entry.bytesOut = socket.bytesSent
    }
}
