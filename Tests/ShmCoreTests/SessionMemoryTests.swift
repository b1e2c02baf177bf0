import Foundation
import Logging
import ShmTestSupport
import ShmCleanup
import Synchronization
import Testing

@testable import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

@Suite("SessionMemory in one process")
struct SessionMemoryTests {
    @Test("create, register, allocate, refcount, free, last one out removes everything", arguments: AllocationStrategy.allCases)
    func lifecycle(strategy: AllocationStrategy) throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("life", directory: dir, strategy: strategy)
        let id = ShmID(session: config.session)
        do {
            let memory = try SessionMemory(config, logger: testLogger)
            #expect(dir.entries() == ["fmq_\(id)_m_0", "fmq_\(id)_mng"])
            let empty = memory.freeMemory(segmentID: 0)
            #expect(empty == memory.heapSize(segmentID: 0))
            let block = try memory.allocate(size: 1000)
            #expect(block.offset % 16 == 0)
            #expect(memory.referenceCount(block) == 1)
            memset(memory.address(of: block), 0xab, 1000)
            #expect(memory.contains(memory.address(of: block)))
            #expect(memory.freeMemory(segmentID: 0) < empty)
            memory.retain(block)
            #expect(memory.referenceCount(block) == 2)
            memory.release(block)
            #expect(memory.referenceCount(block) == 1)
            #expect(try memory.validatedBlock(segmentID: 0, offset: block.offset, size: 1000) == block)
            memory.release(block)
            #expect(memory.freeMemory(segmentID: 0) == empty)
            #expect(memory.verifySegment(0) == nil)
            // The record the cleanup engine reads names us.
            let record = try readRecord(dir: dir, id: id)
            #expect(record.sessionName == config.session.rawValue)
            #expect(record.processes.map(\.pid) == [getpid()])
            #expect(record.segments.map(\.id) == [0])
            #expect(record.segments.first?.allocatorName == strategy.rawValue)
            memory.detach()
            memory.detach()
        }
        #expect(dir.entries().isEmpty)
    }

    /// A process killed between making an object and registering it leaves one the table does
    /// not name (the kill soak found a region's memory left so): the last one out removes every
    /// regular segment or region object of its shm id, but never a FIFO, another session's
    /// object or the monitor's flag (a live daemon holds it).
    @Test("last one out also removes unregistered objects of its shm id, never a FIFO, another id's or the monitor flag")
    func lastOneOutRemovesUnregisteredLeftovers() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("leftover", directory: dir)
        let id = ShmID(session: config.session)
        let other = ShmID(session: ShmFixtureDirectory.uniqueSession("other"))
        let memory = try SessionMemory(config, logger: testLogger)
        for name in ["fmq_\(id)_rg_1024", "fmq_\(id)_rgq_1024", "fmq_\(id)_m_3", "fmq_\(other)_rg_1024", "sem.fmq_\(id)_ms"] {
            #expect(FileManager.default.createFile(atPath: dir.path + "/" + name, contents: nil))
        }
        #expect(mkfifo(dir.path + "/fmq_\(id)_rrc_1025", 0o600) == 0)
        memory.detach()
        #expect(Set(dir.entries()) == ["fmq_\(id)_rrc_1025", "fmq_\(other)_rg_1024", "sem.fmq_\(id)_ms"], "the FIFO, another id's object and a monitor's flag stay")
        for name in dir.entries() { unlink(dir.path + "/" + name) }
    }

    /// The kill soak found attachers waiting 5 s for a management segment whose creator was
    /// killed while writing it, then failing. It is now written under a draft name
    /// (`_mngd_<pid>`) and linked to `_mng` complete: a draft of a dead creator never blocks a
    /// session, the next creator makes its own, and the last one out removes the dead draft.
    @Test("a creator killed while writing the management segment blocks nobody; its draft is removed")
    func deadCreatorsDraftBlocksNobody() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("draft", directory: dir)
        let id = ShmID(session: config.session)
        // a pid that is not alive: the highest possible one
        let dead = "fmq_\(id)_mngd_4194304"
        #expect(FileManager.default.createFile(atPath: dir.path + "/" + dead, contents: Data(count: 4096)))
        #expect(ShmObjectName(fileName: dead)?.kind == .managementDraft(4_194_304))
        let started = MonotonicClock.nanoseconds()
        let memory = try SessionMemory(config, logger: testLogger)
        #expect(MonotonicClock.nanoseconds() - started < 2_000_000_000, "attaching does not wait for the dead creator")
        #expect(memory.createdSession)
        #expect(dir.entries().contains("fmq_\(id)_mng") && !dir.entries().contains("fmq_\(id)_mngd_\(getpid())"), "published, no draft of ours left")
        memory.detach()
        #expect(dir.entries().isEmpty, "the last one out removes the dead creator's draft: \(dir.entries())")
    }

    @Test("alignment up to 4 KiB and beyond, size 0, mixed sizes, coalescing back to one free chunk per arena")
    func alignmentAndCoalescing() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        // No local cache: released small blocks must reach the heap, so that coalescing is exercised.
        var config = testConfiguration("align", directory: dir, segmentSize: 64 << 20)
        config.localCacheBytes = 0
        let memory = try SessionMemory(config, logger: testLogger)
        defer { memory.detach() }
        let empty = memory.freeMemory(segmentID: 0)
        var blocks: [ShmBlock] = []
        for alignment in [1, 8, 16, 32, 64, 256, 4096, 65536] {
            for size in [0, 1, 17, 4096, 100_000] {
                let b = try memory.allocate(size: size, alignment: alignment)
                #expect(Int(bitPattern: memory.address(of: b)) % alignment == 0)
                #expect(b.offset % UInt64(max(16, alignment)) == 0 || alignment > 4096)
                memset(memory.address(of: b), 0x5a, size)
                blocks.append(b)
            }
        }
        #expect(memory.verifySegment(0) == nil)
        var rng = SystemRandomNumberGenerator()
        blocks.shuffle(using: &rng)
        for b in blocks { memory.release(b) }
        #expect(memory.freeMemory(segmentID: 0) == empty)
        #expect(memory.verifySegment(0) == nil)
        #expect(throws: ShmCoreError.self) { try memory.allocate(size: 10, alignment: 3) }
        #expect(throws: ShmCoreError.self) { try memory.allocate(size: -1) }
    }

    @Test("shrink in place returns the tail", arguments: AllocationStrategy.allCases)
    func shrink(strategy: AllocationStrategy) throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let memory = try SessionMemory(testConfiguration("shrink", directory: dir, strategy: strategy), logger: testLogger)
        defer { memory.detach() }
        let empty = memory.freeMemory(segmentID: 0)
        let block = try memory.allocate(size: 1 << 20)
        let before = memory.freeMemory(segmentID: 0)
        let small = memory.shrink(block, to: 100)
        #expect(small.offset == block.offset && small.size == 100)
        #expect(memory.freeMemory(segmentID: 0) > before + (1 << 20) - 1024)
        #expect(memory.verifySegment(0) == nil)
        #expect(throws: Never.self) { try memory.validatedBlock(segmentID: 0, offset: small.offset, size: 100) }
        #expect(throws: ShmCoreError.self) { try memory.validatedBlock(segmentID: 0, offset: small.offset, size: 4096) }
        memory.release(small)
        #expect(memory.freeMemory(segmentID: 0) == empty)
    }

    @Test("bad-alloc policies: throw at once, retry N times, forever until interrupted")
    func badAlloc() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        var config = testConfiguration("badalloc", directory: dir, segmentSize: 1 << 20, arenas: 1)
        let memory = try SessionMemory(config, logger: testLogger)
        _ = try memory.allocate(size: 900_000)
        let error = #expect(throws: ShmCoreError.self) { try memory.allocate(size: 200_000) }
        #expect(error?.code == .badAlloc)
        #expect(error?.message.contains("free memory") == true)
        memory.detach()
        #expect(dir.entries().isEmpty)

        config.badAlloc = .retry(attempts: 3, intervalMilliseconds: 20)
        let retrying = try SessionMemory(config, logger: testLogger)
        let hog = try retrying.allocate(size: 900_000)
        let start = ContinuousClock.now
        let exhausted = #expect(throws: ShmCoreError.self) { try retrying.allocate(size: 200_000) }
        #expect(exhausted?.code == .badAlloc)
        #expect(ContinuousClock.now - start >= .milliseconds(40))
        retrying.release(hog)
        retrying.detach()
        #expect(dir.entries().isEmpty)

        config.badAlloc = .forever(intervalMilliseconds: 5)
        let forever = try SessionMemory(config, logger: testLogger)
        // Memory freed by another thread while an allocation waits is found (the wait has no
        // end, so the freer's timing does not matter).
        let hog1 = try forever.allocate(size: 900_000)
        let freer = Thread { usleep(30_000); forever.release(hog1) }
        freer.start()
        let got = try forever.allocate(size: 200_000)
        #expect(got.size == 200_000)
        forever.release(got)
        let hog2 = try forever.allocate(size: 900_000)
        let interrupter = Thread { usleep(50_000); forever.interrupt() }
        interrupter.start()
        let interrupted = #expect(throws: ShmCoreError.self) { try forever.allocate(size: 200_000) }
        #expect(interrupted?.code == .interrupted)
        forever.resume()
        forever.release(hog2)
        #expect(try forever.allocate(size: 200_000).size == 200_000)
        forever.detach()
        #expect(dir.entries().isEmpty)
    }

    @Test("validatedBlock refuses what is not a live block, without reading out of bounds")
    func validation() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let memory = try SessionMemory(testConfiguration("valid", directory: dir), logger: testLogger)
        defer { memory.detach() }
        let block = try memory.allocate(size: 64)
        let size = UInt64(memory.segmentSize(segmentID: 0))
        for (segment, offset, length) in [
            (UInt16(0), UInt64(0), UInt64(1)), (0, size, 1), (0, size - 8, 64), (0, UInt64.max - 4, 10),
            (0, block.offset + 8, 8), (0, block.offset + 16, 8), (0, block.offset, 1 << 30), (7, block.offset, 64),
        ] {
            #expect(throws: ShmCoreError.self, "segment \(segment) offset \(offset) size \(length)") {
                try memory.validatedBlock(segmentID: segment, offset: offset, size: length)
            }
        }
        memory.release(block)
        let freed = #expect(throws: ShmCoreError.self) { try memory.validatedBlock(segmentID: 0, offset: block.offset, size: 64) }
        #expect(freed?.code == .invalidBlock)
    }

    @Test("a foreign or newer management segment is refused with a clear error")
    func foreignLayout() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().count == 1) }
        let config = testConfiguration("foreign", directory: dir)
        let name = "\(dir.path)/fmq_\(ShmID(session: config.session))_mng"
        var bytes = [UInt8](repeating: 0x42, count: 8192)
        _ = FileManager.default.createFile(atPath: name, contents: Data(bytes))
        let foreign = #expect(throws: ShmCoreError.self) { try SessionMemory(config, logger: testLogger) }
        #expect(foreign?.code == .foreignLayout)
        bytes = ManagementRecord(sessionName: "x", creatorUID: 0, creatorPID: 1).encoded()
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(99), toByteOffset: ManagementLayout.Header.layoutVersion, as: UInt32.self) }
        _ = FileManager.default.createFile(atPath: name, contents: Data(bytes))
        let newer = #expect(throws: ShmCoreError.self) { try SessionMemory(config, logger: testLogger) }
        #expect(newer?.code == .unsupportedVersion)
        #expect(newer?.message.contains("version 99") == true)
    }

    @Test("a session lock that a live process keeps (a stuck device, a word written over) fails the attach after 3 s, naming the holder")
    func stuckSessionLockIsAnErrorAtAttach() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("stuck-lock", directory: dir)
        let name = "\(dir.path)/fmq_\(ShmID(session: config.session))_mng"
        var bytes = ManagementRecord(sessionName: config.session.rawValue, creatorUID: geteuid(), creatorPID: getppid()).encoded()
        let holder = getppid()  // alive for the whole test
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: ManagementLayout.LockState.ready, toByteOffset: ManagementLayout.Header.lockState, as: UInt32.self)
            $0.storeBytes(of: UInt64(5) << 32 | UInt64(UInt32(bitPattern: holder)), toByteOffset: ManagementLayout.lockOffset, as: UInt64.self)
        }
        #expect(FileManager.default.createFile(atPath: name, contents: Data(bytes)))
        let started = Date()
        let stuck = #expect(throws: ShmCoreError.self) { try SessionMemory(config, logger: testLogger) }
        let waited = Date().timeIntervalSince(started)
        #expect(stuck?.code == .corrupt)
        #expect(stuck?.message.contains("stayed held for 3 s (by pid \(holder))") == true, "\(stuck?.message ?? "")")
        #expect(stuck?.message.contains("shmmonitor -c -s \(config.session)") == true)
        #expect(waited >= 2.9 && waited < 10, "gave up after \(waited) s")

        // The same word with a pid that no process has: taken over and repaired, the attach works.
        var gone = pid_t(0)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { argv.forEach { free($0) } }
        #expect(posix_spawn(&gone, "/bin/true", nil, nil, argv, environ) == 0)
        var status: Int32 = 0
        waitpid(gone, &status, 0)
        let fd = open(name, O_RDWR)
        #expect(fd >= 0)
        var word = UInt64(9) << 32 | UInt64(UInt32(bitPattern: gone))
        #expect(pwrite(fd, &word, 8, off_t(ManagementLayout.lockOffset)) == 8)
        close(fd)
        let memory = try SessionMemory(config, logger: testLogger)
        let block = try memory.allocate(size: 64)
        memory.release(block)
        memory.detach()
    }

    @Test("an attacher that finds the management segment still empty waits for its creator instead of failing")
    func emptyManagementSegmentIsWaitedFor() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("empty-mng", directory: dir, segmentSize: 4 << 20)
        // What an attacher sees between its creator's open(O_CREAT|O_EXCL) and posix_fallocate.
        let name = "\(dir.path)/fmq_\(ShmID(session: config.session))_mng"
        #expect(FileManager.default.createFile(atPath: name, contents: Data()))
        let creatorGaveUp = Thread {
            usleep(200_000)
            unlink(name)
        }
        creatorGaveUp.start()
        let memory = try SessionMemory(config, logger: testLogger)
        let block = try memory.allocate(size: 100)
        memory.release(block)
        memory.detach()

        // An empty one that never grows is reported as not ready, with the fix, not as a mapping failure.
        #expect(FileManager.default.createFile(atPath: name, contents: Data()))
        let stuck = #expect(throws: ShmCoreError.self) { try SessionMemory(config, logger: testLogger) }
        #expect(stuck?.code == .notReady)
        #expect(stuck?.message.contains("shmmonitor -c -s \(config.session)") == true)
        unlink(name)
    }

    @Test("a session pre-created by a keep-alive process (raw segments, zero lock) is formatted by the first device")
    func keepAliveSession() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("keepalive", directory: dir, segmentSize: 4 << 20)
        let id = ShmID(session: config.session)
        let record = ManagementRecord(
            sessionName: config.session.rawValue, creatorUID: geteuid(), creatorPID: getpid(),
            segments: [.init(id: 0, size: 4 << 20, freeBytes: 4 << 20)])
        _ = FileManager.default.createFile(atPath: "\(dir.path)/fmq_\(id)_mng", contents: Data(record.encoded()))
        let fd = open("\(dir.path)/fmq_\(id)_m_0", O_CREAT | O_RDWR, 0o600)
        #expect(posix_fallocate(fd, 0, 4 << 20) == 0)
        close(fd)
        #expect(try readLockAndEntryStates(dir: dir, id: id).lockState == ManagementLayout.LockState.uninitialised)
        let memory = try SessionMemory(config, logger: testLogger)
        // The device initialised the session lock the keep-alive left zero.
        #expect(try readLockAndEntryStates(dir: dir, id: id).lockState == ManagementLayout.LockState.ready)
        let block = try memory.allocate(size: 1000)
        memory.release(block)
        #expect(memory.verifySegment(0) == nil)
        memory.detach()
    }

    @Test("repair after a dead lock holder rebuilds the free lists from the chunk walk")
    func repairRebuilds() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        // No local cache: the released blocks must be real holes between used chunks.
        var config = testConfiguration("repair", directory: dir, arenas: 1)
        config.localCacheBytes = 0
        let memory = try SessionMemory(config, logger: testLogger)
        defer { memory.detach() }
        let empty = memory.freeMemory(segmentID: 0)
        var blocks = try (0..<200).map { try memory.allocate(size: 16 + $0 * 37) }
        let full = memory.freeMemory(segmentID: 0)
        for i in stride(from: 0, to: blocks.count, by: 3) { memory.release(blocks[i]) }
        blocks = blocks.enumerated().filter { $0.offset % 3 != 0 }.map(\.element)
        let free = memory.freeMemory(segmentID: 0)
        #expect(free > full, "the released blocks are holes in the heap")
        // Scramble the free lists and counters as a holder killed mid-update could leave them.
        let heap = SegmentHeap(base: memory.address(of: blocks[0]) - Int(blocks[0].offset))
        let a = heap.arenaOffset(0)
        memset(heap.base + a + SegmentLayout.Arena.bins, 0xff, 64)
        heap.setU64(a + SegmentLayout.Arena.freeBytes, 12345)
        #expect(memory.verifySegment(0) != nil)
        heap.repair(arena: 0)
        #expect(memory.verifySegment(0) == nil)
        #expect(memory.freeMemory(segmentID: 0) == free)
        for b in blocks { memory.release(b) }
        #expect(memory.freeMemory(segmentID: 0) == empty)
    }
}

