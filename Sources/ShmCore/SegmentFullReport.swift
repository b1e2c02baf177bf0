import Logging
import ShmCleanup
import Synchronization

/// "Segment full" warnings of one process's session memory, at most one a second, each saying
/// how often the segment was full since the last one (a sampler outrunning its sink hits it
/// thousands of times a second; one line each would drown the log and slow the sampler).
final class SegmentFullReport: Sendable {
    private struct State {
        var lastNanos: UInt64?
        var unreported = 0
    }

    private let state = Mutex(State())
    private let interval: UInt64

    /// - Parameter intervalNanoseconds: the least time between two lines (1 s).
    init(intervalNanoseconds: UInt64 = 1_000_000_000) { interval = intervalNanoseconds }

    /// Counts one full segment; logs a line when the last one is `interval` old.
    /// - Returns: the count the logged line carried, or nil when nothing was logged.
    @discardableResult
    func note(logger: Logger, size: Int, freeBytes: Int, segment: UInt16) -> Int? {
        let nanos = MonotonicClock.nanoseconds()
        let times: Int? = state.withLock { s in
            s.unreported += 1
            if let last = s.lastNanos, nanos - last < interval { return nil }
            defer { s.unreported = 0 }
            s.lastNanos = nanos
            return s.unreported
        }
        guard let times else { return nil }
        logger.warning(
            "segment full, waiting for room (\(times) time\(times == 1 ? "" : "s") since the last report); free messages sooner or use a bigger segment",
            metadata: ["shm.segment": "\(segment)", "shm.size": "\(size)", "shm.free": "\(freeBytes)", "shm.full_count": "\(times)"])
        return times
    }
}
