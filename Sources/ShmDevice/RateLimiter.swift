import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Spaces iterations to a rate in Hz (0: no limit). Keeps to the schedule over the long run:
/// an iteration that ran late is not made up by a burst of more than one period's worth.
struct RateLimiter {
    private let period: UInt64
    private var next: UInt64

    init(rate: Double) {
        period = rate > 0 ? UInt64(1e9 / rate) : 0
        next = period > 0 ? MonotonicClock.nanoseconds() + period : 0
    }

    /// Sleeps until the next iteration is due.
    mutating func pace() {
        guard period > 0 else { return }
        let now = MonotonicClock.nanoseconds()
        if now < next {
            var request = timespec(tv_sec: Int((next - now) / 1_000_000_000), tv_nsec: Int((next - now) % 1_000_000_000))
            var remaining = timespec()
            while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
            next += period
        } else {
            next = max(next + period, now)
        }
    }
}
