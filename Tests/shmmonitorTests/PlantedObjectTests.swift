import Foundation
import Logging
import ShmCleanup
import ShmCore
import ShmTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A FIFO or a symlink planted under a session's object names is never followed, opened or
/// removed: a device attaching fails at once with an error naming it, and every `shmmonitor`
/// mode leaves it (and what a symlink points at) as it was.
@Suite("Planted FIFOs and symlinks", .serialized)
struct PlantedObjectTests {
    static let logger = Logger(label: "planted-tests")

    @Test func aFIFOUnderTheManagementNameIsNeverOpenedOrRemoved() throws {
        let dir = try ShmFixtureDirectory("planted-fifo")
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("planted-fifo")
        let id = ShmID(session: session)
        let fifo = "\(dir.path)/fmq_\(id)_mng"
        try #require(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }

        // A reader of a FIFO blocks until a writer comes: a hang here would fail the time check.
        let start = MonotonicClock.nanoseconds()
        #expect {
            _ = try SessionMemory(SessionConfiguration(session: session, directory: FilePath(dir.path), segmentSize: 1 << 20), logger: Self.logger)
        } throws: { error in
            "\(error)".contains("fmq_\(id)_mng' in \(dir.path) is a FIFO, not a shared memory object, so it is left untouched")
        }
        #expect(MonotonicClock.nanoseconds() - start < 2_000_000_000, "refused at once, not after a wait")
        #expect(dir.entries() == ["fmq_\(id)_mng"], "no segment was left behind: \(dir.entries())")

        let common = ["-s", session.rawValue, "--shm-dir", dir.path]
        for arguments in [["-v"], ["-b"], ["--list-all"], ["-c"], ["-c", "--force"]] {
            let result = try runTool("/usr/bin/timeout", ["10", builtProductsDirectory().appendingPathComponent("shmmonitor").path] + arguments + common)
            #expect(!result.crashed && [0, 2].contains(result.status), "\(arguments): \(result.status) \(result.stderr)")
        }
        let reset = try runTool("shmmonitor", ["-r"] + common)
        #expect(reset.status == 2 && reset.stderr.contains("is a special file (FIFO, socket or device)"), "\(reset.stderr)")
        var st = stat()
        #expect(lstat(fifo, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO, "the FIFO is still there")
    }

    @Test func aSymlinkUnderASegmentNameIsNeverFollowed() throws {
        let dir = try ShmFixtureDirectory("planted-link")
        defer { #expect(dir.remove().isEmpty) }
        let outside = try TemporaryDirectory()
        let target = try outside.write(String(repeating: "precious ", count: 1000), to: "precious.txt")
        let before = try Data(contentsOf: URL(fileURLWithPath: target))
        let session = ShmFixtureDirectory.uniqueSession("planted-link")
        let id = ShmID(session: session)
        try dir.createSymlink("fmq_\(id)_m_0", to: target)

        #expect {
            _ = try SessionMemory(SessionConfiguration(session: session, directory: FilePath(dir.path), segmentSize: 1 << 20), logger: Self.logger)
        } throws: { error in
            "\(error)".contains("is a symbolic link, not a shared memory object")
        }
        #expect(dir.entries() == ["fmq_\(id)_m_0"], "the attach left nothing behind: \(dir.entries())")
        let common = ["-s", session.rawValue, "--shm-dir", dir.path]
        for arguments in [["-v"], ["-b"], ["-c"], ["-r"]] {
            let result = try runTool("/usr/bin/timeout", ["10", builtProductsDirectory().appendingPathComponent("shmmonitor").path] + arguments + common)
            #expect(!result.crashed && [0, 2].contains(result.status), "\(arguments): \(result.status) \(result.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == before, "the symlink's target is untouched")
        var st = stat()
        #expect(lstat("\(dir.path)/fmq_\(id)_m_0", &st) == 0 && st.st_mode & S_IFMT == S_IFLNK, "the symlink is still there")
        unlink("\(dir.path)/fmq_\(id)_m_0")
    }
}
