import Testing

@testable import ShmCleanup

@Suite struct SessionWatchTests {
    @Test func cleansOnlyAfterTheTimeoutWithoutLiveUsers() {
        var watch = SessionWatch(timeoutMilliseconds: 1000, selfDestruct: false, now: 0)
        #expect(watch.observe(present: true, inUse: true, now: 100) == .keepWatching)
        #expect(watch.observe(present: true, inUse: true, now: 5000) == .keepWatching, "busy forever is fine")
        #expect(watch.observe(present: true, inUse: false, now: 5500) == .keepWatching)
        #expect(watch.observe(present: true, inUse: false, now: 6000) == .keepWatching)
        guard case .cleanup = watch.observe(present: true, inUse: false, now: 6001) else {
            Issue.record("expected a cleanup after 1001 ms idle")
            return
        }
        #expect(watch.observe(present: false, inUse: false, now: 6100) == .keepWatching, "no -x: keep watching")
    }

    @Test func aBusyObservationResetsTheIdleTime() {
        var watch = SessionWatch(timeoutMilliseconds: 1000, selfDestruct: false, now: 0)
        #expect(watch.observe(present: true, inUse: false, now: 900) == .keepWatching)
        #expect(watch.observe(present: true, inUse: true, now: 950) == .keepWatching)
        #expect(watch.observe(present: true, inUse: false, now: 1900) == .keepWatching)
    }

    @Test func selfDestructExitsWhenTheSessionGoesAway() {
        var watch = SessionWatch(timeoutMilliseconds: 1000, selfDestruct: true, now: 0)
        #expect(watch.observe(present: true, inUse: true, now: 10) == .keepWatching)
        guard case .exit = watch.observe(present: false, inUse: false, now: 20) else {
            Issue.record("expected exit once the observed session is gone")
            return
        }
    }

    @Test func selfDestructCleansAndExitsAfterTheTimeout() {
        var watch = SessionWatch(timeoutMilliseconds: 1000, selfDestruct: true, now: 0)
        #expect(watch.observe(present: true, inUse: false, now: 1000) == .keepWatching)
        guard case .cleanupAndExit = watch.observe(present: true, inUse: false, now: 1001) else {
            Issue.record("expected cleanup and exit")
            return
        }
    }

    @Test func selfDestructGivesUpAfterTwiceTheTimeoutWhenNothingAppears() {
        var watch = SessionWatch(timeoutMilliseconds: 1000, selfDestruct: true, now: 0)
        #expect(watch.observe(present: false, inUse: false, now: 2000) == .keepWatching)
        guard case .cleanupAndExit = watch.observe(present: false, inUse: false, now: 2001) else {
            Issue.record("expected cleanup and exit after 2 × timeout")
            return
        }
    }
}
