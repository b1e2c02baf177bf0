#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Nanoseconds since the epoch (`CLOCK_REALTIME`): for times other processes read back (creation
/// and attach times, message records), never for deadlines (``MonotonicClock``).
/// The corresponding C function is `clock_gettime`.
public enum WallClock {
    @inline(__always) public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
