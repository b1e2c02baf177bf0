import Foundation
import ShmCleanup
import ShmTestSupport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A device executable running as a real child process; its output goes to a file (so a
/// chatty device can never block on a full pipe) and is read after it ends.
final class DeviceProcess: @unchecked Sendable {
    let process = Process()
    private let logPath: String

    init(_ name: String, _ arguments: [String], shmDirectory: String, environment extra: [String: String] = [:]) throws {
        logPath = NSTemporaryDirectory() + "device-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = builtProductsDirectory().appendingPathComponent(name)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "SHMTRANSPORT_SESSION")
        environment["SHMTRANSPORT_SHM_DIR"] = shmDirectory
        environment.removeValue(forKey: "SHMTRANSPORT_ADDRESS_DIR")
        environment.merge(extra) { $1 }
        process.environment = environment
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try log.close()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: logPath)
    }

    var pid: pid_t { process.processIdentifier }

    /// Everything the device printed so far.
    var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits up to `seconds` for the process to end; its exit status, or nil if it still runs.
    func wait(seconds: Double) -> Int32? {
        guard waitUntil(seconds: seconds, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }
}
