#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// An error of the shared-memory core. The message says what went wrong and how to fix it;
/// `errno` and `objectName` name the failed system call's reason and the object involved.
public struct ShmCoreError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. Wraps a private enum so that codes can be added later.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case invalidArgument, systemCall, noSpace, foreignLayout, unsupportedVersion, corrupt
            case notReady, tableFull, badAlloc, interrupted, invalidBlock, unknownSegment, detached, noSession
            case unknownRegion, regionSizeMismatch, regionHasController, referenceCountsExhausted, sessionInUse
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// A configuration value or argument that does not make sense.
        public static var invalidArgument: Self { Self(.invalidArgument) }
        /// A system call failed; `errno` says why.
        public static var systemCall: Self { Self(.systemCall) }
        /// The shm directory has too little space for a segment (checked at creation).
        public static var noSpace: Self { Self(.noSpace) }
        /// An object with our name holds a layout that is not ours (for example a C++ FairMQ session).
        public static var foreignLayout: Self { Self(.foreignLayout) }
        /// Our layout, but a version this build does not know.
        public static var unsupportedVersion: Self { Self(.unsupportedVersion) }
        /// An object of ours whose contents do not make sense.
        public static var corrupt: Self { Self(.corrupt) }
        /// The creator of the session did not finish initialising it in time.
        public static var notReady: Self { Self(.notReady) }
        /// The process, segment or region table of the management segment is full.
        public static var tableFull: Self { Self(.tableFull) }
        /// No memory for the requested block (after the bad-alloc policy's retries).
        public static var badAlloc: Self { Self(.badAlloc) }
        /// A blocked allocation was woken by ``SessionMemory/interrupt()``.
        public static var interrupted: Self { Self(.interrupted) }
        /// A block named by a peer does not lie inside its segment or has no valid header.
        public static var invalidBlock: Self { Self(.invalidBlock) }
        /// A segment id that is not registered in the session.
        public static var unknownSegment: Self { Self(.unknownSegment) }
        /// The session has no management segment in the shm directory.
        public static var noSession: Self { Self(.noSession) }
        /// A region id that is not registered (or no longer alive) in the session.
        public static var unknownRegion: Self { Self(.unknownRegion) }
        /// A region exists with another size than the one asked for.
        public static var regionSizeMismatch: Self { Self(.regionSizeMismatch) }
        /// A region already has a live controller (the process receiving its acknowledgements).
        public static var regionHasController: Self { Self(.regionHasController) }
        /// The region's reference-count pool has no free counter for another copy.
        public static var referenceCountsExhausted: Self { Self(.referenceCountsExhausted) }
        /// Live processes use the session, so it was left as it is (``ContentReset``).
        public static var sessionInUse: Self { Self(.sessionInUse) }
        /// The session memory was already detached.
        public static var detached: Self { Self(.detached) }

        public var description: String { "\(wrapped)" }
    }

    /// What kind of failure this is.
    public let code: Code
    /// One line: what went wrong and how to fix it.
    public let message: String
    /// The `errno` (or returned error number) of the failed system call, if any.
    public let errno: Int32?
    /// The shared memory object involved (file name under the shm directory), if any.
    public let objectName: String?

    /// Creates an error.
    public init(_ code: Code, _ message: String, objectName: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.objectName = objectName
        self.errno = errno
    }

    public var description: String {
        guard let errno else { return message }
        return "\(message) (\(String(cString: strerror(errno))), errno \(errno))"
    }
}
