import CZeroMQ
import Logging
import ShmCleanup
import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A `shmem` message's payload: a block of the session's memory.
typealias ShmPayload = ShmBlock

/// The session memory of a `shmem` factory.
final class ShmemState: @unchecked Sendable {
    let memory: SessionMemory
    let shmNumber: UInt64

    init(_ configuration: TransportConfiguration, logger: Logger) throws(TransportError) {
        do {
            memory = try SessionMemory(configuration.sessionConfiguration, logger: logger)
        } catch {
            throw TransportError(.sharedMemory, "cannot attach the shared memory of session '\(configuration.session)': \(error)")
        }
        shmNumber = memory.id.number
    }

    deinit { memory.detach() }
}

extension TransportError {
    init(_ error: ShmCoreError, _ context: String) {
        let code: Code = error.code == .interrupted ? .interrupted : error.code == .badAlloc ? .badAlloc : .sharedMemory
        self.init(code, "\(context): \(error.message)", errno: error.errno)
    }
}

extension TransportFactory {
    /// The session memory of a `shmem` factory (`nil` for `zeromq`).
    public var sessionMemory: SessionMemory? { shm?.memory }

    func shmAllocate(size: Int, alignment: Int) throws(TransportError) -> (ShmPayload, UnsafeMutableRawPointer) {
        guard let shm else { preconditionFailure("shmAllocate on a \(kind) factory") }
        do {
            let block = try shm.memory.allocate(size: size, alignment: max(alignment, 16))
            return (block, shm.memory.address(of: block))
        } catch {
            throw TransportError(error, "cannot create a message of \(size) bytes (alignment \(alignment))")
        }
    }

    func shmRetain(_ payload: ShmPayload) { shm!.memory.retain(payload) }
    func shmRelease(_ payload: ShmPayload) { shm!.memory.release(payload) }
    func shmReferenceCount(_ payload: ShmPayload) -> Int { shm!.memory.referenceCount(payload) }
    func shmShrink(_ payload: ShmPayload, to size: Int) -> ShmPayload { shm!.memory.shrink(payload, to: UInt64(size)) }
    func shmInterrupt() { shm?.memory.interrupt() }
    func shmResume() { shm?.memory.resume() }
}

extension Socket {
    func sendShmem(_ parts: some RandomAccessCollection<Message>, timeout: Int) -> TransferResult {
        let socket: UnsafeMutableRawPointer
        do { socket = try open() } catch { return .error(error) }
        guard let shm = factory.shm else { preconditionFailure("sendShmem on a \(factory.kind) socket") }
        var total = 0
        for part in parts {
            switch part.storage {
            case .heap:
                preconditionFailure("a zeromq message passed the transport check of a shmem socket")
            case .shm, .region:
                guard part.factory.shm?.shmNumber == shm.shmNumber else {
                    return .error(TransportError(
                        .invalidArgument,
                        "the message belongs to session shmId \(part.factory.shmID), this socket to \(factory.shmID); make the message with a factory of the socket's session"))
                }
            case .empty: break
            }
            total += part.size
        }
        // One 32-byte frame per part: libzmq keeps frames of up to 33 bytes inside the zmq_msg_t
        // (max_vsm_size on 64-bit), so with the frames on the stack a send allocates nothing.
        // The payload never moves.
        let minimumSize = factory.configuration.metadataMessageSize
        let count = parts.count
        return withUnsafeTemporaryAllocation(of: zmq_msg_t.self, capacity: count) { buffer in
            let frames = buffer.baseAddress!
            for (index, part) in parts.enumerated() {
                let descriptor: BlockDescriptor
                switch part.storage {
                case .shm(let block):
                    descriptor = BlockDescriptor(segmentID: block.segmentID, offset: block.offset, size: UInt64(part.size))
                case .region(let payload):
                    descriptor = BlockDescriptor(
                        regionID: payload.region.id, offset: payload.offset, size: UInt64(part.size), hint: payload.hint,
                        counter: payload.counter)
                case .empty, .heap:
                    descriptor = .empty
                }
                let size = MetadataCodec.encodedSize(minimumSize: minimumSize, inRegion: descriptor.inRegion)
                guard zmq_msg_init_size(frames + index, size) == 0 else {
                    for built in 0..<index { zmq_msg_close(frames + built) }
                    return .error(zmqError("allocating a metadata frame"))
                }
                MetadataCodec.encode(
                    shmID: shm.shmNumber, partCount: count, part: descriptor,
                    into: UnsafeMutableRawBufferPointer(start: zmq_msg_data(frames + index), count: size))
            }
            let result = sendFrames(frames, count: count, socket: socket, deadline: Deadline(timeoutMilliseconds: timeout))
            guard case .transferred = result else { return result }
            for part in parts { part.markSent() }
            return .transferred(total)
        }
    }

