import Foundation
import ShmCleanup
import ShmCore
import ShmTestSupport
import ShmTransport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Collects release callbacks (thread-safe): how often each hint came back, and the blocks.
final class ReleaseLog: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [UInt64: Int] = [:]
    private(set) var blocks: [RegionBlock] = []

    var callback: RegionCallback {
        .perBlock { [self] pointer, size, hint in record([RegionBlock(pointer: pointer, size: size, hint: hint)]) }
    }
    var bulkCallback: RegionCallback { .bulk { [self] blocks in record(blocks) } }

    func record(_ released: [RegionBlock]) {
        lock.lock()
        for block in released { counts[block.hint, default: 0] += 1 }
        blocks += released
        lock.unlock()
    }

    var total: Int { lock.lock(); defer { lock.unlock() }; return blocks.count }
    var perHint: [UInt64: Int] { lock.lock(); defer { lock.unlock() }; return counts }

    /// Waits until `count` blocks came back or `seconds` pass; returns whether they did.
    func wait(for count: Int, seconds: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while total < count && Date() < deadline { usleep(1000) }
        return total >= count
    }
}

/// Fills a region block as `region-peer` checks it: the hint, then `(hint + i) & 0xff`.
func fillRegionPattern(_ pointer: UnsafeMutableRawPointer, size: Int, hint: UInt64) {
    pointer.storeBytes(of: hint, as: UInt64.self)
    let bytes = pointer.assumingMemoryBound(to: UInt8.self)
    for i in 8..<size { bytes[i] = UInt8(truncatingIfNeeded: hint &+ UInt64(i)) }
}

/// Unmanaged regions: the original's region tests (creation, size mismatch, events including
/// external regions, per-block and bulk callbacks, copies with exact reference counts across two
/// segment ids, a cache across two sessions), plus exactly-once acknowledgements across processes,
/// a receiver killed while holding region messages, and refused frames.
@Suite struct RegionTests {
    /// A region is three objects in the shm directory, registered in the session; a second
    /// region of the same id with another size, or a second controller, is refused with the
    /// reason; destroying it removes the objects.
    @Test func creationSizeMismatchAndSecondController() throws {
        try withFixture(.shmem, "rgc") { fixture in
            let factory = try fixture.makeFactory()
            let shmID = ShmID(session: fixture.session)
            do {
                let region = try factory.makeUnmanagedRegion(
                    size: 10_000, configuration: RegionConfiguration(id: 10, size: 10_000), callback: ReleaseLog().callback)
                #expect(region.id == 10 && region.size == 10_000)
                let entries = Set(fixture.shmDirectory.entries())
                for kind: ShmObjectName.Kind in [.region(10), .regionQueue(10), .regionRefCount(10)] {
                    #expect(entries.contains(ShmObjectName(shmID, kind).fileName), "\(kind) missing: \(entries)")
                }
                do {
                    _ = try factory.makeUnmanagedRegion(size: 16_000, configuration: RegionConfiguration(id: 10, size: 16_000))
                    Issue.record("a second size for region 10 was accepted")
                } catch {
                    #expect("\(error)".contains("exists with size 10000"), "\(error)")
                }
                let second = try fixture.makeFactory()
                do {
                    _ = try second.makeUnmanagedRegion(
                        size: 10_000, configuration: RegionConfiguration(id: 10, size: 10_000), callback: ReleaseLog().callback)
                    Issue.record("a second controller was accepted")
                } catch {
                    #expect("\(error)".contains("already has a controller"), "\(error)")
                }
                let automatic = try factory.makeUnmanagedRegion(size: 4096)
                #expect(automatic.id >= 1024)
                region.destroy()
                let after = Set(fixture.shmDirectory.entries())
                #expect(!after.contains(ShmObjectName(shmID, .region(10)).fileName))
                #expect(!after.contains(ShmObjectName(shmID, .regionQueue(10)).fileName))
                #expect(!after.contains(ShmObjectName(shmID, .regionRefCount(10)).fileName))
                #expect(throws: TransportError.self) { _ = try region.makeMessage(offset: 0, size: 10) }
            }
        }
    }

