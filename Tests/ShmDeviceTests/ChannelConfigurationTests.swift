import ArgumentParser
import Foundation
import ShmDevice
import ShmTestSupport
import ShmCleanup
import ShmCore
import ShmTransport
import Testing

/// The same topology written as a FairMQ JSON file and as `--channel-config` values gives the
/// same channels; the file's `sockets`, `numSockets`, `id`/`key` and `--config-key` work as in
/// the original.
@Suite("Channel configuration")
struct ChannelConfigurationTests {
    static let json = """
        {
          "fairMQOptions": {
            "devices": [
              { "id": "other", "channels": [ { "name": "x", "type": "push", "method": "bind", "address": "ipc:///tmp/x" } ] },
              {
                "id": "processor1",
                "key": "processor",
                "channels": [
                  { "name": "data-in", "transport": "shmem",
                    "sockets": [
                      { "type": "pull", "method": "connect", "address": "ipc:///tmp/st-a", "rcvBufSize": 500 },
                      { "type": "pull", "method": "connect", "address": "tcp://127.0.0.1:5556", "rateLogging": 0 }
                    ] },
                  { "name": "data-out", "numSockets": 2, "type": "push", "method": "bind", "address": "tcp://*:*",
                    "sndBufSize": 2000, "linger": 100, "transport": "zeromq", "autoBind": true },
                  { "name": "control", "type": "pair", "address": "@ipc:///tmp/st-c,+tcp://127.0.0.1:6000",
                    "sndTimeoutMs": 250, "rcvTimeoutMs": 250, "portRangeMin": 30000, "portRangeMax": 30100 }
                ]
              }
            ]
          }
        }
        """

    static let channelConfig = [
        "name=data-in,type=pull,method=connect,address=ipc:///tmp/st-a,transport=shmem,rcvBufSize=500",
        "name=data-out,type=push,method=bind,address=tcp://*:*,sndBufSize=2000,linger=100,transport=zeromq,numSockets=2,autoBind=true",
        "name=control,type=pair,address=@ipc:///tmp/st-c,+tcp://127.0.0.1:6000,sndTimeoutMs=250,rcvTimeoutMs=250,portRangeMin=30000,portRangeMax=30100",
    ]

