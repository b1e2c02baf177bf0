import Atomics
import Logging
import ShmCleanup
import Synchronization
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The regions a ``SessionMemory`` maps, by id: a dictionary that keeps them, and a table read
/// without a lock on the message path.
final class RegionStore: @unchecked Sendable {
    private let kept = Mutex<(current: [UInt16: SessionRegion], retired: [SessionRegion])>(([:], []))
    private let fast: UnsafeMutablePointer<UnsafeAtomic<UInt>.Storage>

    init() {
        fast = .allocate(capacity: 1 << 16)
        fast.initialize(repeating: UnsafeAtomic<UInt>.Storage(0), count: 1 << 16)
    }

    deinit { fast.deallocate() }

    @inline(__always) func lookup(_ id: UInt16) -> SessionRegion? {
        let raw = UnsafeAtomic<UInt>(at: fast + Int(id)).load(ordering: .acquiring)
        guard let pointer = UnsafeRawPointer(bitPattern: raw) else { return nil }
        return Unmanaged<SessionRegion>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Keeps `region` as the one of its id; one it replaces stays mapped (messages may still
    /// point into it) until the session memory goes.
    func install(_ region: SessionRegion) {
        kept.withLock { k in
            if let old = k.current.updateValue(region, forKey: region.id) { k.retired.append(old) }
            UnsafeAtomic<UInt>(at: fast + Int(region.id)).store(
                UInt(bitPattern: Unmanaged.passUnretained(region).toOpaque()), ordering: .releasing)
        }
    }
}

/// What a subscriber to region events learns about one region or managed segment.
public struct RegionEventInfo: @unchecked Sendable, Hashable {
    /// What happened.
    public enum Event: String, Sendable {
        case created, destroyed
    }
    /// True for a managed segment, false for an unmanaged region.
    public var managed: Bool
    /// The region or segment id.
    public var id: UInt16
    public var event: Event
    /// Where it is mapped in this process (nil for a destroyed region that was never mapped here).
    public var pointer: UnsafeMutableRawPointer?
    /// Size in bytes.
    public var size: Int
    /// The user flags of a region (0 for segments).
    public var userFlags: UInt64

    public init(managed: Bool, id: UInt16, event: Event, pointer: UnsafeMutableRawPointer?, size: Int, userFlags: UInt64) {
        self.managed = managed
        self.id = id
        self.event = event
        self.pointer = pointer
        self.size = size
        self.userFlags = userFlags
    }
}

extension SessionMemory {
    // MARK: Creating and opening regions

    /// Creates an unmanaged region — or adopts the existing one of the same id, for example one
    /// an outside keep-alive process made — and becomes its controller: `onRelease`, when given,
    /// gets the blocks whose last holder let go, in batches, on a thread of this process.
    /// - Throws: ``ShmCoreError`` with `.regionSizeMismatch` when the id exists with another
    ///   size, `.regionHasController` when a live process already controls it (or this process
    ///   made it already), `.tableFull`, `.noSpace`, `.invalidArgument` for bad options.
    public func createRegion(
        _ options: RegionOptions, onRelease: (@Sendable ([RegionRelease]) -> Void)?
    ) throws(ShmCoreError) -> SessionRegion {
        guard options.size > 0 else {
            throw ShmCoreError(.invalidArgument, "region size \(options.size) is not positive; give the size of the buffer in bytes")
        }
        guard options.referenceCountPoolSize == 0 || options.referenceCountPoolSize >= 4096 else {
            throw ShmCoreError(
                .invalidArgument,
                "reference-count pool size \(options.referenceCountPoolSize) is too small; give at least 4096 bytes, or 0 for counters in the managed segment")
        }
        guard options.path.utf8.count <= ManagementLayout.RegionEntry.pathCapacity, !options.path.contains("\0") else {
            throw ShmCoreError(
                .invalidArgument, "region path '\(options.path)' is longer than \(ManagementLayout.RegionEntry.pathCapacity) bytes or holds a NUL; use a shorter directory")
        }
        guard options.lingerMilliseconds >= 0 else {
            throw ShmCoreError(.invalidArgument, "region linger \(options.lingerMilliseconds) ms is negative; give 0 or more")
        }
        guard let mng = management else { throw ShmCoreError(.detached, "the session memory was detached; create a new SessionMemory") }
        let me = (pid: getpid(), startTime: ProcessInspector().stat(pid: getpid())?.startTime ?? 0)
        let controller = onRelease == nil ? nil : me
        let shmID = id
        let dir = directory
        let logger = self.logger
        let lanes = mng.processTable.capacity
        let region = try mng.withLock { () throws(ShmCoreError) -> SessionRegion in
            mng.pruneDead()
            let regionID: UInt16
            if let wanted = options.id {
                regionID = wanted
            } else {
                guard let next = mng.nextRegionID() else {
                    throw ShmCoreError(.tableFull, "no automatic region id is free; destroy regions you no longer use")
                }
                regionID = next
            }
            if let existing = mng.aliveRegion(id: regionID) {
                guard existing.size == options.size else {
                    throw ShmCoreError(
                        .regionSizeMismatch,
                        "region \(regionID) of session '\(configuration.session)' exists with size \(existing.size), not the \(options.size) bytes asked for; give the same size or another id",
                        objectName: ShmObjectName(shmID, .region(UInt32(regionID))).fileName)
                }
                if regionStore.lookup(regionID)?.isController == true, regionStore.lookup(regionID)?.isCurrent == true {
                    throw ShmCoreError(
                        .regionHasController,
                        "region \(regionID) was already made by this process; use the region you have, or another id",
                        objectName: ShmObjectName(shmID, .region(UInt32(regionID))).fileName)
                }
                if controller != nil, existing.controllerPID > 0,
                    ProcessInspector().isAlive(pid: existing.controllerPID, startTime: existing.controllerStartTime)
                {
                    throw ShmCoreError(
                        .regionHasController,
                        "region \(regionID) of session '\(configuration.session)' already has a controller, pid \(existing.controllerPID); a region has one controller: open it as a viewer (send its messages from the controller) or use another id",
                        objectName: ShmObjectName(shmID, .region(UInt32(regionID))).fileName)
                }
                if let controller { mng.setRegionController(index: existing.index, controller) }
                var adopted = existing
                adopted.controllerPID = controller?.pid ?? existing.controllerPID
                return try openRegion(adopted, mng: mng, options: options, created: false)
            }
            // A new region: its objects first, its entry last, so a viewer never finds a half-made one.
            let name = ShmObjectName(shmID, .region(UInt32(regionID))).fileName
            let (regionDir, regionName) = try Self.regionLocation(path: options.path, name: name, shmDirectory: dir)
            let rg = try Self.createReplacingStale(regionName, size: options.size, in: regionDir, logger: logger)
            var made: [(Directory, String)] = [(regionDir, regionName)]
            func undo() { for (d, n) in made { d.unlink(n) } }
            do throws(ShmCoreError) {
                if options.referenceCountPoolSize > 0 {
                    let rrcName = ShmObjectName(shmID, .regionRefCount(UInt32(regionID))).fileName
                    let rrc = try Self.createReplacingStale(rrcName, size: options.referenceCountPoolSize, in: dir, logger: logger)
                    made.append((dir, rrcName))
                    RegionReferencePool.format(base: rrc.base, size: rrc.size)
                }
                let rgqName = ShmObjectName(shmID, .regionQueue(UInt32(regionID))).fileName
                let rgq = try Self.createReplacingStale(rgqName, size: RegionReleaseQueue.size(laneCount: lanes), in: dir, logger: logger)
                made.append((dir, rgqName))
                RegionReleaseQueue.format(base: rgq.base, laneCount: lanes)
                _ = rg
                let (index, _) = try mng.registerRegion(
                    id: regionID, size: options.size, referenceCountPoolSize: options.referenceCountPoolSize,
                    creationFlags: options.creationFlags, userFlags: options.userFlags, path: options.path, controller: controller)
                guard let entry = mng.regionEntry(at: index) else {
                    throw ShmCoreError(.corrupt, "the region entry just written cannot be read back; the session is damaged")
                }
                do throws(ShmCoreError) {
                    return try openRegion(entry, mng: mng, options: options, created: true)
                } catch {
                    mng.markRegionDestroyed(index: index)
                    throw error
                }
            } catch {
                undo()
                throw error
            }
        }
        if options.lock {
            guard mlock(region.base, region.size) == 0 else {
                let err = errno
                region.destroy()
                throw ShmCoreError(
                    .systemCall, "cannot lock region \(region.id) (\(region.size) bytes) into RAM; raise the memlock limit (ulimit -l) or drop the lock option",
                    errno: err)
            }
        }
        if options.zero { memset(region.base, 0, region.size) }
        if let onRelease { region.startConsumer(onRelease) }
        regionStore.install(region)
        logger.debug(
            "region ready",
            metadata: ["shm.region": "\(region.id)", "shm.size": "\(region.size)", "shm.created": "\(region.createdObjects)"])
        return region
    }

    /// A region of the session as a viewer (mapped on first use, then from a table without a lock).
    /// - Throws: `.unknownRegion` when the session has no alive region of that id.
    public func region(id regionID: UInt16) throws(ShmCoreError) -> SessionRegion {
        if let known = regionStore.lookup(regionID), known.isCurrent { return known }
        guard let mng = management else { throw ShmCoreError(.detached, "the session memory was detached; create a new SessionMemory") }
        let region = try mng.withLock { () throws(ShmCoreError) -> SessionRegion in
            guard let entry = mng.aliveRegion(id: regionID) else {
                throw ShmCoreError(
                    .unknownRegion,
                    "region \(regionID) does not exist in session '\(configuration.session)'; the sender named a region no process created, or it was destroyed",
                    objectName: ShmObjectName(id, .region(UInt32(regionID))).fileName)
            }
            return try openRegion(entry, mng: mng, options: nil, created: false)
        }
        regionStore.install(region)
        return region
    }

    /// The regions of the session now (alive and destroyed), with the pointers of those mapped here.
    public func regionEvents() -> [RegionEventInfo] {
        guard let mng = management else { return [] }
        // a damaged session (the lock cannot be taken) reports no events rather than waiting
        let entries = (try? mng.withLock { mng.regionEntries }) ?? []
        var events: [RegionEventInfo] = []
        for id in (try? mng.withLock({ mng.registeredSegmentIDs })) ?? [] {
            let pointer = try? address(ofSegment: id)
            events.append(RegionEventInfo(managed: true, id: id, event: .created, pointer: pointer, size: segmentSize(segmentID: id), userFlags: 0))
        }
        for entry in entries {
            var pointer: UnsafeMutableRawPointer?
            if !entry.destroyed { pointer = (try? region(id: entry.id))?.base }
            events.append(RegionEventInfo(
                managed: false, id: entry.id, event: entry.destroyed ? .destroyed : .created, pointer: pointer, size: entry.size,
                userFlags: entry.userFlags))
        }
        return events
    }

    /// The session's event counter (bumped when a segment or region is created or destroyed).
    public var eventCounter: UInt64 { management?.eventCounter ?? 0 }

    /// The generation of each region entry, to tell a re-created id from the old one.
    public func regionGenerations() -> [UInt16: UInt32] {
        guard let mng = management else { return [:] }
        return (try? mng.withLock { Dictionary(mng.regionEntries.filter { !$0.destroyed }.map { ($0.id, $0.generation) }, uniquingKeysWith: { a, _ in a }) }) ?? [:]
    }

    private func address(ofSegment segmentID: UInt16) throws(ShmCoreError) -> UnsafeMutableRawPointer {
        try attachSegment(segmentID)
        return address(of: ShmBlock(segmentID: segmentID, offset: 0, size: 0))
    }

    // MARK: Region messages

    /// Checks a region block named by a peer before it is touched: the region exists (it is
    /// opened if needed), the block lies inside it, and a counter it names is handed out.
    public func validatedRegionBlock(
        regionID: UInt16, offset: UInt64, size: UInt64, counter: RegionCounter
    ) throws(ShmCoreError) -> SessionRegion {
        let region = try region(id: regionID)
        guard region.contains(offset: offset, size: size) else {
            throw ShmCoreError(
                .invalidBlock,
                "block at offset \(offset) size \(size) does not lie inside region \(regionID) (\(region.size) bytes); the sender and this process disagree on the region")
        }
        switch counter {
        case .none: break
        case .pool(let index):
            guard let pool = region.pool, pool.isLive(index) else {
                throw ShmCoreError(
                    .invalidBlock, "reference counter \(index) of region \(regionID) is not in use; the metadata frame is corrupt")
            }
        case .managed(let block):
            _ = try validatedBlock(segmentID: block.segmentID, offset: block.offset, size: block.size)
        }
        return region
    }

    /// A copy of a region message: the first copy takes a counter set to 2, later ones add one.
    /// - Throws: `.referenceCountsExhausted` when the pool has no free counter (or the managed
    ///   segment no room for one).
    public func retainRegionBlock(_ region: SessionRegion, counter: inout RegionCounter) throws(ShmCoreError) {
        switch counter {
        case .pool(let index):
            region.pool!.retain(index)
        case .managed(let block):
            managedCounter(block).wrappingIncrement(ordering: .relaxed)
        case .none:
            if let pool = region.pool {
                guard let index = pool.take(initial: 2) else {
                    throw ShmCoreError(
                        .referenceCountsExhausted,
                        "the reference-count pool of region \(region.id) is full (\(pool.capacity) copied messages in flight); release copies or make the region with a larger reference-count pool size",
                        objectName: region.poolObject?.name)
                }
                counter = .pool(index)
            } else {
                let block: ShmBlock
                do { block = try allocate(size: 8, alignment: 8) } catch {
                    throw ShmCoreError(
                        .referenceCountsExhausted,
                        "no room in the managed segment for the reference counter of a copied region message (\(error.message)); free messages or give the region a reference-count pool")
                }
                managedCounter(block).store(2, ordering: .relaxed)
                counter = .managed(block)
            }
        }
    }

    /// Drops one holder of a region block; the last one gives its counter back and acknowledges
    /// the block to the region's controller.
    public func releaseRegionBlock(_ region: SessionRegion, counter: RegionCounter, _ block: RegionRelease) {
        switch counter {
        case .none:
            break
        case .pool(let index):
            guard region.pool!.release(index) else { return }
        case .managed(let counterBlock):
            guard managedCounter(counterBlock).loadThenWrappingDecrement(ordering: .acquiringAndReleasing) == 1 else { return }
            release(counterBlock)
        }
        region.acknowledge(block)
    }

    /// How many holders a region block has.
    public func regionReferenceCount(_ region: SessionRegion, counter: RegionCounter) -> Int {
        switch counter {
        case .none: return 1
        case .pool(let index): return region.pool!.value(index)
        case .managed(let block): return Int(managedCounter(block).load(ordering: .acquiring))
        }
    }

    private func managedCounter(_ block: ShmBlock) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: address(of: block).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }

    // MARK: Objects

    /// Where a region's object lives: the shm directory, or the directory of `path + name`.
    static func regionLocation(path: String, name: String, shmDirectory: Directory) throws(ShmCoreError) -> (Directory, String) {
        guard !path.isEmpty else { return (shmDirectory, name) }
        let full = path + name
        let slash = full.lastIndex(of: "/")
        let dirPath = slash.map { String(full[..<$0]) } ?? "."
        let file = slash.map { String(full[full.index(after: $0)...]) } ?? full
        return (try Directory(FilePath(dirPath.isEmpty ? "/" : dirPath)), file)
    }

    private static func createReplacingStale(
        _ name: String, size: Int, in dir: Directory, logger: Logger
    ) throws(ShmCoreError) -> SharedObject {
        if let object = try SharedObject.create(name, size: size, in: dir) { return object }
        try SharedObject.refuseIfNotRegular(name, in: dir)  // a planted FIFO or symlink stays
        // Not registered, so a leftover of an earlier session with this id: replace it.
        logger.warning("removing a stale region object left by an earlier session", metadata: ["shm.object": "\(name)"])
        dir.unlink(name)
        guard let object = try SharedObject.create(name, size: size, in: dir) else {
            throw ShmCoreError(.systemCall, "cannot create '\(name)': it keeps reappearing", objectName: name)
        }
        return object
    }

    /// Maps a registered region's objects (caller holds the session lock).
    private func openRegion(
        _ entry: ManagementSegment.RegionEntryInfo, mng: ManagementSegment, options: RegionOptions?, created: Bool
    ) throws(ShmCoreError) -> SessionRegion {
        let shmID = id
        let n = UInt32(entry.id)
        let name = ShmObjectName(shmID, .region(n)).fileName
        let (regionDir, regionName) = try Self.regionLocation(path: entry.path, name: name, shmDirectory: directory)
        func missing(_ what: String) -> ShmCoreError {
            ShmCoreError(
                .corrupt, "region \(entry.id) is registered but its \(what) is missing or damaged; the session is damaged, clean it (shmmonitor -c)",
                objectName: name)
        }
        guard let object = try SharedObject.open(regionName, in: regionDir, minimumSize: 1) else { throw missing("memory '\(entry.path)\(name)'") }
        guard object.size == entry.size else {
            throw ShmCoreError(
                .regionSizeMismatch,
                "region \(entry.id) is \(object.size) bytes in '\(entry.path)\(name)' but registered with \(entry.size); the session is damaged, clean it (shmmonitor -c)",
                objectName: name)
        }
        var pool: SharedObject?
        if entry.referenceCountPoolSize > 0 {
            pool = try SharedObject.open(ShmObjectName(shmID, .regionRefCount(n)).fileName, in: directory, minimumSize: 64)
            if pool == nil { throw missing("reference-count pool") }
        }
        guard let queue = try SharedObject.open(ShmObjectName(shmID, .regionQueue(n)).fileName, in: directory, minimumSize: 64) else {
            throw missing("release queue")
        }
        return try SessionRegion(
            entry: entry, object: object, poolObject: pool, queueObject: queue, management: mng, directory: directory, shmID: shmID,
            slot: processSlot, options: options, createdObjects: created, logger: logger)
    }
}
