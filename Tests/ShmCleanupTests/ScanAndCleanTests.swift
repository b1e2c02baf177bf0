import Foundation
import Logging
import ShmTestSupport
import SystemPackage
import Testing

@testable import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

@Suite struct ScanAndCleanTests {
    let logger = Logger(label: "test")

    @Test func scanFindsEachSessionOnceWithItsObjects() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let scan = try SessionScanner(directory: FilePath(mixed.dir.path), logger: logger).scan()
        let ids = scan.sessions.map(\.shmID)
        #expect(Set(ids).count == ids.count)
        var expected: Set = [mixed.ours, mixed.foreign, mixed.legacy, mixed.noManagement, mixed.symlinked]
        if let other = mixed.otherOwner { expected.insert(other) }
        #expect(Set(ids) == expected)
        #expect(scan.foreignEntries == ["fmq_notours_mng", "iceoryx_mgmt", "sem.something"])

        let ours = try #require(scan.sessions.first { $0.shmID == mixed.ours })
        #expect(ours.managementStatus == .ours)
        #expect(ours.sessionName == mixed.oursSession.rawValue)
        #expect(ours.objects.count == 8)  // mng, m_0, m_1, rg, rgq, rrc, ms + the file-backed region
        #expect(ours.objects.contains { $0.path == "\(mixed.regionDir.path)/fmq_\(mixed.ours)_rg_7" })
        #expect(ours.objects.allSatisfy { $0.size > 0 })
        #expect(ours.users.isEmpty, "the registered pid is dead")

