import Foundation
import ShmTestSupport
import ShmTransport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Message behaviour shared by both transports (FairMQ's message tests), over a PAIR over inproc.
@Suite struct MessageTests {
    /// A connected PAIR of one factory.
    struct Link {
        let factory: TransportFactory
        let a: Socket
        let b: Socket
        init(_ fixture: TransportFixture, metadataMessageSize: Int = 0) throws {
            factory = try fixture.makeFactory(metadataMessageSize: metadataMessageSize)
            a = try factory.makeSocket(.pair)
            b = try factory.makeSocket(.pair)
            let address = try a.bind(fixture.endpoint(.inproc, "link"))
            try b.connect(address)
        }
    }

    @Test(arguments: transports, [0, 2048])
    func resize(_ kind: TransportKind, _ metadataMessageSize: Int) throws {
        try withFixture(kind, "resize") { fixture in
            let link = try Link(fixture, metadataMessageSize: metadataMessageSize)
            let message = try textMessage(link.factory, "123456")
            #expect(message.size == 6)
            try message.setUsedSize(5)
            #expect(message.size == 5 && message.text == "12345")
            try message.setUsedSize(2)
            #expect(message.size == 2 && message.text == "12")
            #expect(throws: (any Error).self) { () throws in try message.setUsedSize(3) }
            #expect(message.size == 2)
            let copy = try message.copy()
            #expect(copy.size == 2 && copy.text == "12")
            #expect(link.a.send(message) == .transferred(2))
            let received = link.factory.makeMessage()
            #expect(link.b.receive(received, timeout: 5000) == .transferred(2))
            #expect(received.size == 2 && received.text == "12")
            try received.setUsedSize(0)
            #expect(received.isEmpty && received.size == 0 && received.data == nil)
            #expect(link.b.send(received) == .transferred(0))
            let empty = link.factory.makeMessage()
            #expect(link.a.receive(empty, timeout: 5000) == .transferred(0))
            #expect(empty.isEmpty)
        }
    }

    /// `receive(reusing:)` fills the handles it is given, in order, appends what is missing and
    /// drops the rest; handles of another factory are refused.
    @Test(arguments: transports)
    func receiveReusingHandles(_ kind: TransportKind) throws {
        try withFixture(kind, "reuse") { fixture in
            let link = try Link(fixture)
            var parts = (0..<3).map { _ in link.factory.makeMessage() }
            let first = parts[0]
            for (index, count) in [3, 1, 5, 2].enumerated() {
                let batch = try (0..<count).map { try patterned(link.factory, size: 100 + $0, index: index, part: $0) }
                let bytes = (0..<count).map { 100 + $0 }.reduce(0, +)
                #expect(link.a.send(batch, timeout: 5000) == .transferred(bytes))
                #expect(link.b.receive(reusing: &parts, timeout: 5000) == .transferred(bytes))
                #expect(parts.count == count)
                #expect(parts[0] === first, "the first handle is reused")
                for (part, message) in parts.enumerated() {
                    #expect(message.size == 100 + part && message.withUnsafeBytes { checkPattern($0, message: index, part: part) })
                }
            }
            let other = try TransportFactory(kind, configuration: fixture.configuration(), logger: testLogger)
            var foreign = [other.makeMessage()]
            guard case .error(let error) = link.b.receive(reusing: &foreign, timeout: 0) else {
                Issue.record("a handle of another factory was accepted")
                return
            }
            #expect(error.code == .invalidArgument)
        }
    }

    @Test(arguments: transports)
    func rebuild(_ kind: TransportKind) throws {
        try withFixture(kind, "rebuild") { fixture in
            let link = try Link(fixture)
            let message = try textMessage(link.factory, "first")
            try message.rebuild(size: 1000)
            #expect(message.size == 1000 && message.data != nil)
            let bytes = Array("rebuilt from bytes".utf8)
            try bytes.withUnsafeBytes { buffer in try message.rebuild(copying: buffer) }
            #expect(message.text == "rebuilt from bytes")
            #expect(link.a.send(message) == .transferred(bytes.count))
            let received = try textMessage(link.factory, "old contents are freed")
            #expect(link.b.receive(received, timeout: 5000) == .transferred(bytes.count))
            #expect(received.text == "rebuilt from bytes")
            received.rebuild()
            #expect(received.isEmpty && received.size == 0 && received.data == nil)
        }
    }

    @Test(arguments: transports, [64, 4096])
    func alignment(_ kind: TransportKind, _ alignment: Int) throws {
        try withFixture(kind, "align") { fixture in
            let link = try Link(fixture)
            func aligned(_ message: Message) -> Bool { message.data.map { Int(bitPattern: $0) % alignment == 0 } ?? false }
            let message = try patterned(link.factory, size: 100, index: 1, alignment: alignment)
            #expect(aligned(message))
            let copy = try message.copy()
            #expect(aligned(copy))
            #expect(link.a.send(message) == .transferred(100))
            let received = link.factory.makeMessage(alignment: alignment)
            #expect(link.b.receive(received, timeout: 5000) == .transferred(100))
            #expect(aligned(received))
            #expect(received.withUnsafeBytes { checkPattern($0, message: 1, part: 0) })
            try received.rebuild(size: 500, alignment: alignment)
            #expect(aligned(received))
            // A receiver asking for more alignment than the sender used still gets it.
            let weak = try patterned(link.factory, size: 77, index: 2, alignment: 16)
            #expect(link.a.send(weak) == .transferred(77))
            let strong = link.factory.makeMessage(alignment: alignment)
            #expect(link.b.receive(strong, timeout: 5000) == .transferred(77))
            #expect(aligned(strong) && strong.withUnsafeBytes { checkPattern($0, message: 2, part: 0) })
        }
    }

    @Test(arguments: transports)
    func emptyMessages(_ kind: TransportKind) throws {
        try withFixture(kind, "empty") { fixture in
            let link = try Link(fixture)
            let empty = link.factory.makeMessage()
            #expect(empty.isEmpty && empty.data == nil && empty.size == 0 && empty.referenceCount == 0)
            let zero = try link.factory.makeMessage(size: 0)
            #expect(zero.isEmpty && zero.data == nil)
            let copy = try empty.copy()
            #expect(copy.isEmpty && copy.data == nil)
            #expect(link.a.send(empty) == .transferred(0))
            let received = try textMessage(link.factory, "replaced")
            #expect(link.b.receive(received, timeout: 5000) == .transferred(0))
            #expect(received.isEmpty && received.data == nil)
            // Empty parts inside a multipart message.
            let parts = [link.factory.makeMessage(), try textMessage(link.factory, "x"), link.factory.makeMessage()]
            #expect(link.a.send(parts) == .transferred(1))
            var got: [Message] = []
            #expect(link.b.receive(&got, timeout: 5000) == .transferred(1))
            #expect(got.map(\.size) == [0, 1, 0] && got[0].isEmpty && got[2].isEmpty && got[1].text == "x")
        }
    }

    @Test(arguments: transports)
    func zeroCopyReferenceCounts(_ kind: TransportKind) throws {
        try withFixture(kind, "zc") { fixture in
            let link = try Link(fixture)
            let original = try patterned(link.factory, size: 4096, index: 5)
            #expect(original.referenceCount == 1)
            var first: Message? = try original.copy()
            #expect(first!.data == original.data)
            #expect(original.referenceCount == 2 && first!.referenceCount == 2)
            let second = try original.copy()
            #expect(original.referenceCount == 3 && second.referenceCount == 3)
            first = nil
            #expect(original.referenceCount == 2)
            #expect(link.a.send(second) == .transferred(4096))
            #expect(second.isEmpty && second.referenceCount == 0)
            let received = link.factory.makeMessage()
            #expect(link.b.receive(received, timeout: 5000) == .transferred(4096))
            #expect(received.withUnsafeBytes { checkPattern($0, message: 5, part: 0) })
            switch kind {
            case .shmem:
                // The receiver holds the very same block: one count shared across both ends.
                #expect(received.data == original.data)
                #expect(original.referenceCount == 2 && received.referenceCount == 2)
                let third = try received.copy()
                #expect(original.referenceCount == 3 && third.referenceCount == 3)
            case .zeromq:
                // libzmq delivers its own buffer; the sender's count drops by the one sent.
                #expect(original.referenceCount == 1 && received.referenceCount == 1)
            }
        }
    }

    @Test(arguments: transports)
    func sendFailureKeepsOwnership(_ kind: TransportKind) throws {
        try withFixture(kind, "own") { fixture in
            let factory = try fixture.makeFactory()
            let push = try factory.makeSocket(.push)
            let message = try patterned(factory, size: 10_000, index: 9)
            let address = try push.bind(fixture.endpoint(.ipc, "late"))  // no peer yet: nothing can be sent
            #expect(push.send(message, timeout: 0) == .timeout)
            #expect(push.send(message, timeout: 50) == .timeout)
            #expect(push.send([message, try patterned(factory, size: 10, index: 1)], timeout: 0) == .timeout)
            #expect(!message.isEmpty && message.size == 10_000 && message.referenceCount == 1)
            #expect(message.withUnsafeBytes { checkPattern($0, message: 9, part: 0) })
            // A REQ socket refuses a second request before the reply: an error, message kept.
            let req = try factory.makeSocket(.req)
            let rep = try factory.makeSocket(.rep)
            try req.connect(try rep.bind(fixture.endpoint(.inproc, "rr")))
            #expect(req.send(try textMessage(factory, "one"), timeout: 1000) == .transferred(3))
            let second = try textMessage(factory, "two")
            guard case .error(let error) = req.send(second, timeout: 1000) else {
                Issue.record("a second REQ send did not fail")
                return
            }
            #expect(error.message.contains("REQ socket must receive"))
            #expect(second.text == "two" && second.referenceCount == 1)
            // The kept message still goes out once a receiver exists.
            let pull = try factory.makeSocket(.pull)
            try pull.connect(address)
            #expect(push.send(message, timeout: 5000) == .transferred(10_000))
            #expect(message.isEmpty)
            let received = factory.makeMessage()
            #expect(pull.receive(received, timeout: 5000) == .transferred(10_000))
            #expect(received.withUnsafeBytes { checkPattern($0, message: 9, part: 0) })
        }
    }

    @Test(arguments: transports)
    func multipartIntoSingleReceiveIsAnError(_ kind: TransportKind) throws {
        try withFixture(kind, "mp1") { fixture in
            let link = try Link(fixture)
            #expect(link.a.send([try textMessage(link.factory, "a"), try textMessage(link.factory, "b")]) == .transferred(2))
            let single = link.factory.makeMessage()
            guard case .error(let error) = link.b.receive(single, timeout: 5000) else {
                Issue.record("a multipart message was accepted by a single receive")
                return
            }
            #expect(error.code == .wrongPartCount)
            let foreign = try TransportFactory(kind, configuration: fixture.configuration(), logger: testLogger)
            guard case .error(let other) = link.b.receive(foreign.makeMessage(), timeout: 0) else {
                Issue.record("received into a message of another factory")
                return
            }
            #expect(other.code == .invalidArgument)
            // The socket still works afterwards.
            #expect(link.a.send(try textMessage(link.factory, "c")) == .transferred(1))
            #expect(link.b.receive(single, timeout: 5000) == .transferred(1) && single.text == "c")
        }
    }
}

/// Timeouts, interrupts, socket options, the poller and refused patterns.
@Suite struct SocketBehaviourTests {
    @Test(arguments: transports)
    func timeouts(_ kind: TransportKind) throws {
        try withFixture(kind, "tmo") { fixture in
            let factory = try fixture.makeFactory()
            let pull = try factory.makeSocket(.pull)
            try pull.bind(fixture.endpoint(.inproc, "t"))
            let push = try factory.makeSocket(.push)
            try push.bind(fixture.endpoint(.ipc, "nobody"))  // bound, no peer: sends cannot proceed
            let message = factory.makeMessage()
            var parts: [Message] = []
            #expect(pull.receive(message, timeout: 0) == .timeout)
            #expect(pull.receive(&parts, timeout: 0) == .timeout)
            let start = Date()
            #expect(pull.receive(message, timeout: 200) == .timeout)
            #expect(pull.receive(&parts, timeout: 200) == .timeout)
            #expect(Date().timeIntervalSince(start) >= 0.39)
            #expect(parts.isEmpty)
            #expect(push.send(try textMessage(factory, "x"), timeout: 200) == .timeout)
            #expect(push.send([try textMessage(factory, "x"), try textMessage(factory, "y")], timeout: 0) == .timeout)
        }
    }

    @Test(arguments: transports)
    func interruptFromAnotherThread(_ kind: TransportKind) throws {
        try withFixture(kind, "intr") { fixture in
            let factory = try fixture.makeFactory()
            let pull = try factory.makeSocket(.pull)
            let address = try pull.bind(fixture.endpoint(.inproc, "i"))
            let worker = Worker { worker in
                let message = factory.makeMessage()
                let result = pull.receive(message, timeout: -1)
                if result != .interrupted { worker.fail("blocking receive returned \(result)") }
            }
            usleep(100_000)
            factory.interrupt()
            #expect(worker.join(seconds: 10) == [])
            #expect(factory.isInterrupted)
            #expect(pull.receive(factory.makeMessage(), timeout: 1000) == .interrupted)
            factory.resume()
            let push = try factory.makeSocket(.push)
            try push.connect(address)
            #expect(push.send(try textMessage(factory, "after"), timeout: 1000) == .transferred(5))
            let message = factory.makeMessage()
            #expect(pull.receive(message, timeout: 1000) == .transferred(5) && message.text == "after")
        }
    }

    @Test(arguments: transports)
    func socketOptions(_ kind: TransportKind) throws {
        try withFixture(kind, "opt") { fixture in
            let factory = try fixture.makeFactory()
            let socket = try factory.makeSocket(.push)
            #expect(try socket.option(.linger) == 0)  // the fixture's default
            let values: [(SocketOption, Int)] = [
                (.linger, 500), (.sendHighWaterMark, 123), (.receiveHighWaterMark, 321),
                (.sendBufferSize, 65536), (.receiveBufferSize, 131_072),
            ]
            for (option, value) in values {
                try socket.setOption(option, value)
                #expect(try socket.option(option) == value, "\(option)")
            }
            #expect(SocketOption(rawValue: "snd-hwm") == .sendHighWaterMark)
            socket.close()
            #expect(throws: (any Error).self) { () throws in try socket.option(.linger) }
            #expect(socket.send(factory.makeMessage()) == .error(TransportError(.closed, "socket \(socket.name) is closed; make a new socket")))
        }
    }

    @Test(arguments: transports)
    func poller(_ kind: TransportKind) throws {
        try withFixture(kind, "poll") { fixture in
            let factory = try fixture.makeFactory()
            var pulls: [Socket] = []
            var pushes: [Socket] = []
            for index in 0..<3 {
                let pull = try factory.makeSocket(.pull)
                let push = try factory.makeSocket(.push)
                try push.connect(try pull.bind(fixture.endpoint(.inproc, "c\(index)")))
                pulls.append(pull)
                pushes.append(push)
            }
            let poller = try Poller(channels: [("data", [pulls[0], pulls[1]]), ("control", [pulls[2]])])
            #expect(try poller.poll(timeout: 0) == false)
            #expect(pushes[1].send(try textMessage(factory, "sub1")) == .transferred(4))
            #expect(try poller.poll(timeout: 2000))
            #expect(poller.checkInput(channel: "data", subchannel: 1))
            #expect(!poller.checkInput(channel: "data", subchannel: 0))
            #expect(!poller.checkInput(channel: "control"))
            let message = factory.makeMessage()
            #expect(pulls[1].receive(message, timeout: 0) == .transferred(4))
            #expect(pushes[2].send(try textMessage(factory, "ctl")) == .transferred(3))
            let byIndex = try Poller(pulls)
            #expect(try byIndex.poll(timeout: 2000))
            #expect(byIndex.checkInput(2) && !byIndex.checkInput(0) && !byIndex.checkInput(1))
        }
    }

    @Test func pubSubRefusedOverShmem() throws {
        guard transports.contains(.shmem) else { return }
        try withFixture(.shmem, "pubsub") { fixture in
            let factory = try fixture.makeFactory()
            for type in [SocketType.pub, .sub] {
                do throws(TransportError) {
                    _ = try factory.makeSocket(type)
                    Issue.record("\(type) was accepted on shmem")
                } catch {
                    #expect(error.code == .unsupported)
                    #expect(error.message.contains("exactly one receiver"))
                }
            }
        }
    }

    @Test func pubSubOverZeroMQ() throws {
        try withFixture(.zeromq, "pubsubz") { fixture in
            let factory = try fixture.makeFactory()
            let pub = try factory.makeSocket(.pub)
            let sub = try factory.makeSocket(.sub)
            try sub.connect(try pub.bind(fixture.endpoint(.inproc, "ps")))
            let message = factory.makeMessage()
            var received = TransferResult.timeout
            for _ in 0..<100 where received == .timeout {  // a subscription takes a moment to arrive
                _ = pub.send(try textMessage(factory, "news"), timeout: 0)
                received = sub.receive(message, timeout: 20)
            }
            #expect(received == .transferred(4) && message.text == "news")
        }
    }

    @Test func badArguments() throws {
        try withFixture(.zeromq, "args") { fixture in
            let factory = try fixture.makeFactory()
            #expect(throws: (any Error).self) { () throws in try factory.makeMessage(size: -1) }
            #expect(throws: (any Error).self) { () throws in try factory.makeMessage(size: 10, alignment: 3) }
            let socket = try factory.makeSocket(.pair)
            do throws(TransportError) {
                try socket.bind("udp://x")
                Issue.record("udp accepted")
            } catch { #expect(error.message.contains("ipc://PATH, tcp://HOST:PORT or inproc://NAME")) }
            do throws(TransportError) {
                try socket.bind("ipc:///tmp/" + String(repeating: "x", count: 120))
                Issue.record("long ipc path accepted")
            } catch { #expect(error.message.contains("107")) }
        }
    }
}
