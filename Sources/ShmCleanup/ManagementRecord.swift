/// A decoded snapshot of this transport's management segment (layout: ``ManagementLayout``).
///
/// The cleanup engine reads it to name a session, to find its creator, attached processes,
/// segments and regions (including file-backed regions outside the shm directory).
public struct ManagementRecord: Sendable, Hashable, Codable {
    /// One process attached to the session.
    public struct Process: Sendable, Hashable, Codable {
        public var pid: Int32
        public var uid: UInt32
        /// Process start time in clock ticks since boot (`/proc/<pid>/stat` field 22); tells a
        /// live process from a recycled pid.
        public var startTime: UInt64
        /// Slurm job id, 0 when not in a job.
        public var slurmJobID: UInt32
        /// Slurm step id, `nil` when not in a step.
        public var slurmStepID: UInt32?
        public var segmentID: UInt16
        public var attachedAtNanos: UInt64
        public var lastHeartbeatNanos: UInt64

        enum CodingKeys: String, CodingKey {
            case pid, uid, startTime = "start_time", slurmJobID = "slurm_job_id", slurmStepID = "slurm_step_id"
            case segmentID = "segment_id", attachedAtNanos = "attached_at_ns", lastHeartbeatNanos = "last_heartbeat_ns"
        }

        public init(
            pid: Int32, uid: UInt32, startTime: UInt64, slurmJobID: UInt32 = 0, slurmStepID: UInt32? = nil,
            segmentID: UInt16 = 0, attachedAtNanos: UInt64 = 0, lastHeartbeatNanos: UInt64 = 0
        ) {
            self.pid = pid
            self.uid = uid
            self.startTime = startTime
            self.slurmJobID = slurmJobID
            self.slurmStepID = slurmStepID
            self.segmentID = segmentID
            self.attachedAtNanos = attachedAtNanos
            self.lastHeartbeatNanos = lastHeartbeatNanos
        }
    }

    /// One managed segment registered in the session.
    public struct Segment: Sendable, Hashable, Codable {
        public var id: UInt16
        /// 0 `rbtree_best_fit`, 1 `simple_seq_fit`.
        public var allocator: UInt8
        public var size: UInt64
        public var freeBytes: UInt64
        public var creatorPID: Int32

        enum CodingKeys: String, CodingKey {
            case id, allocator, size, freeBytes = "free_bytes", creatorPID = "creator_pid"
        }

        public init(id: UInt16, allocator: UInt8 = 0, size: UInt64, freeBytes: UInt64, creatorPID: Int32 = 0) {
            self.id = id
            self.allocator = allocator
            self.size = size
            self.freeBytes = freeBytes
            self.creatorPID = creatorPID
        }

        /// The allocator's name as FairMQ spells it.
        public var allocatorName: String { allocator == 1 ? "simple_seq_fit" : "rbtree_best_fit" }
    }

    /// One unmanaged region registered in the session.
    public struct Region: Sendable, Hashable, Codable {
        public var id: UInt16
        public var destroyed: Bool
        public var size: UInt64
        public var rcSegmentSize: UInt64
        public var creationFlags: Int32
        public var userFlags: UInt64
        /// Directory prefix of a file-backed region (`<path>fmq_<id>_rg_<n>`); empty for shm.
        public var path: String
        /// The process receiving the region's release acknowledgements (0: none).
        public var controllerPID: Int32

        enum CodingKeys: String, CodingKey {
            case id, destroyed, size, rcSegmentSize = "rc_segment_size", creationFlags = "creation_flags"
            case userFlags = "user_flags", path, controllerPID = "controller_pid"
        }

        public init(
            id: UInt16, destroyed: Bool = false, size: UInt64, rcSegmentSize: UInt64 = 0, creationFlags: Int32 = 0,
            userFlags: UInt64 = 0, path: String = "", controllerPID: Int32 = 0
        ) {
            self.controllerPID = controllerPID
            self.id = id
            self.destroyed = destroyed
            self.size = size
            self.rcSegmentSize = rcSegmentSize
            self.creationFlags = creationFlags
            self.userFlags = userFlags
            self.path = path
        }
    }

    public var sessionName: String
    public var creatorUID: UInt32
    public var creatorPID: Int32
    /// The Slurm job the creator ran in (0: none).
    public var creatorSlurmJobID: UInt32
    /// The Slurm step the creator ran in (`nil`: none).
    public var creatorSlurmStepID: UInt32?
    public var flags: UInt32
    public var createdAtNanos: UInt64
    public var deviceCount: UInt32
    public var eventCounter: UInt64
    public var heartbeat: UInt64
    public var totalSize: UInt64
    /// Whether the creator finished initialising the record.
    public var ready: Bool
    public var processes: [Process]
    public var segments: [Segment]
    public var regions: [Region]

