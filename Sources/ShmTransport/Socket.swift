import CZeroMQ
import Logging
import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The messaging patterns. `pub`/`sub` exist for the `zeromq` transport only.
public enum SocketType: String, Sendable, CaseIterable, CustomStringConvertible {
    case pair, push, pull, req, rep, pub, sub

    var zmqType: Int32 {
        switch self {
        case .pair: return ZMQ_PAIR
        case .push: return ZMQ_PUSH
        case .pull: return ZMQ_PULL
        case .req: return ZMQ_REQ
        case .rep: return ZMQ_REP
        case .pub: return ZMQ_PUB
        case .sub: return ZMQ_SUB
        }
    }

    public var description: String { rawValue }
}

/// Socket options of the original; the raw values are FairMQ's option names.
public enum SocketOption: String, Sendable, CaseIterable {
    /// Milliseconds unsent messages are kept after close (-1 = for ever).
    case linger
    /// Most messages queued for sending (0 = no limit).
    case sendHighWaterMark = "snd-hwm"
    /// Most messages queued for receiving (0 = no limit).
    case receiveHighWaterMark = "rcv-hwm"
    /// Kernel send buffer size in bytes (-1 = the system's default).
    case sendBufferSize = "snd-size"
    /// Kernel receive buffer size in bytes (-1 = the system's default).
    case receiveBufferSize = "rcv-size"

    var zmqOption: Int32 {
        switch self {
        case .linger: return ZMQ_LINGER
        case .sendHighWaterMark: return ZMQ_SNDHWM
        case .receiveHighWaterMark: return ZMQ_RCVHWM
        case .sendBufferSize: return ZMQ_SNDBUF
        case .receiveBufferSize: return ZMQ_RCVBUF
        }
    }
}

/// A socket of a ``TransportFactory``: PAIR, PUSH/PULL or REQ/REP over `ipc://`, `tcp://` or
/// `inproc://` (the latter only between sockets of one factory).
///
/// Timeouts are in milliseconds: 0 never waits, -1 waits for ever. Every transfer returns a
/// ``TransferResult``. A blocked transfer returns ``TransferResult/interrupted`` as soon as another
/// thread calls ``TransportFactory/interrupt()``. A socket may move between threads but must be
/// used by one thread at a time.
public final class Socket: @unchecked Sendable {
    /// The factory the socket belongs to.
    public let factory: TransportFactory
    /// The pattern.
    public let type: SocketType
    /// A name for logs (FairMQ: `<device>.<channel>.<type>`).
    public let name: String
    var raw: UnsafeMutableRawPointer?
    let logger: Logger

    // Unchecked exclusivity: a socket is used by one thread at a time (documented above) and
    // no access to these fields overlaps another; the dynamic checks cost a few % of a transfer.
    /// The parts of the shmem message being received (reused, so a receive allocates nothing).
    @exclusivity(unchecked) var received: [BlockDescriptor] = []
    /// The regions of the region parts of `received`, in order (found while validating them).
    @exclusivity(unchecked) var receivedRegions: [SessionRegion] = []

    /// Messages (a multipart counts as one) and payload bytes moved so far.
    @exclusivity(unchecked) public private(set) var messagesSent = 0
    @exclusivity(unchecked) public private(set) var messagesReceived = 0
    @exclusivity(unchecked) public private(set) var bytesSent = 0
    @exclusivity(unchecked) public private(set) var bytesReceived = 0

    init(factory: TransportFactory, type: SocketType, name: String) throws(TransportError) {
        if factory.kind == .shmem && (type == .pub || type == .sub) {
            throw TransportError(
                .unsupported,
                "\(type.rawValue.uppercased()) sockets are refused on the shmem transport: a shared-memory message has exactly one receiver, and PUB/SUB would hand the same buffer to many; use PUSH/PULL or PAIR with Message.copy() per receiver, or the zeromq transport")
        }
        guard let raw = zmq_socket(factory.context.raw, type.zmqType) else {
            throw zmqError("creating a \(type) socket", hint: "too many sockets open? close unused ones")
        }
        self.factory = factory
        self.type = type
        self.name = name.isEmpty ? "\(factory.kind).\(type)" : name
        self.raw = raw
        var logger = factory.logger
        logger[metadataKey: "transport.socket"] = "\(self.name)"
        self.logger = logger
        do throws(TransportError) {
            try setOption(.linger, factory.configuration.defaultLinger)
            if type == .sub { _ = zmq_setsockopt(raw, ZMQ_SUBSCRIBE, "", 0) }
        } catch {
            zmq_close(raw)
            throw error
        }
    }

    deinit { close() }

    /// Closes the socket; later transfers fail with ``TransportError/Code/closed``. Idempotent.
    /// Unsent messages are kept for the linger time, then dropped (over `shmem` their buffers
    /// stay allocated until the session ends).
    public func close() {
        if let raw {
            zmq_close(raw)
            self.raw = nil
        }
    }

