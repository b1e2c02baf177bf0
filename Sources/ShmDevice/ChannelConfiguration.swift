import ShmTransport

/// One sub-channel (one socket) of a channel, with FairMQ's property names and defaults
/// (`Channel.h` of FairMQ v1.10.0).
public struct SubChannelConfiguration: Sendable, Equatable {
    /// The pattern (`type`); there is no default: a channel must say it.
    public var type: SocketType
    /// `bind` or `connect` (`method`); each address may override it with `@` or `+`.
    public var method: ChannelMethod?
    /// The endpoints (`address`, several separated by `,`). Empty when the file gives none: the
    /// device's ``AddressDirectory`` then looks a connect up, and a bind takes `tcp://*:*`.
    public var addresses: [ChannelAddress]
    /// The transport of this sub-channel (`transport`); `nil` takes the device's `--transport`.
    public var transport: TransportKind?
    /// Send high-water mark in messages (`sndBufSize`, 1000).
    public var sendBufferSize = 1000
    /// Receive high-water mark in messages (`rcvBufSize`, 1000).
    public var receiveBufferSize = 1000
    /// Kernel send buffer in bytes (`sndKernelSize`, 0 = the system's).
    public var sendKernelSize = 0
    /// Kernel receive buffer in bytes (`rcvKernelSize`, 0 = the system's).
    public var receiveKernelSize = 0
    /// Send timeout in ms of the channel's transfers (`sndTimeoutMs`, -1 = block).
    public var sendTimeoutMilliseconds = -1
    /// Receive timeout in ms of the channel's transfers (`rcvTimeoutMs`, -1 = block).
    public var receiveTimeoutMilliseconds = -1
    /// Milliseconds unsent messages are kept at close (`linger`, 500).
    public var linger = 500
    /// Seconds between rate log lines (`rateLogging`, 1; 0 = off).
    public var rateLogging = 1
    /// Ports tried for a `tcp://host:*` bind (`portRangeMin`/`portRangeMax`, 22000 ... 23000).
    public var portRange = 22000...23000
    /// Whether a `tcp://host:*` bind picks a port from the range (`autoBind`, true).
    public var autoBind = true

    public init(type: SocketType, method: ChannelMethod?, addresses: [ChannelAddress], transport: TransportKind? = nil) {
        self.type = type
        self.method = method
        self.addresses = addresses
        self.transport = transport
    }

    /// The method of each address: its own prefix, else the channel's.
    public func method(of address: ChannelAddress) -> ChannelMethod? { address.methodOverride ?? method }
}

/// A named channel of a device: one or more identical-in-purpose sub-channels.
public struct ChannelConfiguration: Sendable, Equatable {
    public var name: String
    public var subChannels: [SubChannelConfiguration]

    public init(name: String, subChannels: [SubChannelConfiguration]) {
        self.name = name
        self.subChannels = subChannels
    }
}

/// A channel as written by the user, before its properties are checked: channel-level
/// properties are defaults for every sub-channel; `sockets` lists sub-channels with their own
/// properties, or `numSockets` makes N identical ones, or else there is one.
struct ChannelDeclaration: Sendable {
    var name: String
    var properties: [String: String]
    var sockets: [[String: String]]?
    var numSockets: String?

    /// The channel's properties, by FairMQ name. `name` is the channel's, and `numSockets` and
    /// `sockets` are structure, not properties.
    static let propertyNames: Set<String> = [
        "type", "method", "address", "transport", "sndBufSize", "rcvBufSize", "sndKernelSize", "rcvKernelSize",
        "sndTimeoutMs", "rcvTimeoutMs", "linger", "rateLogging", "portRangeMin", "portRangeMax", "autoBind",
    ]

    /// Checks every property and gives the typed channel.
    func resolve(device: String) throws(DeviceConfigurationError) -> ChannelConfiguration {
        func fail(_ channel: String, _ field: String, _ message: String) -> DeviceConfigurationError {
            DeviceConfigurationError(device: device, channel: channel, field: field, message)
        }
        guard !name.isEmpty else { throw fail("", "name", "a channel has no name; give every channel a name") }
        guard !name.contains(where: { $0 == "." || $0 == "[" || $0 == "]" || $0 == "," || $0 == "=" }) else {
            throw fail(name, "name", "'\(name)' contains one of . [ ] , =; use letters, digits, - and _")
        }
        var perSocket: [[String: String]]
        if let sockets {
            guard numSockets == nil else {
                throw fail(name, "numSockets", "the channel has both 'sockets' and 'numSockets'; give one of them")
            }
            guard !sockets.isEmpty else { throw fail(name, "sockets", "the list is empty; list at least one socket, or drop 'sockets'") }
            perSocket = sockets
        } else if let numSockets {
            guard let count = Int(numSockets), (1...1024).contains(count) else {
                throw fail(name, "numSockets", "'\(numSockets)' is not a count of 1 ... 1024")
            }
            perSocket = Array(repeating: [:], count: count)
        } else {
            perSocket = [[:]]
        }
        var subChannels: [SubChannelConfiguration] = []
        for (index, own) in perSocket.enumerated() {
            let label = perSocket.count == 1 && sockets == nil ? name : "\(name)[\(index)]"
            let merged = properties.merging(own) { $1 }
            subChannels.append(try Self.subChannel(merged, label: label, fail: fail))
        }
        return ChannelConfiguration(name: name, subChannels: subChannels)
    }

