import ShmCleanup
import ShmCore
import SystemPackage

/// Which transport a factory implements. The raw values are what `--transport` accepts.
public enum TransportKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Payload in the session's shared-memory segments; only a small metadata frame per message
    /// crosses ZeroMQ. Zero-copy between processes on one node.
    case shmem
    /// Payload copied through libzmq. Works across nodes; no shared memory.
    case zeromq

    public var description: String { rawValue }
}

/// How a ``TransportFactory`` is set up. The defaults are FairMQ's.
public struct TransportConfiguration: Sendable {
    /// The session whose shared memory the `shmem` transport uses. Default: `$SHMTRANSPORT_SESSION`,
    /// else `default`.
    public var session: SessionID
    /// Where the session's shared-memory objects live. Default: `$SHMTRANSPORT_SHM_DIR`, else `/dev/shm`.
    public var shmDirectory: FilePath
    /// Size of the segment this process creates when it is the first of the session (2 GiB).
    public var segmentSize: Int
    /// The managed segment this process allocates from (receivers read any segment).
    public var segmentID: UInt16
    /// Allocation strategy of a segment this process creates (`rbtree_best_fit`).
    public var allocationStrategy: AllocationStrategy
    /// What to do when a segment is full: throw at once (default), retry, or retry forever.
    public var badAlloc: BadAllocPolicy
    /// Pad every metadata frame to at least this many bytes (0 = no padding), so ZeroMQ's
    /// high-water marks apply back-pressure with fewer buffers in flight. FairMQ's `--shm-metadata-msg-size`.
    public var metadataMessageSize: Int
    /// Zero the segment's free memory when this process creates it.
    public var zeroSegmentOnCreation: Bool
    /// Lock the segment's pages in RAM when this process creates it.
    public var mlockSegmentOnCreation: Bool
    /// Zero the segment's free memory on every attach.
    public var zeroSegmentOnAttach: Bool
    /// Lock the segment's pages in RAM on every attach.
    public var mlockSegmentOnAttach: Bool
    /// Map every page of each segment at creation or attach, so no message pays a first-touch
    /// page fault (ours; FairMQ has no such option).
    public var prefaultSegment: Bool
    /// The last process out leaves the session's memory in place (for keep-alive processes).
    public var noCleanup: Bool
    /// A segment this process creates keeps a record per message (creator pid, size, time) for
    /// `shmmonitor --debug` (FairMQ's `FAIRMQ_DEBUG_MODE`, here a run-time choice; ours).
    public var messageRecords: Bool
    /// ZeroMQ I/O threads of the factory's context (1).
    public var ioThreads: Int
    /// Linger of new sockets in milliseconds (FairMQ: 1000); -1 = wait for ever on close.
    public var defaultLinger: Int

    /// ShmCore's defaults (FairMQ's), which the shared-memory arguments below take. Session and
    /// directory are given so that building it reads no environment; their defaults are read per call.
    @usableFromInline static let sessionDefaults = SessionConfiguration(session: .default, directory: FilePath("/"))

    /// Creates a configuration; every argument has FairMQ's default.
    public init(
        session: SessionID = (try? SessionID.fromEnvironment()) ?? .default,
        shmDirectory: FilePath = SessionScanner.defaultDirectory,
        segmentSize: Int = sessionDefaults.segmentSize,
        segmentID: UInt16 = sessionDefaults.segmentID,
        allocationStrategy: AllocationStrategy = sessionDefaults.allocationStrategy,
        badAlloc: BadAllocPolicy = sessionDefaults.badAlloc,
        metadataMessageSize: Int = 0,
        zeroSegmentOnCreation: Bool = sessionDefaults.zeroSegmentOnCreation,
        mlockSegmentOnCreation: Bool = sessionDefaults.mlockSegmentOnCreation,
        zeroSegmentOnAttach: Bool = sessionDefaults.zeroSegmentOnAttach,
        mlockSegmentOnAttach: Bool = sessionDefaults.mlockSegmentOnAttach,
        prefaultSegment: Bool = sessionDefaults.prefaultSegment,
        noCleanup: Bool = sessionDefaults.noCleanup,
        messageRecords: Bool = sessionDefaults.messageRecords,
        ioThreads: Int = 1,
        defaultLinger: Int = 1000
    ) {
        self.session = session
        self.shmDirectory = shmDirectory
        self.segmentSize = segmentSize
        self.segmentID = segmentID
        self.allocationStrategy = allocationStrategy
        self.badAlloc = badAlloc
        self.metadataMessageSize = metadataMessageSize
        self.zeroSegmentOnCreation = zeroSegmentOnCreation
        self.mlockSegmentOnCreation = mlockSegmentOnCreation
        self.zeroSegmentOnAttach = zeroSegmentOnAttach
        self.mlockSegmentOnAttach = mlockSegmentOnAttach
        self.prefaultSegment = prefaultSegment
        self.noCleanup = noCleanup
        self.messageRecords = messageRecords
        self.ioThreads = ioThreads
        self.defaultLinger = defaultLinger
    }
}

extension TransportConfiguration {
    /// What a `shmem` factory asks ShmCore for.
    var sessionConfiguration: SessionConfiguration {
        SessionConfiguration(
            session: session, directory: shmDirectory, segmentSize: segmentSize, segmentID: segmentID,
            allocationStrategy: allocationStrategy, badAlloc: badAlloc,
            zeroSegmentOnCreation: zeroSegmentOnCreation, mlockSegmentOnCreation: mlockSegmentOnCreation,
            zeroSegmentOnAttach: zeroSegmentOnAttach, mlockSegmentOnAttach: mlockSegmentOnAttach,
            prefaultSegment: prefaultSegment, noCleanup: noCleanup, messageRecords: messageRecords)
    }
}
