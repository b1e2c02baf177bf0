import ArgumentParser
import ShmCleanup
import ShmDevice

/// `shm-processor`: Forwards every message from its in channel to its out channel (zero-copy within one transport). Takes every option of a FairMQ device (`--id`, `--channel-config`,
/// `--mq-config`, `--transport`, `--session`, the `--shm-*` options), so the original's command
/// lines run with only the binary name changed. Exit status: 0 done, 1 failed while running,
/// 2 bad configuration.
@main
struct ProcessorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shm-processor", abstract: "Forwards every message from its in channel to its out channel (zero-copy within one transport).",
        version: ShmTransportVersion.current)

    @OptionGroup(title: "Device") var device: DeviceOptions
    @OptionGroup(title: "Processor") var processor: ProcessorOptions

    static func main() async { await CommandMain.run(Self.self) }

    func run() async throws {
        let options = processor
        try await DeviceMain.command(device, label: "shm-processor") { device in _ = try Processor.run(device, options) }
    }
}
