import Atomics
import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The region table of the management segment (layout: `ManagementLayout.RegionEntry`). Every
/// method but ``regionIsCurrent(index:generation:)`` is called with the session lock held.
extension ManagementSegment {
    typealias R = ManagementLayout.RegionEntry

    /// One entry of the region table, read and checked (a damaged entry reads as absent).
    struct RegionEntryInfo {
        var index: Int
        var id: UInt16
        var destroyed: Bool
        var size: Int
        var referenceCountPoolSize: Int
        var creationFlags: Int32
        var userFlags: UInt64
        var path: String
        var controllerPID: Int32
        var controllerStartTime: UInt64
        var generation: UInt32
    }

    var regionTable: ManagementLayout.Table { geometry.regions }

    private func regionEntryOffset(_ index: Int) -> Int { regionTable.offset + index * regionTable.stride }

    /// The entry at `index`, if it is in use and sound.
    func regionEntry(at index: Int) -> RegionEntryInfo? {
        let e = regionEntryOffset(index)
        let state = atomic32(e + R.state).load(ordering: .acquiring)
        guard state == R.alive || state == R.destroyed else { return nil }
        let pathLength = Int(base.load(fromByteOffset: e + R.pathLength, as: UInt16.self))
        guard pathLength <= R.pathCapacity, let size = Int(exactly: u64(e + R.regionSize)), size > 0,
            let pool = Int(exactly: u64(e + R.rcSegmentSize))
        else { return nil }
        let path = String(decoding: UnsafeRawBufferPointer(start: base + e + R.path, count: pathLength), as: UTF8.self)
        return RegionEntryInfo(
            index: index, id: base.load(fromByteOffset: e + R.regionID, as: UInt16.self), destroyed: state == R.destroyed,
            size: size, referenceCountPoolSize: pool, creationFlags: base.load(fromByteOffset: e + R.creationFlags, as: Int32.self),
            userFlags: u64(e + R.userFlags), path: path, controllerPID: base.load(fromByteOffset: e + R.controllerPID, as: Int32.self),
            controllerStartTime: u64(e + R.controllerStartTime), generation: u32(e + R.generation))
    }

    /// Every region entry in use (alive and destroyed), in table order.
    var regionEntries: [RegionEntryInfo] { (0..<regionTable.capacity).compactMap { regionEntry(at: $0) } }

    /// The alive entry of region `id`.
    func aliveRegion(id: UInt16) -> RegionEntryInfo? {
        regionEntries.first { $0.id == id && !$0.destroyed }
    }

    /// Whether the entry at `index` still describes the region a process mapped (same
    /// generation, alive). Atomic loads only: no lock needed.
    func regionIsCurrent(index: Int, generation: UInt32) -> Bool {
        let e = regionEntryOffset(index)
        return atomic32(e + R.state).load(ordering: .acquiring) == R.alive && u32(e + R.generation) == generation
    }

    /// The next automatic region id (FairMQ: from 1024 up), skipping ids in use.
    func nextRegionID() -> UInt16? {
        let counter = atomic32(H.regionCounter)
        let alive = Set(regionEntries.filter { !$0.destroyed }.map(\.id))
        for _ in 0..<(65536 - 1024) {
            var id = counter.loadThenWrappingIncrement(ordering: .relaxed)
            if id < 1024 || id > UInt32(UInt16.max) {
                counter.store(1025, ordering: .relaxed)
                id = 1024
            }
            if !alive.contains(UInt16(id)) { return UInt16(id) }
        }
        return nil
    }

    /// Fills a free entry (or the oldest destroyed one) for a new region; returns its index and generation.
    func registerRegion(
        id: UInt16, size: Int, referenceCountPoolSize: Int, creationFlags: Int32, userFlags: UInt64, path: String,
        controller: (pid: Int32, startTime: UInt64)?
    ) throws(ShmCoreError) -> (index: Int, generation: UInt32) {
        let t = regionTable
        let states = (0..<t.capacity).map { u32(regionEntryOffset($0) + R.state) }
        let destroyed = (0..<t.capacity).filter { states[$0] == R.destroyed }
            .min { u32(regionEntryOffset($0) + R.generation) < u32(regionEntryOffset($1) + R.generation) }
        guard let index = states.firstIndex(of: R.free) ?? destroyed else {
            throw ShmCoreError(
                .tableFull, "the region table of '\(object.name)' is full (\(t.capacity) regions); destroy regions you no longer use",
                objectName: object.name)
        }
        let e = regionEntryOffset(index)
        atomic32(e + R.state).store(R.free, ordering: .releasing)
        let pathBytes = Array(path.utf8)
        base.storeBytes(of: id, toByteOffset: e + R.regionID, as: UInt16.self)
        base.storeBytes(of: UInt16(pathBytes.count), toByteOffset: e + R.pathLength, as: UInt16.self)
        setU64(e + R.regionSize, UInt64(size))
        setU64(e + R.rcSegmentSize, UInt64(referenceCountPoolSize))
        base.storeBytes(of: creationFlags, toByteOffset: e + R.creationFlags, as: Int32.self)
        setU64(e + R.userFlags, userFlags)
        base.storeBytes(of: controller?.pid ?? 0, toByteOffset: e + R.controllerPID, as: Int32.self)
        base.storeBytes(of: getpid(), toByteOffset: e + R.creatorPID, as: Int32.self)
        setU64(e + R.controllerStartTime, controller?.startTime ?? 0)
        memset(base + e + R.path, 0, R.pathCapacity)
        pathBytes.withUnsafeBytes { (base + e + R.path).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let generation = UInt32(truncatingIfNeeded: atomic64(H.eventCounter).wrappingIncrementThenLoad(ordering: .relaxed))
        setU32(e + R.generation, generation)
        atomic32(e + R.state).store(R.alive, ordering: .releasing)
        return (index, generation)
    }

    /// Sets (or clears, with nil) the process that receives the region's acknowledgements.
    func setRegionController(index: Int, _ controller: (pid: Int32, startTime: UInt64)?) {
        let e = regionEntryOffset(index)
        base.storeBytes(of: controller?.pid ?? 0, toByteOffset: e + R.controllerPID, as: Int32.self)
        setU64(e + R.controllerStartTime, controller?.startTime ?? 0)
    }

    /// Marks a region destroyed (its objects are removed by the caller) and tells subscribers.
    func markRegionDestroyed(index: Int) {
        let e = regionEntryOffset(index)
        setRegionController(index: index, nil)
        atomic32(e + R.state).store(R.destroyed, ordering: .releasing)
        atomic64(H.eventCounter).wrappingIncrement(ordering: .relaxed)
    }

    /// The session's event counter: bumped when a segment or region is created or destroyed.
    var eventCounter: UInt64 { atomic64(H.eventCounter).load(ordering: .acquiring) }
}