    /// Per-block and bulk callbacks get the pointer, size and hint of each block once its
    /// receiver drops it; a message never sent but dropped comes back too.
    @Test(arguments: [false, true]) func callbacks(bulk: Bool) throws {
        try withFixture(.shmem, bulk ? "rgbk" : "rgpb") { fixture in
            let factory = try fixture.makeFactory()
            let log = ReleaseLog()
            let region = try factory.makeUnmanagedRegion(size: 1 << 20, callback: bulk ? log.bulkCallback : log.callback)
            let push = try factory.makeSocket(.push)
            let pull = try factory.makeSocket(.pull)
            try pull.connect(try push.bind(fixture.endpoint(.ipc, "cb")))
            let message = try region.makeMessage(offset: 4096, size: 100, hint: bulk ? 43 : 42)
            fillRegionPattern(try #require(message.data), size: 100, hint: 42)
            #expect(message.data == region.data + 4096)
            #expect(push.send(message, timeout: 5000) == .transferred(100))
            let received = factory.makeMessage()
            #expect(pull.receive(received, timeout: 5000) == .transferred(100))
            #expect(received.data == region.data + 4096 && received.size == 100)
            #expect(log.total == 0)
            received.rebuild()
            #expect(log.wait(for: 1))
            let block = try #require(log.blocks.first)
            #expect(block.pointer == region.data + 4096 && block.size == 100 && block.hint == (bulk ? 43 : 42))
            do { _ = try region.makeMessage(offset: 0, size: 8, hint: 7) }  // dropped unsent
            #expect(log.wait(for: 2))
            #expect(log.perHint == [bulk ? 43 : 42: 1, 7: 1])
            #expect(throws: TransportError.self) { _ = try region.makeMessage(offset: (1 << 20) - 4, size: 8) }
        }
    }

    /// Copies of region messages across two factories of one session with segment ids 0 and 2
    /// (FairMQ's ZeroCopyFromUnmanaged), with the pool and with counters in the managed segment:
    /// exact reference counts on both sides, and one callback per block once all let go.
    @Test(arguments: [RegionOptions.defaultReferenceCountPoolSize, 0]) func copiesCountExactly(pool: Int) throws {
        try withFixture(.shmem, pool == 0 ? "rgcp0" : "rgcp") { fixture in
            var second = fixture.configuration()
            second.segmentID = 2
            let sender = try fixture.makeFactory()
            let receiver = try TransportFactory(.shmem, configuration: second, logger: testLogger)
            let log = ReleaseLog()
            let region = try sender.makeUnmanagedRegion(
                size: 1 << 20, configuration: RegionConfiguration(size: 1 << 20, referenceCountPoolSize: pool), callback: log.callback)
            let push = try sender.makeSocket(.push)
            let pull = try receiver.makeSocket(.pull)
            try pull.connect(try push.bind(fixture.endpoint(.ipc, "cp")))
            do {
                let first = try region.makeMessage(offset: 0, size: 64, hint: 1)
                fillRegionPattern(first.data!, size: 64, hint: 0x5EED)
                #expect(first.referenceCount == 1)
                let copy1 = try first.copy()
                #expect(first.referenceCount == 2 && copy1.referenceCount == 2)
                let copy2 = try first.copy()
                #expect(first.referenceCount == 3 && copy2.referenceCount == 3)
                #expect(region.referenceCountsInUse == (pool == 0 ? 0 : 1))
                #expect(push.send(copy2, timeout: 5000) == .transferred(64))
                let received = receiver.makeMessage()
                #expect(pull.receive(received, timeout: 5000) == .transferred(64))
                // Another mapping of the same bytes: the receiver's factory maps the region itself.
                #expect(received.referenceCount == 3 && received.data != nil)
                #expect(received.withUnsafeBytes { $0.load(as: UInt64.self) } == 0x5EED)
                first.data!.storeBytes(of: 0xF00D as UInt64, toByteOffset: 8, as: UInt64.self)
                #expect(received.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) } == 0xF00D)
                let receiverCopy = try received.copy()
                #expect(receiverCopy.referenceCount == 4 && first.referenceCount == 4)
                received.rebuild()
                #expect(receiverCopy.referenceCount == 3)
                let second = try region.makeMessage(offset: 128, size: 64, hint: 2)
                #expect(push.send(second, timeout: 5000) == .transferred(64))
                let received2 = receiver.makeMessage()
                #expect(pull.receive(received2, timeout: 5000) == .transferred(64))
                #expect(received2.referenceCount == 1)
                _ = (copy1, receiverCopy)
            }
            #expect(log.wait(for: 2))
            usleep(200_000)
            #expect(log.perHint == [1: 1, 2: 1])
            #expect(region.referenceCountsInUse == 0)
        }
    }

    /// Region events: a subscriber learns about the managed segment and two regions (sizes,
    /// user flags, pointers), then about their destruction; a region made by an outside process
    /// without a callback (as a keep-alive makes it) is seen as well, and can be adopted.
    @Test func eventSubscriptions() throws {
        try withFixture(.shmem, "rgev") { fixture in
            let subscriber = try fixture.makeFactory()
            let maker = try fixture.makeFactory()
            let lock = NSLock()
            nonisolated(unsafe) var events: [RegionEventInfo] = []
            subscriber.subscribeToRegionEvents { info in
                lock.lock()
                events.append(info)
                lock.unlock()
            }
            func seen(_ predicate: (RegionEventInfo) -> Bool) -> RegionEventInfo? {
                let deadline = Date().addingTimeInterval(5)
                while Date() < deadline {
                    lock.lock()
                    let found = events.first(where: predicate)
                    lock.unlock()
                    if let found { return found }
                    usleep(5000)
                }
                return nil
            }
            #expect(seen { $0.managed && $0.id == 0 && $0.event == .created } != nil)
            var r1: UnmanagedRegion? = try maker.makeUnmanagedRegion(size: 1_000_000, callback: ReleaseLog().callback)
            var r2: UnmanagedRegion? = try maker.makeUnmanagedRegion(
                size: 5_000_000, configuration: RegionConfiguration(size: 5_000_000, userFlags: 12345), callback: ReleaseLog().callback)
            let id1 = r1!.id, id2 = r2!.id
            let c1 = try #require(seen { !$0.managed && $0.id == id1 && $0.event == .created })
            let c2 = try #require(seen { !$0.managed && $0.id == id2 && $0.event == .created })
            #expect(c1.size == 1_000_000 && c2.size == 5_000_000 && c2.userFlags == 12345 && c1.pointer != nil && c2.pointer != nil)
            // The subscriber's mapping shows what the maker wrote.
            r2!.data.storeBytes(of: 0xABCD_EF01 as UInt32, toByteOffset: 4000, as: UInt32.self)
            #expect(c2.pointer!.load(fromByteOffset: 4000, as: UInt32.self) == 0xABCD_EF01)
            r1 = nil
            r2 = nil
            #expect(seen { !$0.managed && $0.id == id1 && $0.event == .destroyed } != nil)
            #expect(seen { !$0.managed && $0.id == id2 && $0.event == .destroyed } != nil)
            // External: made without a callback and kept, then adopted by a controller.
            let external = try maker.makeUnmanagedRegion(
                size: 65536, configuration: RegionConfiguration(id: 100, size: 65536, removeOnDestruction: false))
            #expect(seen { !$0.managed && $0.id == 100 && $0.event == .created && $0.size == 65536 } != nil)
            let log = ReleaseLog()
            let adopted = try subscriber.makeUnmanagedRegion(
                size: 65536, configuration: RegionConfiguration(id: 100, size: 65536), callback: log.callback)
            do { _ = try adopted.makeMessage(offset: 0, size: 16, hint: 5) }
            #expect(log.wait(for: 1))
            subscriber.unsubscribeFromRegionEvents()
            #expect(!subscriber.isSubscribedToRegionEvents)
            _ = external
        }
    }

    /// A region made by `shm-keepalive --region` (an outside process, no callback) is adopted by a
    /// device as its controller, shown by `shmmonitor -v` with its controller, and removed with
    /// the session when the keep-alive ends.
    @Test func keepAliveRegionIsAdopted() throws {
        try withFixture(.shmem, "rgka") { fixture in
            let keepAlive = try KeepAliveChild(
                session: fixture.session, directory: fixture.shmDirectory.path, segments: ["0,4194304"], regions: ["100,65536"])
            do {
                var configuration = fixture.configuration(segmentSize: 4 << 20)
                configuration.noCleanup = true
                let factory = try TransportFactory(.shmem, configuration: configuration, logger: testLogger)
                #expect(throws: TransportError.self) {
                    _ = try factory.makeUnmanagedRegion(size: 4096, configuration: RegionConfiguration(id: 100, size: 4096))
                }
                let log = ReleaseLog()
                let region = try factory.makeUnmanagedRegion(
                    size: 65536, configuration: RegionConfiguration(id: 100, size: 65536, removeOnDestruction: false),
                    callback: log.callback)
                #expect(region.data.load(fromByteOffset: 60_000, as: UInt64.self) == 0)  // zeroed by the keep-alive
                do { _ = try region.makeMessage(offset: 64, size: 32, hint: 9) }
                #expect(log.wait(for: 1) && log.blocks.first?.hint == 9)
                let held = try region.makeMessage(offset: 128, size: 8, hint: 10)
                let heldCopy = try held.copy()
                let view = try runTool(
                    "shmmonitor", ["-v", "-s", fixture.session.rawValue], environment: ["SHMTRANSPORT_SHM_DIR": fixture.shmDirectory.path])
                #expect(view.stdout.contains("[100]: alive, size: 65536") && view.stdout.contains("controller: pid \(getpid())"), "\(view.stdout)")
                #expect(view.stdout.contains("rc pool: 1/524280 in use"), "\(view.stdout)")
                _ = (held, heldCopy)
                let json = try runTool(
                    "shmmonitor", ["--json", "-v", "-s", fixture.session.rawValue],
                    environment: ["SHMTRANSPORT_SHM_DIR": fixture.shmDirectory.path])
                #expect(json.stdout.contains("\"controller_pid\" : \(getpid())") || json.stdout.contains("\"controller_pid\":\(getpid())"), "\(json.stdout)")
            }
            keepAlive.stop()
        }
    }

