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

/// `shmmonitor -i` in a real terminal: tmux runs it, `send-keys` presses the keys and
/// `capture-pane` reads the screen.
@Suite("Interactive mode", .serialized)
struct InteractiveModeTests {
    static let tmux = ["/usr/bin/tmux", "/usr/local/bin/tmux"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// One tmux session running a command; killed at the end.
    final class Pane: @unchecked Sendable {
        let name = "shmi-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

        init(_ command: String) throws {
            try Self.tmux(["new-session", "-d", "-s", name, "-x", "200", "-y", "50", command])
        }

        deinit { _ = try? Self.tmux(["kill-session", "-t", name]) }

        var screen: String { (try? Self.tmux(["capture-pane", "-p", "-t", name])) ?? "" }
        var isRunning: Bool { (try? Self.tmux(["has-session", "-t", name])) != nil }
        func press(_ key: String) throws { try Self.tmux(["send-keys", "-t", name, key]) }

        /// The number after "refresh " in the header.
        var refresh: Int? {
            guard let range = screen.range(of: #"refresh \d+"#, options: .regularExpression) else { return nil }
            return Int(screen[range].dropFirst(8))
        }

        /// Runs tmux to completion with posix_spawn and waitpid (Foundation's Process can miss
        /// the exit of a tmux client whose server it forked), its output through a file.
        @discardableResult
        static func tmux(_ arguments: [String]) throws -> String {
            let path = NSTemporaryDirectory() + "tmux-\(UUID().uuidString).out"
            defer { unlink(path) }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            let argv = ([InteractiveModeTests.tmux!] + arguments).map { strdup($0) } + [nil]
            defer { for p in argv { free(p) } }
            var pid: pid_t = 0
            guard posix_spawn(&pid, InteractiveModeTests.tmux!, &actions, nil, argv, environ) == 0 else {
                throw ShmCleanupError(.invalidArgument, "cannot start tmux")
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            guard status == 0 else { throw ShmCleanupError(.invalidArgument, "tmux \(arguments.first ?? "") failed (status \(status))") }
            return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        }
    }

    static func command(_ arguments: String) -> String {
        "\(builtProductsDirectory().appendingPathComponent("shmmonitor").path) \(arguments)"
    }

    @Test(.enabled(if: tmux != nil, "needs tmux (scripts/test installs it)"))
    func screenUpdatesAndKeysWork() throws {
        let dir = try ShmFixtureDirectory("mon-i")
        defer { dir.remove() }
        let holder = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("mon-i"), directory: dir.path)
        let pane = try Pane(Self.command("-i --shmid \(holder.shmID) --shm-dir \(dir.path) --interval 200"))
        #expect(waitUntil(seconds: 5) { pane.screen.contains("shm id: \(holder.shmID)") }, "\(pane.screen)")
        #expect(pane.screen.contains("in use by: pid \(holder.pid)"))
        let first = try #require(pane.refresh)
        usleep(1_000_000)
        let later = try #require(pane.refresh)
        #expect(later >= first + 3, "redrawn every 200 ms: refresh \(first), then \(later) a second later")
        try pane.press("h")
        #expect(waitUntil(seconds: 2) { pane.screen.contains("[q] quit") }, "h shows the help: \(pane.screen)")
        holder.kill()
        try pane.press("x")
        #expect(waitUntil(seconds: 3) { pane.screen.contains("x: removed") && !pane.screen.contains("fmq_\(holder.shmID)_mng") }, "\(pane.screen)")
        #expect(dir.entries() == ["sem.fmq_\(holder.shmID)_ms"], "x cleans; the running monitor keeps its own flag")
        try pane.press("q")
        #expect(waitUntil(seconds: 3) { !pane.isRunning }, "q quits")
        #expect(dir.entries().isEmpty, "the flag goes when the monitor ends")
    }

    @Test(.enabled(if: tmux != nil, "needs tmux (scripts/test installs it)"))
    func viewInteractiveIsReadOnly() throws {
        let dir = try ShmFixtureDirectory("mon-vi")
        defer { dir.remove() }
        let holder = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("mon-vi"), directory: dir.path)
        holder.kill()
        let before = dir.entries()
        let pane = try Pane(Self.command("-v -i --shmid \(holder.shmID) --shm-dir \(dir.path) --interval 200"))
        #expect(waitUntil(seconds: 5) { pane.screen.contains("read-only") })
        try pane.press("x")
        #expect(waitUntil(seconds: 3) { pane.screen.contains("x: refused, this monitor is read-only") }, "\(pane.screen)")
        #expect(dir.entries() == before, "-v -i removes nothing and takes no flag")
        try pane.press("q")
        #expect(waitUntil(seconds: 3) { !pane.isRunning })
        _ = try runTool("shmmonitor", ["-c", "--shmid", "\(holder.shmID)", "--shm-dir", dir.path])
    }

    /// `b` shows the live messages under the view (from the segment's message records) and
    /// hides them again.
    @Test(.enabled(if: tmux != nil, "needs tmux (scripts/test installs it)"))
    func bShowsAndHidesTheLiveMessages() throws {
        let dir = try ShmFixtureDirectory("mon-ib")
        defer { #expect(dir.remove().isEmpty) }
        let session = ShmFixtureDirectory.uniqueSession("mon-ib")
        // A process that left two messages behind (--no-cleanup keeps the memory).
        let memory = try SessionMemory(
            SessionConfiguration(session: session, directory: FilePath(dir.path), segmentSize: 1 << 20, noCleanup: true, messageRecords: true),
            logger: Logger(label: "interactive-tests"))
        let blocks = [try memory.allocate(size: 4321), try memory.allocate(size: 4321)]
        memory.detach()
        let pane = try Pane(Self.command("-v -i --shmid \(memory.id) --shm-dir \(dir.path) --interval 200"))
        #expect(waitUntil(seconds: 5) { pane.screen.contains("msgs: 2,") }, "\(pane.screen)")
        #expect(!pane.screen.contains("found 2 messages."))
        try pane.press("b")
        #expect(
            waitUntil(seconds: 3) { pane.screen.contains("found 2 messages.") && pane.screen.contains("offset: \(String(repeating: " ", count: 12 - "\(blocks[1].offset)".count))\(blocks[1].offset), size:       4321") },
            "\(pane.screen)")
        try pane.press("b")
        #expect(waitUntil(seconds: 3) { !pane.screen.contains("found 2 messages.") }, "b again hides them: \(pane.screen)")
        try pane.press("q")
        #expect(waitUntil(seconds: 3) { !pane.isRunning })
        #expect(try runTool("shmmonitor", ["-c", "--shmid", "\(memory.id)", "--shm-dir", dir.path]).status == 0)
    }
}
