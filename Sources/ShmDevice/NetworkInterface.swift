import Foundation

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The IPv4 address other nodes reach this one at, for publishing a `tcp://*:port` bind:
/// FairMQ's `--network-interface` (`default`: the interface of the default route, read from
/// `/proc/net/route`; else an interface name such as `eth0` or `ib0`).
enum NetworkInterface {
    /// The IPv4 address of `name` (`default` for the default route's interface).
    /// - Throws: a message naming the interface and the fix when it has no IPv4 address or
    ///   there is no default route.
    static func address(of name: String, routeTable: String = "/proc/net/route") throws(AddressProblem) -> String {
        let interface = name == "default" ? try defaultRouteInterface(routeTable: routeTable) : name
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else {
            throw AddressProblem("cannot list the network interfaces (\(String(cString: strerror(errno)))); give --network-interface NAME")
        }
        defer { freeifaddrs(first) }
        var names: Set<String> = []
        var entry: UnsafeMutablePointer<ifaddrs>? = first
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            let entryName = String(cString: current.pointee.ifa_name)
            guard let socketAddress = current.pointee.ifa_addr, socketAddress.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            names.insert(entryName)
            guard entryName == interface else { continue }
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            let found = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address -> Bool in
                var inet = address.pointee.sin_addr
                return inet_ntop(AF_INET, &inet, &text, socklen_t(text.count)) != nil
            }
            if found { return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
        throw AddressProblem(
            "the network interface '\(interface)' has no IPv4 address (interfaces with one: \(names.sorted().joined(separator: ", "))); give --network-interface with one of them")
    }

    /// The interface of the default route (destination 0.0.0.0) in `/proc/net/route`.
    static func defaultRouteInterface(routeTable: String = "/proc/net/route") throws(AddressProblem) -> String {
        guard let table = try? String(contentsOfFile: routeTable, encoding: .utf8) else {
            throw AddressProblem("cannot read \(routeTable) to find the default route; give --network-interface NAME")
        }
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count > 1 && fields[1] == "00000000" { return String(fields[0]) }
        }
        throw AddressProblem("this node has no default route, so the interface to publish is unknown; give --network-interface NAME (e.g. eth0, ib0)")
    }

    struct AddressProblem: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }
}
