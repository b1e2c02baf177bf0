// A plain program written as a user would: the factory, the socket and a message live in
// globals, and the program ends without tearing them down — by returning from top-level code
// or by calling `exit(0)`. Swift deinitializes no global at exit, so only the library's exit
// hook detaches it from the session. The tests run two of these as a ping-pong pair and check
// that the session is gone afterwards.
//
// Usage: global-factory-peer ping|pong ENDPOINT ROUNDS return|exit
// Session and directory come from SHMTRANSPORT_SESSION and SHMTRANSPORT_SHM_DIR.
import Logging
import ShmTransport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count == 5, ["ping", "pong"].contains(arguments[1]), let rounds = Int(arguments[3]),
    ["return", "exit"].contains(arguments[4])
else {
    fputs("usage: global-factory-peer ping|pong ENDPOINT ROUNDS return|exit\n", stderr)
    exit(2)
}
let pinging = arguments[1] == "ping"
let factory = try TransportFactory(
    .shmem, configuration: TransportConfiguration(segmentSize: 16 << 20),
    logger: Logger(label: "global-factory-peer") { _ in SwiftLogNoOpLogHandler() })
let socket = try factory.makeSocket(.pair)
if pinging { _ = try socket.bind(arguments[2]) } else { try socket.connect(arguments[2]) }
var lastMessage = factory.makeMessage()

for round in 0..<rounds {
    if pinging {
        let message = try factory.makeMessage(size: 64)
        message.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(round), as: UInt64.self) }
        guard case .transferred = socket.send(message, timeout: 10_000) else { fputs("ping: send \(round) failed\n", stderr); exit(1) }
    }
    let reply = factory.makeMessage()
    guard case .transferred = socket.receive(reply, timeout: 10_000),
        reply.withUnsafeBytes({ $0.load(as: UInt64.self) }) == UInt64(round)
    else { fputs("\(arguments[1]): receive \(round) failed\n", stderr); exit(1) }
    if !pinging {
        guard case .transferred = socket.send(reply, timeout: 10_000) else { fputs("pong: send \(round) failed\n", stderr); exit(1) }
    } else {
        lastMessage = reply  // a message of the session still held in a global at exit
    }
}
// The pong side waits for a last word before it ends: a process that ends right after a send
// can take its last message with it (libzmq's I/O thread dies with the process).
if pinging {
    _ = socket.send(try factory.makeMessage(size: 8), timeout: 1000)
} else {
    _ = socket.receive(factory.makeMessage(), timeout: 2000)
}
print("\(arguments[1]) done \(rounds)")
if arguments[4] == "exit" { exit(0) }
