import ShmCleanup
import ShmCore

/// One message as a metadata frame names it: where its payload lies in the session's memory.
public struct BlockDescriptor: Sendable, Hashable {
    /// The managed segment holding the payload (for a region part: the segment holding its
    /// reference counter when that lives in a managed segment, else 0).
    public var segmentID: UInt16
    /// The unmanaged region holding the payload (when ``inRegion``).
    public var regionID: UInt16
    /// Offset of the payload's first byte within its segment or region.
    public var offset: UInt64
    /// Payload size in bytes.
    public var size: UInt64
    /// An empty message: no payload, offset and size 0.
    public var isEmpty: Bool
    /// Whether the payload lies in an unmanaged region rather than a managed segment.
    public var inRegion: Bool
    /// The user's hint of a region message (returned in the release callback).
    public var hint: UInt64
    /// Where the reference count of a copied region message lives.
    public var counter: RegionCounter

    /// Describes a payload in a managed segment.
    public init(segmentID: UInt16, offset: UInt64, size: UInt64, isEmpty: Bool = false) {
        self.segmentID = segmentID
        self.regionID = 0
        self.offset = offset
        self.size = size
        self.isEmpty = isEmpty
        self.inRegion = false
        self.hint = 0
        self.counter = .none
    }

    /// Describes a payload in an unmanaged region.
    public init(regionID: UInt16, offset: UInt64, size: UInt64, hint: UInt64, counter: RegionCounter) {
        if case .managed(let block) = counter { self.segmentID = block.segmentID } else { self.segmentID = 0 }
        self.regionID = regionID
        self.offset = offset
        self.size = size
        self.isEmpty = false
        self.inRegion = true
        self.hint = hint
        self.counter = counter
    }

    /// The descriptor of an empty message.
    public static let empty = BlockDescriptor(segmentID: 0, offset: 0, size: 0, isEmpty: true)
}

/// The `shmem` transport's metadata frames: what travels over ZeroMQ while the payload stays in
/// shared memory. A message of n parts is one ZeroMQ message of n frames, one per part. A part in
/// a managed segment is 32 bytes (unless padded):
///
/// ```
/// offset  size  field
///      0     4  magic "SHMT" (0x544D4853, little-endian)
///      4     1  version (2)
///      5     1  flags: bit 0 a part in an unmanaged region, bit 1 its counter in a managed segment
///      6     2  part count n of the message (1 ... 65535), the same in every frame
///      8     4  shmId of the sender's session (its 32 bits as a number)
///     12     8  payload offset in the segment (or region)
///     20     8  payload size (0 only for an empty part, whose fields are all 0)
///     28     2  segment id (a region part: the segment of its counter when bit 1, else 0)
///     30     2  region id (0 for a managed part)
///     32   ...  zero padding up to the configured metadata message size
/// ```
/// A part in an unmanaged region (flags bit 0) has 16 more bytes:
/// ```
///     32     8  hint             the user's hint, returned by the release callback
///     40     8  counter          UInt64.max: never copied; else the index of its counter in the
///                                region's pool `_rrc_`, or (bit 1) the counter's block offset
///     48   ...  zero padding up to the configured metadata message size
/// ```
/// All integers are little-endian. 32 bytes is below libzmq's 33-byte inline limit, so a managed
/// frame costs no heap allocation in libzmq on either side. The encoding is canonical: a frame is
/// accepted only if re-encoding what was decoded gives the same bytes, so any corruption is
/// refused. FairMQ's frames (40-byte `MetaHeader`s) differ; the magic makes a mix-up an error.
public enum MetadataCodec {
    /// "SHMT" read as a little-endian `UInt32`.
    public static let magic: UInt32 = 0x544D_4853
    /// The version this build writes and reads (1 was one frame of 16 + 24·n bytes).
    public static let version: UInt8 = 2
    /// Size of a managed part's frame without padding.
    public static let frameSize = 32
    /// Size of a region part's frame without padding.
    public static let regionFrameSize = 48
    /// Most parts a message can carry.
    public static let maximumParts = Int(UInt16.max)

    static let regionFlag: UInt8 = 1
    static let managedCounterFlag: UInt8 = 2
    static let noCounter = UInt64.max

    /// The size of one frame, padded to at least `minimumSize`.
    public static func encodedSize(minimumSize: Int = 0, inRegion: Bool = false) -> Int {
        max(inRegion ? regionFrameSize : frameSize, minimumSize)
    }

