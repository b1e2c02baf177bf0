import Foundation
import ShmCleanup
import ShmCore
import ShmTestSupport
import ShmTransport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// What only the shmem transport does: zero-copy proof, validation of hostile metadata frames,
/// no leaks, bad-alloc handling.
@Suite struct ShmemTests {
    static let bigSize = 64 << 20

    /// A 64 MiB message arrives at the very address it was written at, inside the segment, with
    /// its reference count shared with the sender's copy; a write through the sender's copy after
    /// the transfer is seen by the receiver; the segment holds one 64 MiB block, not two.
    @Test func zeroCopy64MiBInProcess() throws {
        try withFixture(.shmem, "zc64") { fixture in
            let factory = try fixture.makeFactory(segmentSize: 256 << 20)
            let memory = try #require(factory.sessionMemory)
            let empty = memory.freeMemory(segmentID: 0)
            let a = try factory.makeSocket(.pair)
            let b = try factory.makeSocket(.pair)
            try b.connect(try a.bind(fixture.endpoint(.ipc, "big")))
            let message = try patterned(factory, size: Self.bigSize, index: 64)
            let sentAddress = try #require(message.data)
            let sentBlock = try #require(message.shmBlock)
            let senderCopy = try message.copy()
            let freeAfterAllocation = memory.freeMemory(segmentID: 0)
            #expect(a.send(message, timeout: 10_000) == .transferred(Self.bigSize))
            let received = factory.makeMessage()
            #expect(b.receive(received, timeout: 10_000) == .transferred(Self.bigSize))
            #expect(received.data == sentAddress)
            #expect(memory.contains(try #require(received.data)))
            #expect(received.shmBlock == sentBlock)
            #expect(received.referenceCount == 2 && senderCopy.referenceCount == 2)
            #expect(memory.freeMemory(segmentID: 0) == freeAfterAllocation)  // no second buffer
            #expect(empty - freeAfterAllocation >= Self.bigSize && empty - freeAfterAllocation < Self.bigSize + 4096)
            senderCopy.withUnsafeMutableBytes { $0.storeBytes(of: 0xFEED_FACE_CAFE_BEEF as UInt64, toByteOffset: 1 << 20, as: UInt64.self) }
            #expect(received.withUnsafeBytes { $0.load(fromByteOffset: 1 << 20, as: UInt64.self) } == 0xFEED_FACE_CAFE_BEEF)
            senderCopy.withUnsafeMutableBytes { fillPattern($0, message: 64, part: 0) }
            #expect(received.withUnsafeBytes { checkPattern($0, message: 64, part: 0) })
        }
    }

    /// The same across two processes: `transport-peer` writes a 64 MiB message and keeps a copy;
    /// here it arrives at the offset the peer reported, inside our mapping of the segment, with a
    /// reference count of 2 (the peer's copy and ours) that drops to 1 when the peer lets go.
    /// Bulk creation: every payload distinct and inside the segment, empty sizes give empty
    /// messages, and a batch that does not fit throws and leaves the free memory as it was.
    @Test func makeMessagesInBulk() throws {
        try withFixture(.shmem, "bulk") { fixture in
            let factory = try fixture.makeFactory(segmentSize: 4 << 20)
            let memory = try #require(factory.sessionMemory)
            let empty = memory.freeMemory(segmentID: 0)
            let sizes = [100, 0, 5000, 64, 1 << 20]
            let messages = try factory.makeMessages(sizes: sizes, alignment: 64)
            #expect(messages.map(\.size) == sizes)
            #expect(messages[1].isEmpty && messages[1].shmBlock == nil)
            let blocks = messages.compactMap(\.shmBlock)
            #expect(Set(blocks.map(\.offset)).count == 4)
            for (index, message) in messages.enumerated() where !message.isEmpty {
                #expect(memory.contains(message.data!) && Int(bitPattern: message.data!) % 64 == 0)
                message.withUnsafeMutableBytes { fillPattern($0, message: index, part: 0) }
            }
            for (index, message) in messages.enumerated() {
                #expect(message.withUnsafeBytes { checkPattern($0, message: index, part: 0) })
            }
            let inUse = memory.freeMemory(segmentID: 0)
            #expect(inUse < empty)
            let tooMuch = #expect(throws: TransportError.self) { try factory.makeMessages(sizes: [1 << 20, 1 << 20, 2 << 20]) }
            #expect(tooMuch?.code == .badAlloc, "\(String(describing: tooMuch))")
            #expect(memory.freeMemory(segmentID: 0) == inUse)
            _ = #expect(throws: TransportError.self) { try factory.makeMessages(sizes: [1 << 20, 8 << 20]) }
            #expect(memory.freeMemory(segmentID: 0) == inUse)
        }
    }

