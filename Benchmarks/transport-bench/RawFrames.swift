import ArgumentParser
import CZeroMQ

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The yardstick: plain libzmq PUSH/PULL of small frames, with nothing of ShmTransport around
/// them. A shmem message is exactly such a frame (its metadata), so this rate bounds what the
/// shmem transport can reach while metadata travels over ZeroMQ.
final class RawZmqSocket {
    let context: UnsafeMutableRawPointer
    let socket: UnsafeMutableRawPointer

    init(type: Int32, highWaterMark: Int) throws {
        guard let context = zmq_ctx_new() else { throw ValidationError("zmq_ctx_new failed") }
        guard let socket = zmq_socket(context, type) else { throw ValidationError("zmq_socket failed: \(errno)") }
        self.context = context
        self.socket = socket
        var hwm = Int32(highWaterMark)
        _ = zmq_setsockopt(socket, type == ZMQ_PUSH ? ZMQ_SNDHWM : ZMQ_RCVHWM, &hwm, MemoryLayout<Int32>.size)
        var linger: Int32 = 5000
        _ = zmq_setsockopt(socket, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
    }

    deinit {
        zmq_close(socket)
        zmq_ctx_term(context)
    }
}

struct FrameSampler: Sampler {
    let zmq: RawZmqSocket
    let address: String
    let frameSize: Int

    init(bind: String, frameSize: Int, highWaterMark: Int) throws {
        zmq = try RawZmqSocket(type: ZMQ_PUSH, highWaterMark: highWaterMark)
        guard zmq_bind(zmq.socket, bind) == 0 else { throw ValidationError("zmq_bind \(bind) failed: \(zmq_errno())") }
        var buffer = [CChar](repeating: 0, count: 512)
        var length = buffer.count
        _ = zmq_getsockopt(zmq.socket, ZMQ_LAST_ENDPOINT, &buffer, &length)
        address = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.frameSize = frameSize
    }

    func run(warmup: Double, seconds: Double) throws -> (messages: UInt64, allocations: Allocations) {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: frameSize, alignment: 16)
        defer { buffer.deallocate() }
        memset(buffer, 0, frameSize)
        let socket = zmq.socket
        let size = frameSize
        return try loop(warmup: warmup, seconds: seconds) { sequence in
            buffer.storeBytes(of: sequence, as: UInt64.self)
            guard zmq_send(socket, buffer, size, 0) == Int32(size) else { throw ValidationError("zmq_send failed: \(zmq_errno())") }
        }
    }
}

struct FrameReceiver: Receiver {
    let zmq: RawZmqSocket
    let buffer: UnsafeMutableRawPointer
    let frameSize: Int

    init(connect: String, frameSize: Int, highWaterMark: Int) throws {
        zmq = try RawZmqSocket(type: ZMQ_PULL, highWaterMark: highWaterMark)
        guard zmq_connect(zmq.socket, connect) == 0 else { throw ValidationError("zmq_connect \(connect) failed: \(zmq_errno())") }
        buffer = .allocate(byteCount: frameSize, alignment: 16)
        self.frameSize = frameSize
    }

    func receive() throws -> UInt64 {
        guard zmq_recv(zmq.socket, buffer, frameSize, 0) == Int32(frameSize) else {
            throw ValidationError("zmq_recv failed: \(zmq_errno())")
        }
        return buffer.load(as: UInt64.self)
    }
}
