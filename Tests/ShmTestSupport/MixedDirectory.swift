import Foundation
import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A shm directory holding several sessions of different kinds, built fresh for each test.
public struct MixedDirectory {
    public let dir: ShmFixtureDirectory
    public let regionDir: ShmFixtureDirectory
    public let ours: ShmID, foreign: ShmID, legacy: ShmID, noManagement: ShmID, symlinked: ShmID
    public let oursSession: SessionID
    public let otherOwner: ShmID?
    public static let otherUID: uid_t = 4242

    public init() throws {
        dir = try ShmFixtureDirectory("mixed")
        regionDir = try ShmFixtureDirectory("regions")
        oursSession = ShmFixtureDirectory.uniqueSession("ours")
        ours = ShmID(session: oursSession)
        foreign = ShmID(session: ShmFixtureDirectory.uniqueSession("cpp"))
        legacy = ShmID(session: ShmFixtureDirectory.uniqueSession("legacy"))
        noManagement = ShmID(session: ShmFixtureDirectory.uniqueSession("nomng"))
        symlinked = ShmID(session: ShmFixtureDirectory.uniqueSession("link"))

        // Ours: management record with a shm region and a file-backed region elsewhere.
        let record = ManagementRecord(
            sessionName: oursSession.rawValue, creatorUID: geteuid(), creatorPID: 1,
            processes: [.init(pid: 999_999, uid: geteuid(), startTime: 1)],  // long dead
            segments: [.init(id: 0, size: 8192, freeBytes: 8192), .init(id: 1, size: 4096, freeBytes: 0)],
            regions: [.init(id: 1024, size: 4096), .init(id: 7, size: 4096, path: regionDir.path + "/")])
        try dir.createManagement(ours, record)
        for name in ["m_0", "m_1", "rg_1024", "rgq_1024", "rrc_1024"] { try dir.createObject("fmq_\(ours)_\(name)") }
        try dir.createObject("sem.fmq_\(ours)_ms", size: 32)
        try regionDir.createObject("fmq_\(ours)_rg_7", size: 4096)

        // A C++ FairMQ session: same names, a boost.interprocess management segment.
        try dir.createObject("fmq_\(foreign)_mng", size: 0, contents: Array(repeating: 0xab, count: 6000))
        for name in ["m_0", "rg_1024", "rgq_1024"] { try dir.createObject("fmq_\(foreign)_\(name)") }
        try dir.createObject("sem.fmq_\(foreign)_ms", size: 32)

        // Legacy FairMQ names.
        for name in ["fmq_\(legacy)_main", "sem.fmq_\(legacy)_mtx", "fmq_\(legacy)_cv", "fmq_\(legacy)_cq"] {
            try dir.createObject(name)
        }

        // A crashed session whose management segment is gone.
        for name in ["m_0", "m_3", "rg_2"] { try dir.createObject("fmq_\(noManagement)_\(name)") }

        // Another user's session (only root can create it).
        if geteuid() == 0 {
            let other = ShmID(session: ShmFixtureDirectory.uniqueSession("other"), userID: Self.otherUID)
            try dir.createManagement(
                other, ManagementRecord(sessionName: "other", creatorUID: Self.otherUID, creatorPID: 1),
                owner: Self.otherUID)
            try dir.createObject("fmq_\(other)_m_0", owner: Self.otherUID)
            otherOwner = other
        } else {
            otherOwner = nil
        }

        // Strays and a symlink named like an object, pointing outside.
        try dir.createObject("iceoryx_mgmt")
        try dir.createObject("fmq_notours_mng")
        try dir.createObject("sem.something")
        let target = try regionDir.createObject("precious", size: 100)
        try dir.createSymlink("fmq_\(symlinked)_m_0", to: target)
    }

    public func names(of id: ShmID) -> [String] { dir.entries().filter { $0.contains("fmq_\(id)_") } }

    public func remove() {
        dir.remove()
        regionDir.remove()
    }
}

