/// The name of one shared memory object of a session, in the grammar FairMQ uses.
///
/// Current objects (FairMQ ≥ 1.4.44 and this transport):
/// ```
/// fmq_<id>_mng          management segment
/// fmq_<id>_m_<n>        managed segment n
/// fmq_<id>_rg_<n>       unmanaged region n (or <path>fmq_<id>_rg_<n> for file-backed regions)
/// fmq_<id>_rgq_<n>      release queue of region n
/// fmq_<id>_rrc_<n>      reference-count pool of region n
/// sem.fmq_<id>_ms       "a monitor runs" flag (a POSIX named semaphore)
/// ```
/// Legacy objects of older FairMQ releases: `fmq_<id>_main`, `sem.fmq_<id>_mtx`,
/// `fmq_<id>_cv`, `fmq_<id>_cq`. A name outside this grammar is never ours.
public struct ShmObjectName: Hashable, Sendable, CustomStringConvertible {
    /// What an object is.
    public enum Kind: Hashable, Sendable {
        case management
        /// A management segment its creator (pid n) is still writing, published under the
        /// management name only once complete; left behind when the creator died meanwhile.
        case managementDraft(UInt32)
        case segment(UInt32)
        case region(UInt32)
        case regionQueue(UInt32)
        case regionRefCount(UInt32)
        case monitorFlag
        case legacyMainSegment
        case legacyMutex
        case legacyCondition
        case legacyHeartbeatQueue
    }

    /// The session the object belongs to.
    public let shmID: ShmID
    /// What the object is.
    public let kind: Kind

    /// Creates a name.
    public init(_ shmID: ShmID, _ kind: Kind) {
        self.shmID = shmID
        self.kind = kind
    }

    /// The file name under the shm directory (`/dev/shm`).
    public var fileName: String {
        let base = "fmq_\(shmID.rawValue)_"
        switch kind {
        case .management: return base + "mng"
        case .managementDraft(let n): return base + "mngd_\(n)"
        case .segment(let n): return base + "m_\(n)"
        case .region(let n): return base + "rg_\(n)"
        case .regionQueue(let n): return base + "rgq_\(n)"
        case .regionRefCount(let n): return base + "rrc_\(n)"
        case .monitorFlag: return "sem." + base + "ms"
        case .legacyMainSegment: return base + "main"
        case .legacyMutex: return "sem." + base + "mtx"
        case .legacyCondition: return base + "cv"
        case .legacyHeartbeatQueue: return base + "cq"
        }
    }

    /// The name to pass to `shm_open`/`sem_open` (the file name with a leading `/`).
    public var posixName: String {
        switch kind {
        case .monitorFlag: return "/fmq_\(shmID.rawValue)_ms"
        case .legacyMutex: return "/fmq_\(shmID.rawValue)_mtx"
        default: return "/" + fileName
        }
    }

    public var description: String { fileName }

    /// Parses a file name from the shm directory; `nil` when the name is not in the grammar.
    public init?(fileName: String) {
        var rest = Substring(fileName)
        let isSemaphore = rest.hasPrefix("sem.")
        if isSemaphore { rest = rest.dropFirst(4) }
        guard rest.hasPrefix("fmq_") else { return nil }
        rest = rest.dropFirst(4)
        guard let underscore = rest.firstIndex(of: "_"), let id = ShmID(namePart: rest[..<underscore]) else {
            return nil
        }
        let suffix = rest[rest.index(after: underscore)...]
        let kind: Kind?
        if isSemaphore {
            switch suffix {
            case "ms": kind = .monitorFlag
            case "mtx": kind = .legacyMutex
            default: kind = nil
            }
        } else {
            switch suffix {
            case "mng": kind = .management
            case "main": kind = .legacyMainSegment
            case "cv": kind = .legacyCondition
            case "cq": kind = .legacyHeartbeatQueue
            default: kind = Self.parseIndexed(suffix)
            }
        }
        guard let kind else { return nil }
        self.init(id, kind)
    }

    private static func parseIndexed(_ suffix: Substring) -> Kind? {
        guard let underscore = suffix.lastIndex(of: "_") else { return nil }
        let digits = suffix[suffix.index(after: underscore)...]
        // Decimal digits only, no sign, no leading zeros (FairMQ prints plain decimals).
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }),
            digits == "0" || !digits.hasPrefix("0"), let n = UInt32(digits)
        else { return nil }
        switch suffix[..<underscore] {
        case "m": return .segment(n)
        case "mngd": return .managementDraft(n)
        case "rg": return .region(n)
        case "rgq": return .regionQueue(n)
        case "rrc": return .regionRefCount(n)
        default: return nil
        }
    }

    /// The position of this object in FairMQ's removal order: regions (rg, rgq, rrc, region
    /// by region), then segments, then the management segment, then the monitor flag.
    /// Legacy objects take the place of what replaced them.
    public var removalRank: (Int, UInt32, Int) {
        switch kind {
        case .region(let n): return (0, n, 0)
        case .regionQueue(let n): return (0, n, 1)
        case .regionRefCount(let n): return (0, n, 2)
        case .segment(let n): return (1, n, 0)
        case .legacyMainSegment: return (1, 0, 1)
        case .legacyCondition: return (2, 0, 0)
        case .legacyHeartbeatQueue: return (2, 0, 1)
        case .management: return (3, 0, 0)
        case .managementDraft(let n): return (3, n, 1)
        case .monitorFlag: return (4, 0, 0)
        case .legacyMutex: return (4, 0, 1)
        }
    }
}
