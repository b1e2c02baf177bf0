/// What a cleanup did, object by object and session by session.
public struct CleanupReport: Sendable, Codable {
    /// What happened to one object.
    public struct ObjectOutcome: Sendable, Codable, Hashable {
        public enum Action: String, Sendable, Codable {
            /// Unlinked now.
            case removed
            /// It was gone by the time the engine reached it.
            case alreadyGone = "already-gone"
            /// Left in place on purpose; `reason` says why.
            case kept
            /// Unlinking failed; `errno` and `reason` say why.
            case failed
            /// A dry run: would have been removed.
            case wouldRemove = "would-remove"
        }

        public let name: String
        public let path: String
        public let size: Int64
        public let action: Action
        public let reason: String?
        public let errno: Int32?
    }

    /// What happened to one session.
    public struct SessionOutcome: Sendable, Codable {
        public enum Status: String, Sendable, Codable {
            /// All its objects are gone.
            case removed
            /// No object of the session was found.
            case nothingFound = "nothing-found"
            /// Live processes use it; nothing was removed.
            case refusedInUse = "refused-in-use"
            /// Objects belong to another user and the caller is not root; nothing was removed.
            case refusedNotOwner = "refused-not-owner"
            /// Some objects could not be removed or were kept.
            case incomplete
            /// A dry run.
            case wouldRemove = "would-remove"
        }

        public let shmID: ShmID
        public let sessionName: String?
        public let status: Status
        /// A one-line explanation for refusals and failures, with what to do.
        public let message: String?
        public let users: [ProcessUse]
        public let objects: [ObjectOutcome]

        enum CodingKeys: String, CodingKey {
            case shmID = "shmid", sessionName = "session", status, message, users, objects
        }
    }

    /// The shm directory that was cleaned.
    public let directory: String
    public internal(set) var sessions: [SessionOutcome]

    /// Whether anything matched at all.
    public var matchedAnything: Bool { sessions.contains { $0.status != .nothingFound } }
    /// Whether a session was refused because it is in use.
    public var refusedInUse: Bool { sessions.contains { $0.status == .refusedInUse } }
    /// Whether a session was refused for ownership or could not be removed completely.
    public var hasErrors: Bool { sessions.contains { $0.status == .refusedNotOwner || $0.status == .incomplete } }
    /// The sessions found but not (completely) removed: refused, incomplete, or a dry run.
    public var sessionsLeft: [SessionOutcome] { sessions.filter { $0.status != .removed && $0.status != .nothingFound } }
}

extension ShmID: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try ShmID(validating: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}
