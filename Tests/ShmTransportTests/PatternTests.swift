import Foundation
import ShmTestSupport
import ShmTransport
import Testing

/// The transports every shared test runs against.
let transports: [TransportKind] = TransportKind.allCases

/// Every pattern over every endpoint kind, single and multipart, between two threads.
@Suite struct PatternTests {
    static let patterns: [(SocketType, SocketType)] = [(.pair, .pair), (.pull, .push), (.rep, .req)]

    @Test(arguments: transports, EndpointKind.allCases)
    func twoThreads(_ kind: TransportKind, _ endpointKind: EndpointKind) throws {
        try withFixture(kind, "pat") { fixture in
            let factory = try fixture.makeFactory()
            for (index, (server, client)) in Self.patterns.enumerated() {
                for parts in [1, 3] {
                    try exchange(
                        factory, fixture, server: server, client: client, endpointKind: endpointKind,
                        name: "p\(index)-\(parts)", parts: parts)
                }
            }
        }
    }

    /// `server` binds and receives (rep: and replies); `client` connects on another thread and sends.
    func exchange(
        _ factory: TransportFactory, _ fixture: TransportFixture, server: SocketType, client: SocketType,
        endpointKind: EndpointKind, name: String, parts: Int
    ) throws {
        let count = 20
        let size = 3000
        let receiver = try factory.makeSocket(server)
        let address = try receiver.bind(fixture.endpoint(endpointKind, name))
        let sender = try factory.makeSocket(client)
        try sender.connect(address)
        let worker = Worker { worker in
            for index in 0..<count {
                do {
                    let batch = try (0..<parts).map { part in
                        try patterned(factory, size: size + part, index: index, part: part)
                    }
                    let result = parts == 1 ? sender.send(batch[0], timeout: 10_000) : sender.send(batch, timeout: 10_000)
                    guard result == .transferred((0..<parts).reduce(0) { $0 + size + $1 }) else {
                        worker.fail("\(client) send \(index): \(result)")
                        return
                    }
                    if batch.contains(where: { !$0.isEmpty }) { worker.fail("a sent message still holds its payload") }
                    if client == .req {
                        let reply = factory.makeMessage()
                        let got = sender.receive(reply, timeout: 10_000)
                        if got != .transferred(2) || reply.text != "ok" { worker.fail("reply \(index): \(got)") }
                    }
                } catch {
                    worker.fail("\(error)")
                    return
                }
            }
        }
        for index in 0..<count {
            var received: [Message] = []
            let result: TransferResult
            if parts == 1 {
                let message = factory.makeMessage()
                result = receiver.receive(message, timeout: 10_000)
                received = [message]
            } else {
                result = receiver.receive(&received, timeout: 10_000)
            }
            try #require(result == .transferred((0..<parts).reduce(0) { $0 + size + $1 }), "\(server) receive \(index): \(result)")
            #expect(received.count == parts)
            for (part, message) in received.enumerated() {
                #expect(message.size == size + part)
                #expect(message.withUnsafeBytes { checkPattern($0, message: index, part: part) }, "message \(index) part \(part)")
            }
            if server == .rep {
                try #require(receiver.send(try textMessage(factory, "ok"), timeout: 10_000) == .transferred(2))
            }
        }
        #expect(worker.join() == [])
        #expect(receiver.messagesReceived == count && sender.messagesSent == count)
        receiver.close()
        sender.close()
    }
}

/// The same patterns with the peer in a separate process (`transport-peer`), over ipc and tcp,
/// with either side binding.
@Suite struct CrossProcessTests {
    struct Case: Sendable, CustomStringConvertible {
        let local: SocketType
        let remote: SocketType
        let localBinds: Bool
        let parts: Int
        var description: String { "\(local)<->\(remote) \(localBinds ? "local binds" : "peer binds") parts=\(parts)" }
    }

