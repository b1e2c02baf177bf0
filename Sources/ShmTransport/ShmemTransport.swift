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
        let code: Code = error.code == .badAlloc || error.code == .interrupted ? .badAlloc : .sharedMemory
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
            case .shm:
                guard part.factory.shm?.shmNumber == shm.shmNumber else {
                    return .error(TransportError(
                        .invalidArgument,
                        "the message belongs to session shmId \(part.factory.shmID), this socket to \(factory.shmID); make the message with a factory of the socket's session"))
                }
            case .empty: break
            }
            total += part.size
        }
        // The zmq_msg_t lives on the stack, but libzmq keeps only frames of up to 33 bytes inline
        // (max_vsm_size on 64-bit) and a frame here is at least 40 (16 + 24 per part), so
        // zmq_msg_init_size mallocs the frame's bytes once per send. The payload never moves.
        var frame = zmq_msg_t()
        let size = MetadataCodec.encodedSize(partCount: parts.count, minimumSize: factory.configuration.metadataMessageSize)
        guard zmq_msg_init_size(&frame, size) == 0 else { return .error(zmqError("allocating a metadata frame")) }
        let descriptors = parts.lazy.map { part -> BlockDescriptor in
            guard case .shm(let block) = part.storage else { return .empty }
            return BlockDescriptor(segmentID: block.segmentID, offset: block.offset, size: UInt64(part.size))
        }
        MetadataCodec.encode(
            shmID: shm.shmNumber, parts: descriptors, into: UnsafeMutableRawBufferPointer(start: zmq_msg_data(&frame), count: size))
        let result = withUnsafeMutablePointer(to: &frame) { pointer in
            sendFrames(pointer, count: 1, socket: socket, deadline: Deadline(timeoutMilliseconds: timeout))
        }
        guard case .transferred = result else { return result }
        for part in parts { part.markSent() }
        return .transferred(total)
    }

    func receiveShmem(into parts: inout [Message], single: Message?, timeout: Int) -> TransferResult {
        let socket: UnsafeMutableRawPointer
        do { socket = try open() } catch { return .error(error) }
        guard let shm = factory.shm else { preconditionFailure("receiveShmem on a \(factory.kind) socket") }
        var frame = zmq_msg_t()
        zmq_msg_init(&frame)
        defer { zmq_msg_close(&frame) }
        let result = receiveFrame(&frame, socket: socket, deadline: Deadline(timeoutMilliseconds: timeout))
        guard case .transferred(let frameSize) = result else { return result }
        if zmq_msg_more(&frame) != 0 {
            let dropped = drainMore(socket) + 1
            return .error(TransportError(
                .invalidMetadata,
                "received a ZeroMQ message of \(dropped) frames; a shmem message is one metadata frame: the peer probably uses the zeromq transport; give both peers the same transport"))
        }
        let descriptors: [BlockDescriptor]
        do {
            descriptors = try MetadataCodec.decode(
                UnsafeRawBufferPointer(start: zmq_msg_data(&frame), count: frameSize), expectedShmID: shm.shmNumber)
        } catch {
            logger.debug("refused a metadata frame", metadata: ["error": "\(error)"])
            return .error(error)
        }
        // Check every part before taking any, so a bad frame leaves nothing half-owned. A valid
        // block is exactly what its descriptor names, so the blocks are rebuilt from the descriptors.
        // A frame may name 65535 parts: duplicates are found through a table (index of the first
        // part naming each block), not by comparing every pair.
        var firstPart: [BlockKey: Int] = [:]
        if descriptors.count > 1 { firstPart.reserveCapacity(descriptors.count) }
        for (index, descriptor) in descriptors.enumerated() where !descriptor.isEmpty {
            do {
                _ = try shm.memory.validatedBlock(
                    segmentID: descriptor.segmentID, offset: descriptor.offset, size: descriptor.size)
            } catch {
                return .error(TransportError(
                    .invalidMetadata,
                    "metadata part \(index + 1) of \(descriptors.count) names no valid block (\(error.message)); the peer may use another session or transport"))
            }
            if descriptors.count > 1 {
                let key = BlockKey(segmentID: descriptor.segmentID, offset: descriptor.offset)
                if let earlier = firstPart.updateValue(index, forKey: key) {
                    return .error(TransportError(
                        .invalidMetadata,
                        "metadata parts \(earlier + 1) and \(index + 1) name the same block; a block has one owner, so the frame is corrupt"))
                }
            }
        }
        if single != nil && descriptors.count != 1 {
            for descriptor in descriptors where !descriptor.isEmpty { shm.memory.release(descriptor.block) }
            return .error(TransportError(
                .wrongPartCount,
                "received a multipart message of \(descriptors.count) parts where one message was expected; it was freed. Receive it with receive(_ parts:)"))
        }
        var total = 0
        for descriptor in descriptors {
            let target = nextTarget(single, &parts)
            if descriptor.isEmpty {
                target.install(.empty, base: nil, size: 0)
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
                    return .error(error)
                }
            }
            target.install(.shm(owned), base: address, size: Int(block.size))
            total += Int(block.size)
        }
        return .transferred(total)
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
