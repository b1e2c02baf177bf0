import ShmCleanup
import SystemPackage

/// How blocks are found inside a segment's arenas (FairMQ's `--shm-allocation`).
public enum AllocationStrategy: String, Sendable, CaseIterable {
    /// Best fit over size-class bins with immediate coalescing (the default; least fragmentation).
    case rbtreeBestFit = "rbtree_best_fit"
    /// First fit over one free list per arena, with coalescing (simpler, more fragmentation).
    case simpleSeqFit = "simple_seq_fit"

    /// The code stored in the management segment's segment table and the segment header.
    var code: UInt8 { self == .rbtreeBestFit ? 0 : 1 }

    init?(code: UInt8) {
        switch code {
        case 0: self = .rbtreeBestFit
        case 1: self = .simpleSeqFit
        default: return nil
        }
    }
}

/// What an allocation does when the segment has no room (FairMQ's `--bad-alloc-max-attempts`,
/// `--bad-alloc-attempt-interval` and `--shm-throw-bad-alloc`).
public enum BadAllocPolicy: Sendable, Hashable {
    /// Throw ``ShmCoreError/Code/badAlloc`` at once (FairMQ's default).
    case throwImmediately
    /// Try `attempts` times in all, sleeping `intervalMilliseconds` between attempts.
    case retry(attempts: Int, intervalMilliseconds: Int)
    /// Retry until memory frees up; ``SessionMemory/interrupt()`` ends the wait with `.interrupted`.
    case forever(intervalMilliseconds: Int)
}

/// Everything a process needs to create or attach the shared memory of a session.
public struct SessionConfiguration: Sendable {
    /// The session; devices with the same session (and user) share memory.
    public var session: SessionID
    /// Where the shared memory objects live (`/dev/shm`, or `SHMTRANSPORT_SHM_DIR`).
    public var directory: FilePath
    /// Size of the segment this process creates if it does not exist yet (default 2 GiB).
    public var segmentSize: Int
    /// The segment this process allocates from (receivers read any segment of the session).
    public var segmentID: UInt16
    /// The allocator of a segment this process creates (an existing segment keeps its own).
    public var allocationStrategy: AllocationStrategy
    /// What an allocation does when the segment is full.
    public var badAlloc: BadAllocPolicy
    /// Zero the whole segment when this process creates it.
    public var zeroSegmentOnCreation: Bool
    /// Lock the segment into RAM when this process creates it.
    public var mlockSegmentOnCreation: Bool
    /// Zero the segment's free memory on every attach.
    public var zeroSegmentOnAttach: Bool
    /// Lock the segment into RAM on every attach.
    public var mlockSegmentOnAttach: Bool
    /// Map every page of each segment into this process when it creates or attaches it
    /// (`MADV_POPULATE_WRITE`, or one write per page where the kernel lacks it), so no message
    /// pays for a first-touch page fault later. Costs the fault time of the whole segment at
    /// start (`docs/benchmarks.md`), and the page tables of every page.
    public var prefaultSegment: Bool
    /// When this process is the last to detach, leave the memory in place.
    public var noCleanup: Bool
    /// Number of arenas (independently locked heaps) a new segment is split into; `nil` picks
    /// one from the size (one arena below 64 MiB, up to 8 above). The largest block is the
    /// size of the largest arena, which is at least half of the segment.
    public var arenaCount: Int?
    /// Bytes of freed blocks this process keeps for reuse without taking a shared lock; `nil`
    /// picks min(segment / 16, 16 MiB), 0 turns the cache off. A killed process leaks at most this.
    public var localCacheBytes: Int?
    /// Give a segment this process creates a record per message (creator pid, size, creation
    /// time) that `shmmonitor --debug` lists: FairMQ's `FAIRMQ_DEBUG_MODE`, chosen per session at
    /// run time. Costs 32 bytes and a clock read per allocation; an existing segment keeps its own
    /// setting.
    public var messageRecords: Bool

    /// Creates a configuration; every argument has FairMQ's default.
    public init(
        session: SessionID = (try? SessionID.fromEnvironment()) ?? .default,
        directory: FilePath = SessionScanner.defaultDirectory,
        segmentSize: Int = 2 << 30,
        segmentID: UInt16 = 0,
        allocationStrategy: AllocationStrategy = .rbtreeBestFit,
        badAlloc: BadAllocPolicy = .throwImmediately,
        zeroSegmentOnCreation: Bool = false,
        mlockSegmentOnCreation: Bool = false,
        zeroSegmentOnAttach: Bool = false,
        mlockSegmentOnAttach: Bool = false,
        prefaultSegment: Bool = false,
        noCleanup: Bool = false,
        arenaCount: Int? = nil,
        localCacheBytes: Int? = nil,
        messageRecords: Bool = false
    ) {
        self.session = session
        self.directory = directory
        self.segmentSize = segmentSize
        self.segmentID = segmentID
        self.allocationStrategy = allocationStrategy
        self.badAlloc = badAlloc
        self.zeroSegmentOnCreation = zeroSegmentOnCreation
        self.mlockSegmentOnCreation = mlockSegmentOnCreation
        self.zeroSegmentOnAttach = zeroSegmentOnAttach
        self.mlockSegmentOnAttach = mlockSegmentOnAttach
        self.prefaultSegment = prefaultSegment
        self.noCleanup = noCleanup
        self.arenaCount = arenaCount
        self.localCacheBytes = localCacheBytes
        self.messageRecords = messageRecords
    }
}

extension SessionConfiguration {
    /// The ``SegmentLayout/Flags`` of a segment this configuration creates.
    var segmentFlags: UInt8 { messageRecords ? SegmentLayout.Flags.messageRecords : 0 }
}

/// A block handed out by the allocator: a plain value, valid in every process of the session.
///
/// `offset` is the offset of the payload within its segment; the block header (with the
/// reference count) sits in the 16 bytes before it.
public struct ShmBlock: Sendable, Hashable {
    /// The segment (`fmq_<id>_m_<segmentID>`) the block lives in.
    public let segmentID: UInt16
    /// Offset of the payload from the start of the segment.
    public let offset: UInt64
    /// Usable size of the payload in bytes (what was asked for, or shrunk to).
    public let size: UInt64

    /// Creates a block value (no memory is touched).
    public init(segmentID: UInt16, offset: UInt64, size: UInt64) {
        self.segmentID = segmentID
        self.offset = offset
        self.size = size
    }
}