    /// Receives every frame of one ZeroMQ message into `received` (the socket's reused buffer),
    /// decoding each; the whole message is always read, so a refused one leaves nothing behind.
    private func receiveMetadata(_ socket: UnsafeMutableRawPointer, shmNumber: UInt64, timeout: Int) -> TransferResult {
        received.removeAll(keepingCapacity: true)
        var frame = zmq_msg_t()
        zmq_msg_init(&frame)
        defer { zmq_msg_close(&frame) }
        let first = receiveFrame(&frame, socket: socket, deadline: Deadline(timeoutMilliseconds: timeout))
        guard case .transferred = first else { return first }
        var refusal: TransportError?
        var count = 0
        var frames = 0
        while true {
            frames += 1
            let bytes = UnsafeRawBufferPointer(start: zmq_msg_data(&frame), count: zmq_msg_size(&frame))
            if refusal == nil {
                do {
                    let (partCount, part) = try MetadataCodec.decode(bytes, expectedShmID: shmNumber)
                    if frames == 1 { count = partCount }
                    if partCount != count {
                        refusal = TransportError(
                            .invalidMetadata,
                            "metadata frame \(frames) says its message has \(partCount) parts, frame 1 said \(count); the frames are corrupt")
                    } else if frames > count {
                        refusal = TransportError(
                            .invalidMetadata, "metadata message has more frames than the \(count) parts it names; the frames are corrupt")
                    } else {
                        received.append(part)
                    }
                } catch {
                    refusal = frames == 1 ? error : TransportError(.invalidMetadata, "metadata frame \(frames): \(error.message)")
                }
            }
            guard zmq_msg_more(&frame) != 0 else { break }
            // The rest of a multipart message is already here: ZeroMQ delivers it whole.
            let next = receiveFrame(&frame, socket: socket, deadline: Deadline(timeoutMilliseconds: -1))
            guard case .transferred = next else { return next }
        }
        if let refusal { return .error(refusal) }
        if frames != count {
            return .error(TransportError(
                .invalidMetadata,
                "metadata message has \(frames) frames but names \(count) parts; it was truncated or the peer uses another transport"))
        }
        return .transferred(0)
    }

