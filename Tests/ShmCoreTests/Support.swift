import Foundation
import Logging
import ShmCleanup
import ShmTestSupport
import SystemPackage

@testable import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

extension ShmFixtureDirectory {
    /// A private directory on the real tmpfs (`/dev/shm/shmcore-test.XXXXXX`), so segments
    /// behave as in production (posix_fallocate, page cache).
    static func onTmpfs() throws -> ShmFixtureDirectory { try ShmFixtureDirectory("shmcore-test", in: "/dev/shm") }

    var filePath: FilePath { FilePath(path) }
}

/// A configuration for a unique session in `directory`.
func testConfiguration(
    _ label: String, directory: ShmFixtureDirectory, segmentSize: Int = 16 << 20, arenas: Int? = nil,
    strategy: AllocationStrategy = .rbtreeBestFit
) -> SessionConfiguration {
    SessionConfiguration(
        session: ShmFixtureDirectory.uniqueSession(label), directory: directory.filePath, segmentSize: segmentSize,
        allocationStrategy: strategy, arenaCount: arenas)
}

let testLogger = Logger(label: "shmcore-tests")

/// Path of the worker executable built next to the tests.
var workerPath: String { builtProductsDirectory().appendingPathComponent("shmcore-worker").path }
