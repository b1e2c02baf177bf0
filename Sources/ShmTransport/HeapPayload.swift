import CZeroMQ
import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The payload of a `zeromq`-transport message: memory this process allocated (aligned), or a
/// frame libzmq received. Copies of a message share one payload; `handles` counts the
/// ``Message``s that refer to it, which is the reference count users see. The memory itself
/// lives as long as any message or any in-flight ZeroMQ frame retains the object.
final class HeapPayload: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let handles = Atomic<Int>(1)
    private let received: UnsafeMutablePointer<zmq_msg_t>?
    /// For a message pointing into a `zeromq` unmanaged region: runs when the last holder
    /// (a handle or libzmq) lets go, instead of freeing.
    private let onRelease: (@Sendable () -> Void)?

    /// Allocates `size` bytes aligned to `alignment` (a power of two, at least 16).
    init(size: Int, alignment: Int) throws(TransportError) {
        var pointer: UnsafeMutableRawPointer?
        let rc = posix_memalign(&pointer, max(alignment, 16), max(size, 1))
        guard rc == 0, let pointer else {
            throw TransportError(
                .badAlloc, "cannot allocate a message of \(size) bytes (alignment \(alignment)); free memory or send less",
                errno: rc)
        }
        base = pointer
        received = nil
        onRelease = nil
    }

    /// Wraps memory this transport does not own (a region's block); `onRelease` runs once, when
    /// the last handle and libzmq are done with it.
    init(external base: UnsafeMutableRawPointer, onRelease: @escaping @Sendable () -> Void) {
        self.base = base
        self.received = nil
        self.onRelease = onRelease
    }

    /// Takes over a frame received by libzmq (non-empty).
    init(received frame: UnsafeMutablePointer<zmq_msg_t>) {
        self.received = frame
        base = zmq_msg_data(frame)!
        onRelease = nil
    }

    deinit {
        if let onRelease {
            onRelease()
        } else if let received {
            zmq_msg_close(received)
            received.deallocate()
        } else {
            free(base)
        }
    }

    /// Fills `frame` with this payload's first `size` bytes without copying; the frame keeps the
    /// payload alive until libzmq is done with it.
    func initialize(_ frame: UnsafeMutablePointer<zmq_msg_t>, size: Int) -> Bool {
        let hint = Unmanaged.passRetained(self).toOpaque()
        let rc = zmq_msg_init_data(frame, base, size, { _, hint in
            Unmanaged<HeapPayload>.fromOpaque(hint!).release()
        }, hint)
        if rc != 0 {
            Unmanaged<HeapPayload>.fromOpaque(hint).release()
            return false
        }
        return true
    }
}
