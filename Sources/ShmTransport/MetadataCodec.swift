import ShmCleanup

/// One message as a metadata frame names it: where its payload lies in the session's memory.
public struct BlockDescriptor: Sendable, Hashable {
    /// The managed segment holding the payload.
    public var segmentID: UInt16
    /// The unmanaged region holding the payload; 0 = a managed segment (the only kind this
    /// transport sends today).
    public var regionID: UInt16
    /// Offset of the payload's first byte within its segment.
    public var offset: UInt64
    /// Payload size in bytes.
    public var size: UInt64
    /// An empty message: no payload, offset and size 0.
    public var isEmpty: Bool

    /// Describes a payload.
    public init(segmentID: UInt16, regionID: UInt16 = 0, offset: UInt64, size: UInt64, isEmpty: Bool = false) {
        self.segmentID = segmentID
        self.regionID = regionID
        self.offset = offset
        self.size = size
        self.isEmpty = isEmpty
    }

    /// The descriptor of an empty message.
    public static let empty = BlockDescriptor(segmentID: 0, offset: 0, size: 0, isEmpty: true)
}

/// The `shmem` transport's metadata frame: the one ZeroMQ frame that travels per message (or per
/// multipart message) while the payload stays in shared memory.
///
/// ```
/// offset  size  field
///      0     4  magic "SHMT" (0x544D4853, little-endian)
///      4     2  version (1)
///      6     2  part count n (1 ... 65535)
///      8     8  shmId of the sender's session (as a number)
///     16  24·n  parts, each:
///               +0  u64 payload offset in the segment   +16 u16 segment id
///               +8  u64 payload size                     +18 u16 region id (0 = managed)
///                                                        +20 u16 flags (bit 0 = empty)
///                                                        +22 u16 reserved (0)
///  16+24n  ...  zero padding up to the configured metadata message size
/// ```
/// All integers are little-endian. The encoding is canonical: a frame is accepted only if
/// re-encoding what was decoded gives the same bytes, so any corruption is refused.
/// FairMQ's frame (40-byte `MetaHeader`s) differs; the magic makes a mix-up an error, not a crash.
public enum MetadataCodec {
    /// "SHMT" read as a little-endian `UInt32`.
    public static let magic: UInt32 = 0x544D_4853
    /// The version this build writes and reads.
    public static let version: UInt16 = 1
    /// Size of the frame header.
    public static let headerSize = 16
    /// Size of one part record.
    public static let partSize = 24
    /// Most parts a frame can carry.
    public static let maximumParts = Int(UInt16.max)

    static let flagEmpty: UInt16 = 1

    /// The frame size for `partCount` parts, padded to at least `minimumSize`.
    public static func encodedSize(partCount: Int, minimumSize: Int = 0) -> Int {
        max(headerSize + partSize * partCount, minimumSize)
    }

