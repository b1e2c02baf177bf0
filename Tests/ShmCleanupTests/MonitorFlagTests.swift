import Foundation
import ShmTestSupport
import Synchronization
import SystemPackage
import Testing

@testable import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

@Suite struct MonitorFlagTests {
    @Test func acquireLeavesOnlyTheCompleteFlagAndReleaseRemovesIt() throws {
        let dir = try ShmFixtureDirectory("flag-one")
        defer { dir.remove() }
        let id = ShmID(session: ShmFixtureDirectory.uniqueSession("flag-one"))
        let flag = MonitorFlag(id, directory: FilePath(dir.path))
        #expect(try flag.acquire() == nil)
        #expect(dir.entries() == ["sem.fmq_\(id)_ms"], "no temporary file is left behind")
        var st = stat()
        #expect(stat("\(dir.path)/sem.fmq_\(id)_ms", &st) == 0)
        #expect(st.st_size == 32)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(flag.holder() == .live(pid: getpid()))
        #expect(try flag.acquire() == .live(pid: getpid()), "a held flag is not taken twice")
        flag.release()
        #expect(dir.entries().isEmpty)
    }

    @Test func aFlagOfAnotherProgramIsNeitherTakenNorRemoved() throws {
        let dir = try ShmFixtureDirectory("flag-foreign")
        defer { dir.remove() }
        let id = ShmID(session: ShmFixtureDirectory.uniqueSession("flag-foreign"))
        try dir.createObject("sem.fmq_\(id)_ms", size: 32)
        let flag = MonitorFlag(id, directory: FilePath(dir.path))
        #expect(try flag.acquire() == .foreign)
        flag.release()
        #expect(dir.entries() == ["sem.fmq_\(id)_ms"])
    }

    /// Threads of one process race for the flag, round after round: exactly one takes it, and
    /// every other one sees a complete record of a live holder, never an empty or partial flag
    /// (which it would report as another program's).
    @Test func racingAcquiresGiveExactlyOneOwnerAndNeverAnIncompleteFlag() async throws {
        let dir = try ShmFixtureDirectory("flag-race")
        defer { dir.remove() }
        let id = ShmID(session: ShmFixtureDirectory.uniqueSession("flag-race"))
        let flag = MonitorFlag(id, directory: FilePath(dir.path))
        for _ in 0..<50 {
            let results = try await withThrowingTaskGroup(of: MonitorFlag.Holder?.self) { group in
                for _ in 0..<6 { group.addTask { try flag.acquire() } }
                return try await group.reduce(into: [MonitorFlag.Holder?]()) { $0.append($1) }
            }
            #expect(results.filter { $0 == nil }.count == 1, "\(results)")
            #expect(results.compactMap { $0 }.allSatisfy { $0 == .live(pid: getpid()) }, "\(results)")
            flag.release()
            #expect(dir.entries().isEmpty)
        }
    }

    /// Readers looking at the flag while it is taken and given back, over and over, only ever see
    /// no flag or the complete record of its live holder: a flag created empty and written
    /// afterwards would read as another program's, and stay so if its monitor died in between.
    @Test func readersNeverSeeAFlagWithoutItsRecord() throws {
        let dir = try ShmFixtureDirectory("flag-read")
        defer { dir.remove() }
        let id = ShmID(session: ShmFixtureDirectory.uniqueSession("flag-read"))
        let flag = MonitorFlag(id, directory: FilePath(dir.path))
        let done = Atomic<Bool>(false)
        let incomplete = Atomic<Int>(0)
        let readers = 3
        let finished = DispatchSemaphore(value: 0)
        for _ in 0..<readers {
            Thread {
                while !done.load(ordering: .acquiring) {
                    switch flag.holder() {
                    case nil, .live(pid: getpid()): break
                    default: incomplete.add(1, ordering: .relaxed)
                    }
                }
                finished.signal()
            }.start()
        }
        for _ in 0..<300 {
            #expect(try flag.acquire() == nil)
            flag.release()
        }
        done.store(true, ordering: .releasing)
        for _ in 0..<readers { finished.wait() }
        #expect(incomplete.load(ordering: .relaxed) == 0)
        #expect(dir.entries().isEmpty)
    }
}
