import Logging
import ShmCleanup
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Rebuilds the content of a session no process is attached to, from the objects that exist
/// (FairMQ's `Monitor::ResetContent` with configurations, `shmmonitor -r`): every managed
/// segment is formatted anew (all its messages are gone, its size, allocator, arenas and message
/// records are kept), every region keeps its memory but gets empty release queues and a free
/// reference-count pool, and the management segment is written afresh from what was found.
/// This recovers a session whose management segment a crash or a stray write damaged, without
/// unmapping anything from keep-alive processes that hold the memory.
public enum ContentReset {
    /// What a reset did.
    public struct Report: Sendable, Encodable {
        /// One managed segment, formatted anew.
        public struct Segment: Sendable, Encodable {
            public let id: UInt16
            public let size: Int
            public let allocator: String
            public let arenas: Int
            public let messageRecords: Bool
            enum CodingKeys: String, CodingKey { case id, size, allocator, arenas, messageRecords = "message_records" }
        }
        /// One unmanaged region, kept with fresh queues.
        public struct Region: Sendable, Encodable {
            public let id: UInt16
            public let size: Int
            public let referenceCountPoolSize: Int
            /// Directory prefix of a file-backed region; empty for one in the shm directory.
            public let path: String
            enum CodingKeys: String, CodingKey { case id, size, referenceCountPoolSize = "rc_segment_size", path }
        }
        public let shmID: ShmID
        /// The session's name (from the old management segment, or as given); empty when neither had it.
        public let sessionName: String
        /// What the old management segment was: `intact`, `missing`, `unreadable: <why>`, `foreign (...)`.
        public let previousManagement: String
        public let segments: [Segment]
        public let regions: [Region]
        /// Objects removed because they could not be kept (too small to be a segment, queues of
        /// regions whose memory is gone), with the reason.
        public let removed: [String]

        enum CodingKeys: String, CodingKey {
            case shmID = "shmid", sessionName = "session", previousManagement = "previous_management", segments, regions, removed
        }
    }

    /// Whether a managed segment of the session carries our segment header (so a management
    /// segment of a foreign layout is ours, damaged, and not another program's).
    private static func hasOurSegment(_ session: ShmSession, in dir: Directory) -> Bool {
        session.objects.contains { object in
            guard case .segment = object.name.kind, let mapped = try? SharedObject.openReadOnly(object.fileName, in: dir),
                mapped.size >= 8
            else { return false }
            return mapped.base.load(fromByteOffset: SegmentLayout.Header.magic, as: UInt64.self) == SegmentLayout.magic
        }
    }

