/// Everything the engine found about one session (one shmId) in a shm directory.
public struct ShmSession: Sendable, Encodable {
    /// What the session's management segment told the engine.
    public enum ManagementStatus: Sendable, Hashable, CustomStringConvertible {
        /// Ours, decoded.
        case ours
        /// There is no `fmq_<id>_mng`: a crashed or half-removed session.
        case missing
        /// Present but not our layout (a C++ FairMQ session): objects are known by name only.
        case foreign
        /// Present but unreadable or undecodable; the reason says why.
        case unreadable(String)

        public var description: String {
            switch self {
            case .ours: return "ours"
            case .missing: return "missing"
            case .foreign: return "foreign (C++ FairMQ or other layout)"
            case .unreadable(let why): return "unreadable: \(why)"
            }
        }
    }

    public let shmID: ShmID
    /// The objects, in removal order.
    public internal(set) var objects: [ShmObject]
    public internal(set) var managementStatus: ManagementStatus
    /// The decoded management record, for our sessions.
    public internal(set) var record: ManagementRecord?
    /// Live processes that map the session's objects or are registered in it.
    public internal(set) var users: [ProcessUse]

    /// The session name, when the management record tells it.
    public var sessionName: String? { record?.sessionName }
    /// Owners of the objects.
    public var ownerUIDs: [UInt32] { Array(Set(objects.map(\.ownerUID))).sorted() }
    /// Sum of the objects' sizes.
    public var totalBytes: Int64 { objects.reduce(0) { $0 + $1.size } }
    /// Whether any live process uses the session.
    public var isInUse: Bool { !users.isEmpty }
    /// Slurm jobs recorded for the session: the creator's and those of attached processes.
    public var slurmJobIDs: [UInt32] {
        guard let record else { return [] }
        let jobs = record.processes.map(\.slurmJobID) + [record.creatorSlurmJobID]
        return Array(Set(jobs.filter { $0 != 0 })).sorted()
    }

    enum CodingKeys: String, CodingKey {
        case shmID = "shmid", session, management, record, users, objects, totalBytes = "total_bytes"
        case inUse = "in_use", ownerUIDs = "owner_uids", slurmJobIDs = "slurm_job_ids"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(shmID, forKey: .shmID)
        try c.encodeIfPresent(sessionName, forKey: .session)
        try c.encode(managementStatus.description, forKey: .management)
        try c.encodeIfPresent(record, forKey: .record)
        try c.encode(users, forKey: .users)
        try c.encode(objects, forKey: .objects)
        try c.encode(totalBytes, forKey: .totalBytes)
        try c.encode(isInUse, forKey: .inUse)
        try c.encode(ownerUIDs, forKey: .ownerUIDs)
        try c.encode(slurmJobIDs, forKey: .slurmJobIDs)
    }
}
