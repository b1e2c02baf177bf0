import Foundation
import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A private shm directory for one test: created empty, removed with everything in it by
/// ``remove()``. Tests never touch `/dev/shm` itself, at most a directory of their own in it.
public final class ShmFixtureDirectory: @unchecked Sendable {
    /// The directory path.
    public let path: String

    /// Creates a fresh directory `<parent>/<label>.XXXXXX`.
    /// - Parameter parent: where to create it; nil: `$TMPDIR` or `/tmp`. Pass `/dev/shm` for
    ///   objects that must behave as on the real tmpfs (posix_fallocate, page cache).
    public init(_ label: String = "shmtest", in parent: String? = nil) throws {
        let tmp = parent ?? ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(tmp.hasSuffix("/") ? String(tmp.dropLast()) : tmp)/\(label).XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw ShmCleanupError(.systemCall, "mkdtemp in \(tmp) failed", errno: errno)
        }
        self.path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    /// Creates a file of `size` bytes (allocated, like a shm object) named `name`, optionally
    /// owned by another uid (only possible as root).
    @discardableResult
    public func createObject(_ name: String, size: Int = 4096, owner: uid_t? = nil, contents: [UInt8]? = nil) throws
        -> String
    {
        let full = "\(path)/\(name)"
        let fd = open(full, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ShmCleanupError(.systemCall, "cannot create \(full)", errno: errno) }
        defer { close(fd) }
        if let contents {
            _ = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        } else if size > 0 {
            guard posix_fallocate(fd, 0, off_t(size)) == 0 else {
                throw ShmCleanupError(.systemCall, "posix_fallocate failed for \(full)")
            }
        }
        if let owner, fchown(fd, owner, owner) != 0 {
            throw ShmCleanupError(.systemCall, "fchown failed for \(full)", errno: errno)
        }
        return full
    }

    /// Creates the management segment of `record` under `id`.
    @discardableResult
    public func createManagement(_ id: ShmID, _ record: ManagementRecord, owner: uid_t? = nil) throws -> String {
        try createObject(ShmObjectName(id, .management).fileName, owner: owner, contents: record.encoded())
    }

    /// Creates a symbolic link `name` → `target`.
    public func createSymlink(_ name: String, to target: String) throws {
        guard symlink(target, "\(path)/\(name)") == 0 else {
            throw ShmCleanupError(.systemCall, "symlink failed", errno: errno)
        }
    }

    /// The names in the directory, sorted.
    public func entries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// Removes the directory and everything in it; returns what was left in it, so that a test
    /// can check it cleaned up (`defer { #expect(dir.remove().isEmpty) }`).
    @discardableResult
    public func remove() -> [String] {
        let left = entries()
        try? FileManager.default.removeItem(atPath: path)
        return left
    }

    /// A unique session id for one test.
    public static func uniqueSession(_ label: String) -> SessionID {
        try! SessionID("\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    }
}

/// The start time of a process, as the management record stores it.
public func processStartTime(_ pid: pid_t) -> UInt64 {
    ProcessInspector().stat(pid: pid)?.startTime ?? 0
}

/// Where the package's executables were built (next to the test bundle).
public func builtProductsDirectory() -> URL {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("shmmonitor").path) { return url }
    }
    let filePath = URL(fileURLWithPath: #filePath)
    return filePath.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug")
}

/// The outcome of running a built executable.
public struct ToolResult: Sendable {
    /// The exit status, or the signal number when ``crashed``.
    public let status: Int32
    public let stdout: String
    public let stderr: String
    /// Whether the process died of a signal (a trap, SIGSEGV, SIGKILL ...) instead of exiting.
    public var crashed = false
}

/// Runs one of the package's executables to completion.
public func runTool(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ToolResult {
    let process = Process()
    process.executableURL =
        name.hasPrefix("/") ? URL(fileURLWithPath: name) : builtProductsDirectory().appendingPathComponent(name)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "SHMTRANSPORT_SHM_DIR")
    env.removeValue(forKey: "SHMTRANSPORT_SESSION")
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ToolResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self), crashed: process.terminationReason == .uncaughtSignal)
}

/// A running `shm-keepalive` child holding a session's memory; killed on ``stop()``.
public final class KeepAliveChild: @unchecked Sendable {
    public let process = Process()
    public let shmID: ShmID

    /// Starts `shm-keepalive` for `session` in `directory` and waits until its memory exists.
    public init(session: SessionID, directory: String, segments: [String] = ["0,65536"], regions: [String] = []) throws {
        process.executableURL = builtProductsDirectory().appendingPathComponent("shm-keepalive")
        process.arguments = ["-s", session.rawValue, "--shm-dir", directory] + segments.flatMap { ["--segment", $0] }
            + regions.flatMap { ["--region", $0] }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        guard line.hasPrefix("ready "), let id = try? ShmID(validating: String(line.split(separator: " ")[1])) else {
            process.terminate()
            throw ShmCleanupError(.invalidArgument, "shm-keepalive did not start: '\(line)'")
        }
        self.shmID = id
    }

    public var pid: Int32 { process.processIdentifier }

    /// SIGKILLs the child (leaving its memory behind) and reaps it.
    public func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERMs the child (it removes its memory) and reaps it.
    public func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

/// Starts one of the package's executables in the background (output discarded).
public func startTool(_ name: String, _ arguments: [String]) throws -> Process {
    let process = Process()
    process.executableURL = builtProductsDirectory().appendingPathComponent(name)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "SHMTRANSPORT_SHM_DIR")
    env.removeValue(forKey: "SHMTRANSPORT_SESSION")
    process.environment = env
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass; returns whether it held.
public func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}