    /// Writes the frame of one part of a message of `partCount` parts into `buffer` (at least
    /// ``encodedSize(minimumSize:inRegion:)`` bytes; the rest is zeroed as padding).
    @inline(__always)
    public static func encode(shmID: UInt64, partCount: Int, part: BlockDescriptor, into buffer: UnsafeMutableRawBufferPointer) {
        let region = part.inRegion && !part.isEmpty
        let used = region ? regionFrameSize : frameSize
        precondition(partCount >= 1 && partCount <= maximumParts && buffer.count >= used)
        var flags: UInt8 = 0
        var counter = noCounter
        if region {
            flags = regionFlag
            switch part.counter {
            case .none: break
            case .pool(let index): counter = UInt64(index)
            case .managed(let block):
                flags |= managedCounterFlag
                counter = block.offset
            }
        }
        buffer.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: version, toByteOffset: 4, as: UInt8.self)
        buffer.storeBytes(of: flags, toByteOffset: 5, as: UInt8.self)
        buffer.storeBytes(of: UInt16(partCount).littleEndian, toByteOffset: 6, as: UInt16.self)
        buffer.storeBytes(of: UInt32(truncatingIfNeeded: shmID).littleEndian, toByteOffset: 8, as: UInt32.self)
        let empty = part.isEmpty
        buffer.storeBytes(of: (empty ? 0 : part.offset).littleEndian, toByteOffset: 12, as: UInt64.self)
        buffer.storeBytes(of: (empty ? 0 : part.size).littleEndian, toByteOffset: 20, as: UInt64.self)
        buffer.storeBytes(of: (empty ? 0 : part.segmentID).littleEndian, toByteOffset: 28, as: UInt16.self)
        buffer.storeBytes(of: (region ? part.regionID : 0).littleEndian, toByteOffset: 30, as: UInt16.self)
        if region {
            buffer.storeBytes(of: part.hint.littleEndian, toByteOffset: 32, as: UInt64.self)
            buffer.storeBytes(of: counter.littleEndian, toByteOffset: 40, as: UInt64.self)
        }
        if buffer.count > used {
            UnsafeMutableRawBufferPointer(rebasing: buffer[used...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// The frames of a whole message, as arrays (for tests and tools; the transport writes into
    /// ZeroMQ's buffers).
    public static func encode(shmID: UInt64, parts: [BlockDescriptor], minimumSize: Int = 0) -> [[UInt8]] {
        parts.map { part in
            var bytes = [UInt8](repeating: 0, count: encodedSize(minimumSize: minimumSize, inRegion: part.inRegion && !part.isEmpty))
            bytes.withUnsafeMutableBytes { encode(shmID: shmID, partCount: parts.count, part: part, into: $0) }
            return bytes
        }
    }

    /// Checks one received frame and returns the part count of its message and the part it
    /// names. Only the frame's own bytes are read; whether the part lies inside the session's
    /// memory is checked next, by the transport.
    /// - Throws: ``TransportError/Code/invalidMetadata`` naming the problem (size, magic, version,
    ///   session, fields, padding), with a hint when the peer probably uses another transport.
    @inline(__always)
    public static func decode(_ frame: UnsafeRawBufferPointer, expectedShmID: UInt64) throws(TransportError)
        -> (partCount: Int, part: BlockDescriptor)
    {
        guard frame.count >= frameSize, frame.littleEndian(UInt32.self, at: 0) == magic,
            frame.load(fromByteOffset: 4, as: UInt8.self) == version
        else { throw refusedHeader(frame) }
        let flags = frame.load(fromByteOffset: 5, as: UInt8.self)
        if flags != 0 { return try decodeRegion(frame, flags: flags, expectedShmID: expectedShmID) }
        let f = Fields(frame)
        guard f.count >= 1, f.shmID == UInt32(truncatingIfNeeded: expectedShmID), f.region == 0,
            f.size > 0 || (f.offset == 0 && f.segment == 0), f.size <= UInt64(Int.max), f.offset <= UInt64(Int.max) - f.size,
            frame.count == frameSize || isZero(UnsafeRawBufferPointer(rebasing: frame[frameSize...]))
        else { throw refusedFields(frame, f, expectedShmID: expectedShmID) }
        let part = f.size == 0 ? BlockDescriptor.empty : BlockDescriptor(segmentID: f.segment, offset: f.offset, size: f.size)
        return (f.count, part)
    }

    /// A region part's frame (flags not 0).
    @inline(never)
    static func decodeRegion(_ frame: UnsafeRawBufferPointer, flags: UInt8, expectedShmID: UInt64) throws(TransportError)
        -> (partCount: Int, part: BlockDescriptor)
    {
        guard flags & ~(regionFlag | managedCounterFlag) == 0, flags & regionFlag != 0 else { throw refusedHeader(frame) }
        guard frame.count >= regionFrameSize else {
            throw invalid(
                "metadata frame of a region part has \(frame.count) bytes, fewer than the \(regionFrameSize) it needs; the frame was truncated or \(mismatch)")
        }
        let f = Fields(frame)
        if f.count < 1 { throw invalid("metadata frame names 0 parts; a message has at least one part") }
        if f.shmID != UInt32(truncatingIfNeeded: expectedShmID) { throw refusedFields(frame, f, expectedShmID: expectedShmID) }
        guard f.size <= UInt64(Int.max), f.offset <= UInt64(Int.max) - f.size else {
            throw invalid("metadata frame has offset \(f.offset) and size \(f.size), which overflow; the frame is corrupt")
        }
        let hint = frame.littleEndian(UInt64.self, at: 32)
        let raw = frame.littleEndian(UInt64.self, at: 40)
        let counter: RegionCounter
        if flags & managedCounterFlag != 0 {
            guard raw <= UInt64(Int.max) - 8 else { throw invalid("metadata frame names a counter at offset \(raw) in segment \(f.segment); the frame is corrupt") }
            counter = .managed(ShmBlock(segmentID: f.segment, offset: raw, size: 8))
        } else {
            guard f.segment == 0 else { throw invalid("metadata frame of a region part names segment \(f.segment) without a counter there; the frame is corrupt") }
            if raw == noCounter {
                counter = .none
            } else {
                guard raw <= UInt64(UInt32.max) else { throw invalid("metadata frame names reference counter \(raw), beyond any pool; the frame is corrupt") }
                counter = .pool(UInt32(raw))
            }
        }
        guard frame.count == regionFrameSize || isZero(UnsafeRawBufferPointer(rebasing: frame[regionFrameSize...])) else {
            let at = (regionFrameSize..<frame.count).first { frame[$0] != 0 } ?? frame.count
            throw invalid("metadata frame has a non-zero byte at \(at) in its padding; the frame is corrupt or \(mismatch)")
        }
        return (f.count, BlockDescriptor(regionID: f.region, offset: f.offset, size: f.size, hint: hint, counter: counter))
    }

    /// The fields after the magic, version and flags of a frame of at least ``frameSize`` bytes.
    struct Fields {
        let count: Int
        let shmID: UInt32
        let offset: UInt64
        let size: UInt64
        let segment: UInt16
        let region: UInt16

        @inline(__always) init(_ frame: UnsafeRawBufferPointer) {
            count = Int(frame.littleEndian(UInt16.self, at: 6))
            shmID = frame.littleEndian(UInt32.self, at: 8)
            offset = frame.littleEndian(UInt64.self, at: 12)
            size = frame.littleEndian(UInt64.self, at: 20)
            segment = frame.littleEndian(UInt16.self, at: 28)
            region = frame.littleEndian(UInt16.self, at: 30)
        }
    }

    @inline(__always) static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.allSatisfy { $0 == 0 }
    }

    static let mismatch = "the peer probably uses the zeromq transport or another program; give both peers the same transport"

    /// Why the header of a frame was refused (built only for a refused frame).
    @inline(never) static func refusedHeader(_ frame: UnsafeRawBufferPointer) -> TransportError {
        guard frame.count >= 4, frame.littleEndian(UInt32.self, at: 0) == magic else {
            if frame.count < 4 { return invalid("metadata frame of \(frame.count) bytes is shorter than the \(frameSize)-byte frame; \(mismatch)") }
            return invalid(
                "metadata frame does not start with the shmem magic (found 0x\(String(frame.littleEndian(UInt32.self, at: 0), radix: 16))); \(mismatch)")
        }
        if frame.count >= 6 {
            let versionRead = frame.load(fromByteOffset: 4, as: UInt8.self)
            guard versionRead == version else {
                return invalid(
                    "metadata frame has version \(versionRead), this build reads version \(version); run the same ShmTransport version on both peers")
            }
            let flags = frame.load(fromByteOffset: 5, as: UInt8.self)
            guard flags & ~(regionFlag | managedCounterFlag) == 0, flags == 0 || flags & regionFlag != 0 else {
                return invalid("metadata frame has unknown flags 0x\(String(flags, radix: 16)); run the same ShmTransport version on both peers")
            }
        }
        return invalid("metadata frame of \(frame.count) bytes is shorter than the \(frameSize)-byte frame; the frame was truncated or \(mismatch)")
    }

    /// Why the fields of a frame with a good header were refused.
    @inline(never) static func refusedFields(_ frame: UnsafeRawBufferPointer, _ f: Fields, expectedShmID: UInt64) -> TransportError {
        let (count, shmID, offset, size, segment, region) = (f.count, f.shmID, f.offset, f.size, f.segment, f.region)
        if count < 1 { return invalid("metadata frame names 0 parts; a message has at least one part") }
        if shmID != UInt32(truncatingIfNeeded: expectedShmID) {
            return invalid(
                "metadata frame comes from session shmId \(ShmID(number: UInt64(shmID))), this socket's session is \(ShmID(number: expectedShmID)); give both peers the same session (SHMTRANSPORT_SESSION) and shm directory")
        }
        if region != 0 {
            return invalid("metadata frame of a managed part names region \(region); a region part sets flag bit 0, so the frame is corrupt")
        }
        if size == 0 && (offset != 0 || segment != 0) { return invalid("metadata frame names a payload of 0 bytes at offset \(offset) in segment \(segment); an empty part has every field 0, so the frame is corrupt") }
        if size > UInt64(Int.max) || offset > UInt64(Int.max) - size {
            return invalid("metadata frame has offset \(offset) and size \(size), which overflow; the frame is corrupt")
        }
        let at = (frameSize..<frame.count).first { frame[$0] != 0 } ?? frame.count
        return invalid("metadata frame has a non-zero byte at \(at) in its padding; the frame is corrupt or \(mismatch)")
    }

    static func invalid(_ message: String) -> TransportError { TransportError(.invalidMetadata, message) }
}

extension UnsafeRawBufferPointer {
    /// The little-endian integer at `offset` (any alignment).
    @inline(__always)
    fileprivate func littleEndian<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