    func receiveShmem(into parts: inout [Message], single: Message?, timeout: Int, reuseParts: Bool) -> TransferResult {
        let socket: UnsafeMutableRawPointer
        do { socket = try open() } catch { return .error(error) }
        guard let shm = factory.shm else { preconditionFailure("receiveShmem on a \(factory.kind) socket") }
        let frames = receiveMetadata(socket, shmNumber: shm.shmNumber, timeout: timeout)
        guard case .transferred = frames else {
            if case .error(let error) = frames { logger.debug("refused metadata", metadata: ["error": "\(error)"]) }
            return frames
        }
        let count = received.count
        // Check every part before taking any, so a bad message leaves nothing half-owned. A valid
        // block is exactly what its descriptor names, so the blocks are rebuilt from the descriptors.
        receivedRegions.removeAll(keepingCapacity: true)
        for index in 0..<count where !received[index].isEmpty {
            let descriptor = received[index]
            do {
                if descriptor.inRegion {
                    // Kept for the install below: the region is looked up once, and a controller
                    // destroying it meanwhile cannot make the install fail.
                    receivedRegions.append(try shm.memory.validatedRegionBlock(
                        regionID: descriptor.regionID, offset: descriptor.offset, size: descriptor.size, counter: descriptor.counter))
                } else {
                    _ = try shm.memory.validatedBlock(segmentID: descriptor.segmentID, offset: descriptor.offset, size: descriptor.size)
                }
            } catch {
                return .error(TransportError(
                    .invalidMetadata,
                    "metadata part \(index + 1) of \(count) names no valid block (\(error.message)); the peer may use another session or transport"))
            }
        }
        if count > 1, let (earlier, later) = firstDuplicate() {
            return .error(TransportError(
                .invalidMetadata,
                "metadata parts \(earlier + 1) and \(later + 1) name the same block; a block has one owner, so the frame is corrupt"))
        }
        if single != nil && count != 1 {
            releaseReceived(from: 0, shm.memory)
            return .error(TransportError(
                .wrongPartCount,
                "received a multipart message of \(count) parts where one message was expected; it was freed. Receive it with receive(_ parts:)"))
        }
        if reuseParts { trimParts(&parts, to: count) }
        var total = 0
        var nextRegion = 0
        for index in 0..<count {
            let descriptor = received[index]
            let target = reuseParts ? reusedTarget(&parts, index) : nextTarget(single, &parts)
            if descriptor.isEmpty {
                target.install(.empty, base: nil, size: 0)
                continue
            }
            if descriptor.inRegion {
                let region = receivedRegions[nextRegion]
                nextRegion += 1
                let payload = RegionPayload(
                    region: region, memory: shm.memory, offset: descriptor.offset, hint: descriptor.hint, counter: descriptor.counter)
                target.install(.region(payload), base: region.base + Int(descriptor.offset), size: Int(descriptor.size))
                total += Int(descriptor.size)
                continue
            }
            let block = descriptor.block
            var address = shm.memory.address(of: block)
            var owned = block
            if target.alignment > 16 && Int(bitPattern: address) % target.alignment != 0 {
                // Rare: the receiver asked for a stronger alignment than the sender used.
                do {
                    let (aligned, alignedAddress) = try factory.shmAllocate(size: Int(block.size), alignment: target.alignment)
                    alignedAddress.copyMemory(from: address, byteCount: Int(block.size))
                    shm.memory.release(block)
                    owned = aligned
                    address = alignedAddress
                } catch {
                    shm.memory.release(block)
                    releaseReceived(from: index + 1, shm.memory)
                    return .error(error)
                }
            }
            target.install(.shm(owned), base: address, size: Int(block.size))
            total += Int(block.size)
        }
        return .transferred(total)
    }

    /// Lets go of the validated parts from `first` on that are not handed to the caller.
    private func releaseReceived(from first: Int, _ memory: SessionMemory) {
        var nextRegion = received[..<first].lazy.filter { !$0.isEmpty && $0.inRegion }.count
        for descriptor in received[first...] where !descriptor.isEmpty {
            if descriptor.inRegion {
                memory.releaseRegionBlock(
                    receivedRegions[nextRegion], counter: descriptor.counter,
                    RegionRelease(offset: descriptor.offset, size: descriptor.size, hint: descriptor.hint))
                nextRegion += 1
            } else {
                memory.release(descriptor.block)
            }
        }
    }

    /// The first two parts of `received` that name one block, or nil. Up to 64 parts are compared
    /// pairwise (no allocation); a bigger message goes through a table, so a hostile message of
    /// 65535 parts costs linear time, not quadratic.
    private func firstDuplicate() -> (Int, Int)? {
        let count = received.count
        if count <= 64 {
            for later in 1..<count where !received[later].isEmpty && !received[later].inRegion {
                for earlier in 0..<later where !received[earlier].isEmpty && !received[earlier].inRegion
                    && received[earlier].segmentID == received[later].segmentID && received[earlier].offset == received[later].offset
                {
                    return (earlier, later)
                }
            }
            return nil
        }
        var firstPart: [BlockKey: Int] = [:]
        firstPart.reserveCapacity(count)
        for (index, descriptor) in received.enumerated() where !descriptor.isEmpty && !descriptor.inRegion {
            if let earlier = firstPart.updateValue(index, forKey: BlockKey(segmentID: descriptor.segmentID, offset: descriptor.offset)) {
                return (earlier, index)
            }
        }
        return nil
    }
}

/// What identifies a block in a metadata frame (two parts with the same key are one block).
private struct BlockKey: Hashable {
    let segmentID: UInt16
    let offset: UInt64
}

extension BlockDescriptor {
    /// The block a (validated, non-empty) descriptor names.
    var block: ShmBlock { ShmBlock(segmentID: segmentID, offset: offset, size: size) }
}

extension Message {
    /// The shared-memory block holding the payload (`shmem` messages only; `nil` otherwise).
    /// Its segment id and offset are what the metadata frame carries to the receiver.
    public var shmBlock: ShmBlock? {
        if case .shm(let block) = storage { return block }
        return nil
    }
}