    /// Over `zeromq` a region is memory of this process; the callback runs when libzmq and every
    /// handle are done with a block.
    @Test func zeromqRegionCallbacks() throws {
        try withFixture(.zeromq, "rgzmq") { fixture in
            let factory = try fixture.makeFactory()
            let log = ReleaseLog()
            let region = try factory.makeUnmanagedRegion(size: 1 << 16, callback: log.callback)
            let push = try factory.makeSocket(.push)
            let pull = try factory.makeSocket(.pull)
            try pull.connect(try push.bind(fixture.endpoint(.ipc, "z")))
            let message = try region.makeMessage(offset: 256, size: 300, hint: 77)
            fillRegionPattern(message.data!, size: 300, hint: 77)
            var copy: Message? = try message.copy()
            #expect(push.send(message, timeout: 5000) == .transferred(300))
            let received = factory.makeMessage()
            #expect(pull.receive(received, timeout: 5000) == .transferred(300))
            #expect(received.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } == 77)
            #expect(copy?.referenceCount == 1)  // the sent handle let go; libzmq holds the payload
            usleep(100_000)
            #expect(log.total == 0)  // a copy still holds the block
            copy = nil
            #expect(log.wait(for: 1))
            #expect(log.perHint == [77: 1] && log.blocks.first?.pointer == region.data + 256 && log.blocks.first?.size == 300)
        }
    }

