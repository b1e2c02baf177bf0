import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Detaches every session memory of this process that is still attached when the process ends
/// normally: returning from `main` or top-level code, or `exit()`.
///
/// Swift never deinitializes globals at exit, so a program that keeps its factory in a global
/// would otherwise stay registered in the session and the last one out would never remove it.
/// The hook runs from `atexit` while other threads may still use the memory, so it unregisters
/// the process (and, last out, unlinks the session's objects) but unmaps nothing: an unlinked
/// object stays valid for the threads that still have it mapped until the process is gone.
/// Killed processes do not run it; the pruner and the cleanup tools handle those.
enum ExitDetach {
    /// The attached memories, by identity. Unowned: a weak reference would give every
    /// `SessionMemory` a side table and slow its reference counting on the hot path; `detach()`
    /// removes its entry before the object can go away.
    private static let attached = Mutex<[ObjectIdentifier: Unmanaged<SessionMemory>]>([:])
    private static let installHook: Void = {
        atexit { ExitDetach.detachAll() }
    }()

    static func add(_ memory: SessionMemory) {
        _ = installHook
        attached.withLock { $0[ObjectIdentifier(memory)] = .passUnretained(memory) }
    }

    static func remove(_ memory: SessionMemory) {
        _ = attached.withLock { $0.removeValue(forKey: ObjectIdentifier(memory)) }
    }

    /// Runs at exit. Detaches under the lock: a thread whose `deinit` is detaching the same
    /// memory at that moment waits in ``remove(_:)``, so the object outlives the hook's use of it.
    private static func detachAll() {
        attached.withLock { entries in
            for memory in entries.values { memory.takeUnretainedValue().detach(unmapping: false) }
            entries = [:]
        }
    }
}
