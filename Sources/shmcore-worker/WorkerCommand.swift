import ArgumentParser
import Atomics
import Logging
import ShmCleanup
@_spi(Testing) import ShmCore
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Drives `SessionMemory` from a real process, for the multi-process and crash tests:
/// allocate blocks of mixed sizes, fill them with a pattern, hand them to other workers through
/// the test's control object, check and free what others hand over.
///
/// Exit codes: 0 done, 2 bad usage or setup error, 3 a check failed (double hand-out, pattern).
@main
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shmcore-worker",
        abstract: "Stress the shared-memory core from a real process (used by the multi-process tests).",
        subcommands: [CreateControl.self, Run.self, Crash.self, Attach.self, Release.self])
}

struct CreateControl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-control", abstract: "Create the control object shared by the workers of one test.")

    @Option(help: "Path of the control object (removed by the test).") var control: String
    @Option(help: "Number of workers.") var workers: Int
    @Option(help: "Segment size the ownership bitmap covers.") var segmentSize: Int

    func validate() throws {
        guard (1...Control.maxWorkers).contains(workers) else {
            throw ValidationError("--workers must be 1...\(Control.maxWorkers)")
        }
    }

    func run() throws {
        guard Control.create(path: control, workers: workers, segmentSize: segmentSize) != nil else {
            throw ValidationError("cannot create the control object '\(control)'; check the path and free space")
        }
    }
}

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or attach a session, allocate and free one block, detach; print the error if any.")

    @Option(name: .shortAndLong, help: "Session id.") var session: String
    @Option(help: "Shared memory directory (default: $SHMTRANSPORT_SHM_DIR or /dev/shm).") var shmDir: String?
    @Option(help: "Segment size in bytes.") var segmentSize: Int = 16 << 20
    @Option(help: "Stay attached this long before detaching.") var holdMilliseconds: Int = 0

    func run() throws {
        var config = SessionConfiguration(session: try SessionID(session), segmentSize: segmentSize)
        if let shmDir { config.directory = FilePath(shmDir) }
        do {
            let memory = try SessionMemory(config, logger: Logger(label: "shmcore-worker"))
            let block = try memory.allocate(size: 4096)
            memory.release(block)
            print("attached \(memory.id) free \(memory.freeMemory(segmentID: config.segmentID))")
            fflush(nil)
            if holdMilliseconds > 0 { usleep(UInt32(holdMilliseconds) * 1000) }
            memory.detach()
        } catch {
            fputs("shmcore-worker: \(error)\n", stderr)
            throw ExitCode(2)
        }
    }
}

struct Release: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach, wait, then release a block another process allocated (the full-segment wake-up test).")

    @Option(name: .shortAndLong, help: "Session id.") var session: String
    @Option(help: "Shared memory directory.") var shmDir: String
    @Option(help: "Segment size in bytes.") var segmentSize: Int = 16 << 20
    @Option(help: "Payload offset of the block in segment 0.") var offset: UInt64
    @Option(help: "Payload size of the block.") var size: UInt64
    @Option(help: "Wait this long after attaching before the release.") var afterMilliseconds: Int = 0

    func run() throws {
        let config = SessionConfiguration(session: try SessionID(session), directory: FilePath(shmDir), segmentSize: segmentSize)
        let memory = try SessionMemory(config, logger: Logger(label: "shmcore-worker"))
        let block = try memory.validatedBlock(segmentID: 0, offset: offset, size: size)
        usleep(UInt32(afterMilliseconds) * 1000)
        memory.release(block)
        print("released \(offset)")
        fflush(nil)
        memory.detach()
    }
}

