#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The name of a transport session, as given with `--session` or `SHMTRANSPORT_SESSION`.
///
/// Devices that share a session id (and a user id) share shared memory. A session id is any
/// non-empty UTF-8 string up to 255 bytes without `/` or NUL: both would break the object
/// names and the `ipc://` paths derived from it.
public struct SessionID: Hashable, Sendable, CustomStringConvertible {
    /// The longest session id accepted, in UTF-8 bytes.
    public static let maximumLength = 255

    /// The session devices use when none is given, as in FairMQ.
    public static let `default` = SessionID(unchecked: "default")

    /// The environment variable through which launchers pass the session id to devices.
    public static let environmentVariable = "SHMTRANSPORT_SESSION"

    /// The session id as text.
    public let rawValue: String

    private init(unchecked rawValue: String) { self.rawValue = rawValue }

    /// Validates a session id.
    /// - Throws: ``ShmCleanupError/Code/invalidSessionID`` naming the problem and the fix.
    public init(_ rawValue: String) throws(ShmCleanupError) {
        if rawValue.isEmpty {
            throw ShmCleanupError(
                .invalidSessionID, "the session id is empty; give a name such as 'default' or 'run42'",
                subject: rawValue)
        }
        if rawValue.utf8.contains(UInt8(ascii: "/")) {
            throw ShmCleanupError(
                .invalidSessionID,
                "session id '\(rawValue)' contains '/', which cannot appear in shared memory names; use '_' or '-' instead",
                subject: rawValue)
        }
        if rawValue.utf8.contains(0) {
            throw ShmCleanupError(
                .invalidSessionID, "session id contains a NUL byte; remove it", subject: rawValue)
        }
        if rawValue.utf8.count > Self.maximumLength {
            throw ShmCleanupError(
                .invalidSessionID,
                "session id is \(rawValue.utf8.count) bytes long; use at most \(Self.maximumLength)",
                subject: rawValue)
        }
        self.rawValue = rawValue
    }

    /// The session named by `SHMTRANSPORT_SESSION`, or ``default`` when it is unset or empty.
    /// - Throws: when the variable holds an invalid session id.
    public static func fromEnvironment() throws(ShmCleanupError) -> SessionID {
        guard let value = getenv(environmentVariable).map({ String(cString: $0) }), !value.isEmpty else {
            return .default
        }
        return try SessionID(value)
    }

    public var description: String { rawValue }
}