    /// Writes a frame for `parts` into `buffer`, which must be exactly
    /// `encodedSize(partCount: parts.count, minimumSize: ...)` bytes long.
    public static func encode(
        shmID: UInt64, parts: some Collection<BlockDescriptor>, into buffer: UnsafeMutableRawBufferPointer
    ) {
        precondition(!parts.isEmpty && parts.count <= maximumParts)
        precondition(buffer.count >= headerSize + partSize * parts.count)
        buffer.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt16.self)
        buffer.storeBytes(of: UInt16(parts.count).littleEndian, toByteOffset: 6, as: UInt16.self)
        buffer.storeBytes(of: shmID.littleEndian, toByteOffset: 8, as: UInt64.self)
        var at = headerSize
        for part in parts {
            buffer.storeBytes(of: (part.isEmpty ? 0 : part.offset).littleEndian, toByteOffset: at, as: UInt64.self)
            buffer.storeBytes(of: (part.isEmpty ? 0 : part.size).littleEndian, toByteOffset: at + 8, as: UInt64.self)
            buffer.storeBytes(of: (part.isEmpty ? 0 : part.segmentID).littleEndian, toByteOffset: at + 16, as: UInt16.self)
            buffer.storeBytes(of: (part.isEmpty ? 0 : part.regionID).littleEndian, toByteOffset: at + 18, as: UInt16.self)
            buffer.storeBytes(of: (part.isEmpty ? flagEmpty : 0).littleEndian, toByteOffset: at + 20, as: UInt16.self)
            buffer.storeBytes(of: UInt16(0), toByteOffset: at + 22, as: UInt16.self)
            at += partSize
        }
        if at < buffer.count {
            UnsafeMutableRawBufferPointer(rebasing: buffer[at...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// Encodes into a new array (for tests and tools; the transport writes into ZeroMQ's buffer).
    public static func encode(shmID: UInt64, parts: [BlockDescriptor], minimumSize: Int = 0) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: encodedSize(partCount: parts.count, minimumSize: minimumSize))
        bytes.withUnsafeMutableBytes { encode(shmID: shmID, parts: parts, into: $0) }
        return bytes
    }

    /// Checks a received frame and returns the parts it names. Only the frame's own bytes are
    /// read; whether the parts lie inside the session's memory is checked next, by the transport.
    /// - Throws: ``TransportError/Code/invalidMetadata`` naming the problem (size, magic, version,
    ///   session, part fields, padding), with a hint when peers probably use different transports.
    public static func decode(_ frame: UnsafeRawBufferPointer, expectedShmID: UInt64) throws(TransportError)
        -> [BlockDescriptor]
    {
        let mismatch = "the peer probably uses the zeromq transport or another program; give both peers the same transport"
        guard frame.count >= headerSize else {
            throw invalid("metadata frame of \(frame.count) bytes is shorter than the \(headerSize)-byte header; \(mismatch)")
        }
        let magicRead = frame.littleEndian(UInt32.self, at: 0)
        guard magicRead == magic else {
            throw invalid(
                "metadata frame does not start with the shmem magic (found 0x\(String(magicRead, radix: 16))); \(mismatch)")
        }
        let versionRead = frame.littleEndian(UInt16.self, at: 4)
        guard versionRead == version else {
            throw invalid(
                "metadata frame has version \(versionRead), this build reads version \(version); run the same ShmTransport version on both peers")
        }
        let count = Int(frame.littleEndian(UInt16.self, at: 6))
        guard count >= 1 else { throw invalid("metadata frame names 0 parts; a message has at least one part") }
        let needed = headerSize + partSize * count
        guard frame.count >= needed else {
            throw invalid(
                "metadata frame of \(frame.count) bytes is too short for its \(count) parts (needs \(needed)); the frame was truncated or \(mismatch)")
        }
        let shmID = frame.littleEndian(UInt64.self, at: 8)
        guard shmID == expectedShmID else {
            throw invalid(
                "metadata frame comes from session shmId \(ShmID(number: shmID)), this socket's session is \(ShmID(number: expectedShmID)); give both peers the same session (SHMTRANSPORT_SESSION) and shm directory")
        }
        for index in needed..<frame.count where frame[index] != 0 {
            throw invalid("metadata frame has a non-zero byte at \(index) in its padding; the frame is corrupt or \(mismatch)")
        }
        var parts: [BlockDescriptor] = []
        parts.reserveCapacity(count)
        for index in 0..<count {
            let at = headerSize + partSize * index
            let offset = frame.littleEndian(UInt64.self, at: at)
            let size = frame.littleEndian(UInt64.self, at: at + 8)
            let segment = frame.littleEndian(UInt16.self, at: at + 16)
            let region = frame.littleEndian(UInt16.self, at: at + 18)
            let flags = frame.littleEndian(UInt16.self, at: at + 20)
            let reserved = frame.littleEndian(UInt16.self, at: at + 22)
            // Built only for an error: this loop runs for every received message.
            func what() -> String { "part \(index + 1) of \(count)" }
            guard reserved == 0 else { throw invalid("metadata \(what()) has a non-zero reserved field; the frame is corrupt or \(mismatch)") }
            guard flags & ~flagEmpty == 0 else {
                throw invalid("metadata \(what()) has unknown flags 0x\(String(flags, radix: 16)); run the same ShmTransport version on both peers")
            }
            if flags & flagEmpty != 0 {
                guard offset == 0, size == 0, segment == 0, region == 0 else {
                    throw invalid("metadata \(what()) is marked empty but names a payload; the frame is corrupt")
                }
                parts.append(.empty)
                continue
            }
            guard region == 0 else {
                throw invalid("metadata \(what()) names unmanaged region \(region), which this session does not have; unmanaged regions are not supported by this transport")
            }
            guard size > 0 else {
                throw invalid("metadata \(what()) names a payload of 0 bytes without the empty flag; the frame is corrupt")
            }
            guard size <= UInt64(Int.max), offset <= UInt64(Int.max) - size else {
                throw invalid("metadata \(what()) has offset \(offset) and size \(size), which overflow; the frame is corrupt")
            }
            parts.append(BlockDescriptor(segmentID: segment, regionID: 0, offset: offset, size: size))
        }
        return parts
    }

    static func invalid(_ message: String) -> TransportError { TransportError(.invalidMetadata, message) }
}

extension UnsafeRawBufferPointer {
    /// The little-endian integer at `offset` (any alignment).
    fileprivate func littleEndian<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