    /// A full reference-count pool makes a copy fail with the reason and the fix; the copies made
    /// so far keep working.
    @Test func fullReferenceCountPool() throws {
        try withFixture(.shmem, "rgfull") { fixture in
            let factory = try fixture.makeFactory()
            let region = try factory.makeUnmanagedRegion(
                size: 1 << 20, configuration: RegionConfiguration(size: 1 << 20, referenceCountPoolSize: 4096))
            let capacity = (4096 - 64) / 8
            var messages: [Message] = []
            var copies: [Message] = []
            for i in 0..<capacity {
                let message = try region.makeMessage(offset: i * 16, size: 16)
                copies.append(try message.copy())
                messages.append(message)
            }
            #expect(region.referenceCountsInUse == capacity)
            let one = try region.makeMessage(offset: 0, size: 16)
            do throws(TransportError) {
                _ = try one.copy()
                Issue.record("a copy beyond the pool was made")
            } catch {
                #expect(error.code == .badAlloc && error.message.contains("reference-count pool of region"), "\(error)")
            }
            #expect(messages[0].referenceCount == 2)
            copies.removeAll()
            // A counter goes back to the pool with its last holder, not when it drops to 1.
            #expect(messages[0].referenceCount == 1 && region.referenceCountsInUse == capacity)
            messages.removeAll()
            #expect(region.referenceCountsInUse == 0)
            #expect(try one.copy().referenceCount == 2)
        }
    }