    @Test func fileAndCommandLineGiveTheSameChannels() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write(Self.json, to: "topology.json")
        let fromFile = try DeviceOptions.parse(["--id", "processor1", "--mq-config", file]).deviceConfiguration()
        #expect(fromFile.channels.map(\.name) == ["data-in", "data-out", "control"])
        let dataIn = try #require(fromFile.channel("data-in"))
        #expect(dataIn.subChannels.count == 2)
        #expect(dataIn.subChannels[0].receiveBufferSize == 500)
        #expect(dataIn.subChannels[1].rateLogging == 0)
        #expect(dataIn.subChannels.allSatisfy { $0.transport == .shmem && $0.type == .pull && $0.method == .connect })
        let dataOut = try #require(fromFile.channel("data-out"))
        #expect(dataOut.subChannels.count == 2)
        #expect(dataOut.subChannels.allSatisfy { $0.sendBufferSize == 2000 && $0.linger == 100 && $0.transport == .zeromq })
        let control = try #require(fromFile.channel("control")).subChannels[0]
        #expect(control.addresses == [
            ChannelAddress(endpoint: "ipc:///tmp/st-c", methodOverride: .bind),
            ChannelAddress(endpoint: "tcp://127.0.0.1:6000", methodOverride: .connect),
        ])
        #expect(control.method == nil && control.portRange == 30000...30100 && control.sendTimeoutMilliseconds == 250)
        #expect(control.receiveBufferSize == 1000 && control.sendKernelSize == 0 && control.autoBind, "FairMQ's defaults")

        // The command line has no per-socket properties: its data-in is the file's first socket,
        // the file's second one made of the same channel's defaults.
        var expected = fromFile.channels
        expected[0].subChannels = [expected[0].subChannels[0]]
        let fromCommandLine = try DeviceOptions.parse(["--id", "processor1"] + Self.channelConfig.flatMap { ["--channel-config", $0] })
            .deviceConfiguration()
        #expect(fromCommandLine.channels == expected)

        // --config-key picks the block by its "key"; a space-separated list works like repeats.
        let byKey = try DeviceOptions.parse(["--id", "p7", "--config-key", "processor", "--mq-config", file]).deviceConfiguration()
        #expect(byKey.channels == fromFile.channels && byKey.id == "p7")
        let multiToken = try DeviceOptions.parse(["--id", "processor1", "--channel-config"] + Self.channelConfig).deviceConfiguration()
        #expect(multiToken.channels == fromCommandLine.channels)
    }

    @Test func channelDefaultsAreFairMQs() throws {
        let configuration = try DeviceOptions.parse(["--channel-config", "name=data,type=push,method=bind,address=ipc:///tmp/st-d"])
            .deviceConfiguration()
        let sub = try #require(configuration.channel("data")).subChannels[0]
        #expect(configuration.transport == .zeromq && sub.transport == nil)
        #expect(sub.sendBufferSize == 1000 && sub.receiveBufferSize == 1000)
        #expect(sub.sendKernelSize == 0 && sub.receiveKernelSize == 0)
        #expect(sub.sendTimeoutMilliseconds == -1 && sub.receiveTimeoutMilliseconds == -1)
        #expect(sub.linger == 500 && sub.rateLogging == 1 && sub.portRange == 22000...23000 && sub.autoBind)
        #expect(configuration.transportConfiguration.segmentSize == 2_147_483_648)
        #expect(configuration.transportConfiguration.badAlloc == .throwImmediately)
    }

    @Test func sessionComesFromOptionThenEnvironmentThenDefault() throws {
        let environment = ["SHMTRANSPORT_SESSION": "s-env"]
        #expect(try DeviceOptions.parse(["--session", "s-opt"]).sessionID(environment: environment).rawValue == "s-opt")
        #expect(try DeviceOptions.parse([]).sessionID(environment: environment).rawValue == "s-env")
        #expect(try DeviceOptions.parse([]).sessionID(environment: [:]).rawValue == "default")
        #expect(try DeviceOptions.parse([]).sessionID(environment: ["SHMTRANSPORT_SESSION": ""]).rawValue == "default")
        #expect(throws: (any Error).self) { try DeviceOptions.parse([]).sessionID(environment: ["SHMTRANSPORT_SESSION": "a/b"]) }
    }

    @Test func shmOptionsKeepTheirMeaning() throws {
        let configuration = try DeviceOptions.parse([
            "--shm-segment-size", "1048576", "--shm-allocation", "simple_seq_fit", "--shm-segment-id", "3",
            "--shm-throw-bad-alloc", "false", "--bad-alloc-max-attempts", "4", "--bad-alloc-attempt-interval", "20",
            "--shm-metadata-msg-size", "256", "--shm-zero-segment-on-creation", "true", "--shm-mlock-segment", "1",
            "--shm-no-cleanup", "yes", "--io-threads", "2",
        ]).deviceConfiguration().transportConfiguration
        #expect(configuration.segmentSize == 1_048_576 && configuration.allocationStrategy == .simpleSeqFit && configuration.segmentID == 3)
        #expect(configuration.badAlloc == .retry(attempts: 4, intervalMilliseconds: 20))
        #expect(configuration.metadataMessageSize == 256 && configuration.zeroSegmentOnCreation && configuration.mlockSegmentOnAttach)
        #expect(configuration.noCleanup && configuration.ioThreads == 2)
        let forever = try DeviceOptions.parse(["--shm-throw-bad-alloc", "false"]).deviceConfiguration().transportConfiguration
        #expect(forever.badAlloc == .forever(intervalMilliseconds: 50))
    }
}