    static let cases: [Case] = [
        Case(local: .pull, remote: .push, localBinds: true, parts: 1),
        Case(local: .pull, remote: .push, localBinds: false, parts: 3),
        Case(local: .push, remote: .pull, localBinds: true, parts: 2),
        Case(local: .pair, remote: .pair, localBinds: false, parts: 1),
        Case(local: .rep, remote: .req, localBinds: true, parts: 1),
        Case(local: .req, remote: .rep, localBinds: false, parts: 2),
    ]

    @Test(arguments: transports, [EndpointKind.ipc, .tcp])
    func twoProcesses(_ kind: TransportKind, _ endpointKind: EndpointKind) throws {
        try withFixture(kind, "xp") { fixture in
            let factory = try fixture.makeFactory()  // attaches (and so keeps) the session first
            for (number, item) in Self.cases.enumerated() {
                try run(item, number: number, factory: factory, fixture: fixture, endpointKind: endpointKind)
            }
        }
    }

    func run(_ item: Case, number: Int, factory: TransportFactory, fixture: TransportFixture, endpointKind: EndpointKind) throws {
        let count = 10
        let size = 5000
        let socket = try factory.makeSocket(item.local)
        let remoteRole = item.remote == .push || item.remote == .req || (item.remote == .pair) ? "send" : "receive"
        var arguments = fixture.peerArguments + [
            "--socket", item.remote.rawValue, "--role", remoteRole, "--messages", "\(count)", "--size", "\(size)",
            "--parts", "\(item.parts)",
        ]
        let peer: PeerProcess
        if item.localBinds {
            let address = try socket.bind(fixture.endpoint(endpointKind, "x\(number)"))
            arguments += ["--connect", address]
            peer = try PeerProcess(arguments)
            #expect(peer.readLine()?.hasPrefix("ready") == true)
        } else {
            arguments += ["--bind", fixture.endpoint(endpointKind, "x\(number)")]
            peer = try PeerProcess(arguments)
            let ready = peer.readLine() ?? ""
            try #require(ready.hasPrefix("ready "), "peer said '\(ready)'")
            try socket.connect(String(ready.dropFirst(6)))
        }
        let localSends = item.local == .push || item.local == .req
        for index in 0..<count {
            if localSends {
                try sendBatch(socket, factory, index: index, size: size, parts: item.parts)
                if item.local == .req { try receiveBatch(socket, factory, index: index, size: size, parts: item.parts) }
            } else {
                try receiveBatch(socket, factory, index: index, size: size, parts: item.parts)
                if item.local == .rep { try sendBatch(socket, factory, index: index, size: size, parts: item.parts) }
            }
        }
        let line = peer.readLine() ?? ""
        let (status, stderr) = peer.wait()
        #expect(status == 0, "\(item): peer failed: \(stderr)")
        #expect(line.hasPrefix("done \(count) "), "\(item): peer said '\(line)'")
        socket.close()
    }

    func sendBatch(_ socket: Socket, _ factory: TransportFactory, index: Int, size: Int, parts: Int) throws {
        let batch = try (0..<parts).map { part in try patterned(factory, size: size, index: index, part: part) }
        let result = parts == 1 ? socket.send(batch[0], timeout: 20_000) : socket.send(batch, timeout: 20_000)
        try #require(result == .transferred(size * parts), "send \(index): \(result)")
    }

    func receiveBatch(_ socket: Socket, _ factory: TransportFactory, index: Int, size: Int, parts: Int) throws {
        var received: [Message] = []
        let result: TransferResult
        if parts == 1 {
            let message = factory.makeMessage()
            result = socket.receive(message, timeout: 20_000)
            received = [message]
        } else {
            result = socket.receive(&received, timeout: 20_000)
        }
        try #require(result == .transferred(size * parts), "receive \(index): \(result)")
        for (part, message) in received.enumerated() {
            #expect(message.withUnsafeBytes { checkPattern($0, message: index, part: part) }, "message \(index) part \(part)")
        }
    }
}
