/// The binary layout of this transport's management segment `fmq_<id>_mng`, version 2 (version
/// 1 had a glibc robust mutex as the session lock).
///
/// This file is the single source of truth for the layout: the shared-memory core writes it,
/// the cleanup engine reads it. Everything is little-endian, fixed width, naturally aligned;
/// only offsets and indices are stored, never pointers.
///
/// ```
/// offset  size  field
/// ------  ----  ----------------------------------------------------------------------
///      0     8  magic            "SHMTRMNG" (0x474e4d5254484d53): not ours if different
///      8     4  layoutVersion    2; a reader refuses versions it does not know
///     12     4  headerSize       512
///     16     8  totalSize        size of the whole object in bytes
///     24     4  state            0 initialising, 1 ready (set last, with release order)
///     28     4  creatorUID       euid of the creating process
///     32     4  creatorPID
///     36     4  flags            bit 0: no cleanup by the last process (keep-alive sessions)
///     40     8  createdAtNanos   CLOCK_REALTIME
///     48     4  deviceCount      atomic: attached transport factories
///     52     4  regionCounter    atomic: next automatic region id (starts at 1024)
///     56     8  eventCounter     atomic: bumped on segment/region creation and destruction
///     64     8  heartbeat        atomic: bumped by every attached process
///     72     4  sessionNameLength
///     76     4  (reserved)
///     80   256  sessionName      UTF-8, not NUL-terminated
///    336     8  processTableOffset   340.. see ManagementLayout.Table
///    344     4  processCapacity
///    348     4  processEntrySize
///    352     8  segmentTableOffset
///    360     4  segmentCapacity
///    364     4  segmentEntrySize
///    368     8  regionTableOffset
///    376     4  regionCapacity
///    380     4  regionEntrySize
///    384     8  lockOffset       the session lock (ShmCore's SharedLock, 16 bytes used)
///    392     4  lockSize
///    396     4  creatorSlurmJobID    0: not created inside a Slurm job
///    400     4  creatorSlurmStepID   UInt32.max: not in a step
///    404     4  lockState        0 lock not initialised (a creator that writes no lock), 1 being
///                                initialised (CAS 0 -> 1 by the first attacher), 2 ready
///    408   104  (reserved, zero)
///    512    64  lock
///    576     …  process table, then segment table, then region table
/// ```
///
/// Process entry (64 bytes; `state` is claimed with a CAS 0 → 1, filled, then set to 2):
/// ```
///  0 state UInt32 (0 free, 1 claiming, 2 attached)   4 pid Int32      8 uid UInt32
/// 12 slurmStepID UInt32 (UInt32.max: none)           16 startTime UInt64 (/proc/<pid>/stat field 22)
/// 24 slurmJobID UInt32 (0: none)                     28 segmentID UInt16   30 reserved UInt16
/// 32 attachedAtNanos UInt64                          40 lastHeartbeatNanos UInt64 (atomic)
/// 48 reserved (16 bytes)
/// ```
/// Segment entry (64 bytes):
/// ```
///  0 state UInt32 (0 free, 1 registered)   4 segmentID UInt16   6 allocator UInt8 (0 rbtree_best_fit, 1 simple_seq_fit)
///  8 size UInt64                            16 freeBytes UInt64 (atomic, kept by the allocator)
/// 24 creatorPID Int32                       28 reserved (36 bytes)
/// ```
/// Region entry (384 bytes; written under the session lock, `state` stored last):
/// ```
///  0 state UInt32 (0 free, 1 alive, 2 destroyed)   4 regionID UInt16   6 pathLength UInt16
///  8 size UInt64     16 rcSegmentSize UInt64        24 creationFlags Int32
/// 28 generation UInt32 (the event counter when the entry was filled: tells a re-created id apart)
/// 32 userFlags UInt64                               40 controllerPID Int32 (0: no controller)
/// 44 creatorPID Int32                               48 controllerStartTime UInt64 (/proc/<pid>/stat field 22)
/// 56 reserved (8 bytes)
/// 64 path [320 bytes] UTF-8 prefix of a file-backed region ("" for shared memory)
/// ```
/// The controller is the process that receives the region's release acknowledgements; a second
/// process may take that role only when the registered one is dead or has let go.
public enum ManagementLayout {
    /// `"SHMTRMNG"` read as a little-endian `UInt64`.
    public static let magic: UInt64 = 0x474e_4d52_5448_4d53
    /// The layout version this build reads and writes.
    public static let version: UInt32 = 2
    /// Size of the fixed header.
    public static let headerSize = 512
    /// Longest session name stored.
    public static let sessionNameCapacity = 256

