import Logging
import ShmCleanup
import ShmCore
import ShmTransport

/// Everything a ``Device`` needs, checked: its id, the default transport, the channels in the
/// order they were given, and the transport options (session, shared-memory settings).
public struct DeviceConfiguration: Sendable {
    /// The device id (`--id`): names the device in logs and picks its block of a JSON file.
    public var id: String
    /// The transport of every channel that does not name its own (`--transport`).
    public var transport: TransportKind
    /// The channels, in the order of the file and then of `--channel-config`.
    public var channels: [ChannelConfiguration]
    /// Session, shared-memory and ZeroMQ options shared by the device's factories.
    public var transportConfiguration: TransportConfiguration
    /// The run loop's rate in Hz (`--rate`; 0 runs as fast as it can).
    public var rate: Double
    /// Whether the device starts the monitor daemon of its session (`--shm-monitor true`).
    public var launchMonitor: Bool
    /// Where bound sub-channels publish their addresses and address-less ones look them up
    /// (`--address-dir`); `nil`: every sub-channel must have an address.
    public var addressDirectory: AddressDirectory?

    public init(
        id: String, transport: TransportKind = .zeromq, channels: [ChannelConfiguration],
        transportConfiguration: TransportConfiguration = TransportConfiguration(), rate: Double = 0, launchMonitor: Bool = false,
        addressDirectory: AddressDirectory? = nil
    ) {
        self.id = id
        self.transport = transport
        self.channels = channels
        self.transportConfiguration = transportConfiguration
        self.rate = rate
        self.launchMonitor = launchMonitor
        self.addressDirectory = addressDirectory
    }

    /// The channel named `name`, if the device has it.
    public func channel(_ name: String) -> ChannelConfiguration? { channels.first { $0.name == name } }

    /// The transports the device's channels use (a factory is made for each).
    public var transportsInUse: [TransportKind] {
        TransportKind.allCases.filter { kind in
            channels.contains { $0.subChannels.contains { ($0.transport ?? transport) == kind } }
        }
    }

    /// Builds the channels from a JSON file's block for `deviceKey` and `--channel-config` values,
    /// refusing the first bad field with an error naming the device, channel and field.
    static func channels(
        device: String, deviceKey: String, mqConfig: String?, channelConfig: [String]
    ) throws(DeviceConfigurationError) -> [ChannelConfiguration] {
        var declarations: [ChannelDeclaration] = []
        if let mqConfig { declarations += try MQConfigFile.channels(path: mqConfig, deviceKey: deviceKey, device: device) }
        for text in channelConfig { declarations.append(try ChannelConfigOption.parse(text, device: device)) }
        var channels: [ChannelConfiguration] = []
        for declaration in declarations {
            let channel = try declaration.resolve(device: device)
            guard !channels.contains(where: { $0.name == channel.name }) else {
                throw DeviceConfigurationError(
                    device: device, channel: channel.name, field: "name",
                    "the channel is defined twice (in --mq-config and/or --channel-config); give each channel once")
            }
            channels.append(channel)
        }
        return channels
    }

    /// Refuses a device whose channels cannot work with their transport, or that leaves an
    /// address out without an address directory to find it in.
    func check() throws(DeviceConfigurationError) {
        for channel in channels {
            for (index, sub) in channel.subChannels.enumerated() {
                let label = channel.subChannels.count == 1 ? channel.name : "\(channel.name)[\(index)]"
                let kind = sub.transport ?? transport
                if kind == .shmem && (sub.type == .pub || sub.type == .sub) {
                    throw DeviceConfigurationError(
                        device: id, channel: label, field: "type",
                        "\(sub.type) over shmem is refused: a shared-memory message has one receiver; use push/pull or pair, or transport=zeromq for this channel")
                }
                if sub.addresses.isEmpty && addressDirectory == nil {
                    throw DeviceConfigurationError(
                        device: id, channel: label, field: "address",
                        "not set; give e.g. ipc:///tmp/\(label.filter { $0.isLetter || $0.isNumber }) or tcp://127.0.0.1:5555, or --address-dir DIR to take it from the device that binds '\(channel.name)'")
                }
            }
        }
    }
}