    enum CodingKeys: String, CodingKey {
        case sessionName = "session_name", creatorUID = "creator_uid", creatorPID = "creator_pid"
        case creatorSlurmJobID = "creator_slurm_job_id", creatorSlurmStepID = "creator_slurm_step_id", flags
        case createdAtNanos = "created_at_ns", deviceCount = "device_count", eventCounter = "event_counter"
        case heartbeat, totalSize = "total_size", ready, processes, segments, regions
    }

    public init(
        sessionName: String, creatorUID: UInt32, creatorPID: Int32, creatorSlurmJobID: UInt32 = 0,
        creatorSlurmStepID: UInt32? = nil, flags: UInt32 = 0, createdAtNanos: UInt64 = 0,
        deviceCount: UInt32 = 0, eventCounter: UInt64 = 0, heartbeat: UInt64 = 0,
        totalSize: UInt64 = UInt64(ManagementLayout.defaultTotalSize), ready: Bool = true,
        processes: [Process] = [], segments: [Segment] = [], regions: [Region] = []
    ) {
        self.sessionName = sessionName
        self.creatorUID = creatorUID
        self.creatorPID = creatorPID
        self.creatorSlurmJobID = creatorSlurmJobID
        self.creatorSlurmStepID = creatorSlurmStepID
        self.flags = flags
        self.createdAtNanos = createdAtNanos
        self.deviceCount = deviceCount
        self.eventCounter = eventCounter
        self.heartbeat = heartbeat
        self.totalSize = totalSize
        self.ready = ready
        self.processes = processes
        self.segments = segments
        self.regions = regions
    }
}

extension ManagementRecord {
    /// Why a management segment could not be decoded.
    public enum DecodeFailure: Error, Sendable, Hashable, CustomStringConvertible {
        /// The magic is not ours: a C++ FairMQ session (boost.interprocess) or something else.
        case foreign
        /// Ours, but a layout version this build does not know.
        case unsupportedVersion(UInt32)
        /// Ours, but truncated or with tables that do not fit.
        case corrupt(String)

        public var description: String {
            switch self {
            case .foreign: return "not a ShmTransport management segment (C++ FairMQ or foreign layout)"
            case .unsupportedVersion(let v):
                return "management layout version \(v) is not supported by this build (it reads version \(ManagementLayout.version)); use a matching shmmonitor"
            case .corrupt(let why): return "corrupt management segment: \(why)"
            }
        }
    }

    /// Decodes a snapshot of a management segment's bytes.
    public init(bytes: UnsafeRawBufferPointer) throws(DecodeFailure) {
        typealias H = ManagementLayout.Header
        guard bytes.count >= 8, bytes.loadLE(UInt64.self, H.magic) == ManagementLayout.magic else {
            throw .foreign
        }
        guard bytes.count >= ManagementLayout.headerSize else { throw .corrupt("only \(bytes.count) bytes") }
        let version = bytes.loadLE(UInt32.self, H.layoutVersion)
        guard version == ManagementLayout.version else { throw .unsupportedVersion(version) }

        let nameLength = Int(bytes.loadLE(UInt32.self, H.sessionNameLength))
        guard nameLength <= ManagementLayout.sessionNameCapacity else {
            throw .corrupt("session name length \(nameLength)")
        }
        let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[H.sessionName..<(H.sessionName + nameLength)])
        self.sessionName = String(decoding: nameBytes, as: UTF8.self)
        self.creatorUID = bytes.loadLE(UInt32.self, H.creatorUID)
        self.creatorPID = bytes.loadLE(Int32.self, H.creatorPID)
        self.creatorSlurmJobID = bytes.loadLE(UInt32.self, H.creatorSlurmJobID)
        let creatorStep = bytes.loadLE(UInt32.self, H.creatorSlurmStepID)
        self.creatorSlurmStepID = creatorStep == ManagementLayout.ProcessEntry.noStep ? nil : creatorStep
        self.flags = bytes.loadLE(UInt32.self, H.flags)
        self.createdAtNanos = bytes.loadLE(UInt64.self, H.createdAtNanos)
        self.deviceCount = bytes.loadLE(UInt32.self, H.deviceCount)
        self.eventCounter = bytes.loadLE(UInt64.self, H.eventCounter)
        self.heartbeat = bytes.loadLE(UInt64.self, H.heartbeat)
        self.totalSize = bytes.loadLE(UInt64.self, H.totalSize)
        self.ready = bytes.loadLE(UInt32.self, H.state) == ManagementLayout.State.ready

