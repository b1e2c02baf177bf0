import Foundation
import ShmCleanup
import ShmTestSupport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A stop signal is never lost, whenever it comes: while the device parses its options,
/// attaches, starts its run loop, or runs. (The kill soak found devices that had started
/// under load and never stopped: a signal delivered while the signal source was being armed was
/// dropped.)
@Suite("Stop signals", .serialized)
struct StopSignalTests {
    @Test func sigintAtAnyMomentOfStartUpStopsTheDevices() throws {
        let shm = try ShmFixtureDirectory("dev-stopsig")
        defer { _ = shm.remove() }
        var random = SplitMix64(seed: UInt64(getpid()))
        for round in 0..<16 {
            let ipc = try TemporaryDirectory()
            let session = ShmFixtureDirectory.uniqueSession("stopsig-\(round)")
            let address = "ipc://\(ipc.path)/data"
            let common = ["--session", session.rawValue, "--transport", "shmem", "--control", "static", "--shm-segment-size", "\(8 << 20)"]
            let sink = try DeviceProcess("shm-sink", common + ["--channel-config", "name=data,type=pull,method=connect,address=\(address)"], shmDirectory: shm.path)
            let sampler = try DeviceProcess(
                "shm-bsampler", common + ["--channel-config", "name=data,type=push,method=bind,address=\(address)", "--msg-size", "4096",
                                          "--shm-throw-bad-alloc", "false"], shmDirectory: shm.path)
            usleep(UInt32(random.below(400_000)))
            let signal = [SIGINT, SIGTERM, SIGHUP][round % 3]
            sink.signal(signal)
            sampler.signal(signal)
            // 0: stopped by the signal; 128 + signal: it came before the process could catch it
            // (nothing attached yet). Anything else, or still running after 5 s, is a failure.
            for (name, device) in [("sink", sink), ("sampler", sampler)] {
                let status = device.wait(seconds: 5)
                #expect(status == 0 || status == 128 + signal, "round \(round), \(name), signal \(signal): \(status.map(String.init) ?? "still running") \(device.output)")
            }
            #expect(waitUntil(seconds: 5) { shm.entries().isEmpty }, "round \(round): left \(shm.entries())")
        }
    }
}
