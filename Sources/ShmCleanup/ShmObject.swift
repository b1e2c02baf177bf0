#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// One object of a session found on disk: a file in the shm directory, or the file of a
/// file-backed region at a path recorded in the management segment.
public struct ShmObject: Sendable, Hashable, Codable {
    /// What kind of file the entry is. Only regular files are ever removed.
    public enum FileType: String, Sendable, Hashable, Codable {
        case regular, symlink, directory, other
    }

    /// The parsed name.
    public let name: ShmObjectName
    /// Full path of the file.
    public let path: String
    /// The owner's uid.
    public let ownerUID: UInt32
    /// Size in bytes (`st_size`).
    public let size: Int64
    /// Allocated bytes (`st_blocks * 512`), what the object really costs in tmpfs.
    public let allocatedBytes: Int64
    public let fileType: FileType
    let key: FileKey

    init(name: ShmObjectName, path: String, stat st: stat) {
        self.name = name
        self.path = path
        self.ownerUID = st.st_uid
        self.size = Int64(st.st_size)
        self.allocatedBytes = Int64(st.st_blocks) * 512
        switch st.st_mode & S_IFMT {
        case S_IFREG: self.fileType = .regular
        case S_IFLNK: self.fileType = .symlink
        case S_IFDIR: self.fileType = .directory
        default: self.fileType = .other
        }
        self.key = FileKey(st)
    }

    /// The file name (last path component).
    public var fileName: String { name.fileName }

    enum CodingKeys: String, CodingKey {
        case name, kind, index, path, ownerUID = "owner_uid", size, allocatedBytes = "allocated_bytes"
        case fileType = "file_type"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name.fileName, forKey: .name)
        try c.encode(name.kind.label, forKey: .kind)
        try c.encodeIfPresent(name.kind.index, forKey: .index)
        try c.encode(path, forKey: .path)
        try c.encode(ownerUID, forKey: .ownerUID)
        try c.encode(size, forKey: .size)
        try c.encode(allocatedBytes, forKey: .allocatedBytes)
        try c.encode(fileType, forKey: .fileType)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let fileName = try c.decode(String.self, forKey: .name)
        guard let name = ShmObjectName(fileName: fileName) else {
            throw DecodingError.dataCorruptedError(forKey: .name, in: c, debugDescription: "not an object name")
        }
        self.name = name
        self.path = try c.decode(String.self, forKey: .path)
        self.ownerUID = try c.decode(UInt32.self, forKey: .ownerUID)
        self.size = try c.decode(Int64.self, forKey: .size)
        self.allocatedBytes = try c.decode(Int64.self, forKey: .allocatedBytes)
        self.fileType = try c.decode(FileType.self, forKey: .fileType)
        self.key = FileKey(device: 0, inode: 0)
    }
}

extension ShmObjectName.Kind {
    /// A short label: `mng`, `segment`, `region`, `region-queue`, `region-refcount`, `monitor-flag`, `legacy-…`.
    public var label: String {
        switch self {
        case .management: return "mng"
        case .managementDraft: return "mng-draft"
        case .segment: return "segment"
        case .region: return "region"
        case .regionQueue: return "region-queue"
        case .regionRefCount: return "region-refcount"
        case .monitorFlag: return "monitor-flag"
        case .legacyMainSegment: return "legacy-main"
        case .legacyMutex: return "legacy-mutex"
        case .legacyCondition: return "legacy-condition"
        case .legacyHeartbeatQueue: return "legacy-heartbeat-queue"
        }
    }

    /// The segment or region index, if the kind has one.
    public var index: UInt32? {
        switch self {
        case .segment(let n), .region(let n), .regionQueue(let n), .regionRefCount(let n): return n
        default: return nil
        }
    }
}
