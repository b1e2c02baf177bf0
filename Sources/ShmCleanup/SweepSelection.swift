/// Which sessions a sweep removes: the rules of `shmmonitor -c --all-sessions`, `--job` and
/// `--session-prefix`, here so that every caller (the CLI, a Swift program, a keep-alive
/// process) applies the same ones.
///
/// A session is only ever selected for the user it belongs to: every object owned by that
/// user and, when the management record names a creator, created by that user. A session
/// without objects is never selected.
public struct SweepSelection: Sendable, Hashable {
    /// What selects a session besides its owner.
    public enum Rule: Sendable, Hashable {
        /// Every session of the user.
        case allSessions
        /// Sessions whose record names one of these Slurm jobs (the creator's or an attached process's).
        case slurmJobs(Set<UInt32>)
        /// Sessions whose name (from their record) starts with this prefix.
        case sessionPrefix(String)
    }

    public var rule: Rule
    /// The user whose sessions are swept.
    public var userID: UInt32

    public init(_ rule: Rule, userID: UInt32) {
        self.rule = rule
        self.userID = userID
    }

    /// Whether the sweep removes `session`.
    public func selects(_ session: ShmSession) -> Bool {
        guard Self.session(session, isOwnedBy: userID) else { return false }
        switch rule {
        case .allSessions:
            return true
        case .slurmJobs(let jobs):
            return !jobs.isDisjoint(with: session.slurmJobIDs)
        case .sessionPrefix(let prefix):
            return session.sessionName?.hasPrefix(prefix) ?? false
        }
    }

    /// Whether every object of `session` is owned by `uid`, and its record (if any) names `uid`
    /// as its creator.
    public static func session(_ session: ShmSession, isOwnedBy uid: UInt32) -> Bool {
        if let creator = session.record?.creatorUID, creator != uid { return false }
        return !session.objects.isEmpty && session.objects.allSatisfy { $0.ownerUID == uid }
    }
}

extension SessionCleaner {
    /// Removes every session `selection` selects (see ``sweep(options:where:)`` for sessions in use).
    public func sweep(_ selection: SweepSelection, options: Options = Options()) throws(ShmCleanupError) -> CleanupReport {
        try sweep(options: options, where: selection.selects)
    }
}