    @Test func zeroCopy64MiBAcrossProcesses() throws {
        try withFixture(.shmem, "zc64x") { fixture in
            let factory = try fixture.makeFactory(segmentSize: 256 << 20)
            let memory = try #require(factory.sessionMemory)
            let pull = try factory.makeSocket(.pull)
            let address = try pull.bind(fixture.endpoint(.ipc, "big"))
            let peer = try PeerProcess(
                fixture.peerArguments + [
                    "--socket", "push", "--role", "send", "--connect", address, "--messages", "1",
                    "--size", "\(Self.bigSize)", "--report-blocks", "--keep-copy", "--hold",
                ])
            #expect(peer.readLine()?.hasPrefix("ready") == true)
            let report = (peer.readLine() ?? "").split(separator: " ")
            try #require(report.count == 5 && report[0] == "block", "peer said \(report)")
            #expect(report[4] == "inside")
            let received = factory.makeMessage()
            #expect(pull.receive(received, timeout: 20_000) == .transferred(Self.bigSize))
            #expect(peer.readLine()?.hasPrefix("done 1 ") == true)
            let block = try #require(received.shmBlock)
            #expect("\(block.segmentID)" == report[1] && "\(block.offset)" == report[2] && "\(block.size)" == report[3])
            #expect(memory.contains(try #require(received.data)))
            #expect(received.referenceCount == 2)
            #expect(received.withUnsafeBytes { checkPattern($0, message: 0, part: 0) })
            let (status, stderr) = peer.wait()
            #expect(status == 0, "\(stderr)")
            #expect(received.referenceCount == 1)
        }
    }