    /// Header field offsets.
    public enum Header {
        public static let magic = 0
        public static let layoutVersion = 8
        public static let headerSize = 12
        public static let totalSize = 16
        public static let state = 24
        public static let creatorUID = 28
        public static let creatorPID = 32
        public static let flags = 36
        public static let createdAtNanos = 40
        public static let deviceCount = 48
        public static let regionCounter = 52
        public static let eventCounter = 56
        public static let heartbeat = 64
        public static let sessionNameLength = 72
        public static let sessionName = 80
        public static let processTableOffset = 336
        public static let processCapacity = 344
        public static let processEntrySize = 348
        public static let segmentTableOffset = 352
        public static let segmentCapacity = 360
        public static let segmentEntrySize = 364
        public static let regionTableOffset = 368
        public static let regionCapacity = 376
        public static let regionEntrySize = 380
        public static let lockOffset = 384
        public static let lockSize = 392
        public static let creatorSlurmJobID = 396
        public static let creatorSlurmStepID = 400
        public static let lockState = 404
    }

    /// Values of the header `lockState` field: a creator that does not initialise the session
    /// lock (it leaves 0) lets the first attacher do it (CAS 0 -> 1, init, store 2).
    public enum LockState {
        public static let uninitialised: UInt32 = 0
        public static let initialising: UInt32 = 1
        public static let ready: UInt32 = 2
    }

    /// Values of the header `state` field.
    public enum State {
        public static let initialising: UInt32 = 0
        public static let ready: UInt32 = 1
    }

    /// Bits of the header `flags` field.
    public enum Flags {
        /// The last detaching process leaves the memory in place (keep-alive sessions).
        public static let noCleanup: UInt32 = 1
    }

    /// Where the session lock lives and how much room it has (it uses 16 bytes).
    public static let lockOffset = 512
    public static let lockSize = 64

    /// Process table entry field offsets.
    public enum ProcessEntry {
        public static let size = 64
        public static let state = 0
        public static let pid = 4
        public static let uid = 8
        public static let slurmStepID = 12
        public static let startTime = 16
        public static let slurmJobID = 24
        public static let segmentID = 28
        public static let attachedAtNanos = 32
        public static let lastHeartbeatNanos = 40
        /// A check word over the entry's identity (slot, pid, start time, uid, segment id),
        /// written by the process itself: an entry another process scribbled on does not match,
        /// so nobody prunes, reclaims or trusts it.
        public static let check = 48

        public static let free: UInt32 = 0
        public static let claiming: UInt32 = 1
        public static let attached: UInt32 = 2
        /// `slurmStepID` when the process is not a Slurm step.
        public static let noStep: UInt32 = .max
    }

    /// Segment table entry field offsets.
    public enum SegmentEntry {
        public static let size = 64
        public static let state = 0
        public static let segmentID = 4
        public static let allocator = 6
        public static let segmentSize = 8
        public static let freeBytes = 16
        public static let creatorPID = 24

        public static let free: UInt32 = 0
        public static let registered: UInt32 = 1
    }

    /// Region table entry field offsets.
    public enum RegionEntry {
        public static let size = 384
        public static let state = 0
        public static let regionID = 4
        public static let pathLength = 6
        public static let regionSize = 8
        public static let rcSegmentSize = 16
        public static let creationFlags = 24
        public static let generation = 28
        public static let userFlags = 32
        public static let controllerPID = 40
        public static let creatorPID = 44
        public static let controllerStartTime = 48
        public static let path = 64
        public static let pathCapacity = 320

        public static let free: UInt32 = 0
        public static let alive: UInt32 = 1
        public static let destroyed: UInt32 = 2
    }

    /// Default table capacities.
    public static let defaultProcessCapacity = 256
    public static let defaultSegmentCapacity = 64
    public static let defaultRegionCapacity = 64