    /// The controller SIGKILLed while a receiver holds 2,000 of its messages (four times a release
    /// lane): releasing them all returns at once instead of waiting for a controller that is gone;
    /// the copies the receiver made in the managed segment (pool size 0) go back there.
    @Test func controllerKilledNeverHangsTheReceiver() throws {
        try withFixture(.shmem, "rgck") { fixture in
            var configuration = fixture.configuration(segmentSize: 4 << 20)
            configuration.segmentID = 2
            let factory = try TransportFactory(.shmem, configuration: configuration, logger: testLogger)
            let memory = try #require(factory.sessionMemory)
            let emptySegment = memory.freeMemory(segmentID: 2)
            let address = fixture.endpoint(.ipc, "ck")
            let controller = try PeerProcess(
                ["--session", fixture.session.rawValue, "--shm-dir", fixture.shmDirectory.path, "--connect", address,
                 "--messages", "2000", "--send", "--pool-size", "0"],
                executable: builtProductsDirectory().appendingPathComponent("region-peer"))
            #expect(controller.readLine() == "ready")
            let pull = try factory.makeSocket(.pull)
            try pull.connect(address)
            var held: [Message] = []
            for i in 0..<2000 {
                let message = factory.makeMessage()
                try #require(pull.receive(message, timeout: 20_000) == .transferred(64), "message \(i)")
                #expect(message.withUnsafeBytes { $0.load(as: UInt64.self) } == UInt64(i))
                held.append(message)
                if i % 2 == 0 { held.append(try message.copy()) }  // a counter in our segment 2
            }
            #expect(held[0].referenceCount == 2 && held[2].referenceCount == 1)
            #expect(controller.readLine() == "sent 2000")
            kill(controller.process.processIdentifier, SIGKILL)
            controller.process.waitUntilExit()
            let start = Date()
            held.removeAll()
            #expect(Date().timeIntervalSince(start) < 2, "releasing took \(Date().timeIntervalSince(start)) s")
            #expect(memory.freeMemory(segmentID: 2) == emptySegment)
        }
    }

