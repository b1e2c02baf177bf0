import ArgumentParser
import ShmCleanup
import ShmDevice

/// `shm-bsampler`: FairMQ's bsampler: sends a new message every iteration (benchmark source). Takes every option of a FairMQ device (`--id`, `--channel-config`,
/// `--mq-config`, `--transport`, `--session`, the `--shm-*` options), so the original's command
/// lines run with only the binary name changed. Exit status: 0 done, 1 failed while running,
/// 2 bad configuration.
@main
struct BSamplerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shm-bsampler", abstract: "FairMQ's bsampler: sends a new message every iteration (benchmark source).",
        version: ShmTransportVersion.current)

    @OptionGroup(title: "Device") var device: DeviceOptions
    @OptionGroup(title: "BSampler") var sampler: SamplerOptions

    static func main() async { await CommandMain.run(Self.self) }

    func run() async throws {
        let options = sampler
        try await DeviceMain.command(device, label: "shm-bsampler") { device in _ = try BenchmarkSampler.run(device, options) }
    }
}
