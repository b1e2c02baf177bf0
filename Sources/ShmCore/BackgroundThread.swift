#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A plain POSIX thread that runs `body` once (no Foundation, no executor: the shared-memory
/// threads must run while the process's cooperative pool is blocked). ``join()`` waits for it.
final class BackgroundThread: @unchecked Sendable {
    private var thread: pthread_t?
    private let body: @Sendable () -> Void

    /// Starts the thread; if it cannot be started, `body` never runs and ``join()`` returns at once.
    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        var tid = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&tid, nil, { raw in
            let me = Unmanaged<BackgroundThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, context)
        if rc == 0 {
            thread = tid
        } else {
            Unmanaged<BackgroundThread>.fromOpaque(context).release()
        }
    }

    /// Waits for the thread to end (once; later calls return at once).
    func join() {
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }
}
