import Atomics
import CShmTransport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A thread that keeps this process's entry in the management segment alive: every 100 ms it
/// stamps the heartbeat and publishes free memory; every second it prunes dead processes.
final class HeartbeatThread: @unchecked Sendable {
    private let management: ManagementSegment
    private let slot: Int
    private let publish: @Sendable () -> Void
    private let stopWord: UnsafeMutablePointer<UInt32>
    private var thread: BackgroundThread?

    init(management: ManagementSegment, slot: Int, publish: @escaping @Sendable () -> Void) {
        self.management = management
        self.slot = slot
        self.publish = publish
        self.stopWord = .allocate(capacity: 1)
        self.stopWord.initialize(to: 0)
    }

    deinit { stopWord.deallocate() }

    private var stopFlag: UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: UnsafeMutableRawPointer(stopWord).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }

    func start() {
        thread = BackgroundThread { [self] in run() }
    }

    private func run() {
        var tick = 0
        while stopFlag.load(ordering: .acquiring) == 0 {
            var timeout = timespec(tv_sec: 0, tv_nsec: 100_000_000)
            _ = cshm_futex_wait(stopWord, 0, &timeout)
            if stopFlag.load(ordering: .acquiring) != 0 { break }
            management.heartbeat(slot: slot)
            management.verifyOwnEntry(slot: slot)
            publish()
            tick += 1
            // pruning can wait for the next second: a busy lock is skipped (a stuck or
            // overwritten one is found by the next locker that must have it), so the heartbeat
            // never stalls for long and stopping it stays quick
            if tick % 10 == 0 { _ = try? management.withLock(timeoutNanoseconds: 500_000_000) { management.pruneDead() } }
        }
    }

    /// Stops the thread and waits for it.
    func stop() {
        stopFlag.store(1, ordering: .releasing)
        _ = cshm_futex_wake(stopWord, Int32.max)
        thread?.join()
        thread = nil
    }
}
