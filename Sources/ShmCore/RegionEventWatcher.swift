import Atomics

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A subscription to a session's region events: a thread polls the session's event counter
/// every 50 ms and calls `callback` for every managed segment and region created or destroyed
/// by any process — first for those that exist when it starts. A region already destroyed when
/// first seen is not reported (as in the original).
public final class RegionEventWatcher: @unchecked Sendable {
    private let memory: SessionMemory
    private let callback: @Sendable (RegionEventInfo) -> Void
    private let stopping = ManagedAtomic<Bool>(false)
    private var thread: BackgroundThread?

    /// A subscription for `memory`'s session; ``start()`` begins it.
    public init(memory: SessionMemory, callback: @escaping @Sendable (RegionEventInfo) -> Void) {
        self.memory = memory
        self.callback = callback
    }

    /// Starts the thread.
    public func start() {
        thread = BackgroundThread { [self] in run() }
    }

    private func run() {
        var seenCounter: UInt64?
        var segments = Set<UInt16>()
        var regions: [UInt16: UInt32] = [:]  // alive regions seen: id -> generation
        var alive: [UInt16: RegionEventInfo] = [:]
        while !stopping.load(ordering: .acquiring) {
            let counter = memory.eventCounter
            if counter != seenCounter {
                seenCounter = counter
                let generations = memory.regionGenerations()
                for info in memory.regionEvents() {
                    if info.managed {
                        if segments.insert(info.id).inserted { callback(info) }
                        continue
                    }
                    guard info.event == .created, let generation = generations[info.id] else { continue }
                    if let known = regions[info.id], known == generation { continue }
                    if let old = alive[info.id] {  // the id was destroyed and made again between two polls
                        var gone = old
                        gone.event = .destroyed
                        callback(gone)
                    }
                    regions[info.id] = generation
                    alive[info.id] = info
                    callback(info)
                }
                for (id, _) in regions where generations[id] == nil {
                    var gone = alive[id]!
                    gone.event = .destroyed
                    regions[id] = nil
                    alive[id] = nil
                    callback(gone)
                }
            }
            usleep(50_000)
        }
    }

    /// Stops the thread and waits for it (and a callback in progress).
    public func stop() {
        stopping.store(true, ordering: .releasing)
        thread?.join()
        thread = nil
    }
}
