import Foundation
import Logging
import ShmCleanup
import ShmTestSupport
import ShmTransport
import SystemPackage
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The endpoint kinds every pattern runs over.
enum EndpointKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case ipc, tcp, inproc
    var description: String { rawValue }
}

/// A quiet logger for the library under test.
let testLogger = Logger(label: "transport-test") { _ in SwiftLogNoOpLogHandler() }

/// One test's private world: a shm directory, a unique session and a short temp directory for
/// `ipc://` sockets. ``finish()`` reports what the test left behind and removes both directories.
final class TransportFixture: @unchecked Sendable {
    let kind: TransportKind
    let shmDirectory: ShmFixtureDirectory
    let session: SessionID
    let ipcDirectory: String

    init(_ kind: TransportKind, _ label: String) throws {
        self.kind = kind
        shmDirectory = try ShmFixtureDirectory("st-\(label)")
        session = ShmFixtureDirectory.uniqueSession("t-\(label)")
        var template = Array("/tmp/stp.XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw TransportError(.invalidArgument, "mkdtemp failed")
        }
        ipcDirectory = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    func configuration(segmentSize: Int = 64 << 20, metadataMessageSize: Int = 0) -> TransportConfiguration {
        TransportConfiguration(
            session: session, shmDirectory: FilePath(shmDirectory.path), segmentSize: segmentSize,
            metadataMessageSize: metadataMessageSize, defaultLinger: 0)
    }

    func makeFactory(segmentSize: Int = 64 << 20, metadataMessageSize: Int = 0) throws -> TransportFactory {
        try TransportFactory(
            kind, configuration: configuration(segmentSize: segmentSize, metadataMessageSize: metadataMessageSize),
            logger: testLogger)
    }

    /// An endpoint to bind: tcp picks a free port (use the address `bind` returns to connect).
    func endpoint(_ kind: EndpointKind, _ name: String) -> String {
        switch kind {
        case .ipc: return "ipc://\(ipcDirectory)/\(name)"
        case .tcp: return "tcp://127.0.0.1:*"
        case .inproc: return "inproc://\(session.rawValue)-\(name)"
        }
    }

    /// Removes whatever a test that stopped early left (idempotent with ``finish()``).
    deinit {
        shmDirectory.remove()
        try? FileManager.default.removeItem(atPath: ipcDirectory)
    }

    /// The shm objects left behind (call once every factory of the test is gone); removes both directories.
    func finish() -> [String] {
        let left = shmDirectory.entries()
        shmDirectory.remove()
        try? FileManager.default.removeItem(atPath: ipcDirectory)
        return left
    }

    /// Arguments for a `transport-peer` of this fixture.
    var peerArguments: [String] {
        ["--transport", kind.rawValue, "--session", session.rawValue, "--shm-dir", shmDirectory.path]
    }
}

/// Runs `body` with a new fixture, then expects that it left no shm objects behind. Whatever
/// `body` made is gone once it returns, so the check sees every factory of the test released.
func withFixture(
    _ kind: TransportKind, _ label: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TransportFixture) throws -> Void
) throws {
    let fixture = try TransportFixture(kind, label)
    try body(fixture)
    #expect(fixture.finish() == [], "shm objects left behind", sourceLocation: sourceLocation)
}

/// A message of `size` bytes holding the pattern of (index, part).
func patterned(_ factory: TransportFactory, size: Int, index: Int, part: Int = 0, alignment: Int = 0) throws -> Message {
    let message = try factory.makeMessage(size: size, alignment: alignment)
    message.withUnsafeMutableBytes { fillPattern($0, message: index, part: part) }
    return message
}

/// A message holding `text`.
func textMessage(_ factory: TransportFactory, _ text: String) throws -> Message {
    let bytes = Array(text.utf8)
    return try bytes.withUnsafeBytes { buffer in try factory.makeMessage(copying: buffer) }
}

extension Message {
    var text: String { withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }
}

/// Runs `body` on a new thread; `join()` waits for it and returns what it recorded.
final class Worker: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var problems: [String] = []

    private var body: (@Sendable (Worker) -> Void)?

    init(_ body: @escaping @Sendable (Worker) -> Void) {
        self.body = body
        let thread = Thread { [self] in
            runBody()
            done.signal()
        }
        thread.start()
    }

    /// Runs the body and drops it (and everything it captured) before `join()` returns.
    private func runBody() {
        let body = lock.withLock { () -> (@Sendable (Worker) -> Void)? in
            defer { self.body = nil }
            return self.body
        }
        body?(self)
    }

    func fail(_ problem: String) { lock.withLock { problems.append(problem) } }

    /// Waits for the thread; returns the problems it reported.
    func join(seconds: Double = 60) -> [String] {
        guard done.wait(timeout: .now() + seconds) == .success else { return ["worker did not finish in \(seconds) s"] }
        return lock.withLock { problems }
    }
}

/// A `transport-peer` child process with its stdout readable line by line.
final class PeerProcess: @unchecked Sendable {
    let process = Process()
    private let output = Pipe()
    private let errors = Pipe()
    private let input = Pipe()
    private var buffer = Data()

    init(
        _ arguments: [String], executable: URL = builtProductsDirectory().appendingPathComponent("transport-peer"),
        environment: [String: String] = [:]
    ) throws {
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "SHMTRANSPORT_SHM_DIR")
        env.removeValue(forKey: "SHMTRANSPORT_SESSION")
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = input
        try process.run()
    }

    /// Ends the peer's `--hold` wait (closes its standard input).
    func release() {
        try? input.fileHandleForWriting.close()
    }

    /// The next line of output, or `nil` at end of output.
    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer = Data(buffer[(newline + 1)...])
                return line
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            buffer += chunk
        }
    }

    /// Waits for the exit; returns the status and the standard error text.
    func wait() -> (status: Int32, stderr: String) {
        release()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: err, as: UTF8.self))
    }
}