struct Crash: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach, then die by SIGKILL in the middle of an update while holding a lock.")

    @Option(name: .shortAndLong, help: "Session id.") var session: String
    @Option(help: "Shared memory directory.") var shmDir: String
    @Option(help: "Segment size in bytes.") var segmentSize: Int = 16 << 20
    @Option(help: "Arenas per segment.") var arenas: Int = 1
    @Option(help: "Where to die: \(SessionMemory.CrashPoint.allCases.map(\.rawValue).joined(separator: ", ")).")
    var point: String

    func validate() throws {
        guard SessionMemory.CrashPoint(rawValue: point) != nil else {
            throw ValidationError("unknown crash point '\(point)'; use one of \(SessionMemory.CrashPoint.allCases.map(\.rawValue))")
        }
    }

    func run() throws {
        let config = SessionConfiguration(
            session: try SessionID(session), directory: FilePath(shmDir), segmentSize: segmentSize, arenaCount: arenas)
        let memory = try SessionMemory(config, logger: Logger(label: "shmcore-worker"))
        memory.crash(at: SessionMemory.CrashPoint(rawValue: point)!)
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run one worker until its quota or the stop flag.")

    @Option(name: .shortAndLong, help: "Session id.") var session: String
    @Option(help: "Shared memory directory.") var shmDir: String
    @Option(help: "Segment size in bytes.") var segmentSize: Int = 64 << 20
    @Option(help: "Arenas per segment (default: from the size).") var arenas: Int?
    @Option(help: "rbtree_best_fit or simple_seq_fit.") var allocator: String = "rbtree_best_fit"
    @Option(help: "Path of the control object.") var control: String
    @Option(help: "This worker's index (0-based).") var index: Int
    @Option(help: "Blocks to produce; 0 = until the stop flag.") var blocks: Int = 0
    @Option(help: "Random seed (0: from the pid).") var seed: UInt64 = 0
    @Option(help: "Largest block in bytes.") var maxSize: Int = 256 << 10

    func validate() throws {
        guard AllocationStrategy(rawValue: allocator) != nil else {
            throw ValidationError("unknown allocator '\(allocator)'; use rbtree_best_fit or simple_seq_fit")
        }
    }

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "shmcore-worker")
        logger.logLevel = .warning
        guard let ctl = Control.open(path: control) else {
            throw ValidationError("cannot open the control object '\(control)'")
        }
        let config = SessionConfiguration(
            session: try SessionID(session), directory: FilePath(shmDir), segmentSize: segmentSize,
            allocationStrategy: AllocationStrategy(rawValue: allocator)!,
            badAlloc: .retry(attempts: 200, intervalMilliseconds: 5), arenaCount: arenas)
        let memory: SessionMemory
        do { memory = try SessionMemory(config, logger: logger) } catch {
            fputs("shmcore-worker: \(error)\n", stderr)
            throw ExitCode(2)
        }
        var worker = Worker(memory: memory, control: ctl, index: index, maxSize: maxSize,
                            rng: Xorshift(seed: seed == 0 ? UInt64(getpid()) &* 0x9E37_79B9 : seed))
        let code = worker.loop(quota: blocks)
        print("worker \(index) pid \(getpid()) created \(memory.createdSession ? 1 : 0) slot \(memory.processSlot) produced \(worker.produced) received \(worker.received) maxgap_ms \(worker.maxGapNanos / 1_000_000) badalloc \(worker.badAllocs)")
        fflush(nil)
        memory.detach()
        if code != 0 { throw ExitCode(code) }
    }
}

struct Xorshift {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Reference bytes: a block's content is a window of this buffer chosen by its tag, so that
/// filling and checking run at memcpy/memcmp speed.
nonisolated(unsafe) let reference: UnsafeMutableRawPointer = {
    let n = (1 << 20) + 8192
    let p = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 16)
    var r = Xorshift(seed: 0x1234_5678)
    for i in stride(from: 0, to: n, by: 8) { p.storeBytes(of: r.next(), toByteOffset: i, as: UInt64.self) }
    return p
}()

func now() -> UInt64 { MonotonicClock.nanoseconds() }

struct Worker {
    let memory: SessionMemory
    let control: Control
    let index: Int
    let maxSize: Int
    var rng: Xorshift
    var produced = 0
    var received = 0
    var badAllocs = 0
    var maxGapNanos: UInt64 = 0
    var held: [Control.Entry] = []
    var inbox: [Control.Entry] = []

