import Foundation
import ShmCleanup
import ShmTestSupport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shmmonitor` run as a real process against private shm directories.
@Suite struct ShmMonitorCLITests {
    @Test func getShmIDPrintsFairMQsLine() throws {
        let result = try runTool("shmmonitor", ["--get-shmid", "-s", "default", "--user-id", "1000"])
        #expect(result.status == 0)
        #expect(result.stdout == "shmem id for session 'default' and user id 1000 is: eca859e3\n")

        let current = try runTool("shmmonitor", ["--get-shmid", "-s", "test_session"])
        let expected = ShmID(session: try SessionID("test_session"), userID: geteuid())
        #expect(current.stdout == "shmem id for session 'test_session' and current user id \(geteuid()) is: \(expected)\n")

        let json = try runTool("shmmonitor", ["--get-shmid", "-s", "abc", "--user-id", "500", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["shmid"] as? String == "ab281611")
    }

    @Test func listAllShowsEverySessionOnceWithObjectsAndSizes() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let result = try runTool("shmmonitor", ["--list-all", "--list-all-path", mixed.dir.path])
        #expect(result.status == 0)
        for id in mixed.allSessions {
            #expect(result.stdout.components(separatedBy: "Found shmid '\(id)':").count == 2, "\(id) once")
        }
        #expect(result.stdout.contains("session: \(mixed.oursSession)"))
        #expect(result.stdout.contains("fmq_\(mixed.ours)_m_0: 4096 bytes"))
        #expect(result.stdout.contains("management segment: foreign"))
        #expect(result.stdout.contains("The file 'iceoryx_mgmt' does not belong to the transport, skipping..."))

        let json = try runTool("shmmonitor", ["--list-all", "--shm-dir", mixed.dir.path, "--json"])
        let scan = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let sessions = try #require(scan["sessions"] as? [[String: Any]])
        #expect(Set(sessions.compactMap { $0["shmid"] as? String }) == Set(mixed.allSessions.map(\.rawValue)))
        let ours = try #require(sessions.first { $0["shmid"] as? String == mixed.ours.rawValue })
        #expect(ours["session"] as? String == mixed.oursSession.rawValue)
        #expect(ours["in_use"] as? Bool == false)
        let objects = try #require(ours["objects"] as? [[String: Any]])
        #expect(objects.count == 8)
        #expect(objects.compactMap { $0["size"] as? Int }.reduce(0, +) == ours["total_bytes"] as? Int)
        #expect((ours["record"] as? [String: Any])?["creator_uid"] as? Int == Int(geteuid()))
        #expect(scan["foreign_entries"] as? [String] == ["fmq_notours_mng", "iceoryx_mgmt", "sem.something"])
    }

    @Test func cleanupRemovesOnlyTheSessionAndPrintsEachObject() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let before = mixed.dir.entries()
        let result = try runTool("shmmonitor", ["-c", "-s", mixed.oursSession.rawValue, "--shm-dir", mixed.dir.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(
            result.stdout.hasPrefix(
                "Cleanup called with session id '\(mixed.oursSession)', translating to shared memory id '\(mixed.ours)'\n"))
        for name in ["rg_1024", "rgq_1024", "rrc_1024", "m_0", "m_1", "mng"] {
            #expect(result.stdout.contains("Successfully removed '\(mixed.dir.path)/fmq_\(mixed.ours)_\(name)'."))
        }
        #expect(result.stdout.contains("Successfully removed '\(mixed.dir.path)/sem.fmq_\(mixed.ours)_ms'."))
        #expect(mixed.dir.entries() == before.filter { !$0.contains("fmq_\(mixed.ours)_") })

        // A session whose management segment is missing, by shm id.
        let noMng = try runTool("shmmonitor", ["-c", "--shmid", mixed.noManagement.rawValue, "--shm-dir", mixed.dir.path])
        #expect(noMng.status == 0)
        #expect(mixed.names(of: mixed.noManagement).isEmpty)
        #expect(mixed.dir.entries().contains("iceoryx_mgmt"))
    }

    @Test func cleanupReportAsJSON() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let result = try runTool(
            "shmmonitor", ["-c", "--shmid", mixed.legacy.rawValue, "--shm-dir", mixed.dir.path, "--json"])
        #expect(result.status == 0)
        let report = try JSONDecoder().decode(CleanupReport.self, from: Data(result.stdout.utf8))
        #expect(report.sessions.count == 1)
        #expect(report.sessions[0].status == .removed)
        #expect(report.sessions[0].objects.map(\.action) == Array(repeating: .removed, count: 4))
    }

    @Test func sessionInUseIsRefusedWithExitThreeUnlessForced() throws {
        let dir = try ShmFixtureDirectory("cli-live")
        defer { dir.remove() }
        let session = ShmFixtureDirectory.uniqueSession("cli-live")
        let child = try KeepAliveChild(session: session, directory: dir.path)
        defer { child.kill() }

        let refused = try runTool("shmmonitor", ["-c", "-s", session.rawValue, "--shm-dir", dir.path])
        #expect(refused.status == 3)
        #expect(refused.stderr.contains("in use by pid \(child.pid) (shm-keepalive)"))
        #expect(refused.stderr.contains("--force"))
        #expect(dir.entries().count == 2)

        let compat = try runTool("shmmonitor", ["-c", "-s", session.rawValue, "--shm-dir", dir.path, "--fairmq-compat"])
        #expect(compat.status == 0)
        #expect(dir.entries().count == 2)

        let forced = try runTool("shmmonitor", ["-c", "-s", session.rawValue, "--shm-dir", dir.path, "--force"])
        #expect(forced.status == 0)
        #expect(dir.entries().isEmpty)
    }

    @Test func nothingMatchedExitsOneOnlyWhenAsked() throws {
        let dir = try ShmFixtureDirectory("cli-none")
        defer { dir.remove() }
        let plain = try runTool("shmmonitor", ["-c", "-s", "absent", "--shm-dir", dir.path])
        #expect(plain.status == 0)
        #expect(plain.stdout.contains("Nothing to clean."))
        let strict = try runTool("shmmonitor", ["-c", "-s", "absent", "--shm-dir", dir.path, "--require-match"])
        #expect(strict.status == 1)
    }

    @Test(arguments: [
        (["-c", "-s", "run/1"], "contains '/'"),
        (["-c", "-s", ""], "session id is empty"),
        (["-c", "--shmid", "1234567"], "is not 8 hex digits"),
        (["-c", "--shmid", "zzzzzzzz"], "is not 8 hex digits"),
        (["-c", "--shm-dir", "/nonexistent/shm"], "does not exist"),
        (["--list-all", "--list-all-path", "/nonexistent/shm"], "does not exist"),
        (["-c", "--get-shmid"], "separate modes"),
        (["--force"], "only apply with '--cleanup'"),
        (["-c", "--all-sessions", "-s", "x"], "leave out '-s'"),
        (["--no-such-flag"], "Unknown option"),
        (["--severity", "loud"], "unknown --severity 'loud'"),
    ])
    func badInputIsAOneLineErrorWithExitTwo(arguments: [String], message: String) throws {
        let result = try runTool("shmmonitor", arguments)
        #expect(result.status == 2)
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.hasPrefix("shmmonitor: "))
        #expect(result.stdout.isEmpty)
    }

    @Test(.enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
                   "runs the tool as another user: needs root and setpriv"))
    func nonRootCannotRemoveAnotherUsersSession() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let other = try #require(mixed.otherOwner)
        chmod(mixed.dir.path, 0o777)
        let before = mixed.dir.entries()
        let tool = builtProductsDirectory().appendingPathComponent("shmmonitor").path
        let result = try runTool(
            "/usr/bin/setpriv",
            ["--reuid", "4343", "--regid", "4343", "--clear-groups", tool, "-c", "--shmid", other.rawValue,
             "--shm-dir", mixed.dir.path])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("has objects of uid \(MixedDirectory.otherUID)"))
        #expect(result.stderr.contains("run the cleanup as that user or as root"))
        #expect(mixed.dir.entries() == before)
    }

    @Test func sweepsByJobAndPrefix() throws {
        let dir = try ShmFixtureDirectory("cli-sweep")
        defer { dir.remove() }
        let inJob = ShmID(session: try SessionID("ctest-a"))
        let otherJob = ShmID(session: try SessionID("ctest-b"))
        let noPrefix = ShmID(session: try SessionID("other-c"))
        for (id, name, job) in [(inJob, "ctest-a", UInt32(41)), (otherJob, "ctest-b", 42), (noPrefix, "other-c", 41)] {
            try dir.createManagement(
                id, ManagementRecord(sessionName: name, creatorUID: geteuid(), creatorPID: 1, creatorSlurmJobID: job))
            try dir.createObject("fmq_\(id)_m_0")
        }
        let byJob = try runTool("shmmonitor", ["-c", "--job", "41", "--shm-dir", dir.path])
        #expect(byJob.status == 0)
        #expect(dir.entries() == ["fmq_\(otherJob)_m_0", "fmq_\(otherJob)_mng"])

        let byPrefix = try runTool("shmmonitor", ["-c", "--session-prefix", "ctest-", "--shm-dir", dir.path])
        #expect(byPrefix.status == 0)
        #expect(dir.entries().isEmpty)
    }
}

extension MixedDirectory {
    var allSessions: [ShmID] {
        [ours, foreign, legacy, noManagement, symlinked] + (otherOwner.map { [$0] } ?? [])
    }
}