extension SessionMemoryTests {
    @Test("a keep-alive pre-creates segments and checks them from outside without attaching")
    func preCreateAndInspect() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("inspect", directory: dir, segmentSize: 4 << 20)
        let missing = #expect(throws: ShmCoreError.self) { try SessionMemory.inspect(session: config.session, directory: dir.filePath) }
        #expect(missing?.code == .noSession)
        let keeper = try SessionMemory(config, logger: testLogger)
        try keeper.createSegment(1, size: 2 << 20)
        let status = try SessionMemory.inspect(session: config.session, directory: dir.filePath)
        #expect(status.isHealthy)
        #expect(status.segments.map(\.id) == [0, 1])
        #expect(status.segments.map(\.size) == [4 << 20, 2 << 20])
        #expect(status.segments.allSatisfy { $0.formatted && $0.freeBytes != nil })
        #expect(status.record.processes.map(\.pid) == [getpid()])
        // A device allocating from segment 1 finds it; blocks of segment 1 are valid in the keeper.
        var device = config
        device.segmentID = 1
        let user = try SessionMemory(device, logger: testLogger)
        let block = try user.allocate(size: 1000)
        #expect(block.segmentID == 1)
        #expect(try keeper.validatedBlock(segmentID: 1, offset: block.offset, size: 1000) == block)
        keeper.release(block)
        user.detach()
        // The session outlives the device while the keeper holds it, and goes with the keeper.
        #expect(dir.entries().count == 3)
        keeper.detach()
        #expect(dir.entries().isEmpty)
    }

    @Test("a block released by another attachment goes back to its allocator through the remote-free list, never to the releaser's cache")
    func handedOverBlocksAreNotCached() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("cache", directory: dir, segmentSize: 4 << 20)
        let sender = try SessionMemory(config, logger: testLogger)
        let receiver = try SessionMemory(config, logger: testLogger)
        let empty = sender.freeMemory(segmentID: 0)
        #expect(receiver.freeMemory(segmentID: 0) == empty)
        let blocks = try (0..<50).map { _ in try sender.allocate(size: 64) }
        for b in blocks {
            let named = try receiver.validatedBlock(segmentID: b.segmentID, offset: b.offset, size: b.size)
            receiver.release(named)
        }
        // Released by the receiver without its lock: they wait in the sender's remote-free list,
        // used as far as the heap knows, until the sender takes them back.
        #expect(receiver.freeMemory(segmentID: 0) < empty)
        #expect(sender.freeMemory(segmentID: 0) == empty)
        // Blocks a process allocates and frees itself are cached: counted free by it, used by others.
        let local = try sender.allocate(size: 64)
        sender.release(local)
        #expect(sender.freeMemory(segmentID: 0) == empty)
        #expect(receiver.freeMemory(segmentID: 0) < empty)
        #expect(throws: ShmCoreError.self) { try receiver.validatedBlock(segmentID: 0, offset: local.offset, size: 64) }
        sender.detach()
        #expect(receiver.freeMemory(segmentID: 0) == empty)
        receiver.detach()
    }

    @Test("threads of one process allocating while a peer frees their blocks remotely never get a block twice")
    func threadsTakeRemoteFreesOnce() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("threads", directory: dir, segmentSize: 16 << 20, arenas: 1)
        let owner = try SessionMemory(config, logger: testLogger)
        let peer = try SessionMemory(config, logger: testLogger)  // another slot: its releases are remote
        let live = Mutex(Set<UInt64>())
        let problems = Mutex([String]())
        let done = DispatchGroup()
        for _ in 0..<3 {
            done.enter()
            Thread {
                defer { done.leave() }
                for _ in 0..<40_000 {
                    guard let block = try? owner.allocate(size: 64) else { continue }
                    let fresh = live.withLock { $0.insert(block.offset).inserted }
                    if !fresh { problems.withLock { $0.append("offset \(block.offset) handed out twice") } }
                    live.withLock { _ = $0.remove(block.offset) }
                    do {
                        peer.release(try peer.validatedBlock(segmentID: block.segmentID, offset: block.offset, size: block.size))
                    } catch {
                        problems.withLock { $0.append("a block just allocated is not valid: \(error)") }
                        return
                    }
                }
            }.start()
        }
        done.wait()
        #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { $0.prefix(3) })")
        #expect(owner.verifySegment(0) == nil)
        #expect(owner.freeMemory(segmentID: 0) == owner.heapSize(segmentID: 0))
        peer.detach()
        owner.detach()
    }

    @Test("'segment full' is logged at most once per interval, with the count since the last line")
    func segmentFullIsRateLimited() {
        let lines = CapturedLines()
        let logger = Logger(label: "full") { _ in CapturingHandler(lines: lines) }
        let report = SegmentFullReport(intervalNanoseconds: 200_000_000)
        let first = (0..<1000).map { _ in report.note(logger: logger, size: 64, freeBytes: 0, segment: 0) }
        #expect(first.compactMap { $0 } == [1])
        usleep(250_000)
        #expect(report.note(logger: logger, size: 64, freeBytes: 0, segment: 0) == 1000)
        let logged = lines.all
        #expect(logged.count == 2 && logged[1].contains("1000 times since the last report"), "\(logged)")
    }

    @Test("prefaultSegment maps every page of the segment at attach; without it pages are mapped on first touch")
    func prefault() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        var config = testConfiguration("prefault", directory: dir, segmentSize: 32 << 20, arenas: 1)
        let lazy = try SessionMemory(config, logger: testLogger)
        config.prefaultSegment = true
        let eager = try SessionMemory(config, logger: testLogger)  // attaches the same segment
        let block = try lazy.allocate(size: 64)
        let pages = lazy.segmentSize(segmentID: 0) / 4096
        let lazyBase = lazy.address(of: block) - Int(block.offset)
        let eagerBase = eager.address(of: block) - Int(block.offset)
        let lazyMapped = try mappedPages(lazyBase, count: pages)
        let eagerMapped = try mappedPages(eagerBase, count: pages)
        print("prefault: \(eagerMapped) of \(pages) pages mapped with it, \(lazyMapped) without")
        #expect(eagerMapped == pages)
        #expect(lazyMapped < pages / 10)
        lazy.release(block)
        eager.detach()
        lazy.detach()
    }

    /// Pages of `count` starting at `base` that are present in this process's page table
    /// (`/proc/self/pagemap`, bit 63).
    func mappedPages(_ base: UnsafeMutableRawPointer, count: Int) throws -> Int {
        let fd = open("/proc/self/pagemap", O_RDONLY)
        guard fd >= 0 else { throw ShmCoreError(.systemCall, "cannot open /proc/self/pagemap", errno: errno) }
        defer { close(fd) }
        var entries = [UInt64](repeating: 0, count: count)
        let want = count * 8
        let got = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(UInt(bitPattern: base) / 4096 * 8)) }
        guard got == want else { throw ShmCoreError(.systemCall, "short read of /proc/self/pagemap: \(got)", errno: errno) }
        return entries.filter { $0 & (1 << 63) != 0 }.count
    }

    @Test("zero and mlock on creation and on attach; heartbeats advance")
    func zeroMlockHeartbeat() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        var config = testConfiguration("zero", directory: dir, segmentSize: 1 << 20, arenas: 1)
        config.zeroSegmentOnCreation = true
        config.mlockSegmentOnCreation = true
        config.localCacheBytes = 0
        let first = try SessionMemory(config, logger: testLogger)
        let block = try first.allocate(size: 4000)
        memset(first.address(of: block), 0xee, 4000)
        first.release(block)
        let id = ShmID(session: config.session)
        let before = try readRecord(dir: dir, id: id)
        var after = before
        _ = waitUntil(seconds: 5) {
            after = (try? readRecord(dir: dir, id: id)) ?? before
            return after.heartbeat > before.heartbeat + 1
        }
        #expect(after.heartbeat > before.heartbeat)
        #expect((after.processes.first?.lastHeartbeatNanos ?? 0) > (before.processes.first?.lastHeartbeatNanos ?? 0))
        config.zeroSegmentOnAttach = true
        config.mlockSegmentOnAttach = true
        let second = try SessionMemory(config, logger: testLogger)
        let again = try second.allocate(size: 4000)
        #expect(again.offset == block.offset)
        let bytes = UnsafeRawBufferPointer(start: second.address(of: again), count: 4000)
        #expect(bytes.allSatisfy { $0 == 0 }, "free memory was zeroed on attach")
        second.release(again)
        second.detach()
        first.detach()
    }
}