    /// Offsets of the three tables for the default capacities, and the total size (rounded to 4 KiB).
    public static let defaultProcessTableOffset = lockOffset + lockSize
    public static let defaultSegmentTableOffset = defaultProcessTableOffset + defaultProcessCapacity * ProcessEntry.size
    public static let defaultRegionTableOffset = defaultSegmentTableOffset + defaultSegmentCapacity * SegmentEntry.size
    public static let defaultTotalSize: Int = {
        let end = defaultRegionTableOffset + defaultRegionCapacity * RegionEntry.size
        return (end + 4095) & ~4095
    }()
}

extension ManagementLayout {
    /// Where a table of the management segment lies: checked to fit the object.
    public struct Table: Sendable, Equatable {
        public let offset: Int
        public let capacity: Int
        public let stride: Int
    }

    /// Where the tables and the lock of a management segment lie, read from its header and
    /// checked against the object's size with non-trapping arithmetic: every value in shared
    /// memory may be garbage (a crashed writer, another program), and a damaged header must give
    /// an error, never a trap or a read out of bounds (DESIGN.md, "Reading shared memory").
    public struct Geometry: Sendable, Equatable {
        public let processes: Table
        public let segments: Table
        public let regions: Table
        public let lockOffset: Int

        /// The geometry a segment made by this build has.
        public static let standard = Geometry(
            processes: Table(offset: defaultProcessTableOffset, capacity: defaultProcessCapacity, stride: ProcessEntry.size),
            segments: Table(offset: defaultSegmentTableOffset, capacity: defaultSegmentCapacity, stride: SegmentEntry.size),
            regions: Table(offset: defaultRegionTableOffset, capacity: defaultRegionCapacity, stride: RegionEntry.size),
            lockOffset: ManagementLayout.lockOffset)

        private init(processes: Table, segments: Table, regions: Table, lockOffset: Int) {
            self.processes = processes
            self.segments = segments
            self.regions = regions
            self.lockOffset = lockOffset
        }

        /// Reads and checks the geometry in `header` (at least ``ManagementLayout/headerSize`` bytes)
        /// of an object of `objectSize` bytes.
        /// - Returns: the geometry, or what is wrong with it.
        public static func read(_ header: UnsafeRawBufferPointer, objectSize: Int) -> Result<Geometry, DamagedHeader> {
            typealias H = Header
            guard header.count >= headerSize else { return .failure(DamagedHeader("only \(header.count) header bytes")) }
            func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: header.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
            func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: header.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
            func table(_ name: String, _ offset: Int, _ capacity: Int, _ stride: Int, minimumEntry: Int) -> Result<Table, DamagedHeader> {
                let rawOffset = u64(offset)
                let count = Int(u32(capacity))
                let size = Int(u32(stride))
                let fits: Bool = {
                    guard let start = Int(exactly: rawOffset), start >= headerSize, size >= minimumEntry, count <= 1 << 20 else { return false }
                    let (bytes, overflowed) = count.multipliedReportingOverflow(by: size)
                    let (end, overflowedAgain) = start.addingReportingOverflow(bytes)
                    return !overflowed && !overflowedAgain && end <= objectSize
                }()
                guard fits else {
                    return .failure(DamagedHeader(
                        "the \(name) table (offset \(rawOffset), \(count) entries of \(size) bytes) does not fit the \(objectSize)-byte object"))
                }
                return .success(Table(offset: Int(rawOffset), capacity: count, stride: size))
            }
            let lock = u64(H.lockOffset)
            guard let lockOffset = Int(exactly: lock), lockOffset >= headerSize, lockOffset % 8 == 0,
                u32(H.lockSize) >= UInt32(lockSize), lockOffset <= objectSize - lockSize
            else {
                return .failure(DamagedHeader("the session lock (offset \(lock), \(u32(H.lockSize)) bytes) does not fit the \(objectSize)-byte object"))
            }
            do {
                return .success(Geometry(
                    processes: try table("process", H.processTableOffset, H.processCapacity, H.processEntrySize, minimumEntry: ProcessEntry.size).get(),
                    segments: try table("segment", H.segmentTableOffset, H.segmentCapacity, H.segmentEntrySize, minimumEntry: SegmentEntry.size).get(),
                    regions: try table("region", H.regionTableOffset, H.regionCapacity, H.regionEntrySize, minimumEntry: RegionEntry.size).get(),
                    lockOffset: lockOffset))
            } catch {
                return .failure(error)
            }
        }
    }

    /// What is wrong with a management segment's header.
    public struct DamagedHeader: Error, Sendable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}
