/// The decisions of a monitor watching one session, as a pure state machine (no clock, no I/O),
/// so the rules can be tested exactly.
///
/// Unlike FairMQ's heartbeat monitor, "dead" is computed: the session is cleaned when it has
/// had no live user (a process mapping it or registered in it) for longer than `timeout`. A
/// slow or stopped device that still maps its memory is never cleaned by mistake.
///
/// With `selfDestruct` (FairMQ `-x`) the monitor exits when (a) nothing was ever seen within
/// twice the timeout (after a cleanup, in case something appears late), (b) it cleaned the
/// session, or (c) the session was seen and then went away orderly.
public struct SessionWatch: Sendable {
    /// What the monitor should do after an observation.
    public enum Decision: Sendable, Hashable {
        case keepWatching
        /// Remove the session (it has been unused for longer than the timeout).
        case cleanup(reason: String)
        /// Remove whatever is there, then exit.
        case cleanupAndExit(reason: String)
        /// Exit without cleaning.
        case exit(reason: String)
    }

    /// How long a session may stay without live users before it is cleaned, in milliseconds.
    public let timeoutMilliseconds: UInt64
    public let selfDestruct: Bool

    private let startedAt: UInt64
    private var seenOnce = false
    private var lastBusyAt: UInt64

    /// Starts watching at `now` (milliseconds on a monotonic clock).
    public init(timeoutMilliseconds: UInt64, selfDestruct: Bool, now: UInt64) {
        self.timeoutMilliseconds = timeoutMilliseconds
        self.selfDestruct = selfDestruct
        self.startedAt = now
        self.lastBusyAt = now
    }

    /// Feeds one observation of the session: whether any of its objects exist (the monitor's own
    /// flag excluded) and whether a live process uses it.
    public mutating func observe(present: Bool, inUse: Bool, now: UInt64) -> Decision {
        if present {
            seenOnce = true
            if inUse {
                lastBusyAt = now
                return .keepWatching
            }
            let idle = now &- lastBusyAt
            guard idle > timeoutMilliseconds else { return .keepWatching }
            lastBusyAt = now
            let reason = "no live process used the session for over \(timeoutMilliseconds) milliseconds"
            return selfDestruct ? .cleanupAndExit(reason: reason) : .cleanup(reason: reason)
        }
        lastBusyAt = now
        guard selfDestruct else { return .keepWatching }
        if seenOnce { return .exit(reason: "the session was observed and is now cleaned up") }
        if now &- startedAt > 2 * timeoutMilliseconds {
            return .cleanupAndExit(reason: "no segments observed within (timeout * 2) since start")
        }
        return .keepWatching
    }
}
