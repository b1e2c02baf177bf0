import ShmCleanup
import ShmTestSupport
import Testing

/// Every installed tool tells the package's one version.
@Suite struct VersionTests {
    @Test(arguments: ["shmmonitor", "shm-keepalive", "shm-bsampler", "shm-sink", "shm-processor", "shmbench"])
    func everyToolPrintsThePackageVersion(_ tool: String) throws {
        let result = try runTool(tool, ["--version"])
        #expect(result.status == 0, "\(tool): \(result.stderr)")
        #expect(result.stdout == ShmTransportVersion.current + "\n", "\(tool) printed '\(result.stdout)'")
    }
}