    /// Binds to `endpoint` and returns the endpoint actually bound (a `tcp://HOST:*` wildcard
    /// port resolved to the port the system chose).
    /// - Throws: ``TransportError`` naming the endpoint and the fix.
    @discardableResult
    public func bind(_ endpoint: String) throws(TransportError) -> String {
        let socket = try open()
        try Self.checkEndpoint(endpoint)
        guard zmq_bind(socket, endpoint) == 0 else {
            throw zmqError("binding \(name) to \(endpoint)", hint: "is the address in use, or the directory missing?")
        }
        var buffer = [CChar](repeating: 0, count: 512)
        var length = buffer.count
        guard zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, &buffer, &length) == 0 else { return endpoint }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Connects to `endpoint` (the peer need not be bound yet).
    /// - Throws: ``TransportError`` naming the endpoint and the fix.
    public func connect(_ endpoint: String) throws(TransportError) {
        let socket = try open()
        try Self.checkEndpoint(endpoint)
        guard zmq_connect(socket, endpoint) == 0 else {
            throw zmqError("connecting \(name) to \(endpoint)", hint: "check the address")
        }
    }

    static func checkEndpoint(_ endpoint: String) throws(TransportError) {
        if endpoint.hasPrefix("ipc://") {
            let path = endpoint.dropFirst(6)
            if path.utf8.count > 107 {
                throw TransportError(
                    .invalidArgument,
                    "ipc endpoint path is \(path.utf8.count) bytes, more than the 107 a Unix socket path can hold; use a shorter path (e.g. under /tmp)")
            }
            if path.isEmpty { throw TransportError(.invalidArgument, "ipc endpoint has no path; write ipc:///tmp/NAME") }
            return
        }
        guard endpoint.hasPrefix("tcp://") || endpoint.hasPrefix("inproc://") else {
            throw TransportError(
                .invalidArgument,
                "endpoint '\(endpoint)' has no supported scheme; use ipc://PATH, tcp://HOST:PORT or inproc://NAME")
        }
    }

    /// Sets a socket option.
    /// - Throws: ``TransportError`` when ZeroMQ refuses the value.
    public func setOption(_ option: SocketOption, _ value: Int) throws(TransportError) {
        let socket = try open()
        var v = Int32(clamping: value)
        guard zmq_setsockopt(socket, option.zmqOption, &v, MemoryLayout<Int32>.size) == 0 else {
            throw zmqError("setting \(option.rawValue)=\(value) on \(name)", hint: "give a value ZeroMQ accepts")
        }
    }

    /// Reads a socket option.
    public func option(_ option: SocketOption) throws(TransportError) -> Int {
        let socket = try open()
        var v: Int32 = 0
        var length = MemoryLayout<Int32>.size
        guard zmq_getsockopt(socket, option.zmqOption, &v, &length) == 0 else {
            throw zmqError("reading \(option.rawValue) of \(name)")
        }
        return Int(v)
    }

    func open() throws(TransportError) -> UnsafeMutableRawPointer {
        guard let raw else { throw TransportError(.closed, "socket \(name) is closed; make a new socket") }
        return raw
    }

    // MARK: transfers

    /// Sends one message. On success the payload belongs to the receiver and `message` is empty;
    /// on any other result `message` still owns its payload.
    public func send(_ message: Message, timeout: Int = -1) -> TransferResult {
        send(parts: CollectionOfOne(message), timeout: timeout)
    }

    /// Sends the parts as one multipart message (over `shmem`: one metadata frame). All or none
    /// are sent; on success every part is empty.
    public func send(_ parts: [Message], timeout: Int = -1) -> TransferResult {
        guard !parts.isEmpty else {
            return .error(TransportError(.invalidArgument, "cannot send a multipart message of 0 parts; add at least one message"))
        }
        guard parts.count <= MetadataCodec.maximumParts else {
            return .error(TransportError(.invalidArgument, "a multipart message holds at most \(MetadataCodec.maximumParts) parts; send \(parts.count) in several messages"))
        }
        return send(parts: parts, timeout: timeout)
    }

    /// Both sends: checks that every part is of this socket's transport, sends, counts.
    private func send(parts: some RandomAccessCollection<Message>, timeout: Int) -> TransferResult {
        for part in parts where part.factory.kind != factory.kind {
            return .error(TransportError(.invalidArgument, "cannot send a \(part.transport) message on a \(factory.kind) socket; make the message with this socket's factory"))
        }
        let result = factory.kind == .shmem ? sendShmem(parts, timeout: timeout) : sendZeroMQ(parts, timeout: timeout)
        if case .transferred(let n) = result {
            messagesSent += 1
            bytesSent += n
        }
        return result
    }

