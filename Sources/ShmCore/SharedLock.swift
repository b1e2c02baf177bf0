import Atomics
import CShmTransport
import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A lock shared between processes over a word in shared memory, robust against holders that
/// die and against bytes that another process writes over it.
///
/// ```
/// 0  8  word: bits 0-29 the holder's pid (0: free), bit 31 waiters, bits 32-63 a sequence
///       bumped by every take; the low 32 bits are the futex word
/// 8  8  the holder's start time (/proc/<pid>/stat field 22): written right after the take,
///       zeroed before the release
/// ```
///
/// Taking it is one compare-and-exchange of the word, releasing it one atomic exchange (and a futex
/// wake when someone waits). A waiter sleeps on the futex in slices of ``checkIntervalNanoseconds``
/// and, after each slice, asks the process table whether the holder still lives (pid and start
/// time, a zombie counts as dead). A holder that died is replaced with one compare-and-exchange
/// on the exact word seen (the sequence makes it immune to a pid taking the lock again meanwhile),
/// and the new holder repairs what the lock guards.
///
/// Nothing here trusts the memory: every 64-bit value is a valid state. Garbage in the word reads
/// as a holder that is not alive (a lock that is taken over and repaired) or as a live one (a
/// lock that times out), never as a crash, and no pointer is ever read from it. (glibc's robust
/// mutexes keep list pointers and type bits in the shared memory; the scribbler test made them
/// abort.) A process that forks must not use the lock in the child before an exec.
@_spi(Testing) public struct SharedLock: @unchecked Sendable {
    /// Bytes the lock occupies.
    public static let size = 16
    /// How long a waiter sleeps before it checks whether the holder lives.
    public static let checkIntervalNanoseconds = 20_000_000

    /// Tries of a waiter before it sleeps. Measured with `scripts/bench-alloc` (one lock, two
    /// processes): 8 gave 6.5-8.9 M pairs/s, 64 gave 4.3-10, 512 and more 4.5; spinning waiters
    /// take the lock's cache line from its holder.
    static let spinLimit = 8
    static let pidMask: UInt64 = 0x3FFF_FFFF
    static let waitersBit: UInt64 = 0x8000_0000

    /// How a lock call ended.
    public enum Outcome: Sendable, Equatable {
        /// Taken.
        case acquired
        /// Taken from a holder that died; `repair` ran before the call returned.
        case holderDied
        /// Not taken within the limit; the holder still lives (or the word is overwritten).
        case timedOut(holder: Int32)
    }

    /// This process: what it writes into the lock.
    struct Holder: Sendable {
        let pid: UInt64
        let startTime: UInt64
        static let current: Holder = {
            let pid = getpid()
            return Holder(pid: UInt64(UInt32(bitPattern: pid)) & SharedLock.pidMask, startTime: ProcessInspector().stat(pid: pid)?.startTime ?? 0)
        }()
    }

    let base: UnsafeMutableRawPointer

    /// The lock at `base` (8-byte aligned, ``size`` bytes of shared memory).
    public init(at base: UnsafeMutableRawPointer) { self.base = base }