        #expect(scan.sessions.first { $0.shmID == mixed.foreign }?.managementStatus == .foreign)
        #expect(scan.sessions.first { $0.shmID == mixed.noManagement }?.managementStatus == .missing)
        #expect(scan.sessions.first { $0.shmID == mixed.legacy }?.objects.count == 4)
        #expect(scan.sessions.first { $0.shmID == mixed.symlinked }?.objects.first?.fileType == .symlink)
    }

    @Test func cleanupRemovesExactlyOneSessionInFairMQOrder() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let before = mixed.dir.entries()
        let cleaner = SessionCleaner(directory: FilePath(mixed.dir.path), logger: logger)
        let report = try cleaner.clean([mixed.ours])
        let outcome = try #require(report.sessions.first)
        #expect(outcome.status == .removed)
        #expect(report.sessionsLeft.isEmpty)
        #expect(outcome.sessionName == mixed.oursSession.rawValue)
        #expect(outcome.objects.allSatisfy { $0.action == .removed })
        #expect(
            outcome.objects.map(\.name) == [
                "fmq_\(mixed.ours)_rg_7", "fmq_\(mixed.ours)_rg_1024", "fmq_\(mixed.ours)_rgq_1024",
                "fmq_\(mixed.ours)_rrc_1024", "fmq_\(mixed.ours)_m_0", "fmq_\(mixed.ours)_m_1",
                "fmq_\(mixed.ours)_mng", "sem.fmq_\(mixed.ours)_ms",
            ])
        #expect(mixed.dir.entries() == before.filter { !$0.contains("fmq_\(mixed.ours)_") })
        #expect(mixed.regionDir.entries() == ["precious"], "file-backed region removed, nothing else")
    }

    @Test(arguments: ["foreign", "legacy", "noManagement"])
    func cleanupWithoutOurManagementRecordStillRemovesEverything(kind: String) throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let id = kind == "foreign" ? mixed.foreign : kind == "legacy" ? mixed.legacy : mixed.noManagement
        let before = mixed.dir.entries()
        let report = try SessionCleaner(directory: FilePath(mixed.dir.path), logger: logger).clean([id])
        #expect(report.sessions.first?.status == .removed)
        #expect(mixed.names(of: id).isEmpty)
        #expect(mixed.dir.entries() == before.filter { !$0.contains("fmq_\(id)_") })
    }

    @Test func symlinksAreNeverFollowedOrRemoved() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let report = try SessionCleaner(directory: FilePath(mixed.dir.path), logger: logger).clean([mixed.symlinked])
        let outcome = try #require(report.sessions.first)
        #expect(outcome.status == .incomplete)
        #expect(outcome.objects.first?.action == .kept)
        #expect(outcome.objects.first?.reason?.contains("symlink") == true)
        #expect(mixed.dir.entries().contains("fmq_\(mixed.symlinked)_m_0"))
        #expect(FileManager.default.contents(atPath: "\(mixed.regionDir.path)/precious")?.count == 100)
    }

    @Test func missingSessionIsNothingFound() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let before = mixed.dir.entries()
        let report = try SessionCleaner(directory: FilePath(mixed.dir.path), logger: logger)
            .clean([ShmID(number: 0x1234_5678)])
        #expect(report.sessions.first?.status == .nothingFound)
        #expect(!report.matchedAnything)
        #expect(report.sessionsLeft.isEmpty)
        #expect(mixed.dir.entries() == before)
    }

    @Test func dryRunRemovesNothing() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let before = mixed.dir.entries()
        let report = try SessionCleaner(directory: FilePath(mixed.dir.path), logger: logger)
            .clean([mixed.ours], options: .init(dryRun: true))
        #expect(report.sessions.first?.status == .wouldRemove)
        #expect(report.sessionsLeft.map(\.shmID) == [mixed.ours])
        #expect(report.sessions.first?.objects.allSatisfy { $0.action == .wouldRemove } == true)
        #expect(mixed.dir.entries() == before)
    }

    @Test func liveMappingRefusesUnlessForced() throws {
        let dir = try ShmFixtureDirectory("live")
        defer { dir.remove() }
        let session = ShmFixtureDirectory.uniqueSession("live")
        let child = try KeepAliveChild(session: session, directory: dir.path)
        defer { child.kill() }
        let cleaner = SessionCleaner(directory: FilePath(dir.path), logger: logger)

        let refused = try cleaner.clean([child.shmID])
        let outcome = try #require(refused.sessions.first)
        #expect(outcome.status == .refusedInUse)
        #expect(refused.sessionsLeft.map(\.shmID) == [child.shmID])
        #expect(outcome.users.map(\.pid) == [child.pid])
        #expect(outcome.users.first?.evidence == .maps)
        #expect(outcome.message?.contains("pid \(child.pid)") == true)
        #expect(dir.entries().count == 2)

        let forced = try cleaner.clean([child.shmID], options: .init(force: true))
        #expect(forced.sessions.first?.status == .removed)
        #expect(dir.entries().isEmpty)
    }

    @Test func registeredLiveProcessMeansInUseAndRecycledPidDoesNot() throws {
        let dir = try ShmFixtureDirectory("registered")
        defer { dir.remove() }
        let parent = getppid()
        let live = ShmID(session: ShmFixtureDirectory.uniqueSession("reg-live"))
        let recycled = ShmID(session: ShmFixtureDirectory.uniqueSession("reg-recycled"))
        try dir.createManagement(
            live,
            ManagementRecord(
                sessionName: "live", creatorUID: geteuid(), creatorPID: parent,
                processes: [.init(pid: parent, uid: geteuid(), startTime: processStartTime(parent), slurmJobID: 31)]))
        try dir.createManagement(
            recycled,
            ManagementRecord(
                sessionName: "recycled", creatorUID: geteuid(), creatorPID: parent,
                processes: [.init(pid: parent, uid: geteuid(), startTime: processStartTime(parent) + 1)]))
        let scan = try SessionScanner(directory: FilePath(dir.path), logger: logger).scan()
        let liveSession = try #require(scan.sessions.first { $0.shmID == live })
        #expect(liveSession.users.map(\.pid) == [parent])
        #expect(liveSession.users.first?.evidence == .registered)
        #expect(liveSession.users.first?.slurmJobID == 31)
        #expect(liveSession.slurmJobIDs == [31])
        #expect(scan.sessions.first { $0.shmID == recycled }?.users.isEmpty == true)
    }

    @Test func rootMayRemoveAnotherUsersSession() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        guard let other = mixed.otherOwner else { return }  // needs root to create; the CLI test runs the refusal as non-root
        // Root may remove it.
        let report = try SessionCleaner(directory: FilePath(mixed.dir.path), logger: logger).clean([other])
        #expect(report.sessions.first?.status == .removed)
        #expect(mixed.names(of: other).isEmpty)
    }

    @Test func sweepKeepsSessionsInUse() throws {
        let dir = try ShmFixtureDirectory("sweep")
        defer { dir.remove() }
        let child = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("sweep-live"), directory: dir.path)
        defer { child.kill() }
        let dead = ShmID(session: ShmFixtureDirectory.uniqueSession("sweep-dead"))
        try dir.createObject("fmq_\(dead)_m_0")
        let report = try SessionCleaner(directory: FilePath(dir.path), logger: logger).sweep { _ in true }
        #expect(report.sessions.first { $0.shmID == dead }?.status == .removed)
        #expect(report.sessions.first { $0.shmID == child.shmID }?.status == .refusedInUse)
        #expect(dir.entries() == ["fmq_\(child.shmID)_m_0", "fmq_\(child.shmID)_mng"])
    }
}