    init(memory: SessionMemory, control: Control, index: Int, maxSize: Int, rng: Xorshift) {
        self.memory = memory
        self.control = control
        self.index = index
        self.maxSize = maxSize
        self.rng = rng
    }

    mutating func size() -> Int {
        let r = rng.below(100)
        if r < 60 { return rng.below(257) }
        if r < 90 { return 257 + rng.below(4096 - 257) }
        if r < 99 { return 4096 + rng.below(32 << 10) }
        return (32 << 10) + rng.below(max(1, maxSize - (32 << 10)))
    }

    func fill(_ e: Control.Entry) {
        let p = memory.address(of: ShmBlock(segmentID: e.segment, offset: e.offset, size: e.size))
        memcpy(p, reference + Int(e.tag % 8192), Int(e.size))
    }

    func check(_ e: Control.Entry) -> Bool {
        let p = memory.address(of: ShmBlock(segmentID: e.segment, offset: e.offset, size: e.size))
        return memcmp(p, reference + Int(e.tag % 8192), Int(e.size)) == 0
    }

    /// Checks, unclaims and releases a block; returns false on a pattern mismatch.
    mutating func finish(_ e: Control.Entry) -> Bool {
        guard check(e) else {
            fputs("shmcore-worker \(index): PATTERN MISMATCH at segment \(e.segment) offset \(e.offset) size \(e.size)\n", stderr)
            return false
        }
        control.unclaim(offset: e.offset, size: e.size)
        memory.release(ShmBlock(segmentID: e.segment, offset: e.offset, size: e.size))
        return true
    }

    mutating func loop(quota: Int) -> Int32 {
        let n = control.workers
        var last = now()
        var stopping = false
        while true {
            let t = now()
            maxGapNanos = max(maxGapNanos, t - last)
            last = t
            control.progress(index).wrappingIncrement(ordering: .relaxed)
            control.lastProgress(index).store(t, ordering: .relaxed)

            if !stopping && ((quota > 0 && produced >= quota) || (quota == 0 && control.stop.load(ordering: .acquiring) != 0)) {
                stopping = true
                for e in held where !finish(e) { return 3 }
                held.removeAll()
                control.stopped.wrappingIncrement(ordering: .acquiringAndReleasing)
            }
            if !stopping {
                let size = size()
                let block: ShmBlock
                do {
                    block = try memory.allocate(size: size, alignment: rng.below(8) == 0 ? 4096 : 8)
                } catch {
                    badAllocs += 1
                    if badAllocs > 1000 {
                        fputs("shmcore-worker \(index): \(error)\n", stderr)
                        return 3
                    }
                    for e in held where !finish(e) { return 3 }
                    held.removeAll()
                    continue
                }
                let e = Control.Entry(segment: block.segmentID, offset: block.offset, size: block.size, tag: rng.next())
                guard control.claim(offset: e.offset, size: e.size) else {
                    fputs("shmcore-worker \(index): DOUBLE HAND-OUT: offset \(e.offset) size \(e.size) overlaps a live block\n", stderr)
                    return 3
                }
                fill(e)
                produced += 1
                if rng.below(16) == 0 {
                    memory.retain(block)
                    if memory.referenceCount(block) != 2 {
                        fputs("shmcore-worker \(index): reference count \(memory.referenceCount(block)) after retain\n", stderr)
                        return 3
                    }
                    memory.release(block)
                }
                let target = n > 1 ? (index + 1 + rng.below(n - 1)) % n : index
                if rng.below(10) < 7 && control.push(target, e) {
                    // handed over
                } else {
                    held.append(e)
                    if held.count > 32 {
                        let victim = held.remove(at: rng.below(held.count))
                        if !finish(victim) { return 3 }
                    }
                }
            }
            inbox.removeAll(keepingCapacity: true)
            control.pop(index, max: 64, into: &inbox)
            for e in inbox {
                received += 1
                if !finish(e) { return 3 }
            }
            if stopping && inbox.isEmpty {
                if control.stopped.load(ordering: .acquiring) >= UInt32(n) && control.inboxCount(index) == 0 { return 0 }
                usleep(200)
            }
        }
    }
}
