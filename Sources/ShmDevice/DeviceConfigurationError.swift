/// A device configuration that cannot run, refused at start before any socket or shared memory
/// exists: one line naming the device, the channel (with its sub-channel index) and the field.
public struct DeviceConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The device id (`--id`), or empty when none was given.
    public let device: String
    /// The channel, as `name` or `name[index]`, or empty for a device-level problem.
    public let channel: String
    /// The field or option at fault (`type`, `address`, `--mq-config`, ...).
    public let field: String
    /// What is wrong and how to fix it.
    public let message: String

    public init(device: String, channel: String = "", field: String, _ message: String) {
        self.device = device
        self.channel = channel
        self.field = field
        self.message = message
    }

    public var description: String {
        var place = "device '\(device)'"
        if !channel.isEmpty { place += ", channel '\(channel)'" }
        return "\(place), \(field): \(message)"
    }
}
