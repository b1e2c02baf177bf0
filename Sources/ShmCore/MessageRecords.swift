import Atomics
import Logging
import ShmCleanup
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A live managed message as its segment's record describes it (`shmmonitor --debug`).
public struct LiveMessage: Sendable, Hashable, Encodable {
    /// The segment (`fmq_<id>_m_<segmentID>`) holding the payload.
    public let segmentID: UInt16
    /// Offset of the payload from the start of the segment.
    public let offset: UInt64
    /// Payload bytes the creator asked for (or shrank the message to).
    public let size: UInt64
    /// The process that allocated it.
    public let creatorPID: Int32
    /// When it was allocated: nanoseconds since the epoch (CLOCK_REALTIME).
    public let createdAtNanos: UInt64

    enum CodingKeys: String, CodingKey {
        case segmentID = "segment", offset, size, creatorPID = "creator_pid", createdAtNanos = "created_at_ns"
    }
}

/// What the records of one managed segment say.
public struct SegmentMessages: Sendable, Encodable {
    /// The segment's id.
    public let segmentID: UInt16
    /// Whether the segment was formatted with message records
    /// (``SessionConfiguration/messageRecords``); when false, ``messages`` is empty.
    public let recordsMessages: Bool
    /// Live messages (reference count above 0) in address order.
    public let messages: [LiveMessage]
    /// Why the segment could not be read, or where the walk of a damaged arena stopped; nil when
    /// the whole segment was read.
    public let problem: String?

    enum CodingKeys: String, CodingKey {
        case segmentID = "segment", recordsMessages = "records_messages", messages, problem
    }
}

/// Reads the message records of a session's managed segments without attaching to the session:
/// each segment is mapped read-only and walked without taking its locks, every value checked
/// before use, so a damaged or busy segment gives a partial answer and never a crash or a wait.
public enum MessageRecords {
    /// The records of every managed segment of session `id` in `directory`, by segment id.
    /// - Throws: `.invalidArgument` when the directory cannot be opened or listed.
    public static func read(_ id: ShmID, directory: FilePath = SessionScanner.defaultDirectory, logger: Logger)
        throws(ShmCoreError) -> [SegmentMessages]
    {
        let dir = try Directory(directory)
        let objects: [ShmObject]
        do {
            objects = try SessionScanner(directory: directory, logger: logger).scan(only: [id], liveness: false).sessions.first?.objects ?? []
        } catch {
            throw ShmCoreError(.invalidArgument, error.description, objectName: directory.string)
        }
        var segments: [SegmentMessages] = []
        for object in objects {
            guard case .segment(let n) = object.name.kind, let segmentID = UInt16(exactly: n) else { continue }
            segments.append(read(segment: segmentID, name: object.fileName, in: dir))
        }
        return segments.sorted { $0.segmentID < $1.segmentID }
    }

    private static func read(segment segmentID: UInt16, name: String, in dir: Directory) -> SegmentMessages {
        let object: SharedObject
        do {
            guard let opened = try SharedObject.openReadOnly(name, in: dir) else {
                return SegmentMessages(segmentID: segmentID, recordsMessages: false, messages: [], problem: "'\(name)' is gone")
            }
            object = opened
        } catch {
            return SegmentMessages(segmentID: segmentID, recordsMessages: false, messages: [], problem: error.description)
        }
        let heap = SegmentHeap(base: object.base)
        guard object.size >= SegmentLayout.minimumSegmentSize, heap.isUsable(objectSize: object.size) else {
            return SegmentMessages(
                segmentID: segmentID, recordsMessages: false, messages: [],
                problem: "'\(name)' is not a formatted segment of this layout (\(object.size) bytes); clean the session (shmmonitor -c) or reset it (shmmonitor -r)")
        }
        guard heap.recordsMessages else {
            return SegmentMessages(segmentID: segmentID, recordsMessages: false, messages: [], problem: nil)
        }
        var messages: [LiveMessage] = []
        var problem: String?
        for arena in 0..<heap.arenaCount {
            if let stop = heap.walkRecords(arena: arena, segmentID: segmentID, into: &messages) {
                problem = problem ?? "arena \(arena): \(stop)"
            }
        }
        return SegmentMessages(segmentID: segmentID, recordsMessages: true, messages: messages, problem: problem)
    }
}

