#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Nanoseconds of `CLOCK_MONOTONIC`: for deadlines and rate limits, which must not jump with the
/// wall clock. The corresponding C function is `clock_gettime`.
public enum MonotonicClock {
    @inline(__always) public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