        let geometry: ManagementLayout.Geometry
        switch ManagementLayout.Geometry.read(bytes, objectSize: bytes.count) {
        case .success(let g): geometry = g
        case .failure(let damage): throw .corrupt(damage.description)
        }

        typealias P = ManagementLayout.ProcessEntry
        let p = geometry.processes
        self.processes = (0..<p.capacity).compactMap { i in
            let e = p.offset + i * p.stride
            guard bytes.loadLE(UInt32.self, e + P.state) == P.attached else { return nil }
            let step = bytes.loadLE(UInt32.self, e + P.slurmStepID)
            return Process(
                pid: bytes.loadLE(Int32.self, e + P.pid), uid: bytes.loadLE(UInt32.self, e + P.uid),
                startTime: bytes.loadLE(UInt64.self, e + P.startTime),
                slurmJobID: bytes.loadLE(UInt32.self, e + P.slurmJobID),
                slurmStepID: step == P.noStep ? nil : step,
                segmentID: bytes.loadLE(UInt16.self, e + P.segmentID),
                attachedAtNanos: bytes.loadLE(UInt64.self, e + P.attachedAtNanos),
                lastHeartbeatNanos: bytes.loadLE(UInt64.self, e + P.lastHeartbeatNanos))
        }

        typealias S = ManagementLayout.SegmentEntry
        let s = geometry.segments
        self.segments = (0..<s.capacity).compactMap { i in
            let e = s.offset + i * s.stride
            guard bytes.loadLE(UInt32.self, e + S.state) == S.registered else { return nil }
            return Segment(
                id: bytes.loadLE(UInt16.self, e + S.segmentID), allocator: bytes.loadLE(UInt8.self, e + S.allocator),
                size: bytes.loadLE(UInt64.self, e + S.segmentSize), freeBytes: bytes.loadLE(UInt64.self, e + S.freeBytes),
                creatorPID: bytes.loadLE(Int32.self, e + S.creatorPID))
        }

