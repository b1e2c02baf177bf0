import Foundation
import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// SIGTERM, SIGINT and SIGHUP as a stop request that is never lost. A `sigaction` handler
/// (async-signal-safe: it only writes the signal number to a pipe) is installed for the whole
/// process before the device attaches, so a signal arriving while the device starts up, on any
/// thread, is kept; a watcher thread reads the pipe and runs the stop action — at once if the
/// signal came before the action was set. (A dispatch signal source, as swift-service-lifecycle
/// uses, could miss a signal delivered to another thread while it was being armed: the kill
/// soak found devices that never stopped.)
final class StopSignals: Sendable {
    static let signals: [Int32] = [SIGTERM, SIGINT, SIGHUP]
    nonisolated(unsafe) private static var writeEnd: Int32 = -1

    private struct State {
        var received: Int32?
        var action: (@Sendable (Int32) -> Void)?
    }
    private let state = Mutex(State())

    /// Installs the handlers (once per process) and starts the watcher thread.
    static let shared: StopSignals = {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { fatalError("cannot create the signal pipe: \(String(cString: strerror(errno)))") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        writeEnd = ends[1]
        let instance = StopSignals()
        let readEnd = ends[0]
        let thread = Thread { instance.watch(readEnd: readEnd) }
        thread.name = "stop signals"
        thread.start()
        for number in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                var byte = UInt8(truncatingIfNeeded: number)
                let saved = errno
                _ = write(StopSignals.writeEnd, &byte, 1)
                errno = saved
            }
            action.sa_flags = SA_RESTART
            sigemptyset(&action.sa_mask)
            sigaction(number, &action, nil)
        }
        return instance
    }()

    /// The first signal received so far, if any.
    var received: Int32? { state.withLock { $0.received } }

    /// Runs `action` with the signal number for every stop signal from now on, and at once
    /// (on the watcher thread) if one came already.
    func onStop(_ action: @escaping @Sendable (Int32) -> Void) {
        let pending = state.withLock { s -> Int32? in
            s.action = action
            return s.received
        }
        if let pending { action(pending) }
    }

    private func watch(readEnd: Int32) {
        var byte: UInt8 = 0
        while true {
            let n = read(readEnd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { return }
            let number = Int32(byte)
            let action = state.withLock { s -> (@Sendable (Int32) -> Void)? in
                if s.received == nil { s.received = number }
                return s.action
            }
            action?(number)
        }
    }
}
