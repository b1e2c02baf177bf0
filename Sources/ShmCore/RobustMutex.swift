import CShmTransport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Robust, process-shared pthread mutexes placed in shared memory.
///
/// A holder killed by SIGKILL leaves the mutex to the kernel's robust-futex list; the next
/// `pthread_mutex_lock` returns `EOWNERDEAD`, the new holder repairs what the mutex guards
/// and calls `pthread_mutex_consistent`. A repairer that dies is itself seen as a dead owner.
/// (SPI so that the test worker's control object uses the same locks.)
@_spi(Testing) public enum RobustMutex {
    /// Initialises a mutex in place. The corresponding C function is `pthread_mutex_init`.
    /// - Returns: 0 or the error number.
    public static func initialise(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) -> Int32 {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        defer { pthread_mutexattr_destroy(&attributes) }
        var rc = pthread_mutexattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED))
        if rc != 0 { return rc }
        rc = pthread_mutexattr_setrobust(&attributes, Int32(PTHREAD_MUTEX_ROBUST))
        if rc != 0 { return rc }
        return pthread_mutex_init(mutex, &attributes)
    }

    /// Locks; calls `repair` (with the lock held) when the previous holder died, then marks
    /// the mutex consistent. The corresponding C function is `pthread_mutex_lock`.
    /// - Returns: 0 or the error number (only `ENOTRECOVERABLE` in practice).
    @inline(__always) @discardableResult
    public static func lock(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, repair: () -> Void) -> Int32 {
        let rc = pthread_mutex_lock(mutex)
        if rc == EOWNERDEAD {
            repair()
            return pthread_mutex_consistent(mutex)
        }
        return rc
    }

    /// Like ``lock(_:repair:)``, but gives up after `timeoutNanoseconds`: a holder that never
    /// lets go (stuck, or a lock word another process overwrote) gives `ETIMEDOUT` instead of a
    /// wait for ever. The corresponding C function is `pthread_mutex_timedlock`.
    @inline(__always)
    public static func lock(
        _ mutex: UnsafeMutablePointer<pthread_mutex_t>, timeoutNanoseconds: Int, repair: () -> Void
    ) -> Int32 {
        // fast path: uncontended
        var rc = pthread_mutex_trylock(mutex)
        if rc == EBUSY {
            var deadline = timespec()
            clock_gettime(CLOCK_REALTIME, &deadline)
            let total = Int(deadline.tv_nsec) + timeoutNanoseconds
            deadline.tv_sec += total / 1_000_000_000
            deadline.tv_nsec = total % 1_000_000_000
            rc = pthread_mutex_timedlock(mutex, &deadline)
        }
        if rc == EOWNERDEAD {
            repair()
            return pthread_mutex_consistent(mutex)
        }
        return rc
    }
}