        typealias R = ManagementLayout.RegionEntry
        let r = geometry.regions
        var regions: [Region] = []
        for i in 0..<r.capacity {
            let e = r.offset + i * r.stride
            let state = bytes.loadLE(UInt32.self, e + R.state)
            guard state == R.alive || state == R.destroyed else { continue }
            let pathLength = Int(bytes.loadLE(UInt16.self, e + R.pathLength))
            guard pathLength <= R.pathCapacity else { throw .corrupt("region path length \(pathLength)") }
            let path = String(
                decoding: UnsafeRawBufferPointer(rebasing: bytes[(e + R.path)..<(e + R.path + pathLength)]),
                as: UTF8.self)
            regions.append(
                Region(
                    id: bytes.loadLE(UInt16.self, e + R.regionID), destroyed: state == R.destroyed,
                    size: bytes.loadLE(UInt64.self, e + R.regionSize),
                    rcSegmentSize: bytes.loadLE(UInt64.self, e + R.rcSegmentSize),
                    creationFlags: bytes.loadLE(Int32.self, e + R.creationFlags),
                    userFlags: bytes.loadLE(UInt64.self, e + R.userFlags), path: path,
                    controllerPID: bytes.loadLE(Int32.self, e + R.controllerPID)))
        }
        self.regions = regions
    }

    /// Encodes this record in this build's layout version (``ManagementLayout/version``) with the default table capacities.
    ///
    /// The shared-memory core uses it to lay out a fresh management segment (it then
    /// initialises the lock in place); tests use it to build sessions by hand.
    /// - Returns: `ManagementLayout.defaultTotalSize` bytes; the lock area is zero.
    public func encoded() -> [UInt8] {
        typealias H = ManagementLayout.Header
        typealias P = ManagementLayout.ProcessEntry
        typealias S = ManagementLayout.SegmentEntry
        typealias R = ManagementLayout.RegionEntry
        var out = [UInt8](repeating: 0, count: ManagementLayout.defaultTotalSize)
        out.withUnsafeMutableBytes { b in
            b.storeLE(ManagementLayout.magic, H.magic)
            b.storeLE(ManagementLayout.version, H.layoutVersion)
            b.storeLE(UInt32(ManagementLayout.headerSize), H.headerSize)
            b.storeLE(UInt64(b.count), H.totalSize)
            b.storeLE(ready ? ManagementLayout.State.ready : ManagementLayout.State.initialising, H.state)
            b.storeLE(creatorUID, H.creatorUID)
            b.storeLE(creatorPID, H.creatorPID)
            b.storeLE(creatorSlurmJobID, H.creatorSlurmJobID)
            b.storeLE(creatorSlurmStepID ?? P.noStep, H.creatorSlurmStepID)
            b.storeLE(flags, H.flags)
            b.storeLE(createdAtNanos, H.createdAtNanos)
            b.storeLE(deviceCount, H.deviceCount)
            b.storeLE(UInt32(1024), H.regionCounter)
            b.storeLE(eventCounter, H.eventCounter)
            b.storeLE(heartbeat, H.heartbeat)
            let name = Array(sessionName.utf8.prefix(ManagementLayout.sessionNameCapacity))
            b.storeLE(UInt32(name.count), H.sessionNameLength)
            for (i, byte) in name.enumerated() { b[H.sessionName + i] = byte }
            b.storeLE(UInt64(ManagementLayout.defaultProcessTableOffset), H.processTableOffset)
            b.storeLE(UInt32(ManagementLayout.defaultProcessCapacity), H.processCapacity)
            b.storeLE(UInt32(P.size), H.processEntrySize)
            b.storeLE(UInt64(ManagementLayout.defaultSegmentTableOffset), H.segmentTableOffset)
            b.storeLE(UInt32(ManagementLayout.defaultSegmentCapacity), H.segmentCapacity)
            b.storeLE(UInt32(S.size), H.segmentEntrySize)
            b.storeLE(UInt64(ManagementLayout.defaultRegionTableOffset), H.regionTableOffset)
            b.storeLE(UInt32(ManagementLayout.defaultRegionCapacity), H.regionCapacity)
            b.storeLE(UInt32(R.size), H.regionEntrySize)
            b.storeLE(UInt64(ManagementLayout.lockOffset), H.lockOffset)
            b.storeLE(UInt32(ManagementLayout.lockSize), H.lockSize)

            for (i, p) in processes.prefix(ManagementLayout.defaultProcessCapacity).enumerated() {
                let e = ManagementLayout.defaultProcessTableOffset + i * P.size
                b.storeLE(P.attached, e + P.state)
                b.storeLE(p.pid, e + P.pid)
                b.storeLE(p.uid, e + P.uid)
                b.storeLE(p.slurmStepID ?? P.noStep, e + P.slurmStepID)
                b.storeLE(p.startTime, e + P.startTime)
                b.storeLE(p.slurmJobID, e + P.slurmJobID)
                b.storeLE(p.segmentID, e + P.segmentID)
                b.storeLE(p.attachedAtNanos, e + P.attachedAtNanos)
                b.storeLE(p.lastHeartbeatNanos, e + P.lastHeartbeatNanos)
            }
            for (i, s) in segments.prefix(ManagementLayout.defaultSegmentCapacity).enumerated() {
                let e = ManagementLayout.defaultSegmentTableOffset + i * S.size
                b.storeLE(S.registered, e + S.state)
                b.storeLE(s.id, e + S.segmentID)
                b.storeLE(s.allocator, e + S.allocator)
                b.storeLE(s.size, e + S.segmentSize)
                b.storeLE(s.freeBytes, e + S.freeBytes)
                b.storeLE(s.creatorPID, e + S.creatorPID)
            }
            for (i, r) in regions.prefix(ManagementLayout.defaultRegionCapacity).enumerated() {
                let e = ManagementLayout.defaultRegionTableOffset + i * R.size
                b.storeLE(r.destroyed ? R.destroyed : R.alive, e + R.state)
                b.storeLE(r.id, e + R.regionID)
                let path = Array(r.path.utf8.prefix(R.pathCapacity))
                b.storeLE(UInt16(path.count), e + R.pathLength)
                b.storeLE(r.size, e + R.regionSize)
                b.storeLE(r.rcSegmentSize, e + R.rcSegmentSize)
                b.storeLE(r.creationFlags, e + R.creationFlags)
                b.storeLE(r.userFlags, e + R.userFlags)
                b.storeLE(r.controllerPID, e + R.controllerPID)
                for (j, byte) in path.enumerated() { b[e + R.path + j] = byte }
            }
        }
        return out
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func loadLE<T: FixedWidthInteger>(_: T.Type, _ offset: Int) -> T {
        T(littleEndian: self.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always)
    func storeLE<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
        self.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}
