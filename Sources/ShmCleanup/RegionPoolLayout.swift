#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The header of a region's reference-count pool `fmq_<id>_rrc_<n>` (the pool itself is
/// `ShmCore.RegionReferencePool`): the one place its layout is written down, so the core that
/// keeps it and the tools that show it agree.
///
/// ```
/// offset  size  field
///      0     8  magic "SHMTRRC1"
///      8     4  capacity        counters in the pool
///     16     8  freeHead        atomic: (tag << 32) | (index + 1) of the first free counter
///     24     4  nextUnused      atomic: counters at and above it were never handed out
///     28     4  inUse           atomic: counters handed out and not given back
///     64     …  capacity × 8 bytes: { count UInt32 atomic, nextFree UInt32 }
/// ```
public enum RegionPoolLayout {
    public static let magic: UInt64 = 0x3143_5252_544D_4853  // "SHMTRRC1"
    public static let headerSize = 64
    public static let counterSize = 8
    public static let capacity = 8
    public static let freeHead = 16
    public static let nextUnused = 24
    public static let inUse = 28

    /// Counters a pool of `bytes` holds.
    public static func capacity(bytes: Int) -> Int { max(0, (bytes - headerSize) / counterSize) }

    /// Counters in use and the capacity of the pool file at `path` (read without following a
    /// symlink); nil when it is not a pool of this layout. Values are checked, never trusted.
    public static func usage(atPath path: String) -> (inUse: Int, capacity: Int)? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= headerSize else { return nil }
        var header = [UInt8](repeating: 0, count: 32)
        guard pread(fd, &header, 32, 0) == 32 else { return nil }
        return header.withUnsafeBytes { raw -> (Int, Int)? in
            guard UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) == magic else { return nil }
            let cap = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: capacity, as: UInt32.self)))
            let used = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: inUse, as: UInt32.self)))
            guard cap <= Self.capacity(bytes: Int(st.st_size)), used <= cap else { return nil }
            return (used, cap)
        }
    }
}