    /// Region parts mixed with managed parts in one multipart message, over PAIR and REQ/REP,
    /// and a region file under a path: each arrives where it was written, and comes back once.
    @Test func multipartPatternsAndFileBackedRegion() throws {
        try withFixture(.shmem, "rgmp") { fixture in
            let factory = try fixture.makeFactory()
            let log = ReleaseLog()
            let path = fixture.ipcDirectory + "/"
            let region = try factory.makeUnmanagedRegion(
                size: 1 << 16, configuration: RegionConfiguration(id: 5, size: 1 << 16, path: path), callback: log.callback)
            let file = path + ShmObjectName(ShmID(session: fixture.session), .region(5)).fileName
            #expect(FileManager.default.fileExists(atPath: file))
            for (first, second) in [(SocketType.pair, SocketType.pair), (.req, .rep)] {
                let a = try factory.makeSocket(first)
                let b = try factory.makeSocket(second)
                try b.connect(try a.bind(fixture.endpoint(.ipc, "mp-\(first)")))
                let regionPart = try region.makeMessage(offset: 1024, size: 16, hint: 11)
                fillRegionPattern(regionPart.data!, size: 16, hint: 11)
                let parts = [regionPart, try textMessage(factory, "managed"), try regionPart.copy()]
                #expect(a.send(parts, timeout: 5000) == .transferred(39))
                var received: [Message] = []
                #expect(b.receive(&received, timeout: 5000) == .transferred(39))
                #expect(received.count == 3 && received[1].text == "managed")
                #expect(received[0].data == region.data + 1024 && received[2].data == region.data + 1024 && received[0].referenceCount == 2)
                if second == .rep {
                    #expect(b.send(try textMessage(factory, "ok"), timeout: 5000) == .transferred(2))
                    let reply = factory.makeMessage()
                    #expect(a.receive(reply, timeout: 5000) == .transferred(2))
                }
            }
            #expect(log.wait(for: 2))
            // A multipart message received where one message was expected is freed: its region
            // part comes back to the controller.
            let push = try factory.makeSocket(.push)
            let pull = try factory.makeSocket(.pull)
            try pull.connect(try push.bind(fixture.endpoint(.ipc, "mp-single")))
            #expect(push.send([try region.makeMessage(offset: 2048, size: 8, hint: 12), try textMessage(factory, "m")], timeout: 5000) == .transferred(9))
            guard case .error(let error) = pull.receive(factory.makeMessage(), timeout: 5000) else {
                Issue.record("a multipart message was taken as a single one")
                return
            }
            #expect(error.code == .wrongPartCount)
            #expect(log.wait(for: 3))
            usleep(200_000)
            #expect(log.perHint == [11: 2, 12: 1])
            region.destroy()
            #expect(!FileManager.default.fileExists(atPath: file))
        }
    }

    /// Two sessions in one process, each with a region of id 7: messages resolve to their own
    /// session's region (FairMQ's Cache test).
    @Test func regionsOfTwoSessionsInOneProcess() throws {
        let a = try TransportFixture(.shmem, "rgca")
        let b = try TransportFixture(.shmem, "rgcb")
        do {
            let fa = try a.makeFactory(), fb = try b.makeFactory()
            let ra = try fa.makeUnmanagedRegion(size: 4096, configuration: RegionConfiguration(id: 7, size: 4096))
            let rb = try fb.makeUnmanagedRegion(size: 4096, configuration: RegionConfiguration(id: 7, size: 4096))
            ra.data.storeBytes(of: 0xAAAA as UInt16, as: UInt16.self)
            rb.data.storeBytes(of: 0xBBBB as UInt16, as: UInt16.self)
            for (factory, region, fixture, value) in [(fa, ra, a, 0xAAAA as UInt16), (fb, rb, b, 0xBBBB)] {
                let push = try factory.makeSocket(.push)
                let pull = try factory.makeSocket(.pull)
                try pull.connect(try push.bind(fixture.endpoint(.ipc, "c")))
                #expect(push.send(try region.makeMessage(offset: 0, size: 2), timeout: 5000) == .transferred(2))
                let message = factory.makeMessage()
                #expect(pull.receive(message, timeout: 5000) == .transferred(2))
                #expect(message.data == region.data && message.withUnsafeBytes { $0.load(as: UInt16.self) } == value)
            }
        }
        #expect(a.finish() == [])
        #expect(b.finish() == [])
    }