    /// Receives one message into `message`, replacing (and freeing) what it held. A multipart
    /// message is an error here (its parts are freed); receive it with ``receive(_:timeout:)-(inout [Message],_)``.
    public func receive(_ message: Message, timeout: Int = -1) -> TransferResult {
        guard message.factory === factory else {
            return .error(TransportError(
                .invalidArgument,
                "cannot receive into a message of another factory; make it with this socket's factory (factory.makeMessage())"))
        }
        var noParts: [Message] = []  // stays empty (an empty array allocates nothing)
        return receive(into: &noParts, single: message, timeout: timeout)
    }

    /// Receives a multipart message, appending its parts to `parts`.
    public func receive(_ parts: inout [Message], timeout: Int = -1) -> TransferResult {
        receive(into: &parts, single: nil, timeout: timeout, reuseParts: false)
    }

    /// Receives a multipart message into the handles already in `parts`: afterwards `parts` holds
    /// exactly the received parts, in order, the first ones being the handles it held (their old
    /// payloads freed), new handles appended only when it holds fewer. A loop that receives
    /// messages of the same part count this way allocates nothing per message over `shmem`.
    /// On any other result each handle is valid, empty or owning a payload of its own.
    public func receive(reusing parts: inout [Message], timeout: Int = -1) -> TransferResult {
        for part in parts where part.factory !== factory {
            return .error(TransportError(
                .invalidArgument,
                "cannot receive into a message of another factory; make the parts with this socket's factory (factory.makeMessage())"))
        }
        return receive(into: &parts, single: nil, timeout: timeout, reuseParts: true)
    }

    /// Receives into `single` when it is given (a multipart message is then an error), else
    /// into `parts`: appended, or into its handles when `reuseParts`.
    private func receive(into parts: inout [Message], single: Message?, timeout: Int, reuseParts: Bool = false) -> TransferResult {
        let result = factory.kind == .shmem
            ? receiveShmem(into: &parts, single: single, timeout: timeout, reuseParts: reuseParts)
            : receiveZeroMQ(into: &parts, single: single, timeout: timeout, reuseParts: reuseParts)
        if case .transferred(let n) = result {
            messagesReceived += 1
            bytesReceived += n
        }
        return result
    }

    /// The message the next received part goes into: `single` when receiving one message, else a
    /// new message appended to `parts`.
    func nextTarget(_ single: Message?, _ parts: inout [Message]) -> Message {
        if let single { return single }
        let target = factory.makeMessage()
        parts.append(target)
        return target
    }

    /// The handle part `index` goes into when receiving into reused handles: the one at `index`,
    /// or a new one appended.
    func reusedTarget(_ parts: inout [Message], _ index: Int) -> Message {
        if index < parts.count { return parts[index] }
        let target = factory.makeMessage()
        parts.append(target)
        return target
    }

    /// Drops the handles past the `count` received parts (keeping the array's storage).
    func trimParts(_ parts: inout [Message], to count: Int) {
        if parts.count > count { parts.removeLast(parts.count - count) }
    }

    /// Receives one ZeroMQ frame into `frame` (initialised by the caller), waiting as asked.
    func receiveFrame(_ frame: UnsafeMutablePointer<zmq_msg_t>, socket: UnsafeMutableRawPointer, deadline: Deadline)
        -> TransferResult
    {
        var deadline = deadline
        while true {
            if factory.interrupter.isInterrupted { return .interrupted }
            let rc = zmq_msg_recv(frame, socket, ZMQ_DONTWAIT)
            if rc >= 0 { return .transferred(Int(rc)) }
            let number = zmq_errno()
            if number == EINTR { continue }
            guard number == EAGAIN else { return .error(zmqError("receiving on \(name)")) }
            switch zmqWait(socket, events: ZMQ_POLLIN, interrupter: factory.interrupter, deadline: &deadline) {
            case .ready: continue
            case .timeout: return .timeout
            case .interrupted: return .interrupted
            case .failed(let error): return .error(error)
            }
        }
    }

