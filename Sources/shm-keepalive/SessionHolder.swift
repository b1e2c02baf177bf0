import Logging
import ShmCleanup
import ShmCore
import SystemPackage

/// The memory `shm-keepalive` holds, through the same ``SessionMemory`` a device uses: it
/// creates (or joins) the session, registers this process (pid, start time, uid, Slurm job and
/// step), creates every requested segment, and keeps it all mapped until ``release()``.
///
/// This is FairMQ's keep-alive pattern: the outside process owns the memory's lifetime, and
/// devices attach to segments that already exist.
struct SessionHolder {
    let memory: SessionMemory

    /// - Parameter segments: `(segment id, size in bytes)`; the first one is this process's own.
    init(
        session: SessionID, directory: FilePath, segments: [(UInt16, UInt64)], noCleanup: Bool, logger: Logger
    ) throws(ShmCoreError) {
        let (ownID, ownSize) = segments[0]
        let configuration = SessionConfiguration(
            session: session, directory: directory, segmentSize: Int(ownSize), segmentID: ownID, noCleanup: noCleanup)
        memory = try SessionMemory(configuration, logger: logger)
        for (segmentID, size) in segments.dropFirst() {
            try memory.createSegment(segmentID, size: Int(size))
        }
        logger.info("session memory held", metadata: ["shm.id": "\(memory.id)", "shm.session": "\(session)"])
    }

    /// Unregisters this process and unmaps; as the last process out it removes the session,
    /// unless `noCleanup`.
    func release() {
        memory.detach()
    }
}
