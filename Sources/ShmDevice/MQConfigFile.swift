import Foundation

/// Reads FairMQ's `--mq-config` JSON files unchanged:
///
/// ```json
/// { "fairMQOptions": { "devices": [
///     { "id": "sampler1", "channels": [
///         { "name": "data", "transport": "shmem",
///           "sockets": [ { "type": "push", "method": "bind", "address": "tcp://*:5555" } ] },
///         { "name": "out", "numSockets": 2, "type": "push", "method": "connect", "address": "..." } ] } ] } }
/// ```
///
/// A device takes the block whose `id` or `key` equals its `--config-key`, else its `--id`.
/// Values may be JSON strings, numbers or booleans, as FairMQ's parser takes them.
enum MQConfigFile {
    static func channels(
        path: String, deviceKey: String, device: String
    ) throws(DeviceConfigurationError) -> [ChannelDeclaration] {
        func fail(_ message: String) -> DeviceConfigurationError {
            DeviceConfigurationError(device: device, field: "--mq-config \(path)", message)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw fail("cannot read the file; check the path and its permissions")
        }
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw fail("not valid JSON: \(syntaxError(error, in: data))")
        }
        guard let options = (root as? [String: Any])?["fairMQOptions"] as? [String: Any] else {
            throw fail("no top-level \"fairMQOptions\" object; the file must look like {\"fairMQOptions\": {\"devices\": [...]}}")
        }
        guard let devices = options["devices"] as? [Any] else {
            throw fail("\"fairMQOptions\" has no \"devices\" list; list the devices as \"devices\": [{\"id\": ..., \"channels\": [...]}]")
        }
        var seen: [String] = []
        for case let block as [String: Any] in devices {
            let id = (block["id"] as? String) ?? ""
            let key = (block["key"] as? String) ?? ""
            seen.append(id.isEmpty ? key : id)
            guard !deviceKey.isEmpty, deviceKey == id || deviceKey == key else { continue }
            guard let channels = block["channels"] as? [Any] else { return [] }
            var declarations: [ChannelDeclaration] = []
            for (index, element) in channels.enumerated() {
                guard let channel = element as? [String: Any] else {
                    throw DeviceConfigurationError(
                        device: device, channel: "#\(index)", field: "--mq-config \(path)", "a channel is not a JSON object")
                }
                declarations.append(try declaration(channel, index: index, device: device, path: path))
            }
            return declarations
        }
        let what = deviceKey.isEmpty ? "no --id or --config-key was given" : "no device has id or key '\(deviceKey)'"
        throw fail("\(what) (the file has \(seen.isEmpty ? "no devices" : seen.map { "'\($0)'" }.joined(separator: ", "))); give --id or --config-key of a device in the file")
    }

    private static func declaration(
        _ object: [String: Any], index: Int, device: String, path: String
    ) throws(DeviceConfigurationError) -> ChannelDeclaration {
        let name = (object["name"] as? String) ?? ""
        func fail(_ field: String, _ message: String) -> DeviceConfigurationError {
            DeviceConfigurationError(device: device, channel: name.isEmpty ? "#\(index)" : name, field: field, message)
        }
        var properties: [String: String] = [:]
        var sockets: [[String: String]]?
        var numSockets: String?
        for (key, value) in object {
            switch key {
            case "name":
                guard value is String else { throw fail("name", "is not a string") }
            case "sockets":
                guard let list = value as? [Any] else { throw fail("sockets", "is not a list of objects") }
                var parsed: [[String: String]] = []
                for socket in list {
                    guard let dict = socket as? [String: Any] else { throw fail("sockets", "an entry is not a JSON object") }
                    var own: [String: String] = [:]
                    for (k, v) in dict {
                        guard let text = scalar(v) else { throw fail(k, "is not a string, number or boolean") }
                        own[k] = text
                    }
                    parsed.append(own)
                }
                sockets = parsed
            case "numSockets":
                guard let text = scalar(value) else { throw fail("numSockets", "is not a number") }
                numSockets = text
            default:
                guard let text = scalar(value) else { throw fail(key, "is not a string, number or boolean") }
                properties[key] = text
            }
        }
        return ChannelDeclaration(name: name, properties: properties, sockets: sockets, numSockets: numSockets)
    }

    /// A JSON string, number or boolean as the text `--channel-config` would carry.
    private static func scalar(_ value: Any) -> String? {
        if let text = value as? String { return text }
        if let number = value as? NSNumber {
            // JSON's true and false arrive as NSNumbers of type char.
            if String(cString: number.objCType) == "c" { return number.boolValue ? "true" : "false" }
            if let int = Int(exactly: number.doubleValue) { return String(int) }
            return number.stringValue
        }
        return nil
    }

    /// Foundation says where the syntax breaks as a character offset; users want line and column.
    private static func syntaxError(_ error: any Error, in data: Data) -> String {
        let text = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "\(error)"
        guard let range = text.range(of: "around character "),
            let offset = Int(text[range.upperBound...].prefix { $0.isNumber })
        else { return text }
        let before = data.prefix(offset)
        let line = before.filter { $0 == 10 }.count + 1
        let column = offset - (before.lastIndex(of: 10).map { $0 + 1 } ?? 0) + 1
        let what = text[..<range.lowerBound].trimmingCharacters(in: .whitespaces)
        return "\(what) at line \(line), column \(column)"
    }
}
