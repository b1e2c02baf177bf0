import ShmCleanup
import ShmTestSupport
import Testing

/// Every installed tool tells the package's one version and prints its help.
@Suite struct VersionTests {
    static let tools = ["shmmonitor", "shm-keepalive", "shm-bsampler", "shm-sink", "shm-processor", "shmbench"]

    @Test(arguments: tools)
    func everyToolPrintsThePackageVersion(_ tool: String) throws {
        let result = try runTool(tool, ["--version"])
        #expect(result.status == 0, "\(tool): \(result.stderr)")
        #expect(result.stdout == ShmTransportVersion.current + "\n", "\(tool) printed '\(result.stdout)'")
    }

    /// `--help` and `-h` print the usage on standard output and exit 0 (the device tools once
    /// printed nothing, shmbench an internal error with status 1).
    @Test(arguments: tools, ["--help", "-h"])
    func everyToolPrintsItsHelp(_ tool: String, _ flag: String) throws {
        let result = try runTool(tool, [flag])
        #expect(result.status == 0, "\(tool) \(flag): \(result.status) \(result.stderr)")
        #expect(result.stdout.contains("USAGE: \(tool)"), "\(tool) \(flag) printed '\(result.stdout.prefix(300))'")
        #expect(result.stdout.contains("--version"), "\(tool) \(flag) lists its options")
        #expect(!result.stderr.contains("Error"), "\(tool) \(flag): \(result.stderr)")
    }
}
