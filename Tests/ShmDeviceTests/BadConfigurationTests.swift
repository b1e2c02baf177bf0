import ArgumentParser
import Foundation
import ShmDevice
import ShmTestSupport
import Testing

/// Every bad field is refused at start with its own error, one line naming the device, the
/// channel and the field, and saying what to do.
@Suite("Bad configuration")
struct BadConfigurationTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let label: String
        let arguments: [String]
        let json: String?
        /// Parts the one-line error must contain.
        let expected: [String]
        var testDescription: String { label }
    }

    static func channel(_ text: String) -> [String] { ["--id", "dev1", "--channel-config", text] }

    static let cases: [Case] = [
        Case(label: "unknown type", arguments: channel("name=data,type=pusher,method=bind,address=ipc:///tmp/a"), json: nil,
             expected: ["device 'dev1'", "channel 'data'", "type:", "unknown type 'pusher'", "push"]),
        Case(label: "type missing", arguments: channel("name=data,method=bind,address=ipc:///tmp/a"), json: nil,
             expected: ["channel 'data'", "type:", "not set"]),
        Case(label: "unknown method", arguments: channel("name=data,type=push,method=bound,address=ipc:///tmp/a"), json: nil,
             expected: ["channel 'data'", "method:", "unknown method 'bound'", "bind or connect"]),
        Case(label: "method missing", arguments: channel("name=data,type=push,address=ipc:///tmp/a"), json: nil,
             expected: ["channel 'data'", "method:", "not set", "@ (bind)"]),
        Case(label: "address missing", arguments: channel("name=data,type=push,method=bind"), json: nil,
             expected: ["channel 'data'", "address:", "not set", "tcp://127.0.0.1:5555", "--address-dir"]),
        Case(label: "address and method missing", arguments: channel("name=data,type=push"), json: nil,
             expected: ["channel 'data'", "method:", "not set", "method=bind or method=connect"]),
        Case(label: "address without scheme", arguments: channel("name=data,type=push,method=bind,address=localhost:5555"), json: nil,
             expected: ["channel 'data'", "address:", "no scheme"]),
        Case(label: "address with a bad port", arguments: channel("name=data,type=push,method=bind,address=tcp://127.0.0.1:99999"), json: nil,
             expected: ["channel 'data'", "address:", "port '99999'"]),
        Case(label: "address with an unknown scheme", arguments: channel("name=data,type=push,method=bind,address=udp://127.0.0.1:5"), json: nil,
             expected: ["channel 'data'", "address:", "scheme 'udp'"]),
        Case(label: "ipc path too long", arguments: channel("name=data,type=push,method=bind,address=ipc:///tmp/" + String(repeating: "p", count: 120)),
             json: nil, expected: ["channel 'data'", "address:", "longer than a Unix socket takes (107)"]),
        Case(label: "unknown transport", arguments: channel("name=data,type=push,method=bind,address=ipc:///tmp/a,transport=nanomsg"), json: nil,
             expected: ["channel 'data'", "transport:", "unknown transport 'nanomsg'"]),
        Case(label: "not a number", arguments: channel("name=data,type=push,method=bind,address=ipc:///tmp/a,sndBufSize=lots"), json: nil,
             expected: ["channel 'data'", "sndBufSize:", "'lots' is not a whole number"]),
        Case(label: "unknown property", arguments: channel("name=data,type=push,method=bind,address=ipc:///tmp/a,sndBuf=5"), json: nil,
             expected: ["channel 'data'", "sndBuf:", "unknown property"]),
        Case(label: "no name", arguments: channel("type=push,method=bind,address=ipc:///tmp/a"), json: nil,
             expected: ["device 'dev1'", "--channel-config:", "no name="]),
        Case(label: "pub over shmem", arguments: channel("name=data,type=pub,method=bind,address=ipc:///tmp/a,transport=shmem"), json: nil,
             expected: ["channel 'data'", "type:", "pub over shmem is refused"]),
        Case(label: "duplicate channel on the command line",
             arguments: channel("name=data,type=push,method=bind,address=ipc:///tmp/a") + ["--channel-config", "name=data,type=pull,method=connect,address=ipc:///tmp/b"],
             json: nil, expected: ["channel 'data'", "name:", "defined twice"]),
        Case(label: "duplicate channel in file and command line",
             arguments: channel("name=data,type=pull,method=connect,address=ipc:///tmp/b"),
             json: #"{"fairMQOptions":{"devices":[{"id":"dev1","channels":[{"name":"data","type":"push","method":"bind","address":"ipc:///tmp/a"}]}]}}"#,
             expected: ["channel 'data'", "name:", "defined twice"]),
        Case(label: "file without this device",
             arguments: ["--id", "dev1"],
             json: #"{"fairMQOptions":{"devices":[{"id":"sampler","channels":[]},{"key":"sink","channels":[]}]}}"#,
             expected: ["device 'dev1'", "--mq-config", "no device has id or key 'dev1'", "'sampler', 'sink'"]),
        Case(label: "JSON syntax error", arguments: ["--id", "dev1"],
             json: "{\n  \"fairMQOptions\": {\n    \"devices\": [\n      { \"id\": \"dev1\" \"channels\": [] }\n    ]\n  }\n}\n",
             expected: ["device 'dev1'", "--mq-config", "not valid JSON", "line 4"]),
        Case(label: "JSON without fairMQOptions", arguments: ["--id", "dev1"], json: #"{"devices": []}"#,
             expected: ["--mq-config", "no top-level \"fairMQOptions\""]),
        Case(label: "sockets and numSockets",
             arguments: ["--id", "dev1"],
             json: #"{"fairMQOptions":{"devices":[{"id":"dev1","channels":[{"name":"data","numSockets":2,"sockets":[{"type":"push","method":"bind","address":"ipc:///tmp/a"}]}]}]}}"#,
             expected: ["channel 'data'", "numSockets:", "both"]),
        Case(label: "bad numSockets", arguments: channel("name=data,type=push,method=bind,address=ipc:///tmp/a,numSockets=0"), json: nil,
             expected: ["channel 'data'", "numSockets:", "'0' is not a count"]),
        Case(label: "bad socket in a list",
             arguments: ["--id", "dev1"],
             json: #"{"fairMQOptions":{"devices":[{"id":"dev1","channels":[{"name":"data","type":"push","method":"bind","sockets":[{"address":"ipc:///tmp/a"},{"address":"ipc:///tmp/b","type":"pul"}]}]}]}}"#,
             expected: ["channel 'data[1]'", "type:", "unknown type 'pul'"]),
    ]

    @Test(arguments: cases)
    func refusedWithItsOwnError(_ badCase: Case) throws {
        var arguments = badCase.arguments
        let directory = try TemporaryDirectory()
        if let json = badCase.json { arguments += ["--mq-config", try directory.write(json, to: "topology.json")] }
        let options = try DeviceOptions.parse(arguments)
        do {
            _ = try options.deviceConfiguration()
            Issue.record("accepted: \(arguments)")
        } catch let error as DeviceConfigurationError {
            let line = error.description
            #expect(!line.contains("\n"), "one line: \(line)")
            for part in badCase.expected { #expect(line.contains(part), "'\(part)' missing from: \(line)") }
        }
    }

    @Test func badDeviceOptionsAreRefusedByTheParser() {
        for arguments in [["--transport", "ofi"], ["--shm-throw-bad-alloc", "maybe"], ["--shm-allocation", "buddy"], ["--session", "a/b"],
                          ["--init-timeout", "-1"], ["--network-interface", ""]] {
            #expect(throws: (any Error).self, "\(arguments)") { _ = try DeviceOptions.parse(arguments) }
        }
    }
}
