import CZeroMQ

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Waits until any of several sockets can receive or send, like FairMQ's poller over channels
/// and subchannels. Sockets may belong to different factories and transports.
public final class Poller: @unchecked Sendable {
    private let sockets: [Socket]
    private let channels: [String: Range<Int>]
    private var items: [zmq_pollitem_t]

    /// Polls `sockets`; refer to them by index.
    public convenience init(_ sockets: [Socket]) throws(TransportError) {
        try self.init(channels: [("", sockets)])
    }

    /// Polls named channels, each with one or more subchannel sockets.
    /// - Throws: when a socket is closed or a channel name repeats.
    public init(channels: [(name: String, sockets: [Socket])]) throws(TransportError) {
        var all: [Socket] = []
        var ranges: [String: Range<Int>] = [:]
        for (name, sockets) in channels {
            guard ranges[name] == nil else {
                throw TransportError(.invalidArgument, "channel '\(name)' appears twice in the poller; give each channel once")
            }
            ranges[name] = all.count..<(all.count + sockets.count)
            all += sockets
        }
        var items: [zmq_pollitem_t] = []
        for socket in all {
            let events: Int32
            switch socket.type {
            case .push, .pub: events = ZMQ_POLLOUT
            case .pull, .sub: events = ZMQ_POLLIN
            case .pair, .req, .rep: events = ZMQ_POLLIN | ZMQ_POLLOUT
            }
            items.append(zmq_pollitem_t(socket: try socket.open(), fd: 0, events: Int16(events), revents: 0))
        }
        self.sockets = all
        self.channels = ranges
        self.items = items
    }

    /// Waits up to `timeout` ms (-1 = for ever, 0 = just look) for any socket to become ready.
    /// Returns whether any is. Afterwards ask ``checkInput(_:)`` / ``checkOutput(_:)``.
    @discardableResult
    public func poll(timeout: Int) throws(TransportError) -> Bool {
        while true {
            let rc = items.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, Int32($0.count), timeout) }
            if rc >= 0 { return rc > 0 }
            if zmq_errno() == EINTR { continue }
            throw zmqError("zmq_poll over \(items.count) sockets")
        }
    }

    /// Whether socket `index` has a message to receive (as of the last ``poll(timeout:)``).
    public func checkInput(_ index: Int) -> Bool { items[index].revents & Int16(ZMQ_POLLIN) != 0 }

    /// Whether socket `index` can send without waiting (as of the last ``poll(timeout:)``).
    public func checkOutput(_ index: Int) -> Bool { items[index].revents & Int16(ZMQ_POLLOUT) != 0 }

    /// Whether subchannel `subchannel` of `channel` has a message to receive.
    public func checkInput(channel: String, subchannel: Int = 0) -> Bool {
        guard let range = channels[channel], subchannel < range.count else { return false }
        return checkInput(range.lowerBound + subchannel)
    }

    /// Whether subchannel `subchannel` of `channel` can send without waiting.
    public func checkOutput(channel: String, subchannel: Int = 0) -> Bool {
        guard let range = channels[channel], subchannel < range.count else { return false }
        return checkOutput(range.lowerBound + subchannel)
    }
}
