/// The binary layout of a managed segment `fmq_<id>_m_<n>`, version 3 (version 2 had glibc
/// robust mutexes as arena locks, version 1 no waiting bitmap, room sequence or remote-free
/// heads).
///
/// A segment is a header, a table of arenas, and a heap split into one contiguous range per
/// arena. Every arena is an independent allocator with its own lock (``SharedLock``),
/// so that processes allocating small blocks do not all queue on one lock (FairMQ issue #480).
/// Only offsets from the segment start are stored, never pointers.
///
/// ```
/// offset            size   field
/// 0                 8      magic "SHMTRSEG" (0x4745_5352_5448_4d53)
/// 8                 4      layoutVersion (3)
/// 12                4      state: 0 unformatted, 1 ready (set last, release order)
/// 16                8      segmentSize
/// 24                2      segmentID
/// 26                1      allocator: 0 rbtree_best_fit, 1 simple_seq_fit
/// 27                1      flags: bit 0 message records (see below); fixed when formatted
/// 28                4      arenaCount (1...16)
/// 32                8      heapOffset (first byte of arena 0's range, 4 KiB aligned)
/// 40                4      creatorPID
/// 64                32     waitingSlots: bitmap of process slots waiting for room (256 bits)
/// 96                4      roomSequence: futex word, bumped when room appears for a waiter
/// 256               4096   arena 0 (see below), then arena 1, ...
/// 256 + 4096·arenas 16384  remote-free heads: one 64-byte line per process slot (256), see
///                          ``RemoteFreeList``
/// heapOffset        ...    arena ranges, back to back, each a sequence of chunks
/// ```
///
/// Arena (4096 bytes):
/// ```
///    0  16    lock (``SharedLock``: holder word, holder start time), 48 bytes spare
///   64  8     start: offset of the arena's first chunk
///   72  8     end: offset one past its last chunk
///   80  8     freeBytes: sum of free chunk sizes (written under the lock, read racily)
///   88  8     repairs: how often the arena was rebuilt after a holder died
///  128  32    bitmap of non-empty bins (256 bits)
///  256  2048  bins: 256 list heads (offsets of free chunks, 0 = empty);
///             simple_seq_fit keeps its single list in bin 0
/// ```
///
/// Chunk (16-byte aligned, size a multiple of 16, at least 48 bytes):
/// ```
///  0  8  sizeWord: size | 1 when used
///  8  8  prevSize: size of the chunk before it in address order (0 for the arena's first)
/// free:  16 next free chunk (offset, 0 = none)   24 previous free chunk
/// used:  payload at alignUp(chunk + 32, alignment); the 16-byte block header right before it:
///        0 magic UInt32 "SHMB"  4 refCount UInt32 (atomic)  8 chunkDelta UInt32 (payload - chunk)
///        12 arena UInt16        14 cacheOwner UInt16: (slot + 1) | 0x8000 while live and allocated by
///        the process in that slot; slot + 1 while in that process's local cache with refCount 0
///        (lets the pruner of a dead process free its cache); 0 otherwise
/// ```
///
/// Message record (segments formatted with ``SegmentLayout/Flags/messageRecords``, FairMQ's
/// `FAIRMQ_DEBUG_MODE` at run time): every allocation asks for 32 bytes more and writes this
/// record into the last 32 bytes of its chunk, where a walk finds it from the chunk size alone:
/// ```
///  0  4  magic UInt32 "SHMR"        4  creator pid Int32
///  8  8  size UInt64 (the payload bytes asked for, or shrunk to)
/// 16  8  creation time UInt64 (CLOCK_REALTIME, ns)    24  payload - chunk UInt32   28 reserved
/// ```
///
/// The chunk sizes alone make the heap walkable from `start` to `end`; every operation changes
/// them with single 8-byte stores such that the heap stays walkable after each one. That is
/// what makes crash recovery possible (see `docs/shmcore.md`).
enum SegmentLayout {
    static let magic: UInt64 = 0x4745_5352_5448_4d53
    static let version: UInt32 = 3

    enum Header {
        static let magic = 0
        static let layoutVersion = 8
        static let state = 12
        static let segmentSize = 16
        static let segmentID = 24
        static let allocator = 26
        static let arenaCount = 28
        static let heapOffset = 32
        static let creatorPID = 40
        static let waitingSlots = 64
        static let roomSequence = 96
        static let flags = 27
    }

    /// Bits of the header's `flags` byte.
    enum Flags {
        /// Every allocation writes a ``SegmentLayout/Record`` (what `shmmonitor --debug` lists).
        static let messageRecords: UInt8 = 1
    }

    /// The record at the end of a used chunk of a segment with message records.
    enum Record {
        static let size = 32
        static let magic = 0
        static let creatorPID = 4
        static let payloadSize = 8
        static let createdAt = 16
        static let payloadDelta = 24
        static let magicValue: UInt32 = 0x524d_4853  // "SHMR" in memory order
    }

    static let unformatted: UInt32 = 0
    static let ready: UInt32 = 1

    static let arenaTableOffset = 256
    static let arenaStride = 4096
    static let maximumArenas = 16

    enum Arena {
        static let lock = 0
        static let start = 64
        static let end = 72
        static let freeBytes = 80
        static let repairs = 88
        static let bitmap = 128
        static let bins = 256
        static let binCount = 256
    }

    enum Chunk {
        static let sizeWord = 0
        static let prevSize = 8
        static let next = 16
        static let prev = 24
        static let headerSize = 16
        static let minimumSize = 48
        static let usedBit: UInt64 = 1
    }

    enum Block {
        static let headerSize = 16
        static let magic = 0
        static let refCount = 4
        static let chunkDelta = 8
        static let arena = 12
        static let cacheOwner = 14
        static let magicValue: UInt32 = 0x424d_4853
    }

    /// Smallest segment that holds a header, one arena and a useful heap.
    static let minimumSegmentSize = 64 * 1024

    /// Process slots with a remote-free head (the management segment's process table capacity).
    static let remoteFreeSlots = 256
    /// Bytes per remote-free head: a cache line each, so that processes pushing to different
    /// owners do not share a line.
    static let remoteFreeStride = 64

    /// Where the remote-free heads start for `arenaCount` arenas.
    static func remoteFreeTableOffset(arenaCount: Int) -> Int { arenaTableOffset + arenaCount * arenaStride }

    /// Where the heap starts for `arenaCount` arenas.
    static func heapOffset(arenaCount: Int) -> Int {
        (remoteFreeTableOffset(arenaCount: arenaCount) + remoteFreeSlots * remoteFreeStride + 4095) & ~4095
    }

    /// The arena count used when the configuration leaves it open.
    static func defaultArenaCount(segmentSize: Int) -> Int {
        if segmentSize < 64 << 20 { return 1 }
        return min(8, 1 + (segmentSize >> 26))
    }
}
