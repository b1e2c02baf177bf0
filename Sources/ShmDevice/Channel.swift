import Logging
import ShmTransport

/// One sub-channel of a running ``Device``: its socket, its factory and its configured timeouts.
///
/// Transfers use the channel's `sndTimeoutMs`/`rcvTimeoutMs` unless given a timeout. A message
/// of another transport (received on a `shmem` channel, sent on a `zeromq` one) is copied into
/// one of this channel's transport on send, as FairMQ does; same-transport sends are zero-copy.
public final class Channel: @unchecked Sendable {
    /// The channel's name.
    public let name: String
    /// The index of this sub-channel in its channel.
    public let index: Int
    /// The checked configuration.
    public let configuration: SubChannelConfiguration
    /// The socket; use it directly for anything the channel does not wrap.
    public let socket: Socket
    /// The factory of the channel's transport: make the messages to send here with it.
    public let factory: TransportFactory
    /// The endpoints bound, as ZeroMQ reports them (a `tcp://host:*` bind shows its port).
    public internal(set) var boundEndpoints: [String] = []
    /// The endpoints an address-less sub-channel connected to, read from the device's
    /// ``AddressDirectory``.
    public internal(set) var lookedUpEndpoints: [String] = []

    init(name: String, index: Int, configuration: SubChannelConfiguration, socket: Socket, factory: TransportFactory) {
        self.name = name
        self.index = index
        self.configuration = configuration
        self.socket = socket
        self.factory = factory
    }

    /// `name[index]`, as logs and errors name a sub-channel.
    public var label: String { "\(name)[\(index)]" }

    /// The transport of this sub-channel.
    public var transport: TransportKind { factory.kind }

    /// A new message of `size` bytes of this channel's transport.
    public func makeMessage(size: Int, alignment: Int = 0) throws(TransportError) -> Message {
        try factory.makeMessage(size: size, alignment: alignment)
    }

    /// An empty message of this channel's transport, to receive into.
    public func makeMessage() -> Message { factory.makeMessage() }

    /// Sends one message (timeout: the channel's `sndTimeoutMs`, or `timeout` when given).
    public func send(_ message: Message, timeout: Int? = nil) -> TransferResult {
        let timeout = timeout ?? configuration.sendTimeoutMilliseconds
        guard message.transport != factory.kind else { return socket.send(message, timeout: timeout) }
        do {
            let copy = try copyIntoTransport(message)
            let result = socket.send(copy, timeout: timeout)
            if case .transferred = result { message.rebuild() }
            return result
        } catch {
            return .error(error)
        }
    }

    /// Sends the parts as one multipart message, copying parts of another transport.
    public func send(_ parts: [Message], timeout: Int? = nil) -> TransferResult {
        let timeout = timeout ?? configuration.sendTimeoutMilliseconds
        guard parts.contains(where: { $0.transport != factory.kind }) else { return socket.send(parts, timeout: timeout) }
        do {
            var copies: [Message] = []
            for part in parts {
                if part.transport == factory.kind {
                    copies.append(part)
                } else {
                    copies.append(try copyIntoTransport(part))
                }
            }
            let result = socket.send(copies, timeout: timeout)
            if case .transferred = result { for part in parts { part.rebuild() } }
            return result
        } catch {
            return .error(error)
        }
    }

    /// A message of this channel's transport holding a copy of `message`'s bytes.
    private func copyIntoTransport(_ message: Message) throws(TransportError) -> Message {
        let copy = try factory.makeMessage(size: message.size)
        if let source = message.data, let target = copy.data { target.copyMemory(from: source, byteCount: message.size) }
        return copy
    }

    /// Receives one message into `message` (timeout: the channel's `rcvTimeoutMs` unless given).
    public func receive(_ message: Message, timeout: Int? = nil) -> TransferResult {
        socket.receive(message, timeout: timeout ?? configuration.receiveTimeoutMilliseconds)
    }

    /// Receives a multipart message into the handles of `parts` (see ``Socket/receive(reusing:timeout:)``).
    public func receive(reusing parts: inout [Message], timeout: Int? = nil) -> TransferResult {
        socket.receive(reusing: &parts, timeout: timeout ?? configuration.receiveTimeoutMilliseconds)
    }
}
