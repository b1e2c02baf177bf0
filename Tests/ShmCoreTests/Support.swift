import Foundation
import Logging
import ShmCleanup
import ShmTestSupport
import SystemPackage

@testable import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A private directory on the real tmpfs (`/dev/shm/shmcore-test.XXXXXX`), so segments behave
/// as in production (posix_fallocate, page cache); removed by ``remove()``, which first checks
/// that the test left nothing in it.
final class TmpfsDirectory: @unchecked Sendable {
    let path: String

    init() throws {
        var template = Array("/dev/shm/shmcore-test.XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw ShmCoreError(.systemCall, "mkdtemp in /dev/shm failed", errno: errno)
        }
        path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    var filePath: FilePath { FilePath(path) }

    func entries() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    /// Removes the directory with whatever is left; returns what was left.
    @discardableResult
    func remove() -> [String] {
        let left = entries()
        try? FileManager.default.removeItem(atPath: path)
        return left
    }
}

/// A configuration for a unique session in `directory`.
func testConfiguration(
    _ label: String, directory: TmpfsDirectory, segmentSize: Int = 16 << 20, arenas: Int? = nil,
    strategy: AllocationStrategy = .rbtreeBestFit
) -> SessionConfiguration {
    SessionConfiguration(
        session: ShmFixtureDirectory.uniqueSession(label), directory: directory.filePath, segmentSize: segmentSize,
        allocationStrategy: strategy, arenaCount: arenas)
}

let testLogger = Logger(label: "shmcore-tests")

/// Path of the worker executable built next to the tests.
var workerPath: String { builtProductsDirectory().appendingPathComponent("shmcore-worker").path }