    @inline(__always) var word: UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: base.assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
    }
    @inline(__always) var holderStartTime: UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + 8).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
    }
    /// The futex: the low half of the word (little-endian).
    @inline(__always) var futex: UnsafeMutablePointer<UInt32> { base.assumingMemoryBound(to: UInt32.self) }

    /// Makes the lock free (no one may use it meanwhile).
    public func initialise() {
        word.store(0, ordering: .relaxed)
        holderStartTime.store(0, ordering: .releasing)
    }

    /// The pid in the word now (0: free); for error messages.
    public var holder: Int32 { Int32(truncatingIfNeeded: word.load(ordering: .relaxed) & Self.pidMask) }

    @inline(__always) static func taken(from word: UInt64, by me: Holder, waiters: Bool) -> UInt64 {
        ((word >> 32) &+ 1) << 32 | me.pid | (waiters ? waitersBit : 0)
    }

    /// Takes the lock, waiting at most `timeoutNanoseconds` (nil: for as long as its holder
    /// lives). When the previous holder died holding it, `repair` runs with the lock held.
    @inline(__always)
    public func lock(timeoutNanoseconds: Int?, repair: () -> Void) -> Outcome {
        let me = Holder.current
        let seen = word.load(ordering: .relaxed)
        if seen & Self.pidMask == 0,
            word.weakCompareExchange(
                expected: seen, desired: Self.taken(from: seen, by: me, waiters: false),
                successOrdering: .acquiring, failureOrdering: .relaxed
            ).exchanged
        {
            holderStartTime.store(me.startTime, ordering: .relaxed)
            return .acquired
        }
        return lockContended(me, timeoutNanoseconds: timeoutNanoseconds, repair: repair)
    }

    /// Takes the lock if it is free now.
    public func tryLock() -> Bool {
        let me = Holder.current
        let seen = word.load(ordering: .relaxed)
        guard seen & Self.pidMask == 0,
            word.compareExchange(
                expected: seen, desired: Self.taken(from: seen, by: me, waiters: false), ordering: .acquiring
            ).exchanged
        else { return false }
        holderStartTime.store(me.startTime, ordering: .relaxed)
        return true
    }

    @inline(never)
    func lockContended(_ me: Holder, timeoutNanoseconds: Int?, repair: () -> Void) -> Outcome {
        let deadline = timeoutNanoseconds.map { MonotonicClock.nanoseconds() &+ UInt64(max(0, $0)) }
        var spins = 0
        while true {
            var seen = word.load(ordering: .acquiring)
            if seen & Self.pidMask == 0 {
                // after a wait, take it with the waiters bit: others may still sleep
                if word.compareExchange(
                    expected: seen, desired: Self.taken(from: seen, by: me, waiters: spins > Self.spinLimit), ordering: .acquiring
                ).exchanged {
                    holderStartTime.store(me.startTime, ordering: .relaxed)
                    return .acquired
                }
                continue
            }
            if spins < Self.spinLimit {  // held for nanoseconds: a short spin often saves the sleep
                spins += 1
                cshm_cpu_relax()
                continue
            }
            spins = Self.spinLimit + 1
            if seen & Self.waitersBit == 0 {
                guard word.compareExchange(expected: seen, desired: seen | Self.waitersBit, ordering: .relaxed).exchanged
                else { continue }
                seen |= Self.waitersBit
            }
            var slice = Self.checkIntervalNanoseconds
            if let deadline {
                let now = MonotonicClock.nanoseconds()
                if now >= deadline { return .timedOut(holder: Int32(truncatingIfNeeded: seen & Self.pidMask)) }
                slice = min(slice, Int(clamping: deadline - now))
            }
            var timeout = timespec(tv_sec: slice / 1_000_000_000, tv_nsec: slice % 1_000_000_000)
            let rc = cshm_futex_wait(futex, UInt32(truncatingIfNeeded: seen), &timeout)
            if rc == -1, errno == ETIMEDOUT, holderIsGone(seen),
                word.compareExchange(expected: seen, desired: Self.taken(from: seen, by: me, waiters: true), ordering: .acquiring)
                    .exchanged
            {
                holderStartTime.store(me.startTime, ordering: .relaxed)
                repair()
                return .holderDied
            }
        }
    }

    /// Whether the holder recorded in `seen` is no live process (or a process that took its pid
    /// later); false when the word moved on meanwhile.
    func holderIsGone(_ seen: UInt64) -> Bool {
        let pid = Int32(truncatingIfNeeded: seen & Self.pidMask)
        let startTime = holderStartTime.load(ordering: .acquiring)
        // the start time belongs to this take only while the word is unchanged (the sequence)
        guard word.load(ordering: .acquiring) == seen else { return false }
        return !ProcessInspector().isAlive(pid: pid, startTime: startTime)
    }

    /// Releases the lock (the caller holds it) and wakes one waiter, if any.
    @inline(__always)
    public func unlock() {
        holderStartTime.store(0, ordering: .relaxed)
        // Only the waiters bit can change while this process holds the lock: one exchange.
        let held = word.load(ordering: .relaxed)
        let old = word.exchange(held & 0xFFFF_FFFF_0000_0000, ordering: .releasing)
        if old & Self.waitersBit != 0 { _ = cshm_futex_wake(futex, 1) }
    }
}