    /// Sends the prepared `frames` as one (multipart) ZeroMQ message. Waits only for the first;
    /// ZeroMQ accepts the rest of a multipart message once the first part is in. Closes every
    /// frame not handed to ZeroMQ; returns whether all were sent.
    func sendFrames(_ frames: UnsafeMutablePointer<zmq_msg_t>, count: Int, socket: UnsafeMutableRawPointer, deadline: Deadline)
        -> TransferResult
    {
        var sent = 0
        var deadline = deadline
        defer { for index in sent..<count { zmq_msg_close(frames + index) } }
        while true {
            if factory.interrupter.isInterrupted { return .interrupted }
            let flags = ZMQ_DONTWAIT | (count > 1 ? ZMQ_SNDMORE : 0)
            if zmq_msg_send(frames, socket, flags) >= 0 { break }
            let number = zmq_errno()
            if number == EINTR { continue }
            guard number == EAGAIN else {
                let hint = number == EFSM ? "a REQ socket must receive the reply before sending again, a REP socket must receive first" : ""
                return .error(zmqError("sending on \(name)", hint: hint))
            }
            switch zmqWait(socket, events: ZMQ_POLLOUT, interrupter: factory.interrupter, deadline: &deadline) {
            case .ready: continue
            case .timeout: return .timeout
            case .interrupted: return .interrupted
            case .failed(let error): return .error(error)
            }
        }
        sent = 1
        while sent < count {
            let flags = sent + 1 < count ? ZMQ_SNDMORE : 0
            if zmq_msg_send(frames + sent, socket, flags) < 0 {
                if zmq_errno() == EINTR { continue }
                return .error(zmqError("sending part \(sent + 1) of \(count) on \(name)"))
            }
            sent += 1
        }
        return .transferred(0)
    }

    /// Drops the remaining frames of a multipart ZeroMQ message.
    func drainMore(_ socket: UnsafeMutableRawPointer) -> Int {
        var dropped = 0
        var more: Int32 = 0
        var length = MemoryLayout<Int32>.size
        while zmq_getsockopt(socket, ZMQ_RCVMORE, &more, &length) == 0 && more != 0 {
            var frame = zmq_msg_t()
            zmq_msg_init(&frame)
            _ = zmq_msg_recv(&frame, socket, 0)
            zmq_msg_close(&frame)
            dropped += 1
        }
        return dropped
    }

    // MARK: zeromq transport

    private func sendZeroMQ(_ parts: some RandomAccessCollection<Message>, timeout: Int) -> TransferResult {
        let socket: UnsafeMutableRawPointer
        do { socket = try open() } catch { return .error(error) }
        // On the stack for the usual few parts; withUnsafeTemporaryAllocation falls back to the heap for many.
        return withUnsafeTemporaryAllocation(of: zmq_msg_t.self, capacity: parts.count) { buffer in
            let frames = buffer.baseAddress!
            var total = 0
            for (index, part) in parts.enumerated() {
                switch part.storage {
                case .empty: zmq_msg_init(frames + index)
                case .heap(let payload):
                    guard payload.initialize(frames + index, size: part.size) else {
                        for built in 0..<index { zmq_msg_close(frames + built) }
                        return .error(zmqError("preparing part \(index + 1) for sending on \(name)"))
                    }
                case .shm, .region: preconditionFailure("a shmem message passed the transport check of a zeromq socket")
                }
                total += part.size
            }
            let result = sendFrames(frames, count: parts.count, socket: socket, deadline: Deadline(timeoutMilliseconds: timeout))
            guard case .transferred = result else { return result }
            for part in parts { part.markSent() }
            return .transferred(total)
        }
    }

    private func receiveZeroMQ(into parts: inout [Message], single: Message?, timeout: Int, reuseParts: Bool) -> TransferResult {
        let socket: UnsafeMutableRawPointer
        do { socket = try open() } catch { return .error(error) }
        let deadline = Deadline(timeoutMilliseconds: timeout)
        var total = 0
        var index = 0
        while true {
            let frame = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            zmq_msg_init(frame)
            let result = index == 0
                ? receiveFrame(frame, socket: socket, deadline: deadline)
                : receiveFrame(frame, socket: socket, deadline: Deadline(timeoutMilliseconds: -1))
            guard case .transferred(let size) = result else {
                zmq_msg_close(frame)
                frame.deallocate()
                return result
            }
            let more = zmq_msg_more(frame) != 0
            if single != nil && (more || index > 0) {
                zmq_msg_close(frame)
                frame.deallocate()
                let dropped = drainMore(socket) + 1 + index
                return .error(TransportError(
                    .wrongPartCount,
                    "received a multipart message (\(dropped) parts or more) where one message was expected; it was dropped. Receive it with receive(_ parts:)"))
            }
            let target = reuseParts ? reusedTarget(&parts, index) : nextTarget(single, &parts)
            if size == 0 {
                zmq_msg_close(frame)
                frame.deallocate()
                target.install(.empty, base: nil, size: 0)
            } else {
                let payload = HeapPayload(received: frame)
                if target.alignment > 1 && Int(bitPattern: payload.base) % target.alignment != 0 {
                    do {
                        let aligned = try HeapPayload(size: size, alignment: target.alignment)
                        aligned.base.copyMemory(from: payload.base, byteCount: size)
                        target.install(.heap(aligned), base: aligned.base, size: size)
                    } catch {
                        return .error(error)
                    }
                } else {
                    target.install(.heap(payload), base: payload.base, size: size)
                }
            }
            total += size
            index += 1
            if !more {
                if reuseParts { trimParts(&parts, to: index) }
                return .transferred(total)
            }
        }
    }
}
