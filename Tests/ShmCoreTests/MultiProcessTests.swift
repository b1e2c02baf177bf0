import Foundation
import Logging
import ShmCleanup
import ShmTestSupport
import SystemPackage
import Synchronization
import Testing

@_spi(Testing) @testable import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A `shmcore-worker run` child.
final class WorkerProcess: @unchecked Sendable {
    let process = Process()
    let output = Pipe()
    let errors = Pipe()
    let index: Int

    init(index: Int, arguments: [String]) throws {
        self.index = index
        process.executableURL = URL(fileURLWithPath: workerPath)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errors
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits for the exit; returns status and the output.
    func wait() -> (status: Int32, reason: Process.TerminationReason, stdout: String, stderr: String) {
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus, process.terminationReason, String(decoding: out, as: UTF8.self),
            String(decoding: err, as: UTF8.self)
        )
    }

    func kill() {
        Glibc.kill(pid, SIGKILL)
        process.waitUntilExit()
    }
}

/// Read-only view of the workers' control object: progress stamps (CLOCK_MONOTONIC) per worker.
struct ControlView {
    let base: UnsafeMutableRawPointer
    let size: Int

    init(path: String) throws {
        let fd = open(path, O_RDWR)
        guard fd >= 0 else { throw ShmCoreError(.systemCall, "cannot open \(path)", errno: errno) }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        size = Int(st.st_size)
        base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!
    }

    func unmap() { munmap(base, size) }
    func lastProgress(_ i: Int) -> UInt64 {
        base.load(fromByteOffset: 64 + 64 * i + 8, as: UInt64.self)
    }
    func setStop() {
        base.storeBytes(of: UInt32(1), toByteOffset: 8, as: UInt32.self)
    }
}

func monotonicNanos() -> UInt64 { MonotonicClock.nanoseconds() }

/// Blocks handed over between processes in the acceptance runs (override for longer stress).
let acceptanceBlocks = ProcessInfo.processInfo.environment["SHMCORE_STRESS_BLOCKS"].flatMap(Int.init) ?? 1_000_000
/// Rounds of SIGKILL in the crash test.
let crashRounds = ProcessInfo.processInfo.environment["SHMCORE_CRASH_ROUNDS"].flatMap(Int.init) ?? 200

@Suite("SessionMemory across real processes", .serialized)
struct MultiProcessTests {
    func workerArguments(
        _ config: SessionConfiguration, control: String, index: Int, blocks: Int, strategy: AllocationStrategy
    ) -> [String] {
        [
            "run", "-s", config.session.rawValue, "--shm-dir", config.directory.string, "--segment-size",
            "\(config.segmentSize)", "--control", control, "--index", "\(index)", "--blocks", "\(blocks)",
            "--allocator", strategy.rawValue,
        ]
    }