func readRecord(dir: ShmFixtureDirectory, id: ShmID) throws -> ManagementRecord {
    let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/fmq_\(id)_mng"))
    return try data.withUnsafeBytes { raw throws(ManagementRecord.DecodeFailure) in try ManagementRecord(bytes: raw) }
}

/// What the decoded record does not show, read from the management segment's bytes: the
/// header's `lockState` and the `state` of every process-table entry (free ones included).
func readLockAndEntryStates(dir: ShmFixtureDirectory, id: ShmID) throws -> (lockState: UInt32, entries: [UInt32]) {
    let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/fmq_\(id)_mng"))
    return data.withUnsafeBytes { raw in
        typealias H = ManagementLayout.Header
        let table = Int(raw.load(fromByteOffset: H.processTableOffset, as: UInt64.self))
        let capacity = Int(raw.load(fromByteOffset: H.processCapacity, as: UInt32.self))
        let stride = Int(raw.load(fromByteOffset: H.processEntrySize, as: UInt32.self))
        let entries = (0..<capacity).map {
            raw.load(fromByteOffset: table + $0 * stride + ManagementLayout.ProcessEntry.state, as: UInt32.self)
        }
        return (raw.load(fromByteOffset: H.lockState, as: UInt32.self), entries)
    }
}

/// Log lines captured by ``CapturingHandler``.
final class CapturedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}

/// A log handler that keeps every message (for tests of what is logged).
struct CapturingHandler: LogHandler {
    let lines: CapturedLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        lines.append(event.message.description)
    }
}
