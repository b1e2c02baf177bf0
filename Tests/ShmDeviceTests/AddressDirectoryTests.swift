import Foundation
import ShmCleanup
import ShmTestSupport
import Testing

@testable import ShmDevice

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `--address-dir`: bound channels publish what they got, address-less channels find it — the
/// files, their errors, and a topology file with no address in it run as real processes.
@Suite("Address directory", .serialized)
struct AddressDirectoryTests {
    @Test func aWildcardTCPBindIsPublishedWithTheInterfaceAddress() throws {
        let directory = try TemporaryDirectory()
        let addresses = AddressDirectory(path: directory.path + "/addresses", networkInterface: "lo")
        let publication = try addresses.publish(channel: "cross", index: 0, endpoints: ["tcp://0.0.0.0:22001", "ipc:///tmp/st-x/socket"])
        let file = directory.path + "/addresses/cross.0"
        #expect(publication.file == file)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "tcp://127.0.0.1:22001\nipc:///tmp/st-x/socket\n")
        #expect(try addresses.lookup(channel: "cross", index: 0) { false } == ["tcp://127.0.0.1:22001", "ipc:///tmp/st-x/socket"])
        // no temporary file is left beside it
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path + "/addresses") == ["cross.0"])
        AddressDirectory.unpublish(publication)
        #expect(!FileManager.default.fileExists(atPath: file))
    }

    @Test func aSecondBinderOfOneNameIsRefusedAndTheFirstFileStays() throws {
        let directory = try TemporaryDirectory()
        let addresses = AddressDirectory(path: directory.path, networkInterface: "lo")
        let first = try addresses.publish(channel: "data", index: 0, endpoints: ["tcp://127.0.0.1:22002"])
        do {
            _ = try addresses.publish(channel: "data", index: 0, endpoints: ["tcp://127.0.0.1:22003"])
            Issue.record("a second publication of data.0 was accepted")
        } catch {
            #expect(error.message.contains("exists already (it says tcp://127.0.0.1:22002)"), "\(error.message)")
            #expect(error.message.contains("its own --address-dir"), "\(error.message)")
        }
        #expect(try String(contentsOfFile: first.file, encoding: .utf8) == "tcp://127.0.0.1:22002\n")
        // a file someone else wrote in its place is not removed by the first device
        try "tcp://127.0.0.1:22004\n".write(toFile: first.file, atomically: true, encoding: .utf8)
        AddressDirectory.unpublish(first)
        #expect(FileManager.default.fileExists(atPath: first.file))
    }

    @Test func aLookupTimesOutNamingTheFileAndStopsOnRequest() throws {
        let directory = try TemporaryDirectory()
        let addresses = AddressDirectory(path: directory.path, timeoutSeconds: 0.2)
        let start = Date()
        #expect {
            try addresses.lookup(channel: "data", index: 1) { false }
        } throws: { error in
            let message = (error as? AddressDirectory.Problem)?.message ?? ""
            return message.contains("no device published \(directory.path)/data.1 within 0.2 s (--init-timeout)")
        }
        #expect(Date().timeIntervalSince(start) >= 0.2)
        let patient = AddressDirectory(path: directory.path, timeoutSeconds: 60)
        let stopAt = Date().addingTimeInterval(0.1)
        #expect(throws: AddressDirectory.Problem.self) { try patient.lookup(channel: "data", index: 0) { Date() > stopAt } }
        #expect(Date().timeIntervalSince(start) < 5)
        // an empty file is an error, not a connection to nothing
        try "".write(toFile: directory.path + "/empty.0", atomically: true, encoding: .utf8)
        #expect(throws: AddressDirectory.Problem.self) { try patient.lookup(channel: "empty", index: 0) { false } }
    }

    @Test func theDefaultInterfaceComesFromTheRouteTable() throws {
        let directory = try TemporaryDirectory()
        let table = try directory.write(
            """
            Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
            veth1\t0064A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
            veth1\t00000000\t016433C6\t0003\t0\t0\t0\t00000000\t0\t0\t0

            """, to: "route")
        #expect(try NetworkInterface.defaultRouteInterface(routeTable: table) == "veth1")
        let none = try directory.write("Iface\tDestination\tGateway\nveth1\t0064A8C0\t00000000\n", to: "none")
        #expect {
            try NetworkInterface.defaultRouteInterface(routeTable: none)
        } throws: { error in
            (error as? NetworkInterface.AddressProblem)?.message.contains("no default route") == true
        }
        #expect(try NetworkInterface.address(of: "lo") == "127.0.0.1")
        #expect {
            try NetworkInterface.address(of: "st-no-such-if0")
        } throws: { error in
            let message = (error as? NetworkInterface.AddressProblem)?.message ?? ""
            return message.contains("'st-no-such-if0' has no IPv4 address") && message.contains("lo")
        }
    }

    /// sampler -> processor over shmem, processor -> sink over zeromq, from one file that names
    /// no address: the sink starts first and waits, binds are `ipc://*` and `tcp://*:*`.
    static let topology = """
        { "fairMQOptions": { "devices": [
            { "id": "sampler", "channels": [
                { "name": "samples", "transport": "shmem", "type": "push", "method": "bind", "address": "ipc://*" } ] },
            { "id": "processor", "channels": [
                { "name": "samples", "transport": "shmem", "type": "pull", "method": "connect" },
                { "name": "cross", "transport": "zeromq", "type": "push", "method": "connect" } ] },
            { "id": "sink", "channels": [
                { "name": "cross", "transport": "zeromq", "type": "pull", "method": "bind" } ] } ] } }
        """

    @Test func aTopologyWithoutAddressesFindsItsPeersAndLeavesNothing() throws {
        let shm = try ShmFixtureDirectory("dev-addr")
        defer { _ = shm.remove() }
        let work = try TemporaryDirectory()
        let tmp = work.path + "/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        let file = try work.write(Self.topology, to: "topology.json")
        let session = ShmFixtureDirectory.uniqueSession("addr")
        let messages = 20_000
        let common = ["--mq-config", file, "--session", session.rawValue, "--transport", "shmem", "--control", "static",
                      "--shm-segment-size", "\(64 << 20)", "--network-interface", "lo", "--init-timeout", "30"]
        // the ipc://* socket file goes under TMPDIR, which libzmq cleans when the socket closes
        let environment = ["SHMTRANSPORT_ADDRESS_DIR": work.path + "/addresses", "TMPDIR": tmp]
        let sink = try DeviceProcess(
            "shm-sink", common + ["--id", "sink", "--in-channel", "cross", "--max-iterations", "\(messages)", "--content", "sequence"],
            shmDirectory: shm.path, environment: environment)
        let processor = try DeviceProcess(
            "shm-processor", common + ["--id", "processor", "--in-channel", "samples", "--out-channel", "cross", "--max-iterations", "\(messages)"],
            shmDirectory: shm.path, environment: environment)
        #expect(waitUntil(seconds: 20) { FileManager.default.fileExists(atPath: work.path + "/addresses/cross.0") })
        let published = (try? String(contentsOfFile: work.path + "/addresses/cross.0", encoding: .utf8)) ?? ""
        #expect(published.hasPrefix("tcp://127.0.0.1:"), "published: \(published)")
        usleep(300_000)
        #expect(processor.wait(seconds: 0) == nil, "the processor waits for the sampler: \(processor.output)")
        let sampler = try DeviceProcess(
            "shm-bsampler",
            common + ["--id", "sampler", "--out-channel", "samples", "--msg-size", "4096", "--max-iterations", "\(messages)",
                      "--content", "sequence", "--shm-throw-bad-alloc", "false"],
            shmDirectory: shm.path, environment: environment)
        #expect(sink.wait(seconds: 60) == 0, "sink: \(sink.output)")
        #expect(processor.wait(seconds: 10) == 0, "processor: \(processor.output)")
        #expect(sampler.wait(seconds: 10) == 0, "sampler: \(sampler.output)")
        #expect(sink.output.contains("Received \(messages) messages"), "sink: \(sink.output)")
        #expect(processor.output.contains("Forwarded \(messages) messages from samples[0] to cross[0]"), "processor: \(processor.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work.path + "/addresses") == [], "address files left")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp) == [], "ipc socket files left")
        #expect(shm.entries() == [], "left in the shm directory")
    }

    @Test func aStopWhileWaitingForAPeerEndsTheDeviceAtOnce() throws {
        let shm = try ShmFixtureDirectory("dev-addr-stop")
        defer { _ = shm.remove() }
        let work = try TemporaryDirectory()
        let session = ShmFixtureDirectory.uniqueSession("addr-stop")
        let sink = try DeviceProcess(
            "shm-sink",
            ["--id", "sink", "--session", session.rawValue, "--transport", "shmem", "--shm-segment-size", "\(32 << 20)",
             "--channel-config", "name=data,type=pull,method=connect", "--address-dir", work.path],
            shmDirectory: shm.path)
        #expect(waitUntil(seconds: 20) { shm.entries().contains("fmq_\(ShmID(session: session))_mng") }, "sink: \(sink.output)")
        usleep(200_000)
        #expect(sink.wait(seconds: 0) == nil, "the sink waits for data.0: \(sink.output)")
        sink.signal(SIGTERM)
        #expect(sink.wait(seconds: 5) == 0, "sink: \(sink.output)")
        #expect(sink.output.contains("stopped while starting"), "sink: \(sink.output)")
        #expect(waitUntil(seconds: 5) { shm.entries() == [] }, "left: \(shm.entries())")
    }
}
