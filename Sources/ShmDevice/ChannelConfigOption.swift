/// Reads FairMQ's `--channel-config` values: one channel per value, written
/// `name=data,type=push,method=bind,address=ipc:///tmp/x,...`; `numSockets=N` makes N sub-channels.
enum ChannelConfigOption {
    static func parse(_ text: String, device: String) throws(DeviceConfigurationError) -> ChannelDeclaration {
        var properties: [String: String] = [:]
        var name: String?
        var numSockets: String?
        var pending: (key: String, value: String)?
        // Split at commas, but a part without '=' continues the previous value: FairMQ writes
        // several addresses of one channel as address=a,b.
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            if let eq = part.firstIndex(of: "=") {
                if let p = pending { try store(p, &properties, &name, &numSockets, text: text, device: device) }
                pending = (String(part[..<eq]), String(part[part.index(after: eq)...]))
            } else if let p = pending, p.key == "address", !part.isEmpty {
                pending = (p.key, p.value + "," + part)
            } else {
                throw DeviceConfigurationError(
                    device: device, channel: name ?? "", field: "--channel-config",
                    "'\(part)' in '\(text)' is not key=value; write e.g. name=data,type=push,method=bind,address=ipc:///tmp/data")
            }
        }
        if let p = pending { try store(p, &properties, &name, &numSockets, text: text, device: device) }
        guard let name else {
            throw DeviceConfigurationError(
                device: device, field: "--channel-config", "'\(text)' has no name=; every channel needs one, e.g. name=data,...")
        }
        return ChannelDeclaration(name: name, properties: properties, sockets: nil, numSockets: numSockets)
    }

    private static func store(
        _ pair: (key: String, value: String), _ properties: inout [String: String], _ name: inout String?,
        _ numSockets: inout String?, text: String, device: String
    ) throws(DeviceConfigurationError) {
        let repeated: Bool
        switch pair.key {
        case "name":
            repeated = name != nil
            name = pair.value
        case "numSockets":
            repeated = numSockets != nil
            numSockets = pair.value
        default:
            repeated = properties[pair.key] != nil
            properties[pair.key] = pair.value
        }
        if repeated {
            throw DeviceConfigurationError(
                device: device, channel: name ?? "", field: pair.key, "given twice in '\(text)'; give each key once")
        }
    }
}