extension SegmentHeap {
    /// Whether this segment was formatted with message records.
    var recordsMessages: Bool {
        base.load(fromByteOffset: SegmentLayout.Header.flags, as: UInt8.self) & SegmentLayout.Flags.messageRecords != 0
    }

    /// Where the record of a used block lies: the last 32 bytes of its chunk.
    @inline(__always) private func recordOffset(payload: Int) -> (offset: Int, delta: Int) {
        let delta = Int(u32(payload - SegmentLayout.Block.headerSize + SegmentLayout.Block.chunkDelta))
        let chunk = payload - delta
        return (chunk + Int(truncatingIfNeeded: u64(chunk) & ~SegmentLayout.Chunk.usedBit) - SegmentLayout.Record.size, delta)
    }

    /// Writes the record of a block this process holds (its chunk has 32 bytes beyond `size`).
    /// - Parameter createdAt: nanoseconds since the epoch; nil = now.
    @inline(__always) func writeRecord(payload: Int, size: Int, pid: Int32, createdAt: UInt64? = nil) {
        typealias R = SegmentLayout.Record
        let (r, delta) = recordOffset(payload: payload)
        setU32(r + R.magic, R.magicValue)
        base.storeBytes(of: pid, toByteOffset: r + R.creatorPID, as: Int32.self)
        setU64(r + R.payloadSize, UInt64(size))
        setU64(r + R.createdAt, createdAt ?? WallClock.nanoseconds())
        setU32(r + R.payloadDelta, UInt32(delta))
    }

    /// The creator and creation time in the record of a block this process holds.
    func record(payload: Int) -> (pid: Int32, createdAt: UInt64) {
        let r = recordOffset(payload: payload).offset
        return (
            base.load(fromByteOffset: r + SegmentLayout.Record.creatorPID, as: Int32.self),
            u64(r + SegmentLayout.Record.createdAt)
        )
    }

    /// Appends the live messages of one arena, walking it without its lock (the chunk sizes keep
    /// it walkable at every store, see ``SegmentLayout``) and checking every value read.
    /// - Returns: why the walk stopped early, or nil when it reached the arena's end.
    func walkRecords(arena: Int, segmentID: UInt16, into messages: inout [LiveMessage]) -> String? {
        typealias R = SegmentLayout.Record
        typealias B = SegmentLayout.Block
        let (start, end) = arenaRange(arena)
        var c = start
        while c < end {
            let word = u64(c)
            let size = Int(truncatingIfNeeded: word & ~SegmentLayout.Chunk.usedBit)
            guard size >= SegmentLayout.Chunk.minimumSize, size & 15 == 0, size <= end - c else {
                return "the chunk at offset \(c) has an impossible size (\(size)); the rest of the arena was not read"
            }
            defer { c += size }
            guard word & SegmentLayout.Chunk.usedBit != 0 else { continue }
            let r = c + size - R.size
            guard u32(r + R.magic) == R.magicValue else { continue }
            let delta = Int(u32(r + R.payloadDelta))
            let payloadSize = u64(r + R.payloadSize)
            // The payload and its header lie inside the chunk, before the record.
            guard delta >= SegmentLayout.Chunk.headerSize + B.headerSize, delta <= size - R.size, delta & 7 == 0,
                payloadSize <= UInt64(size - R.size - delta)
            else { continue }
            let h = c + delta - B.headerSize
            guard u32(h + B.magic) == B.magicValue, Int(u32(h + B.chunkDelta)) == delta,
                atomic32(h + B.refCount).load(ordering: .relaxed) > 0
            else { continue }
            messages.append(
                LiveMessage(
                    segmentID: segmentID, offset: UInt64(c + delta), size: payloadSize,
                    creatorPID: base.load(fromByteOffset: r + R.creatorPID, as: Int32.self), createdAtNanos: u64(r + R.createdAt)))
        }
        return nil
    }
}
