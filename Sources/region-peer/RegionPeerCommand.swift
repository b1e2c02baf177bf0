import ArgumentParser
import Logging
import ShmCleanup
import ShmTransport
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `region-peer`: the receiving end of region messages in its own process, for the region tests.
///
/// It connects a PULL socket, receives messages that point into an unmanaged region of the
/// session and checks every byte: a message with hint h holds h as its first 8 bytes, then the
/// bytes `(h + i) & 0xff`. With `--copies` it copies each message that many times (the copies
/// share the region's reference-count pool with the sender) before dropping them all. It keeps
/// the last `--hold-last` messages until it exits, which releases them. Output: `ready`,
/// `holding <n>` once the messages are in, `done <messages>` at exit. With `--wait` it waits for
/// standard input to close before exiting (a test may SIGKILL it then). Exit codes: 0 success,
/// 1 a transfer failed or a byte was wrong, 2 bad usage.
@main
struct RegionPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "region-peer", abstract: "Receive and check region messages (test peer).")

    @Option(name: [.customShort("s"), .long], help: "Session id.")
    var session: String
    @Option(name: .customLong("shm-dir"), help: "Shm directory.")
    var shmDir: String
    @Option(help: "Endpoint to connect.")
    var connect: String
    @Option(help: "Number of messages to receive.")
    var messages: Int
    @Option(name: .customLong("hold-last"), help: "Keep the last N messages until exit.")
    var holdLast: Int = 0
    @Option(help: "Copies made of every message (and dropped) before it is released.")
    var copies: Int = 0
    @Option(name: .customLong("segment-id"), help: "Managed segment id of this process.")
    var segmentID: UInt16 = 0
    @Flag(help: "Wait for standard input to close before exiting.")
    var wait = false
    @Flag(help: "Be the controller instead: bind --connect's address, make a region and send --messages region messages, then print 'sent <n>' and wait for standard input to close.")
    var send = false
    @Option(name: .customLong("pool-size"), help: "Reference-count pool bytes of the region made with --send (0: counters in the managed segment).")
    var poolSize: Int = 4 << 20

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        var configuration = TransportConfiguration()
        configuration.session = try SessionID(session)
        configuration.shmDirectory = FilePath(shmDir)
        configuration.segmentSize = 4 << 20
        configuration.segmentID = segmentID
        let factory = try TransportFactory(.shmem, configuration: configuration, logger: Logger(label: "region-peer"))
        if send { return try runController(factory) }
        let pull = try factory.makeSocket(.pull)
        try pull.connect(connect)
        print("ready")
        fflush(stdout)
        var held: [Message] = []
        var received = 0
        while received < messages {
            let message = factory.makeMessage()
            guard case .transferred = pull.receive(message, timeout: 30_000) else {
                throw failure("receive \(received + 1) failed")
            }
            received += 1
            let ok = message.withUnsafeBytes { bytes -> Bool in
                guard bytes.count >= 8 else { return false }
                let hint = bytes.loadUnaligned(as: UInt64.self)
                for i in 8..<bytes.count where bytes[i] != UInt8(truncatingIfNeeded: hint &+ UInt64(i)) { return false }
                return true
            }
            guard ok else { throw failure("message \(received) holds wrong bytes") }
            if copies > 0 {
                var made: [Message] = []
                for _ in 0..<copies { made.append(try message.copy()) }
                guard message.referenceCount == copies + 1 else {
                    throw failure("message \(received) has reference count \(message.referenceCount) after \(copies) copies")
                }
            }
            if received > messages - holdLast { held.append(message) }
        }
        print("holding \(held.count)")
        fflush(stdout)
        if wait {
            var byte: UInt8 = 0
            while read(0, &byte, 1) > 0 {}
        }
        held.removeAll()
        print("done \(received)")
    }

    /// The controller: every message its own 64-byte block of the region, filled as the receiver checks.
    private func runController(_ factory: TransportFactory) throws {
        let region = try factory.makeUnmanagedRegion(
            size: max(1, messages) * 64,
            configuration: RegionConfiguration(size: max(1, messages) * 64, referenceCountPoolSize: poolSize),
            callback: .bulk { _ in })
        let push = try factory.makeSocket(.push)
        _ = try push.bind(connect)
        print("ready")
        fflush(stdout)
        for i in 0..<messages {
            let message = try region.makeMessage(offset: i * 64, size: 64, hint: UInt64(i))
            message.withUnsafeMutableBytes { bytes in
                bytes.storeBytes(of: UInt64(i), as: UInt64.self)
                for j in 8..<64 { bytes[j] = UInt8(truncatingIfNeeded: UInt64(i) &+ UInt64(j)) }
            }
            guard case .transferred = push.send(message, timeout: 30_000) else { throw failure("send \(i) failed") }
        }
        print("sent \(messages)")
        fflush(stdout)
        var byte: UInt8 = 0
        while read(0, &byte, 1) > 0 {}
    }

    private func failure(_ text: String) -> ExitCode {
        fputs("region-peer: \(text)\n", stderr)
        return ExitCode(1)
    }
}
