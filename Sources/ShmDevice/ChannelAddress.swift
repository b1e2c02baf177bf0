import Foundation

/// How a sub-channel's socket reaches its peer.
public enum ChannelMethod: String, Sendable, CaseIterable {
    case bind, connect
}

/// One endpoint of a sub-channel: `tcp://host:port`, `ipc://path` or `inproc://name`, with the
/// method that applies to it (a `@` prefix binds, a `+` prefix connects, else the channel's).
public struct ChannelAddress: Sendable, Hashable, CustomStringConvertible {
    /// The endpoint without its method prefix, as ZeroMQ takes it.
    public var endpoint: String
    /// The method a `@` or `+` prefix gives this endpoint; `nil` means the channel's method.
    public var methodOverride: ChannelMethod?

    public init(endpoint: String, methodOverride: ChannelMethod? = nil) {
        self.endpoint = endpoint
        self.methodOverride = methodOverride
    }

    /// The longest `ipc://` path a Unix socket takes (`sun_path` holds 108 bytes with its NUL).
    public static let maximumIPCPathLength = 107

    /// Parses one address; `problem` says what is wrong when it returns `nil`.
    static func parse(_ text: String) -> Result<ChannelAddress, AddressProblem> {
        var endpoint = Substring(text)
        var method: ChannelMethod?
        if endpoint.first == "@" {
            method = .bind
            endpoint = endpoint.dropFirst()
        } else if endpoint.first == "+" {
            method = .connect
            endpoint = endpoint.dropFirst()
        }
        guard let scheme = endpoint.range(of: "://") else {
            return .failure(.init("'\(text)' has no scheme; write tcp://host:port, ipc:///path or inproc://name"))
        }
        let rest = endpoint[scheme.upperBound...]
        switch endpoint[..<scheme.lowerBound] {
        case "tcp":
            guard let colon = rest.lastIndex(of: ":"), colon != rest.startIndex else {
                return .failure(.init("'\(text)' has no host and port; write tcp://host:port (port a number or *)"))
            }
            let port = rest[rest.index(after: colon)...]
            guard port == "*" || (UInt16(port).map { $0 > 0 } ?? false) else {
                return .failure(.init("'\(text)' has port '\(port)'; give 1 ... 65535, or * for any free port"))
            }
        case "ipc":
            guard !rest.isEmpty else { return .failure(.init("'\(text)' has an empty path; write ipc:///path/to/socket")) }
            guard rest.utf8.count <= maximumIPCPathLength || rest.hasPrefix("@") else {
                return .failure(.init(
                    "the ipc path of '\(text)' is \(rest.utf8.count) bytes, longer than a Unix socket takes (\(maximumIPCPathLength)); use a shorter path, e.g. under /tmp"))
            }
        case "inproc":
            guard !rest.isEmpty else { return .failure(.init("'\(text)' has an empty name; write inproc://name")) }
        default:
            return .failure(.init("'\(text)' has the scheme '\(endpoint[..<scheme.lowerBound])'; use tcp://, ipc:// or inproc://"))
        }
        return .success(ChannelAddress(endpoint: String(endpoint), methodOverride: method))
    }

    public var description: String {
        switch methodOverride {
        case .bind: return "@" + endpoint
        case .connect: return "+" + endpoint
        case nil: return endpoint
        }
    }

    struct AddressProblem: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }
}
