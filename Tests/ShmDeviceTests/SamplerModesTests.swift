import Foundation
import ShmCleanup
import ShmDevice
import ShmTestSupport
import Testing

/// The sampler's own modes: mixed message sizes (`--msg-size-max`) and messages from an
/// unmanaged region (`--region-size`), end to end through a checking sink.
@Suite("Sampler modes", .serialized)
struct SamplerModesTests {
    @Test func mixedSizesSpreadOverThePowersOfTwoAndStayInRange() {
        let sizes = MessageSizes(smallest: 64, largest: 1 << 20)
        var perPower = [Int](repeating: 0, count: 21)
        for sequence in UInt64(0)..<50_000 {
            let size = sizes.size(of: sequence)
            #expect((64...(1 << 20)).contains(size))
            perPower[Int(log2(Double(size)))] += 1
        }
        // 14 powers of two (2^6 ... 2^19) get about 50,000 / 14 = 3,571 each
        for power in 6..<20 { #expect((3_000...4_200).contains(perPower[power]), "2^\(power): \(perPower[power])") }
        #expect(MessageSizes(smallest: 100, largest: 0).size(of: 7) == 100, "no maximum: one size")
        #expect(sizes.size(of: 12_345) == sizes.size(of: 12_345), "the same size for the same message")
    }

    /// 5,000 messages of 100 B ... 64 KiB from a 1 MiB region (16 blocks, each reused about 300
    /// times): the sink checks every byte and the order, writes what it got, and the file holds
    /// exactly the bytes of the sizes the sampler chose; the session is gone afterwards.
    @Test(arguments: ["managed", "region"])
    func everyMessageArrivesWithItsSize(source: String) throws {
        let shm = try ShmFixtureDirectory("dev-sizes")
        defer { _ = shm.remove() }
        let ipc = try TemporaryDirectory()
        let session = ShmFixtureDirectory.uniqueSession("sizes-\(source)")
        let messages = 5_000
        let output = ipc.path + "/received"
        let common = ["--session", session.rawValue, "--transport", "shmem", "--control", "static", "--shm-segment-size", "\(32 << 20)"]
        let address = "ipc://\(ipc.path)/data"
        let sink = try DeviceProcess(
            "shm-sink", common + ["--channel-config", "name=data,type=pull,method=connect,address=\(address)", "--max-iterations", "\(messages)",
                                  "--content", "sequence", "--out-filename", output],
            shmDirectory: shm.path)
        let sampler = try DeviceProcess(
            "shm-bsampler", common + ["--channel-config", "name=data,type=push,method=bind,address=\(address)", "--msg-size", "100",
                                      "--msg-size-max", "65536", "--max-iterations", "\(messages)", "--content", "sequence",
                                      "--shm-throw-bad-alloc", "false"] + (source == "region" ? ["--region-size", "\(1 << 20)"] : []),
            shmDirectory: shm.path)
        #expect(sink.wait(seconds: 60) == 0, "sink: \(sink.output)")
        #expect(sampler.wait(seconds: 10) == 0, "sampler: \(sampler.output)")
        #expect(sink.output.contains("Received \(messages) messages"), "sink: \(sink.output)")
        if source == "region" { #expect(sampler.output.contains("blocks of 65536 bytes"), "sampler: \(sampler.output)") }
        let sizes = MessageSizes(smallest: 100, largest: 65536)
        let expected = (0..<UInt64(messages)).reduce(0) { $0 + sizes.size(of: $1) }
        let written = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? -1
        #expect(written == expected, "bytes the sink received")
        #expect(shm.entries() == [], "left in the shm directory")
    }

    @Test func aRegionTooSmallForOneMessageIsRefusedNamingTheSize() throws {
        let shm = try ShmFixtureDirectory("dev-rsmall")
        defer { _ = shm.remove() }
        let sampler = try DeviceProcess(
            "shm-bsampler", ["--channel-config", "name=data,type=push,method=bind,address=ipc:///tmp/unused-\(getpid())", "--msg-size", "1000",
                             "--region-size", "512"],
            shmDirectory: shm.path)
        #expect(sampler.wait(seconds: 10) == 2)
        #expect(sampler.output.contains("--region-size 512 holds no block of 1024 bytes"), "sampler: \(sampler.output)")
        #expect(shm.entries() == [])
    }
}