    /// A frame naming a region the session does not have, a block beyond the region's end, or a
    /// counter that is not handed out is refused with the reason, and nothing is released.
    @Test func badRegionFramesAreRefused() throws {
        try withFixture(.shmem, "rgbad") { fixture in
            let factory = try fixture.makeFactory()
            let log = ReleaseLog()
            let region = try factory.makeUnmanagedRegion(
                size: 4096, configuration: RegionConfiguration(id: 3, size: 4096), callback: log.callback)
            let raw = try TransportFactory(.zeromq, configuration: fixture.configuration(), logger: testLogger)
            let receiver = try factory.makeSocket(.pull)
            let sender = try raw.makeSocket(.push)
            try sender.connect(try receiver.bind(fixture.endpoint(.ipc, "bad")))
            let shmNumber = ShmID(session: fixture.session).number
            let cases: [(BlockDescriptor, String)] = [
                (BlockDescriptor(regionID: 999, offset: 0, size: 8, hint: 0, counter: .none), "region 999 does not exist"),
                (BlockDescriptor(regionID: 3, offset: 4090, size: 8, hint: 0, counter: .none), "does not lie inside region 3"),
                (BlockDescriptor(regionID: 3, offset: 0, size: 8, hint: 0, counter: .pool(77)), "reference counter 77"),
            ]
            for (descriptor, text) in cases {
                let frame = MetadataCodec.encode(shmID: shmNumber, parts: [descriptor])[0]
                #expect(sender.send(try frame.withUnsafeBytes { try raw.makeMessage(copying: $0) }, timeout: 5000) == .transferred(48))
                let message = factory.makeMessage()
                guard case .error(let error) = receiver.receive(message, timeout: 5000) else {
                    Issue.record("a frame naming \(descriptor) was accepted")
                    continue
                }
                #expect(error.code == .invalidMetadata && error.message.contains(text), "\(error)")
            }
            usleep(200_000)
            #expect(log.total == 0)
            _ = region
        }
    }

    /// 100,000 region messages to a receiver in another process, which copies each once (the
    /// copies share the region's pool across the two processes) and holds the last 500 until it
    /// exits: every block comes back exactly once — none lost, none doubled.
    @Test func everyAcknowledgementExactlyOnceAcrossProcesses() throws {
        try withFixture(.shmem, "rg100k") { fixture in
            let count = 100_000, slots = 1024, slotSize = 256
            let factory = try fixture.makeFactory()
            let free = FreeSlots(slots)
            let log = ReleaseLog()
            let region = try factory.makeUnmanagedRegion(
                size: slots * slotSize,
                callback: .bulk { blocks in
                    log.record(blocks)
                    free.give(blocks.map { Int($0.hint) % slots })
                })
            let push = try factory.makeSocket(.push)
            let address = try push.bind(fixture.endpoint(.ipc, "100k"))
            let peer = try PeerProcess(
                ["--session", fixture.session.rawValue, "--shm-dir", fixture.shmDirectory.path, "--connect", address,
                 "--messages", "\(count)", "--hold-last", "500", "--copies", "1"],
                executable: builtProductsDirectory().appendingPathComponent("region-peer"))
            #expect(peer.readLine() == "ready")
            var hint: UInt64 = 0
            for sequence in 0..<count {
                // Slot = sequence % slots: a block is reused only once its acknowledgement is back.
                let slot = sequence % slots
                try #require(free.take(slot), "slot \(slot) never came back (message \(sequence))")
                hint = UInt64(sequence)
                let message = try region.makeMessage(offset: slot * slotSize, size: 64 + sequence % (slotSize - 64), hint: hint)
                fillRegionPattern(message.data!, size: message.size, hint: hint)
                try #require(push.send(message, timeout: 20_000).bytes != nil, "send \(sequence)")
            }
            #expect(peer.readLine() == "holding 500")
            let (status, stderr) = peer.wait()
            #expect(status == 0, "\(stderr)")
            #expect(log.wait(for: count, seconds: 30))
            usleep(300_000)
            let perHint = log.perHint
            #expect(perHint.count == count && log.total == count, "\(perHint.count) distinct of \(log.total) acknowledgements")
            #expect(perHint.values.allSatisfy { $0 == 1 })
            #expect(region.referenceCountsInUse == 0)
        }
    }