    @Test(
        "N processes allocate, fill, hand over and free mixed-size blocks: never handed out twice, patterns intact, free memory back to its start",
        arguments: [(2, AllocationStrategy.rbtreeBestFit, 1), (4, .rbtreeBestFit, 1), (2, .simpleSeqFit, 5)])
    func handOver(workers: Int, strategy: AllocationStrategy, divisor: Int) throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("handover", directory: dir, segmentSize: 64 << 20, strategy: strategy)
        let memory = try SessionMemory(config, logger: testLogger)
        let empty = memory.freeMemory(segmentID: 0)
        let control = "\(dir.path)/control"
        let created = try runTool(
            workerPath, ["create-control", "--control", control, "--workers", "\(workers)", "--segment-size", "\(config.segmentSize)"])
        #expect(created.status == 0, "\(created.stderr)")
        let total = acceptanceBlocks / divisor
        let start = Date()
        let children = try (0..<workers).map {
            try WorkerProcess(
                index: $0,
                arguments: workerArguments(config, control: control, index: $0, blocks: total / workers, strategy: strategy))
        }
        var produced = 0
        var received = 0
        for child in children {
            let result = child.wait()
            #expect(result.status == 0 && result.reason == .exit, "worker \(child.index): \(result.stderr)")
            let fields = result.stdout.split(separator: " ")
            if let i = fields.firstIndex(of: "produced"), let n = Int(fields[i + 1]) { produced += n }
            if let i = fields.firstIndex(of: "received"), let n = Int(fields[i + 1]) { received += n }
        }
        print("handover \(workers) workers \(strategy.rawValue): \(produced) blocks, \(received) handed over, \(Date().timeIntervalSince(start)) s")
        #expect(produced == total / workers * workers)
        #expect(received > produced / 2)
        #expect(memory.freeMemory(segmentID: 0) == empty)
        #expect(memory.verifySegment(0) == nil)
        #expect(memory.attachedProcesses() == [getpid()])
        memory.detach()
        try FileManager.default.removeItem(atPath: control)
        #expect(dir.entries().isEmpty)
    }

    @Test("SIGKILL of random workers at random moments: survivors never stall over 1 s, the table drops the dead, cleanup leaves nothing")
    func crashTest() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let workers = 4
        let config = testConfiguration("crash", directory: dir, segmentSize: 64 << 20)
        let memory = try SessionMemory(config, logger: testLogger)
        let id = ShmID(session: config.session)
        let control = "\(dir.path)/control"
        let created = try runTool(
            workerPath, ["create-control", "--control", control, "--workers", "\(workers)", "--segment-size", "\(config.segmentSize)"])
        #expect(created.status == 0, "\(created.stderr)")
        let view = try ControlView(path: control)
        defer { view.unmap() }
        let spawn = { (i: Int) throws -> WorkerProcess in
            try WorkerProcess(
                index: i, arguments: self.workerArguments(config, control: control, index: i, blocks: 0, strategy: .rbtreeBestFit))
        }
        var children = try (0..<workers).map(spawn)
        var spawnedAt = [UInt64](repeating: monotonicNanos(), count: workers)
        var killed: [Int32] = []
        var longestStall: UInt64 = 0
        var rng = SystemRandomNumberGenerator()

        /// Samples every live worker's last progress stamp for `nanos`; a worker counts once it
        /// has made progress since it was spawned.
        func sample(for nanos: UInt64) {
            let end = monotonicNanos() + nanos
            repeat {
                let now = monotonicNanos()
                for i in 0..<workers {
                    let last = view.lastProgress(i)
                    if last > spawnedAt[i] && now > last { longestStall = max(longestStall, now - last) }
                }
                usleep(2000)
            } while monotonicNanos() < end
        }

        sample(for: 300_000_000)
        for _ in 0..<crashRounds {
            sample(for: UInt64.random(in: 5_000_000...40_000_000, using: &rng))
            let victim = Int.random(in: 0..<workers, using: &rng)
            killed.append(children[victim].pid)
            children[victim].kill()
            spawnedAt[victim] = monotonicNanos()
            children[victim] = try spawn(victim)
        }
        // Pruning runs every second in every process: soon no dead pid may be listed (keep
        // sampling stalls meanwhile; allow 5 s for a loaded machine).
        let expected = Set(children.map(\.pid) + [getpid()])
        var record = try readRecord(dir: dir, id: id)
        for _ in 0..<50 where Set(record.processes.map(\.pid)) != expected {
            sample(for: 100_000_000)
            record = try readRecord(dir: dir, id: id)
        }
        let listed = Set(record.processes.map(\.pid))
        #expect(listed.isDisjoint(with: killed), "dead pids still listed: \(listed.intersection(killed))")
        #expect(listed == expected)
        #expect(record.processes.allSatisfy { ProcessInspector().isAlive(pid: $0.pid, startTime: $0.startTime) })

        view.setStop()
        for child in children {
            let result = child.wait()
            #expect(result.status == 0 && result.reason == .exit, "worker \(child.index): \(result.stderr)")
        }
        let census = memory.usedBlockCensus(segmentID: 0)
        print("crash test: used blocks left \(census)")
        // Released blocks nobody took back: a killed process holds at most the one it was handing
        // over (its remote-free chains stay reachable for the pruner), so at most one per kill.
        #expect((census["released"]?.blocks ?? 0) <= crashRounds, "\(census)")
        print("crash test: \(crashRounds) kills, longest stall of a live worker \(longestStall / 1_000_000) ms, arena repairs \(memory.repairCount(segmentID: 0)), free \(memory.freeMemory(segmentID: 0)) of \(memory.heapSize(segmentID: 0))")
        #expect(longestStall < 1_000_000_000, "a survivor stalled \(longestStall / 1_000_000) ms")
        #expect(memory.verifySegment(0) == nil)
        #expect(memory.attachedProcesses() == [getpid()])
        // A killed worker leaks only the blocks it held (at most 32 plus those in flight); the
        // pruner frees its local cache. Without that, 200 kills would exhaust the segment.
        #expect(memory.freeMemory(segmentID: 0) > memory.heapSize(segmentID: 0) / 2)
        // Blocks of killed workers leak until the session ends; the session still ends cleanly.
        memory.detach()
        try FileManager.default.removeItem(atPath: control)
        #expect(dir.entries().isEmpty)
    }

    @Test("a process killed inside an allocator, session-lock or remote-free update is repaired by the next locker or pruner", arguments: SessionMemory.CrashPoint.allCases)
    func killedHoldingLock(point: SessionMemory.CrashPoint) throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("holder", directory: dir, segmentSize: 16 << 20, arenas: 1)
        let memory = try SessionMemory(config, logger: testLogger)
        let empty = memory.freeMemory(segmentID: 0)
        let result = try runTool(
            workerPath,
            ["crash", "-s", config.session.rawValue, "--shm-dir", dir.path, "--segment-size", "\(16 << 20)", "--point", point.rawValue])
        #expect(result.status == SIGKILL, "\(result.stderr)")
        // The next locker sees EOWNERDEAD and repairs; nothing hangs.
        let block = try memory.allocate(size: 300)
        memory.release(block)
        #expect(memory.attachedProcesses() == [getpid()])
        // The session-lock repair freed the entry the dead process was claiming.
        let states = try readLockAndEntryStates(dir: dir, id: ShmID(session: config.session)).entries
        #expect(!states.contains(ManagementLayout.ProcessEntry.claiming), "entries \(states.filter { $0 != 0 })")
        #expect(states.filter { $0 == ManagementLayout.ProcessEntry.attached }.count == 1)
        #expect(memory.verifySegment(0) == nil)
        switch point {
        case .sessionLockClaiming, .remoteListFull:
            // Nothing leaks: the pruner closed the dead owner's remote-free list and freed its blocks.
            #expect(memory.freeMemory(segmentID: 0) == empty)
        case .remotePushLinked, .remoteTakeWalking:
            // No lock was held; at most the blocks in the dead process's hands leak.
            #expect(memory.repairCount(segmentID: 0) == 0)
            #expect(memory.freeMemory(segmentID: 0) >= empty - 2048)
        case .allocationUnlinked, .allocationSplit, .freeMerged:
            #expect(point.holdsArenaLock)
            #expect(memory.repairCount(segmentID: 0) >= 1)
            // At most the block the dead process was taking leaks.
            #expect(memory.freeMemory(segmentID: 0) >= empty - 2048)
        }
        // A new process can still attach and work.
        let again = try SessionMemory(config, logger: testLogger)
        let b = try again.allocate(size: 1000)
        again.release(b)
        again.detach()
        memory.detach()
        #expect(dir.entries().isEmpty)
    }

    @Test("an allocation waiting on a full segment is woken by a free in another process, not by its retry interval")
    func fullSegmentWaiterIsWokenByRemoteFree() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        var config = testConfiguration("waiter", directory: dir, segmentSize: 1 << 20, arenas: 1)
        // A fixed-interval sleep would wait 60 s between attempts; the futex wake-up must come first.
        config.badAlloc = .forever(intervalMilliseconds: 60_000)
        let memory = try SessionMemory(config, logger: testLogger)
        let hog = try memory.allocate(size: 900_000)
        let child = try WorkerProcess(
            index: 0,
            arguments: [
                "release", "-s", config.session.rawValue, "--shm-dir", dir.path, "--segment-size", "\(1 << 20)",
                "--offset", "\(hog.offset)", "--size", "\(hog.size)", "--after-milliseconds", "300",
            ])
        let start = ContinuousClock.now
        let got = try memory.allocate(size: 200_000)
        let waited = ContinuousClock.now - start
        let result = child.wait()
        #expect(result.status == 0 && result.reason == .exit, "\(result.stderr)")
        #expect(result.stdout.contains("released"), "\(result.stdout)")
        print("full-segment waiter woken \(waited) after it started waiting (the peer frees after 300 ms)")
        #expect(waited >= .milliseconds(250))
        #expect(waited < .seconds(30), "the waiter slept its 60 s interval instead of being woken")
        memory.release(got)
        #expect(memory.freeMemory(segmentID: 0) == memory.heapSize(segmentID: 0))
        memory.detach()
        #expect(dir.entries().isEmpty)
    }

    @Test("two threads waiting on a full segment are both woken by frees in another process")
    func twoWaitingThreadsAreBothWoken() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        var config = testConfiguration("waiters", directory: dir, segmentSize: 1 << 20, arenas: 1)
        config.badAlloc = .forever(intervalMilliseconds: 60_000)
        config.localCacheBytes = 0
        let memory = try SessionMemory(config, logger: testLogger)
        let first = try memory.allocate(size: 450_000)
        let second = try memory.allocate(size: 450_000)
        // Each peer frees one big block, 300 ms and 900 ms from now; each waiter needs one.
        let children = try [(first, 300), (second, 900)].enumerated().map { index, item in
            try WorkerProcess(
                index: index,
                arguments: [
                    "release", "-s", config.session.rawValue, "--shm-dir", dir.path, "--segment-size", "\(1 << 20)",
                    "--offset", "\(item.0.offset)", "--size", "\(item.0.size)", "--after-milliseconds", "\(item.1)",
                ])
        }
        let start = ContinuousClock.now
        let got = Mutex([Duration]())
        let done = DispatchGroup()
        for _ in 0..<2 {
            done.enter()
            Thread {
                defer { done.leave() }
                if let block = try? memory.allocate(size: 400_000) {
                    got.withLock { $0.append(ContinuousClock.now - start) }
                    _ = block  // kept until the end: each waiter holds what it got
                }
            }.start()
        }
        #expect(done.wait(timeout: .now() + 30) == .success, "a waiter slept its 60 s interval")
        for child in children { #expect(child.wait().status == 0) }
        let times = got.withLock { $0 }
        print("two waiters woken after \(times)")
        #expect(times.count == 2 && times.allSatisfy { $0 < .seconds(30) })
        memory.detach()
        #expect(dir.entries().isEmpty)
    }

    @Test("many processes attaching at once: one creates, all register, the last one out removes everything")
    func concurrentAttach() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("race", directory: dir, segmentSize: 8 << 20)
        let control = "\(dir.path)/control"
        let created = try runTool(workerPath, ["create-control", "--control", control, "--workers", "8", "--segment-size", "\(8 << 20)"])
        #expect(created.status == 0)
        let children = try (0..<8).map {
            try WorkerProcess(
                index: $0, arguments: workerArguments(config, control: control, index: $0, blocks: 2000, strategy: .rbtreeBestFit))
        }
        // Every worker stays attached until all have stopped producing, so all eight are
        // attached at once: exactly one created the session, and their slots differ.
        var creators = 0
        var slots: [Int] = []
        for child in children {
            let result = child.wait()
            #expect(result.status == 0, "\(result.stderr)")
            let fields = result.stdout.split(whereSeparator: \.isWhitespace)
            if let i = fields.firstIndex(of: "created"), i + 1 < fields.count, let n = Int(fields[i + 1]) { creators += n }
            if let i = fields.firstIndex(of: "slot"), i + 1 < fields.count, let n = Int(fields[i + 1]) { slots.append(n) }
        }
        #expect(creators == 1)
        #expect(slots.count == children.count)
        #expect(Set(slots).count == children.count, "slots \(slots)")
        try FileManager.default.removeItem(atPath: control)
        #expect(dir.entries().isEmpty)
    }

    @Test("processes that create, attach and leave a session at the same moments never fail and leave nothing")
    func attachDetachChurn() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("churn").rawValue
        for _ in 0..<3 {
            let children = try (0..<12).map { i in
                try WorkerProcess(
                    index: i,
                    arguments: ["attach", "-s", session, "--shm-dir", dir.path, "--segment-size", "\(4 << 20)"])
            }
            for child in children {
                let result = child.wait()
                #expect(result.status == 0, "\(result.stderr)")
                #expect(result.stdout.hasPrefix("attached "), "\(result.stdout)")
            }
            #expect(dir.entries().isEmpty)
        }
    }

    @Test("the table records each process's Slurm job and step; a SIGKILLed creator is pruned and the session still ends cleanly")
    func slurmIdentityAndDeadCreator() throws {
        let dir = try ShmFixtureDirectory.onTmpfs()
        defer { #expect(dir.remove().isEmpty) }
        let config = testConfiguration("slurm", directory: dir, segmentSize: 4 << 20)
        let id = ShmID(session: config.session)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: workerPath)
        process.arguments = [
            "attach", "-s", config.session.rawValue, "--shm-dir", dir.path, "--segment-size", "\(4 << 20)",
            "--hold-milliseconds", "60000",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["SLURM_JOB_ID"] = "4242"
        environment["SLURM_STEP_ID"] = "7"
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var record: ManagementRecord?
        let registered = waitUntil(seconds: 10) {
            record = try? readRecord(dir: dir, id: id)
            return record?.processes.contains { $0.pid == process.processIdentifier } == true
        }
        #expect(registered)
        #expect(record?.creatorSlurmJobID == 4242)
        #expect(record?.creatorSlurmStepID == 7)
        #expect(record?.processes.first?.slurmJobID == 4242)
        #expect(record?.processes.first?.slurmStepID == 7)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let memory = try SessionMemory(config, logger: testLogger)
        #expect(!memory.createdSession)
        #expect(memory.attachedProcesses() == [getpid()])
        memory.detach()
        #expect(dir.entries().isEmpty)
    }
}
