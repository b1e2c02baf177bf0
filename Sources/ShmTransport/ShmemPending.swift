// Phase-1 stand-in until ShmCore's SessionMemory lands: the shmem transport refuses to start.
import Logging
struct ShmPayload {}
final class ShmemState: @unchecked Sendable {
    let shmNumber: UInt64
    init(_ configuration: TransportConfiguration, logger: Logger) throws(TransportError) {
        shmNumber = 0
        if shmNumber == 0 { throw TransportError(.unsupported, "the shmem transport is not built yet; use the zeromq transport") }
    }
}
extension TransportFactory {
    func shmAllocate(size: Int, alignment: Int) throws(TransportError) -> (ShmPayload, UnsafeMutableRawPointer) {
        throw TransportError(.unsupported, "shmem not built")
    }
    func shmRetain(_ payload: ShmPayload) {}
    func shmRelease(_ payload: ShmPayload) {}
    func shmReferenceCount(_ payload: ShmPayload) -> Int { 0 }
    func shmShrink(_ payload: ShmPayload, to size: Int) -> ShmPayload { payload }
    func shmInterrupt() {}
    func shmResume() {}
}
extension Socket {
    func sendShmem(_ parts: [Message], timeout: Int) -> TransferResult { .error(TransportError(.unsupported, "shmem not built")) }
    func receiveShmem(into parts: inout [Message], single: Bool, timeout: Int) -> TransferResult {
        .error(TransportError(.unsupported, "shmem not built"))
    }
}
