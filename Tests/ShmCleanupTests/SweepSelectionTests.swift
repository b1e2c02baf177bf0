import Foundation
import Logging
import ShmCleanup
import ShmTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The sweep rules live in the engine: by Slurm job, by session-name prefix, or every session,
/// always only the given user's.
@Suite struct SweepSelectionTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    @Test func rulesSelectByJobPrefixAndOwner() throws {
        let dir = try ShmFixtureDirectory("sweep-rules")
        defer { dir.remove() }
        let me = geteuid()
        func session(_ name: String, job: UInt32, processJob: UInt32 = 0) throws -> ShmID {
            let id = ShmID(session: try SessionID(name))
            let record = ManagementRecord(
                sessionName: name, creatorUID: me, creatorPID: 1, creatorSlurmJobID: job,
                processes: processJob == 0 ? [] : [.init(pid: 999_999, uid: me, startTime: 1, slurmJobID: processJob)])
            try dir.createManagement(id, record)
            try dir.createObject("fmq_\(id)_m_0")
            return id
        }
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let job7 = try session("ci-\(tag)-a", job: 7)
        let job8 = try session("ci-\(tag)-b", job: 8, processJob: 7)  // a process of job 7 attached
        let other = try session("run-\(tag)", job: 9)
        let notMine = ShmID(session: try SessionID("ci-\(tag)-c"))
        try dir.createManagement(notMine, ManagementRecord(sessionName: "ci-\(tag)-c", creatorUID: me &+ 1, creatorPID: 1))
        let scan = try SessionScanner(directory: FilePath(dir.path), logger: logger).scan()
        func selected(_ rule: SweepSelection.Rule) -> Set<ShmID> {
            Set(scan.sessions.filter { SweepSelection(rule, userID: me).selects($0) }.map(\.shmID))
        }
        #expect(selected(.slurmJobs([7])) == [job7, job8])
        #expect(selected(.slurmJobs([9])) == [other])
        #expect(selected(.sessionPrefix("ci-\(tag)")) == [job7, job8], "not the session another user created")
        #expect(selected(.allSessions) == [job7, job8, other])
        #expect(Set(scan.sessions.filter { SweepSelection(.allSessions, userID: me &+ 1).selects($0) }.map(\.shmID)).isEmpty,
                "objects owned by another uid are never selected for it")

        let report = try SessionCleaner(directory: FilePath(dir.path), logger: logger).sweep(SweepSelection(.slurmJobs([7]), userID: me))
        #expect(Set(report.sessions.map(\.shmID)) == [job7, job8])
        #expect(report.sessions.allSatisfy { $0.status == .removed })
        #expect(dir.entries().sorted() == ["fmq_\(notMine)_mng", "fmq_\(other)_m_0", "fmq_\(other)_mng"].sorted())
    }
}
