#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// An error of the transport. The message says what went wrong and how to fix it; `errno`
/// holds the underlying ZeroMQ or system error number when there is one.
///
/// `Code` wraps a private enum so that codes can be added without breaking callers.
public struct TransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case invalidArgument, unsupported, sharedMemory, badAlloc, zeroMQ, invalidMetadata
            case messageTooLarge, wrongPartCount, closed, interrupted
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// An argument that does not make sense (negative size, bad alignment, unknown option).
        public static var invalidArgument: Self { Self(.invalidArgument) }
        /// The operation is not available on this transport (for example PUB/SUB over `shmem`).
        public static var unsupported: Self { Self(.unsupported) }
        /// The session's shared memory could not be created, attached or used.
        public static var sharedMemory: Self { Self(.sharedMemory) }
        /// No room for a message in the segment (after the configured retries).
        public static var badAlloc: Self { Self(.badAlloc) }
        /// A ZeroMQ call failed; `errno` says why.
        public static var zeroMQ: Self { Self(.zeroMQ) }
        /// A received metadata frame was refused before any memory was touched.
        public static var invalidMetadata: Self { Self(.invalidMetadata) }
        /// A resize asked to grow a message, which is not possible in place.
        public static var messageTooLarge: Self { Self(.messageTooLarge) }
        /// A multipart message arrived where a single message was expected.
        public static var wrongPartCount: Self { Self(.wrongPartCount) }
        /// The socket or factory was closed.
        public static var closed: Self { Self(.closed) }
        /// A wait for room in the segment was ended by ``TransportFactory/interrupt()`` (a
        /// device that is stopping): not a failure of the program, which should wind down.
        public static var interrupted: Self { Self(.interrupted) }

        public var description: String { "\(self.wrapped)" }
    }

    /// What kind of failure this is.
    public let code: Code
    /// A one-line message that says what went wrong and how to fix it.
    public let message: String
    /// The ZeroMQ or system error number, if any.
    public let errno: Int32?

    /// Creates an error.
    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        guard let errno else { return message }
        return "\(message) (\(String(cString: strerror(errno))), errno \(errno))"
    }
}

/// The outcome of a send or a receive.
public enum TransferResult: Sendable, Equatable, CustomStringConvertible {
    /// The transfer happened; the payload size in bytes (the sum over all parts of a multipart).
    case transferred(Int)
    /// Nothing could be transferred before the timeout ran out (a timeout of 0 never waits).
    case timeout
    /// ``TransportFactory/interrupt()`` was called before or during the transfer.
    case interrupted
    /// The transfer failed; the error says why. A failed send leaves the message with the caller.
    case error(TransportError)

    /// The number of bytes transferred, or `nil` for every other outcome.
    public var bytes: Int? {
        if case .transferred(let n) = self { return n }
        return nil
    }

    /// Returns the number of bytes transferred, or throws for any other outcome.
    /// - Throws: the transfer's error, or a ``TransportError`` saying it timed out or was interrupted.
    public func get() throws(TransportError) -> Int {
        switch self {
        case .transferred(let n): return n
        case .timeout: throw TransportError(.zeroMQ, "the transfer timed out; wait longer or check the peer is running")
        case .interrupted: throw TransportError(.closed, "the transfer was interrupted by TransportFactory.interrupt()")
        case .error(let error): throw error
        }
    }

    public var description: String {
        switch self {
        case .transferred(let n): return "transferred \(n) bytes"
        case .timeout: return "timeout"
        case .interrupted: return "interrupted"
        case .error(let error): return "error: \(error)"
        }
    }
}
