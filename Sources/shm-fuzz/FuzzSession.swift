import Foundation
import Logging
import ShmCleanup
import ShmCore
import ShmTestSupport
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The real objects the targets start from: a session of this process in a private directory
/// under /dev/shm — one managed segment with message records and live blocks, one region with a
/// reference-count pool — and a second directory holding a copy of the session that no process
/// uses, whose segment the segment target damages. Everything is removed by ``remove()``.
final class FuzzSession {
    private let live: ShmFixtureDirectory
    private let stopped: ShmFixtureDirectory
    var directory: String { live.path }
    var stoppedDirectory: String { stopped.path }
    let session: SessionID
    let id: ShmID
    let memory: SessionMemory
    let region: SessionRegion
    /// Blocks this process holds for the whole run (what valid metadata frames name).
    let liveBlocks: [ShmBlock]
    private var removed = false

    init(logger: Logger) throws {
        // the pid in the name lets scripts/fuzz remove what a crashed run could not
        live = try ShmFixtureDirectory("shm-fuzz-\(getpid())", in: "/dev/shm")
        stopped = try ShmFixtureDirectory("stopped", in: live.path)
        session = try SessionID("fuzz-\(getpid())")
        id = ShmID(session: session)
        var configuration = SessionConfiguration(session: session, directory: FilePath(live.path), segmentSize: 256 << 10)
        configuration.messageRecords = true
        do {
            let memory = try SessionMemory(configuration, logger: logger)
            let blocks = try [24, 100, 4096, 1, 60_000].map { size in try memory.allocate(size: size) }
            for block in blocks { memset(memory.address(of: block), 0x5a, Int(block.size)) }
            region = try memory.createRegion(RegionOptions(size: 1 << 16, referenceCountPoolSize: 4096), onRelease: nil)
            self.memory = memory
            liveBlocks = blocks
        } catch {
            _ = stopped.remove()
            _ = live.remove()
            throw FuzzFailure("cannot make the fuzz session: \(error)")
        }
        // the stopped copy: the management segment and the segment, byte for byte
        for name in [ShmObjectName(id, .management).fileName, ShmObjectName(id, .segment(0)).fileName] {
            guard let bytes = FileManager.default.contents(atPath: directory + "/" + name),
                FileManager.default.createFile(atPath: stoppedDirectory + "/" + name, contents: bytes, attributes: [.posixPermissions: 0o600])
            else { throw FuzzFailure("cannot copy \(name) into \(stoppedDirectory)") }
        }
    }

    /// The bytes of one of the live session's objects.
    func bytes(of kind: ShmObjectName.Kind) -> [UInt8] {
        [UInt8](FileManager.default.contents(atPath: directory + "/" + ShmObjectName(id, kind).fileName) ?? Data())
    }

    /// Detaches (the last one out removes the session) and removes both directories; what was
    /// left in them, which must be nothing.
    func remove() -> [String] {
        guard !removed else { return [] }
        removed = true
        for block in liveBlocks { memory.release(block) }
        region.destroy()
        memory.detach()
        for name in [ShmObjectName(id, .management).fileName, ShmObjectName(id, .segment(0)).fileName] { unlink(stopped.path + "/" + name) }
        let leftStopped = stopped.remove().map { stopped.path + "/" + $0 }
        let leftLive = live.remove().map { live.path + "/" + $0 }
        return leftStopped + leftLive
    }
}

/// A fuzz run that could not start or ended wrongly (not a crash: a crash kills the process).
struct FuzzFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