    /// A receiver SIGKILLed while it holds region messages: the controller keeps running (another
    /// receiver gets and returns 1,000 more), only the held blocks never come back, and once the
    /// controller has gone the cleanup engine removes rg, rgq and rrc with the rest of the session.
    @Test func receiverKilledWhileHolding() throws {
        let fixture = try TransportFixture(.shmem, "rgkill")
        let shmID = ShmID(session: fixture.session)
        let log = ReleaseLog()
        do {
            var configuration = fixture.configuration()
            configuration.noCleanup = true
            let factory = try TransportFactory(.shmem, configuration: configuration, logger: testLogger)
            let region = try factory.makeUnmanagedRegion(
                size: 1 << 20, configuration: RegionConfiguration(id: 21, size: 1 << 20, removeOnDestruction: false),
                callback: log.callback)
            let push = try factory.makeSocket(.push)
            let address = try push.bind(fixture.endpoint(.ipc, "kill"))
            func run(_ messages: Int, hold: Int, wait: Bool, base: Int) throws -> PeerProcess {
                let peer = try PeerProcess(
                    ["--session", fixture.session.rawValue, "--shm-dir", fixture.shmDirectory.path, "--connect", address,
                     "--messages", "\(messages)", "--hold-last", "\(hold)", "--copies", "2"] + (wait ? ["--wait"] : []),
                    executable: builtProductsDirectory().appendingPathComponent("region-peer"))
                #expect(peer.readLine() == "ready")
                for i in 0..<messages {
                    let hint = UInt64(base + i)
                    let message = try region.makeMessage(offset: (i % 1024) * 1024, size: 100, hint: hint)
                    fillRegionPattern(message.data!, size: 100, hint: hint)
                    try #require(push.send(message, timeout: 20_000).bytes != nil)
                }
                return peer
            }
            let victim = try run(1000, hold: 100, wait: true, base: 0)
            #expect(victim.readLine() == "holding 100")
            kill(victim.process.processIdentifier, SIGKILL)
            victim.process.waitUntilExit()
            #expect(log.wait(for: 900))
            let survivor = try run(1000, hold: 0, wait: false, base: 10_000)
            #expect(survivor.wait().status == 0)
            #expect(log.wait(for: 1900))
            usleep(300_000)
            #expect(log.total == 1900 && log.perHint.values.allSatisfy { $0 == 1 })
            #expect((0..<900).allSatisfy { log.perHint[UInt64($0)] == 1 } && (900..<1000).allSatisfy { log.perHint[UInt64($0)] == nil })
            region.destroy()
        }
        let names = Set(fixture.shmDirectory.entries())
        for kind: ShmObjectName.Kind in [.region(21), .regionQueue(21), .regionRefCount(21), .management] {
            #expect(names.contains(ShmObjectName(shmID, kind).fileName), "\(kind) should still be there: \(names)")
        }
        let monitor = try runTool("shmmonitor", ["-c", "-s", fixture.session.rawValue], environment: ["SHMTRANSPORT_SHM_DIR": fixture.shmDirectory.path])
        #expect(monitor.status == 0, "\(monitor.stdout)\(monitor.stderr)")
        #expect(monitor.stdout.contains("rg_21") || monitor.stdout.contains("region"), "\(monitor.stdout)")
        #expect(fixture.finish() == [])
    }
}

/// Which region slots are free to fill (the release callback gives them back).
final class FreeSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [Bool]

    init(_ count: Int) { free = Array(repeating: true, count: count) }

    func give(_ slots: [Int]) {
        lock.lock()
        for slot in slots { free[slot] = true }
        lock.unlock()
    }

    /// Waits (up to 10 s) until `slot` is free and takes it.
    func take(_ slot: Int) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while true {
            lock.lock()
            if free[slot] {
                free[slot] = false
                lock.unlock()
                return true
            }
            lock.unlock()
            if Date() > deadline { return false }
            usleep(20)
        }
    }
}
