import CZeroMQ
import ShmCleanup
import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The last ZeroMQ error as a ``TransportError``; `what` names the call and its subject.
func zmqError(_ what: String, hint: String = "") -> TransportError {
    let number = zmq_errno()
    let reason = String(cString: zmq_strerror(number))
    return TransportError(.zeroMQ, "\(what) failed: \(reason)\(hint.isEmpty ? "" : "; \(hint)")", errno: number)
}

/// A ZeroMQ context (one per factory). `zmq_ctx_term` runs when the last socket is gone, because
/// every socket keeps its context alive.
final class ZmqContext: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer

    init(ioThreads: Int) throws(TransportError) {
        guard let raw = zmq_ctx_new() else { throw zmqError("zmq_ctx_new") }
        self.raw = raw
        if zmq_ctx_set(raw, ZMQ_IO_THREADS, Int32(ioThreads)) != 0 {
            zmq_ctx_term(raw)
            throw zmqError("setting \(ioThreads) ZeroMQ I/O threads", hint: "give --io-threads a value of 1 or more")
        }
        _ = zmq_ctx_set(raw, ZMQ_MAX_SOCKETS, 10_000)
    }

    deinit {
        while zmq_ctx_term(raw) != 0 && zmq_errno() == EINTR {}
    }
}

/// Wakes blocked transfers: a pipe whose read end every blocking poll also watches, plus a flag.
/// While interrupted, the pipe holds a byte, so every wait returns at once.
///
/// Transfers read only the flag (one atomic load per attempt). `interrupt` and `resume` change
/// the flag and the pipe's byte together under a mutex, so the byte is there exactly while the
/// flag is set; a waiter that read the flag just before an interrupt still wakes on the byte.
final class Interrupter: Sendable {
    /// The read end, watched by `zmq_poll`.
    let fd: Int32
    private let writeEnd: Int32
    private let interrupted = Atomic<Bool>(false)
    /// Serialises interrupt and resume (flag and pipe byte change as one step).
    private let transition = Mutex(())

    init() throws(TransportError) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else {
            throw TransportError(.zeroMQ, "pipe failed; raise the open file limit (ulimit -n)", errno: errno)
        }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        fd = ends[0]
        writeEnd = ends[1]
    }

    deinit {
        close(fd)
        close(writeEnd)
    }

    var isInterrupted: Bool { interrupted.load(ordering: .acquiring) }

    func interrupt() {
        transition.withLock { _ in
            guard !interrupted.load(ordering: .relaxed) else { return }
            interrupted.store(true, ordering: .releasing)
            var one: UInt8 = 1
            _ = write(writeEnd, &one, 1)
        }
    }

    func resume() {
        transition.withLock { _ in
            guard interrupted.load(ordering: .relaxed) else { return }
            interrupted.store(false, ordering: .releasing)
            var byte: UInt8 = 0
            while read(fd, &byte, 1) == 1 {}
        }
    }
}

/// A deadline for a transfer timeout in milliseconds: -1 = forever, 0 = do not wait.
///
/// The clock starts when the transfer first has to wait, not when it is called: a transfer that
/// goes through at once (the common case) reads no clock at all.
struct Deadline {
    private let timeout: Int
    private var end: UInt64?  // CLOCK_MONOTONIC nanoseconds, set by the first wait

    init(timeoutMilliseconds: Int) {
        timeout = timeoutMilliseconds
    }

    /// Milliseconds left for `zmq_poll` (-1 = forever), or `nil` once the deadline has passed.
    mutating func remainingMilliseconds() -> Int? {
        if timeout < 0 { return -1 }
        let now = MonotonicClock.nanoseconds()
        let end = self.end ?? now + UInt64(timeout) * 1_000_000
        self.end = end
        guard now < end else { return nil }
        return Int((end - now + 999_999) / 1_000_000)
    }
}

/// Waits until `socket` is ready for `events` (ZMQ_POLLIN or ZMQ_POLLOUT), the interrupter fires
/// or the deadline passes.
enum WaitOutcome { case ready, timeout, interrupted, failed(TransportError) }

func zmqWait(_ socket: UnsafeMutableRawPointer, events: Int32, interrupter: Interrupter, deadline: inout Deadline)
    -> WaitOutcome
{
    while true {
        if interrupter.isInterrupted { return .interrupted }
        guard let remaining = deadline.remainingMilliseconds() else { return .timeout }
        var items = (
            zmq_pollitem_t(socket: socket, fd: 0, events: Int16(events), revents: 0),
            zmq_pollitem_t(socket: nil, fd: interrupter.fd, events: Int16(ZMQ_POLLIN), revents: 0)
        )
        let rc = withUnsafeMutableBytes(of: &items) { raw in
            zmq_poll(raw.baseAddress!.assumingMemoryBound(to: zmq_pollitem_t.self), 2, remaining)
        }
        if rc < 0 {
            if zmq_errno() == EINTR { continue }
            if zmq_errno() == ETERM { return .interrupted }
            return .failed(zmqError("zmq_poll"))
        }
        if items.1.revents != 0 || interrupter.isInterrupted { return .interrupted }
        if items.0.revents & Int16(events) != 0 { return .ready }
    }
}