    /// 100,000 random and mutated metadata frames thrown at a receiving shmem socket. Four real
    /// blocks exist; before each frame every block gets one extra reference, as if it had been
    /// sent. A frame is either refused (an invalidMetadata error naming the problem) or accepted
    /// with parts that are exactly known blocks (same address, no size beyond the block's capacity,
    /// bytes intact). Afterwards
    /// each block's count is exactly 1 again, so nothing was taken twice or leaked; at the end
    /// the segment is whole.
    @Test func fuzzReceivingSocket() throws {
        try withFixture(.shmem, "fuzz") { fixture in
            let factory = try fixture.makeFactory(segmentSize: 32 << 20)
            let memory = try #require(factory.sessionMemory)
            let raw = try TransportFactory(.zeromq, configuration: fixture.configuration(), logger: testLogger)
            let receiver = try factory.makeSocket(.pair)
            let sender = try raw.makeSocket(.pair)
            try sender.connect(try receiver.bind(fixture.endpoint(.ipc, "fuzz")))
            var blocks: [Message] = []
            for (index, size) in [1, 100, 4096, 65536].enumerated() {
                blocks.append(try patterned(factory, size: size, index: 1000 + index))
            }
            let known = blocks.map { message in
                BlockDescriptor(segmentID: message.shmBlock!.segmentID, offset: message.shmBlock!.offset, size: UInt64(message.size))
            }
            // A block's capacity (what the allocator really reserved) may exceed its requested size by
            // the chunk rounding; a peer naming a size up to it reads only memory of that block.
            let capacities = known.map { block -> UInt64 in
                var low = block.size, high = UInt64(1 << 20)
                while low < high {
                    let mid = (low + high + 1) / 2
                    if (try? memory.validatedBlock(segmentID: block.segmentID, offset: block.offset, size: mid)) != nil {
                        low = mid
                    } else {
                        high = mid - 1
                    }
                }
                return low
            }
            for (index, block) in known.enumerated() {
                #expect(capacities[index] - block.size < 64, "block \(index): capacity \(capacities[index]) for \(block.size) bytes")
                if index + 1 < known.count { #expect(block.offset + capacities[index] <= known[index + 1].offset) }
            }
            var rng = SplitMix64(seed: 0xF0_22ED)
            let iterations = Int(ProcessInfo.processInfo.environment["SHMTRANSPORT_FUZZ_ITERATIONS"] ?? "") ?? 100_000
            var accepted = 0
            var refused = 0
            var firstProblem: String?
            iterationLoop: for iteration in 0..<iterations {
                for message in blocks { memory.retain(message.shmBlock!) }
                var consumed = Set<Int>()
                var frames = makeFuzzFrames(&rng, shmID: factory.shmID.number, iteration: iteration, valid: known)
                if iteration % 5000 == 4999 { frames.append([]) }  // an empty trailing frame, as a zeromq peer may send
                let frame = frames
                let outgoing = try frames.map { bytes in try bytes.withUnsafeBytes { try raw.makeMessage(copying: $0) } }
                let sent = outgoing.count == 1 ? sender.send(outgoing[0], timeout: 5000) : sender.send(outgoing, timeout: 5000)
                guard case .transferred = sent else {
                    firstProblem = "iteration \(iteration): send \(sent)"
                    break
                }
                do {
                    var parts: [Message] = []
                    switch receiver.receive(&parts, timeout: 5000) {
                    case .transferred:
                        accepted += 1
                        for part in parts where !part.isEmpty {
                            guard let block = part.shmBlock,
                                let which = known.firstIndex(where: { $0.segmentID == block.segmentID && $0.offset == block.offset }),
                                UInt64(part.size) <= capacities[which], consumed.insert(which).inserted,
                                part.data == blocks[which].data,
                                part.withUnsafeBytes({ received in
                                    blocks[which].withUnsafeBytes { original in
                                        let n = min(received.count, original.count)
                                        return n == 0 || memcmp(received.baseAddress!, original.baseAddress!, n) == 0
                                    }
                                })
                            else {
                                firstProblem = "iteration \(iteration): accepted a part that is no known block: \(String(describing: part.shmBlock)); known \(known); frame \(frame)"
                                break iterationLoop
                            }
                        }
                    case .error(let error) where error.code == .invalidMetadata && !error.message.isEmpty:
                        refused += 1
                    case let other:
                        firstProblem = "iteration \(iteration): receive returned \(other)"
                        break iterationLoop
                    }
                }
                for (index, message) in blocks.enumerated() where !consumed.contains(index) { memory.release(message.shmBlock!) }
                for (index, message) in blocks.enumerated() where message.referenceCount != 1 {
                    firstProblem = "iteration \(iteration): block \(index) has reference count \(message.referenceCount), expected 1"
                    break iterationLoop
                }
            }
            #expect(firstProblem == nil, "\(firstProblem ?? "")")
            #expect(accepted + refused == iterations)
            #expect(accepted > iterations / 10 && refused > iterations / 10, "accepted \(accepted), refused \(refused)")
            for (index, message) in blocks.enumerated() {
                #expect(message.withUnsafeBytes { checkPattern($0, message: 1000 + index, part: 0) })
            }
            blocks.removeAll()
            #expect(memory.freeMemory(segmentID: 0) == memory.heapSize(segmentID: 0))
            #expect(memory.verifySegment(0) == nil)
        }
    }

    /// A frame naming one block in two parts is refused, naming both parts, and takes nothing; a
    /// frame of 65535 parts (all empty but the same block twice, at the ends) is refused the same way.
    @Test func duplicateBlocksAreRefused() throws {
        try withFixture(.shmem, "dup") { fixture in
            let factory = try fixture.makeFactory()
            let raw = try TransportFactory(.zeromq, configuration: fixture.configuration(), logger: testLogger)
            let receiver = try factory.makeSocket(.pair)
            let sender = try raw.makeSocket(.pair)
            try sender.connect(try receiver.bind(fixture.endpoint(.ipc, "dup")))
            let first = try patterned(factory, size: 100, index: 1)
            let second = try patterned(factory, size: 200, index: 2)
            let a = BlockDescriptor(segmentID: 0, offset: first.shmBlock!.offset, size: 100)
            let b = BlockDescriptor(segmentID: 0, offset: second.shmBlock!.offset, size: 200)
            let maximum = MetadataCodec.maximumParts
            let cases: [(parts: [BlockDescriptor], named: String)] = [
                ([a, .empty, b, a], "parts 1 and 4 name the same block"),
                ([b, a, b], "parts 1 and 3 name the same block"),
                ([a] + Array(repeating: .empty, count: maximum - 2) + [a], "parts 1 and \(maximum) name the same block"),
            ]
            for (parts, named) in cases {
                let frames = MetadataCodec.encode(shmID: factory.shmID.number, parts: parts)
                let outgoing = try frames.map { bytes in try bytes.withUnsafeBytes { try raw.makeMessage(copying: $0) } }
                #expect(sender.send(outgoing, timeout: 5000) == .transferred(frames.count * MetadataCodec.frameSize))
                var received: [Message] = []
                guard case .error(let error) = receiver.receive(&received, timeout: 5000) else {
                    Issue.record("a frame naming a block twice was accepted: \(named)")
                    continue
                }
                #expect(error.code == .invalidMetadata && error.message.contains(named), "\(error)")
                #expect(received.isEmpty && first.referenceCount == 1 && second.referenceCount == 1)
            }
        }
    }

    /// A zeromq peer talking to a shmem socket, or a shmem peer of another session: refused with
    /// an error that says so, and the socket keeps working.
    @Test func mismatchedPeersAreNamed() throws {
        let fixture = try TransportFixture(.shmem, "mism")
        let other = try TransportFixture(.shmem, "mism2")
        do {
            let factory = try fixture.makeFactory()
            let foreign = try other.makeFactory()
            let raw = try TransportFactory(.zeromq, configuration: fixture.configuration(), logger: testLogger)
            let receiver = try factory.makeSocket(.pull)
            let address = try receiver.bind(fixture.endpoint(.ipc, "m"))
            let zmqSender = try raw.makeSocket(.push)
            try zmqSender.connect(address)
            #expect(zmqSender.send(try textMessage(raw, "a plain zeromq payload of some size")) == .transferred(35))
            let message = factory.makeMessage()
            guard case .error(let error) = receiver.receive(message, timeout: 5000) else {
                Issue.record("a zeromq payload was accepted")
                return
            }
            #expect(error.code == .invalidMetadata && error.message.contains("zeromq transport"))
            let foreignSender = try foreign.makeSocket(.push)
            try foreignSender.connect(address)
            let foreignMessage = try textMessage(foreign, "from another session")
            #expect(foreignSender.send(foreignMessage) == .transferred(20))
            guard case .error(let sessionError) = receiver.receive(message, timeout: 5000) else {
                Issue.record("a frame of another session was accepted")
                return
            }
            #expect(sessionError.message.contains("same session"))
            let good = try factory.makeSocket(.push)
            try good.connect(address)
            #expect(good.send(try textMessage(factory, "fine")) == .transferred(4))
            #expect(receiver.receive(message, timeout: 5000) == .transferred(4) && message.text == "fine")
        }
        #expect(fixture.finish() == [])
        #expect(other.finish() == [])  // the foreign session's block leaked with the refused frame, and went with its session
    }

    /// Failed sends keep the block with the sender; dropping it frees it: the segment is whole again.
    @Test func failedSendsLeakNothing() throws {
        try withFixture(.shmem, "leak") { fixture in
            let factory = try fixture.makeFactory()
            let memory = try #require(factory.sessionMemory)
            let push = try factory.makeSocket(.push)
            try push.bind(fixture.endpoint(.ipc, "nobody"))
            for round in 0..<50 {
                let message = try patterned(factory, size: 10_000 + round, index: round)
                let parts = [try patterned(factory, size: 10, index: round), try message.copy()]
                #expect(push.send(message, timeout: 0) == .timeout)
                #expect(push.send(parts, timeout: 0) == .timeout)
                #expect(message.referenceCount == 2 && parts[1].referenceCount == 2)
            }
            #expect(memory.freeMemory(segmentID: 0) == memory.heapSize(segmentID: 0))
        }
    }

    /// FairMQ's ZeroingAndMlock tests: with zero + mlock on creation, a new message reads back as
    /// zeros; with zero + mlock on every attach, it does even where an earlier process's message
    /// wrote before it was freed. A fresh segment reads as zeros anyway, so the test also checks
    /// that the factory handed the flags to the session's memory.
    @Test(arguments: [true, false])
    func zeroingAndMlock(_ onCreation: Bool) throws {
        try withFixture(.shmem, "zero") { fixture in
            var first: TransportFactory?  // on attach: an earlier process that dirties the segment
            if !onCreation {
                let earlier = try fixture.makeFactory(segmentSize: 4 << 20)
                first = earlier
                var dirty: [Message] = []  // dirty the whole segment, then free it
                while let message = try? earlier.makeMessage(size: 16_384) {
                    message.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0xAB) }
                    dirty.append(message)
                }
                #expect(dirty.count > 100)
                dirty.removeAll()
            }
            var configuration = fixture.configuration(segmentSize: 4 << 20)
            if onCreation {
                configuration.zeroSegmentOnCreation = true
                configuration.mlockSegmentOnCreation = true
            } else {
                configuration.zeroSegmentOnAttach = true
                configuration.mlockSegmentOnAttach = true
            }
            let factory = try TransportFactory(.shmem, configuration: configuration, logger: testLogger)
            let session = try #require(factory.sessionMemory).configuration
            #expect(session.zeroSegmentOnCreation == onCreation && session.mlockSegmentOnCreation == onCreation)
            #expect(session.zeroSegmentOnAttach == !onCreation && session.mlockSegmentOnAttach == !onCreation)
            let message = try factory.makeMessage(size: 10_000)
            #expect(message.withUnsafeBytes { $0.allSatisfy { $0 == 0 } })
            withExtendedLifetime(first) {}  // attached until here, so the segment above was attached, not created
        }
    }

    /// A full segment: an immediate, explaining bad-alloc by default; with retry-forever, an
    /// interrupt from another thread ends the wait.
    @Test func badAlloc() throws {
        try withFixture(.shmem, "balloc") { fixture in
            let factory = try fixture.makeFactory(segmentSize: 4 << 20)
            #expect(throws: (any Error).self) { () throws in try factory.makeMessage(size: 8 << 20) }
            do throws(TransportError) {
                _ = try factory.makeMessage(size: 8 << 20)
            } catch {
                #expect(error.code == .badAlloc && error.message.contains("segment"))
            }
            var configuration = fixture.configuration(segmentSize: 4 << 20)
            configuration.badAlloc = .forever(intervalMilliseconds: 10)
            let patient = try TransportFactory(.shmem, configuration: configuration, logger: testLogger)
            let hog = try patient.makeMessage(size: 3 << 20)
            let worker = Worker { worker in
                do throws(TransportError) {
                    _ = try patient.makeMessage(size: 3 << 20)
                    worker.fail("allocation succeeded in a full segment")
                } catch {
                    if error.code != .interrupted || !error.message.contains("interrupted") { worker.fail("\(error)") }
                }
            }
            usleep(100_000)
            patient.interrupt()
            #expect(worker.join(seconds: 10) == [])
            patient.resume()
            hog.rebuild()
            let fits = try patient.makeMessage(size: 3 << 20)
            #expect(fits.size == 3 << 20)
        }
    }
}
