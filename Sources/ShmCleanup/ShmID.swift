import Crypto

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The short hexadecimal id that names all shared memory objects of one session of one user.
///
/// Computed exactly as FairMQ ≥ 1.4.20 computes it, so that the cleanup tools also work for
/// sessions of C++ FairMQ devices: the first 4 bytes of SHA-256 over the decimal user id
/// followed by the session id (no separator), as 8 lowercase hex digits.
///
/// ```
/// ShmID(session: .default, userID: 1000)  // "eca859e3"
/// ```
public struct ShmID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The id as it appears in object names: 8 (or, from large numbers, up to 16) lowercase hex digits.
    public let rawValue: String

    private init(unchecked rawValue: String) { self.rawValue = rawValue }

    /// Derives the shmId of `session` for `userID` (default: the effective user id, as FairMQ).
    public init(session: SessionID, userID: uid_t = geteuid()) {
        let seed = String(userID) + session.rawValue
        let digest = SHA256.hash(data: Array(seed.utf8))
        var hex = ""
        hex.reserveCapacity(8)
        for byte in digest.prefix(4) {
            hex += Self.hexDigits[Int(byte >> 4)]
            hex += Self.hexDigits[Int(byte & 0x0f)]
        }
        self.rawValue = hex
    }

    /// The shmId for a numeric id, formatted as lowercase hex with at least 8 digits
    /// (FairMQ's `makeShmIdStr(uint64)`; a device's `--shmid 1` uses `00000001`).
    public init(number: UInt64) {
        let hex = String(number, radix: 16)
        self.rawValue = String(repeating: "0", count: max(0, 8 - hex.count)) + hex
    }

    /// Validates a shmId given as text, for example with `shmmonitor --shmid`.
    ///
    /// Accepts exactly 8 hex digits (upper case is folded to lower case).
    /// - Throws: ``ShmCleanupError/Code/invalidShmID`` naming the fix.
    public init(validating text: String) throws(ShmCleanupError) {
        let lowered = text.lowercased()
        guard lowered.utf8.count == 8, lowered.utf8.allSatisfy(Self.isHexDigit) else {
            throw ShmCleanupError(
                .invalidShmID,
                "shmid '\(text)' is not 8 hex digits; use the id printed by 'shmmonitor --get-shmid -s <session>' (for example 'eca859e3')",
                subject: text)
        }
        self.rawValue = lowered
    }

    /// Parses the id part of an object name: 8 to 16 lowercase hex digits, or `nil`.
    init?(namePart: Substring) {
        guard (8...16).contains(namePart.utf8.count), namePart.utf8.allSatisfy(Self.isHexDigit),
            namePart == namePart.lowercased()[...]
        else { return nil }
        self.rawValue = String(namePart)
    }

    /// The id as a number (FairMQ's `makeShmIdUint64`).
    public var number: UInt64 { UInt64(rawValue, radix: 16) ?? 0 }

    public var description: String { rawValue }

    public static func < (lhs: ShmID, rhs: ShmID) -> Bool { lhs.rawValue < rhs.rawValue }

    private static let hexDigits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(c)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(c)
    }
}
