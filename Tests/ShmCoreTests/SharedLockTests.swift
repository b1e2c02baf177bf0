import Foundation
import Synchronization
import Testing

@_spi(Testing) import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The lock under the session and the arenas: mutual exclusion, hand-over from holders that
/// are gone (reaped, zombie, pid reused), a time limit for live holders, and no trap on any word.
@Suite("SharedLock")
struct SharedLockTests {
    /// 16 bytes of zeroed, 64-byte aligned memory for one lock (futexes work on any mapping).
    final class LockMemory: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        init() {
            base = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        }
        deinit { base.deallocate() }
        var lock: SharedLock { SharedLock(at: base) }
        func setWord(pid: Int32, sequence: UInt64 = 7, startTime: UInt64 = 0) {
            base.storeBytes(of: sequence << 32 | UInt64(UInt32(bitPattern: pid)), as: UInt64.self)
            base.storeBytes(of: startTime, toByteOffset: 8, as: UInt64.self)
        }
        var word: UInt64 { base.load(as: UInt64.self) }
    }

    /// A child process that has ended; reaped (its pid is free) or left a zombie.
    static func endedChild(reap: Bool) throws -> pid_t {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
        defer { argv.forEach { free($0) } }
        let rc = posix_spawn(&pid, "/bin/sleep", nil, nil, argv, environ)
        try #require(rc == 0)
        kill(pid, SIGKILL)
        if reap {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        } else {
            // wait until the kernel shows it as a zombie
            for _ in 0..<500 {
                if let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), s.contains(") Z ") { break }
                usleep(2000)
            }
        }
        return pid
    }

    @Test func threadsExcludeEachOther() async throws {
        let memory = LockMemory()
        let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        counter.initialize(to: 0)
        defer { counter.deallocate() }
        let box = UnsafeSendable(counter)
        let threads = 4, rounds = 50_000
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<threads {
                group.addTask {
                    for _ in 0..<rounds {
                        #expect(memory.lock.lock(timeoutNanoseconds: nil) {} == .acquired)
                        let v = box.pointer.pointee  // a non-atomic read-modify-write: lost under a broken lock
                        box.pointer.pointee = v + 1
                        memory.lock.unlock()
                    }
                }
            }
        }
        #expect(counter.pointee == threads * rounds)
        #expect(memory.lock.holder == 0)
        #expect(memory.word >> 32 >= UInt64(threads * rounds), "every take bumps the sequence")
    }

    @Test(arguments: [true, false])
    func aHolderThatIsGoneIsReplacedAndRepairRuns(reaped: Bool) throws {
        let memory = LockMemory()
        let dead = try Self.endedChild(reap: reaped)
        defer { if !reaped { var s: Int32 = 0; waitpid(dead, &s, 0) } }
        memory.setWord(pid: dead)
        var repaired = 0
        let started = Date()
        let outcome = memory.lock.lock(timeoutNanoseconds: 5_000_000_000) { repaired += 1 }
        #expect(outcome == .holderDied)
        #expect(repaired == 1)
        #expect(Date().timeIntervalSince(started) < 1, "taken over after one check interval, not at the limit")
        #expect(memory.lock.holder == getpid())
        memory.lock.unlock()
        #expect(memory.lock.lock(timeoutNanoseconds: 0) {} == .acquired)
        memory.lock.unlock()
    }

    @Test func aRecycledPidIsSeenByItsStartTime() {
        let memory = LockMemory()
        // a live pid (the parent's), but another start time: the holder that took it is gone
        memory.setWord(pid: getppid(), startTime: 1)
        var repaired = false
        #expect(memory.lock.lock(timeoutNanoseconds: 2_000_000_000) { repaired = true } == .holderDied)
        #expect(repaired)
        memory.lock.unlock()
    }

    @Test func aLiveHolderMakesTheCallTimeOutNotWaitForEver() {
        let memory = LockMemory()
        memory.setWord(pid: getppid())
        let started = Date()
        #expect(memory.lock.lock(timeoutNanoseconds: 300_000_000) {} == .timedOut(holder: getppid()))
        let waited = Date().timeIntervalSince(started)
        #expect(waited >= 0.29 && waited < 2, "waited \(waited) s for a 0.3 s limit")
        #expect(!memory.lock.tryLock())
    }

    @Test func aReleaseWakesASleepingWaiter() throws {
        let memory = LockMemory()
        #expect(memory.lock.lock(timeoutNanoseconds: nil) {} == .acquired)
        let got = Mutex<Date?>(nil)
        let waiter = Thread {
            _ = memory.lock.lock(timeoutNanoseconds: 10_000_000_000) {}
            got.withLock { $0 = Date() }
            memory.lock.unlock()
        }
        waiter.start()
        usleep(200_000)  // the waiter sleeps on the futex by now (waiters bit set)
        #expect(memory.word & 0x8000_0000 != 0)
        let released = Date()
        memory.lock.unlock()
        var taken: Date?
        for _ in 0..<1000 where taken == nil {
            usleep(1000)
            taken = got.withLock { $0 }
        }
        let after = try #require(taken).timeIntervalSince(released)
        #expect(after < 0.015, "woken \(after) s after the release (a missed wake-up waits for the check interval)")
    }

    /// Any 64-bit word and start time: the call ends (taken, or timed out naming a live pid),
    /// never traps, and a taken lock is then usable as usual.
    @Test func garbageWordsNeverTrapOrHang() {
        let memory = LockMemory()
        var rng = SystemRandomNumberGenerator()
        var taken = 0, timedOut = 0
        for _ in 0..<200 {
            memory.base.storeBytes(of: rng.next() as UInt64, as: UInt64.self)
            memory.base.storeBytes(of: rng.next() as UInt64, toByteOffset: 8, as: UInt64.self)
            switch memory.lock.lock(timeoutNanoseconds: 100_000_000, repair: {}) {
            case .acquired, .holderDied:
                taken += 1
                #expect(memory.lock.holder == getpid())
                memory.lock.unlock()
                #expect(memory.lock.holder == 0)
            case .timedOut:
                timedOut += 1
            }
        }
        #expect(taken + timedOut == 200)
        #expect(taken > 150, "random pids are almost never live processes: \(taken) taken, \(timedOut) timed out")
    }
}

/// A raw pointer handed to tasks that the test synchronises itself.
struct UnsafeSendable<T>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>
    init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}
