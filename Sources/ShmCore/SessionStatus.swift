import ShmCleanup
import SystemPackage

/// What a process outside a session (a keep-alive, a health check) sees of it, read without
/// attaching or registering: the management record and the state of every registered segment.
public struct SessionStatus: Sendable {
    /// One registered segment as found in the shm directory.
    public struct Segment: Sendable, Hashable {
        /// The segment id (`fmq_<id>_m_<segment>`).
        public let id: UInt16
        /// Size registered in the management segment.
        public let size: Int
        /// Whether the segment carries our allocator (false: pre-created raw, the first device formats it).
        public let formatted: Bool
        /// Free bytes counted by the segment's arenas (nil when not formatted or missing).
        public let freeBytes: Int?
        /// Why the segment is unusable (missing, wrong size, foreign contents), or nil when it is fine.
        public let problem: String?
    }

    /// The session's shmId.
    public let shmID: ShmID
    /// The decoded management segment.
    public let record: ManagementRecord
    /// The registered segments, by id.
    public let segments: [Segment]

    /// Whether every registered segment is usable.
    public var isHealthy: Bool { segments.allSatisfy { $0.problem == nil } }
}

extension SessionMemory {
    /// Reads a session's state without attaching to it (no registration, no locks taken).
    /// - Throws: `.unknownSegment` when the session has no management segment, `.foreignLayout`,
    ///   `.unsupportedVersion` or `.corrupt` when it cannot be read.
    public static func inspect(
        session: SessionID, directory: FilePath = SessionScanner.defaultDirectory
    ) throws(ShmCoreError) -> SessionStatus {
        let id = ShmID(session: session)
        let dir = try Directory(directory)
        let name = ShmObjectName(id, .management).fileName
        guard let mng = try SharedObject.open(name, in: dir, minimumSize: 0) else {
            throw ShmCoreError(
                .noSession,
                "session '\(session)' has no management segment '\(name)' in \(directory); start a device or a keep-alive process first",
                objectName: name)
        }
        let record: ManagementRecord
        do {
            record = try ManagementRecord(bytes: UnsafeRawBufferPointer(start: mng.base, count: mng.size))
        } catch .foreign {
            throw ShmCoreError(.foreignLayout, "'\(name)' is not a ShmTransport management segment", objectName: name)
        } catch .unsupportedVersion(let v) {
            throw ShmCoreError(.unsupportedVersion, "'\(name)' has management layout version \(v); use a matching build", objectName: name)
        } catch {
            throw ShmCoreError(.corrupt, "'\(name)': \(error); clean the session (shmmonitor -c -s \(session))", objectName: name)
        }
        let segments = record.segments.sorted { $0.id < $1.id }.map { entry -> SessionStatus.Segment in
            let segmentName = ShmObjectName(id, .segment(UInt32(entry.id))).fileName
            guard let object = try? SharedObject.open(segmentName, in: dir, minimumSize: 0) else {
                return .init(id: entry.id, size: Int(clamping: entry.size), formatted: false, freeBytes: nil, problem: "'\(segmentName)' is missing")
            }
            guard UInt64(object.size) == entry.size, object.size >= SegmentLayout.minimumSegmentSize else {
                return .init(
                    id: entry.id, size: Int(clamping: entry.size), formatted: false, freeBytes: nil,
                    problem: "'\(segmentName)' is \(object.size) bytes, registered as \(entry.size)")
            }
            let heap = SegmentHeap(base: object.base)
            let magic = heap.u64(SegmentLayout.Header.magic)
            if magic == 0 {
                return .init(id: entry.id, size: object.size, formatted: false, freeBytes: nil, problem: nil)
            }
            guard heap.isUsable(objectSize: object.size) else {
                return .init(
                    id: entry.id, size: object.size, formatted: false, freeBytes: nil,
                    problem: "'\(segmentName)' holds a foreign or newer segment layout")
            }
            return .init(id: entry.id, size: object.size, formatted: true, freeBytes: heap.freeBytes, problem: nil)
        }
        return SessionStatus(shmID: id, record: record, segments: segments)
    }
}
