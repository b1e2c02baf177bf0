import ShmCleanup
import Logging
import Synchronization

/// "Segment full" warnings, at most one a second per process, each saying how often a segment
/// was full since the last one (a sampler outrunning its sink hits it thousands of times a
/// second; one line each would drown the log and slow the sampler).
enum SegmentFullReport {
    private struct State {
        var lastNanos: UInt64 = 0
        var unreported = 0
    }

    private static let state = Mutex(State())

    static func note(logger: Logger, size: Int, freeBytes: Int, segment: UInt16) {
        let nanos = MonotonicClock.nanoseconds()
        let times: Int? = state.withLock { s in
            s.unreported += 1
            guard s.lastNanos == 0 || nanos - s.lastNanos >= 1_000_000_000 else { return nil }
            defer { s.unreported = 0 }
            s.lastNanos = nanos
            return s.unreported
        }
        guard let times else { return }
        logger.warning(
            "segment full, waiting for room (\(times) time\(times == 1 ? "" : "s") since the last report); free messages sooner or use a bigger segment",
            metadata: ["shm.segment": "\(segment)", "shm.size": "\(size)", "shm.free": "\(freeBytes)", "shm.full_count": "\(times)"])
    }
}