    private static func subChannel(
        _ p: [String: String], label: String, fail: (String, String, String) -> DeviceConfigurationError
    ) throws(DeviceConfigurationError) -> SubChannelConfiguration {
        if let unknown = p.keys.sorted().first(where: { !propertyNames.contains($0) }) {
            throw fail(label, unknown, "unknown property; known are \(propertyNames.sorted().joined(separator: ", "))")
        }
        guard let typeText = p["type"], typeText != "unspecified" else {
            throw fail(label, "type", "not set; give one of \(SocketType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let type = SocketType(rawValue: typeText) else {
            throw fail(label, "type", "unknown type '\(typeText)'; use one of \(SocketType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var method: ChannelMethod?
        if let text = p["method"], text != "unspecified" {
            guard let m = ChannelMethod(rawValue: text) else { throw fail(label, "method", "unknown method '\(text)'; use bind or connect") }
            method = m
        }
        // No address: the device's --address-dir supplies it (checked in DeviceConfiguration).
        var addressText = p["address"] ?? ""
        if addressText == "unspecified" { addressText = "" }
        if addressText.isEmpty && method == nil {
            throw fail(label, "method", "not set; give method=bind or method=connect")
        }
        var addresses: [ChannelAddress] = []
        for part in addressText.split(separator: ",", omittingEmptySubsequences: false) where !addressText.isEmpty {
            switch ChannelAddress.parse(String(part)) {
            case .success(let address):
                guard address.methodOverride ?? method != nil else {
                    throw fail(label, "method", "not set for '\(address.endpoint)'; give method=bind or method=connect, or prefix the address with @ (bind) or + (connect)")
                }
                addresses.append(address)
            case .failure(let problem):
                throw fail(label, "address", problem.message)
            }
        }
        var transport: TransportKind?
        if let text = p["transport"], text != "default" {
            guard let kind = TransportKind(rawValue: text) else {
                throw fail(label, "transport", "unknown transport '\(text)'; use shmem, zeromq or default (the device's --transport)")
            }
            transport = kind
        }
        var sub = SubChannelConfiguration(type: type, method: method, addresses: addresses, transport: transport)
        func int(_ key: String, _ range: ClosedRange<Int>) throws(DeviceConfigurationError) -> Int? {
            guard let text = p[key] else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw fail(label, key, "'\(text)' is not a whole number in \(range.lowerBound) ... \(range.upperBound)")
            }
            return value
        }
        if let v = try int("sndBufSize", 0...Int(Int32.max)) { sub.sendBufferSize = v }
        if let v = try int("rcvBufSize", 0...Int(Int32.max)) { sub.receiveBufferSize = v }
        if let v = try int("sndKernelSize", 0...Int(Int32.max)) { sub.sendKernelSize = v }
        if let v = try int("rcvKernelSize", 0...Int(Int32.max)) { sub.receiveKernelSize = v }
        if let v = try int("sndTimeoutMs", -1...Int(Int32.max)) { sub.sendTimeoutMilliseconds = v }
        if let v = try int("rcvTimeoutMs", -1...Int(Int32.max)) { sub.receiveTimeoutMilliseconds = v }
        if let v = try int("linger", -1...Int(Int32.max)) { sub.linger = v }
        if let v = try int("rateLogging", 0...86_400) { sub.rateLogging = v }
        let low = try int("portRangeMin", 1...65535) ?? sub.portRange.lowerBound
        let high = try int("portRangeMax", 1...65535) ?? sub.portRange.upperBound
        guard low <= high else { throw fail(label, "portRangeMin", "\(low) is above portRangeMax \(high); give min <= max") }
        sub.portRange = low...high
        if let text = p["autoBind"] {
            guard let value = parseBoolean(text) else { throw fail(label, "autoBind", "'\(text)' is not true or false") }
            sub.autoBind = value
        }
        return sub
    }
}

/// A boolean as boost::program_options reads one: true/false, 1/0, yes/no, on/off.
func parseBoolean(_ text: String) -> Bool? {
    switch text.lowercased() {
    case "true", "1", "yes", "on": return true
    case "false", "0", "no", "off": return false
    default: return nil
    }
}
