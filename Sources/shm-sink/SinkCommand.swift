import ArgumentParser
import ShmCleanup
import ShmDevice

/// `shm-sink`: FairMQ's sink: receives messages, optionally checks or writes them. Takes every option of a FairMQ device (`--id`, `--channel-config`,
/// `--mq-config`, `--transport`, `--session`, the `--shm-*` options), so the original's command
/// lines run with only the binary name changed. Exit status: 0 done, 1 failed while running,
/// 2 bad configuration.
@main
struct SinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shm-sink", abstract: "FairMQ's sink: receives messages, optionally checks or writes them.",
        version: ShmTransportVersion.current)

    @OptionGroup(title: "Device") var device: DeviceOptions
    @OptionGroup(title: "Sink") var sink: SinkOptions

    static func main() async { await CommandMain.run(Self.self) }

    func run() async throws {
        let options = sink
        try await DeviceMain.command(device, label: "shm-sink") { device in _ = try BenchmarkSink.run(device, options) }
    }
}