    /// Resets session `id` in `directory`.
    /// - Parameter session: the session's name, used when the old management segment cannot be read.
    /// - Returns: nil when the session has no objects (besides a monitor's flag).
    /// - Throws: `.sessionInUse` while a live process maps or is registered in the session;
    ///   `.foreignLayout` for a session of another program (C++ FairMQ);
    ///   `.invalidArgument` for another user's session (also for root: run it as the owner); `.systemCall` or `.noSpace`
    ///   when an object cannot be rewritten.
    public static func reset(_ id: ShmID, session: SessionID? = nil, directory: FilePath, logger: Logger)
        throws(ShmCoreError) -> Report?
    {
        let scanned: ShmSession?
        do {
            scanned = try SessionScanner(directory: directory, logger: logger).scan(only: [id]).sessions.first
        } catch {
            throw ShmCoreError(.invalidArgument, error.description, objectName: directory.string)
        }
        guard let found = scanned, found.objects.contains(where: { $0.name.kind != .monitorFlag }) else { return nil }
        if !found.users.isEmpty {
            throw ShmCoreError(
                .sessionInUse,
                "shm id \(id) is in use by \(found.users.map(\.description).joined(separator: "; ")); a reset rewrites memory live processes use: stop them first")
        }
        // Only the owner: a reset writes every object, and ShmCore never writes another user's
        // (root included: run it as that user, for example with setpriv or runuser).
        let me = geteuid()
        if let other = found.objects.first(where: { $0.ownerUID != me }) {
            throw ShmCoreError(
                .invalidArgument,
                "'\(other.fileName)' belongs to user \(other.ownerUID), not to you (\(me)); only its owner can reset shm id \(id): run the reset as that user",
                objectName: other.fileName)
        }
        if let special = found.objects.first(where: { $0.fileType != .regular }) {
            throw ShmCoreError(
                .foreignLayout,
                "'\(special.fileName)' is \(special.fileType == .symlink ? "a symbolic link" : special.fileType == .directory ? "a directory" : "a special file (FIFO, socket or device)"), not a shared memory object; a reset never touches such a name: find out who put it there and remove it, then reset again",
                objectName: special.fileName)
        }
        let dir = try Directory(directory)
        if case .foreign = found.managementStatus, !hasOurSegment(found, in: dir) {
            throw ShmCoreError(
                .foreignLayout,
                "shm id \(id) holds a management segment and segments of another layout (a C++ FairMQ session or another program); reset it with the tool that made it, or remove it (shmmonitor -c --shmid \(id))")
        }
        let old = found.record
        var removed: [String] = []

        // Managed segments: formatted anew with what their headers (or the old table) say.
        var segments: [Report.Segment] = []
        var segmentEntries: [ManagementRecord.Segment] = []
        for object in found.objects {
            guard case .segment(let n) = object.name.kind, let segmentID = UInt16(exactly: n), object.fileType == .regular else { continue }
            guard object.size >= Int64(SegmentLayout.minimumSegmentSize),
                let mapped = try SharedObject.open(object.fileName, in: dir, minimumSize: SegmentLayout.minimumSegmentSize)
            else {
                dir.unlink(object.fileName)
                removed.append("\(object.fileName): \(object.size) bytes, too small to be a segment")
                continue
            }
            let heap = SegmentHeap(base: mapped.base)
            let intact = heap.isUsable(objectSize: mapped.size)
            let strategy =
                intact
                ? heap.strategy
                : old?.segments.first { $0.id == segmentID }.flatMap { AllocationStrategy(code: $0.allocator) } ?? .rbtreeBestFit
            let arenas = intact ? heap.arenaCount : SegmentLayout.defaultArenaCount(segmentSize: mapped.size)
            let flags = intact ? mapped.base.load(fromByteOffset: SegmentLayout.Header.flags, as: UInt8.self) : 0
            SegmentHeap.format(
                base: mapped.base, size: mapped.size, segmentID: segmentID, strategy: strategy, arenaCount: arenas, flags: flags)
            segments.append(
                Report.Segment(
                    id: segmentID, size: mapped.size, allocator: strategy.rawValue, arenas: arenas,
                    messageRecords: flags & SegmentLayout.Flags.messageRecords != 0))
            segmentEntries.append(
                ManagementRecord.Segment(
                    id: segmentID, allocator: strategy.code, size: UInt64(mapped.size), freeBytes: UInt64(heap.freeBytes),
                    creatorPID: getpid()))
        }

        // Regions (in the shm directory, or file-backed ones an intact table names, which the
        // scan lists by their full path): memory kept, queues and pools fresh.
        let lanes = ManagementLayout.defaultProcessCapacity
        var regions: [Report.Region] = []
        var regionEntries: [ManagementRecord.Region] = []
        let names = Set(found.objects.map(\.fileName))
        for object in found.objects {
            guard case .region(let n) = object.name.kind, let regionID = UInt16(exactly: n), object.fileType == .regular,
                object.size > 0
            else { continue }
            let inShmDirectory = object.path == directory.appending(object.fileName).string
            let previous = old?.regions.first { $0.id == regionID && $0.size == UInt64(object.size) && $0.path.isEmpty == inShmDirectory }
            if !inShmDirectory && previous == nil { continue }
            let rgq = ShmObjectName(id, .regionQueue(n)).fileName
            let queueSize = RegionReleaseQueue.size(laneCount: lanes)
            var queue = try SharedObject.open(rgq, in: dir, minimumSize: 1, growTo: queueSize)
            if queue == nil { queue = try SharedObject.create(rgq, size: queueSize, in: dir) }
            guard let queue else { throw ShmCoreError(.systemCall, "cannot create '\(rgq)': it keeps reappearing", objectName: rgq) }
            RegionReleaseQueue.format(base: queue.base, laneCount: lanes)
            let rrc = ShmObjectName(id, .regionRefCount(n)).fileName
            var poolSize = 0
            if names.contains(rrc), let pool = try SharedObject.open(rrc, in: dir, minimumSize: 1) {
                if pool.size >= 4096 {
                    RegionReferencePool.format(base: pool.base, size: pool.size)
                    poolSize = pool.size
                } else {
                    dir.unlink(rrc)
                    removed.append("\(rrc): \(pool.size) bytes, too small to be a reference-count pool")
                }
            }
            regions.append(
                Report.Region(id: regionID, size: Int(object.size), referenceCountPoolSize: poolSize, path: previous?.path ?? ""))
            regionEntries.append(
                ManagementRecord.Region(
                    id: regionID, size: UInt64(object.size), rcSegmentSize: UInt64(poolSize),
                    creationFlags: previous?.creationFlags ?? 0, userFlags: previous?.userFlags ?? 0, path: previous?.path ?? ""))
        }
        // Queues and pools whose region memory is gone belong to nothing.
        let kept = Set(regions.map { UInt32($0.id) })
        for object in found.objects {
            switch object.name.kind {
            case .regionQueue(let n) where !kept.contains(n), .regionRefCount(let n) where !kept.contains(n):
                dir.unlink(object.fileName)
                removed.append("\(object.fileName): its region's memory is gone")
            default: continue
            }
        }

        let sessionName = old?.sessionName ?? session?.rawValue ?? ""
        let owner = found.objects.first { $0.name.kind == .management }?.ownerUID ?? found.objects[0].ownerUID
        let record = ManagementRecord(
            sessionName: sessionName, creatorUID: old?.creatorUID ?? owner, creatorPID: getpid(),
            creatorSlurmJobID: old?.creatorSlurmJobID ?? 0, creatorSlurmStepID: old?.creatorSlurmStepID,
            flags: old?.flags ?? 0, createdAtNanos: WallClock.nanoseconds(),
            eventCounter: (old?.eventCounter ?? 0) &+ 1, segments: segmentEntries.sorted { $0.id < $1.id },
            regions: regionEntries.sorted { $0.id < $1.id })
        let counter = UInt32(max(1024, (regionEntries.map { Int($0.id) }.max() ?? 0) + 1))
        let mngName = ShmObjectName(id, .management).fileName
        guard let mng = try ManagementSegment.openForRewrite(mngName, in: dir) else {
            throw ShmCoreError(.systemCall, "cannot create '\(mngName)': it keeps disappearing", objectName: mngName)
        }
        mng.write(record, regionCounter: min(counter, UInt32(UInt16.max)))
        logger.info(
            "session content reset",
            metadata: ["shm.id": "\(id)", "shm.segments": "\(segments.count)", "shm.regions": "\(regions.count)"])
        return Report(
            shmID: id, sessionName: sessionName, previousManagement: found.managementStatus == .ours ? "intact" : "\(found.managementStatus)", segments: segments,
            regions: regions, removed: removed)
    }
}
