#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// An error of the cleanup engine. Every error says what went wrong, which object or
/// argument was involved, and how to fix it.
///
/// `Code` wraps a private enum so that codes can be added without breaking callers.
public struct ShmCleanupError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case invalidSessionID, invalidShmID, invalidDirectory, invalidArgument
            case permissionDenied, sessionInUse, systemCall
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// A session id that cannot name shared memory (empty, contains `/` or NUL, too long).
        public static var invalidSessionID: Self { Self(.invalidSessionID) }
        /// A shmId that is not 8 to 16 lowercase hexadecimal digits.
        public static var invalidShmID: Self { Self(.invalidShmID) }
        /// The shm directory does not exist or is not a directory.
        public static var invalidDirectory: Self { Self(.invalidDirectory) }
        /// Any other argument that does not make sense.
        public static var invalidArgument: Self { Self(.invalidArgument) }
        /// Objects belong to another user and the caller is not root.
        public static var permissionDenied: Self { Self(.permissionDenied) }
        /// Live processes still use the session.
        public static var sessionInUse: Self { Self(.sessionInUse) }
        /// A system call failed; `errno` says why.
        public static var systemCall: Self { Self(.systemCall) }

        public var description: String { "\(self.wrapped)" }
    }

    /// What kind of failure this is.
    public let code: Code
    /// A one-line message that says what went wrong and how to fix it.
    public let message: String
    /// The object, path or argument involved, if any.
    public let subject: String?
    /// The `errno` of the failed system call, if any.
    public let errno: Int32?

    /// Creates an error.
    public init(_ code: Code, _ message: String, subject: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.subject = subject
        self.errno = errno
    }

    public var description: String {
        guard let errno else { return message }
        return "\(message) (\(String(cString: strerror(errno))), errno \(errno))"
    }
}
