import ArgumentParser
import CMallocCounter
import Logging
import ShmCleanup
import ShmCore
import ShmTestSupport
import ShmTransport
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `transport-peer`: one end of a transfer in its own process, for the cross-process tests.
///
/// It binds or connects one socket, then sends or receives messages filled with a known
/// pattern and checks every byte it receives. Output (stdout, one line each):
/// `ready <endpoint>` once bound or connected, `block <segment> <offset> <size>` for every
/// shmem message it sends with `--report-blocks`, `done <messages> <bytes>` at the end.
/// Exit codes: 0 success, 1 a transfer failed or a byte was wrong, 2 bad usage.
@main
struct TransportPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport-peer",
        abstract: "Send or receive patterned messages over the shmem or zeromq transport (test peer).")

    enum Role: String, ExpressibleByArgument { case send, receive }

    @Option(help: "shmem or zeromq.")
    var transport: String = "shmem"
    @Option(name: [.customShort("s"), .long], help: "Session id (default: $SHMTRANSPORT_SESSION or 'default').")
    var session: String?
    @Option(name: .customLong("shm-dir"), help: "Shm directory (default: $SHMTRANSPORT_SHM_DIR or /dev/shm).")
    var shmDir: String?
    @Option(name: .customLong("segment-size"), help: "Segment size in bytes if this process creates the session.")
    var segmentSize: Int = 256 << 20
    @Option(help: "Socket type: pair, push, pull, req, rep.")
    var socket: String
    @Option(help: "Endpoint to bind (tcp://HOST:* picks a free port).")
    var bind: String?
    @Option(help: "Endpoint to connect.")
    var connect: String?
    @Option(help: "send or receive (req/rep always do both: req sends first).")
    var role: Role
    @Option(help: "Number of messages.")
    var messages: Int = 10
    @Option(help: "Bytes per part.")
    var size: Int = 1000
    @Option(help: "Parts per message (1 = a single message).")
    var parts: Int = 1
    @Option(help: "Per-transfer timeout in ms.")
    var timeout: Int = 20_000
    @Flag(name: .customLong("report-blocks"), help: "Print the shm block of every message sent.")
    var reportBlocks = false
    @Flag(name: .customLong("keep-copy"), help: "Keep a zero-copy copy of every message sent until the end (shmem proof).")
    var keepCopy = false
    @Flag(help: "After the last transfer, wait until standard input closes before releasing kept copies and exiting.")
    var hold = false
    @Option(
        help: "Count heap allocations of the steady state: reuse handles (rebuild(size:), receive(reusing:)), skip this many messages, then print 'allocations thread <n> process <n> libzmq-thread <n> libzmq-process <n> messages <n>' for the rest (totals, then libzmq's part of them).")
    var countAllocationsAfter: Int?

    mutating func validate() throws {
        guard TransportKind(rawValue: transport) != nil else { throw ValidationError("--transport must be shmem or zeromq") }
        guard SocketType(rawValue: socket) != nil else { throw ValidationError("--socket must be pair, push, pull, req or rep") }
        guard (bind == nil) != (connect == nil) else { throw ValidationError("give exactly one of --bind and --connect") }
        guard messages >= 0, size >= 0, parts >= 1 else { throw ValidationError("--messages and --size must be >= 0, --parts >= 1") }
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        let logger = Logger(label: "transport-peer")
        var configuration = TransportConfiguration()
        if let session { configuration.session = try SessionID(session) }
        if let shmDir { configuration.shmDirectory = FilePath(shmDir) }
        configuration.segmentSize = segmentSize
        configuration.defaultLinger = 10_000
        let factory = try TransportFactory(TransportKind(rawValue: transport)!, configuration: configuration, logger: logger)
        let sock = try factory.makeSocket(SocketType(rawValue: socket)!)
        if let bind {
            print("ready \(try sock.bind(bind))")
        } else if let connect {
            try sock.connect(connect)
            print("ready \(connect)")
        }
        fflush(stdout)
        if let warmup = countAllocationsAfter {
            try countAllocations(factory, sock, warmup: warmup)
            return
        }
        var kept: [Message] = []
        var total = 0
        for index in 0..<messages {
            let sends = sock.type == .req || (role == .send && sock.type != .rep)
            if sends {
                total += try sendOne(factory, sock, index: index, kept: &kept)
                if sock.type == .req { total += try receiveOne(factory, sock, index: index) }
            } else {
                total += try receiveOne(factory, sock, index: index)
                if sock.type == .rep { total += try sendOne(factory, sock, index: index, kept: &kept) }
            }
        }
        print("done \(messages) \(total)")
        fflush(stdout)
        if hold { while readLine() != nil {} }
        kept.removeAll()
    }

    /// The steady-state loop of the allocation test: the same handles every message, every byte
    /// still written and checked. Counts from message `warmup` on.
    func countAllocations(_ factory: TransportFactory, _ sock: Socket, warmup: Int) throws {
        guard cmc_is_active() == 1, cmc_separate_libzmq() > 0 else {
            throw PeerFailure("the allocation counter is not active in this build, or cannot find libzmq's code")
        }
        guard sock.type == .push || sock.type == .pull || sock.type == .pair else {
            throw PeerFailure("--count-allocations-after takes a push, pull or pair socket")
        }
        var handles = (0..<parts).map { _ in factory.makeMessage() }
        handles.reserveCapacity(parts)
        func snapshot() -> [UInt64] {
            [cmc_thread_allocations(), cmc_process_allocations(), cmc_thread_libzmq_allocations(), cmc_process_libzmq_allocations()]
        }
        var start = [UInt64](repeating: 0, count: 4)
        start.reserveCapacity(4)
        for index in 0..<messages {
            if index == warmup { start = snapshot() }
            if role == .send {
                for (part, message) in handles.enumerated() {
                    try message.rebuild(size: size)
                    message.withUnsafeMutableBytes { fillPattern($0, message: index, part: part) }
                }
                let result = parts == 1 ? sock.send(handles[0], timeout: timeout) : sock.send(handles, timeout: timeout)
                guard case .transferred = result else { throw PeerFailure("send \(index): \(result)") }
            } else {
                let result = parts == 1 ? sock.receive(handles[0], timeout: timeout) : sock.receive(reusing: &handles, timeout: timeout)
                guard case .transferred = result else { throw PeerFailure("receive \(index): \(result)") }
                guard handles.count == parts else { throw PeerFailure("receive \(index): \(handles.count) parts, expected \(parts)") }
                for (part, message) in handles.enumerated() {
                    guard message.size == size, message.withUnsafeBytes({ checkPattern($0, message: index, part: part) }) else {
                        throw PeerFailure("receive \(index) part \(part): wrong size \(message.size) or bytes")
                    }
                }
            }
        }
        let counts = zip(snapshot(), start).map { $0 - $1 }
        print("allocations thread \(counts[0]) process \(counts[1]) libzmq-thread \(counts[2]) libzmq-process \(counts[3]) messages \(max(0, messages - warmup))")
        fflush(stdout)
        // ZeroMQ drops what a peer has not read yet when this process's connection goes away.
        if hold { while readLine() != nil {} }
    }

    func sendOne(_ factory: TransportFactory, _ sock: Socket, index: Int, kept: inout [Message]) throws -> Int {
        var batch: [Message] = []
        for part in 0..<parts {
            let message = try factory.makeMessage(size: size)
            message.withUnsafeMutableBytes { fillPattern($0, message: index, part: part) }
            if reportBlocks, let block = message.shmBlock, let memory = factory.sessionMemory, let data = message.data {
                print("block \(block.segmentID) \(block.offset) \(block.size) \(memory.contains(data) ? "inside" : "outside")")
            }
            if keepCopy { kept.append(try message.copy()) }
            batch.append(message)
        }
        let result = parts == 1 ? sock.send(batch[0], timeout: timeout) : sock.send(batch, timeout: timeout)
        guard case .transferred(let n) = result else { throw PeerFailure("send \(index): \(result)") }
        return n
    }

    func receiveOne(_ factory: TransportFactory, _ sock: Socket, index: Int) throws -> Int {
        var received: [Message] = []
        let result: TransferResult
        if parts == 1 {
            let message = factory.makeMessage()
            result = sock.receive(message, timeout: timeout)
            received = [message]
        } else {
            result = sock.receive(&received, timeout: timeout)
        }
        guard case .transferred(let n) = result else { throw PeerFailure("receive \(index): \(result)") }
        guard received.count == parts else { throw PeerFailure("receive \(index): \(received.count) parts, expected \(parts)") }
        for (part, message) in received.enumerated() {
            guard message.size == size, message.withUnsafeBytes({ checkPattern($0, message: index, part: part) }) else {
                throw PeerFailure("receive \(index) part \(part): wrong size \(message.size) or bytes")
            }
        }
        return n
    }
}

struct PeerFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

