import Foundation
import ShmCleanup
import ShmTestSupport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Real device processes: a three-device topology from one JSON file, stops by signal, a
/// SIGKILLed device's session cleaned by `shmmonitor -c`, and bad configuration refused by the
/// executables themselves.
@Suite("Device processes", .serialized)
struct TopologyTests {
    static let messages = 20_000

    /// sampler -> processor -> sink: `data1` between sampler and processor, `data2` between
    /// processor and sink, each link's transport written in the file.
    static func topology(ipc: String, link2: String) -> String {
        """
        {
          "fairMQOptions": {
            "devices": [
              { "id": "sampler1", "channels": [
                  { "name": "data1", "transport": "shmem", "sockets": [ { "type": "push", "method": "bind", "address": "ipc://\(ipc)/data1" } ] } ] },
              { "id": "processor1", "channels": [
                  { "name": "data1", "transport": "shmem", "type": "pull", "method": "connect", "address": "ipc://\(ipc)/data1" },
                  { "name": "data2", "transport": "\(link2)", "numSockets": 1, "type": "push", "method": "bind", "address": "ipc://\(ipc)/data2" } ] },
              { "id": "sink1", "channels": [
                  { "name": "data2", "transport": "\(link2)", "type": "pull", "method": "connect", "address": "ipc://\(ipc)/data2" } ] }
            ]
          }
        }
        """
    }

    @Test(arguments: ["shmem", "zeromq"])
    func threeDevicesFromOneFile(link2: String) throws {
        let shm = try ShmFixtureDirectory("dev-topo")
        defer { _ = shm.remove() }
        let session = ShmFixtureDirectory.uniqueSession("topo-\(link2)")
        let ipc = try TemporaryDirectory()
        let file = try ipc.write(Self.topology(ipc: ipc.path, link2: link2), to: "topology.json")
        let common = ["--mq-config", file, "--session", session.rawValue, "--control", "static", "--shm-segment-size", "\(64 << 20)"]
        let sizes = "--msg-size"
        let sink = try DeviceProcess(
            "shm-sink", common + ["--id", "sink1", "--in-channel", "data2", "--max-iterations", "\(Self.messages)", "--content", "sequence"],
            shmDirectory: shm.path)
        let processor = try DeviceProcess(
            "shm-processor", common + ["--id", "processor1", "--in-channel", "data1", "--out-channel", "data2", "--max-iterations", "\(Self.messages)"],
            shmDirectory: shm.path)
        let sampler = try DeviceProcess(
            "shm-bsampler",
            common + ["--id", "sampler1", "--out-channel", "data1", sizes, "4096", "--max-iterations", "\(Self.messages)", "--content", "sequence",
                      "--shm-throw-bad-alloc", "false"],
            shmDirectory: shm.path)
        #expect(sink.wait(seconds: 60) == 0, "sink: \(sink.output)")
        #expect(processor.wait(seconds: 10) == 0, "processor: \(processor.output)")
        #expect(sampler.wait(seconds: 10) == 0, "sampler: \(sampler.output)")
        #expect(sink.output.contains("Received \(Self.messages) messages"), "sink: \(sink.output)")
        #expect(processor.output.contains("Forwarded \(Self.messages) messages from data1[0] to data2[0]"), "processor: \(processor.output)")
        #expect(sampler.output.contains("Done \(Self.messages) iterations"), "sampler: \(sampler.output)")
        #expect(shm.entries() == [], "left in the shm directory")
    }

    /// A sampler and a sink over shmem in a fresh session of `shm`, running once the session exists.
    struct RunningPair {
        let sink: DeviceProcess
        let sampler: DeviceProcess
        let id: ShmID
        let ipc: TemporaryDirectory

        init(_ label: String, shm: ShmFixtureDirectory, samplerArguments: [String], sinkArguments: [String] = [], session: SessionID? = nil, waitForStart: Bool = true
        ) throws {
            let session = session ?? ShmFixtureDirectory.uniqueSession(label)
            ipc = try TemporaryDirectory()
            let address = "ipc://\(ipc.path)/data"
            let common = ["--session", session.rawValue, "--transport", "shmem", "--shm-segment-size", "\(32 << 20)"]
            sink = try DeviceProcess(
                "shm-sink", common + ["--channel-config", "name=data,type=pull,method=connect,address=\(address)"] + sinkArguments, shmDirectory: shm.path)
            sampler = try DeviceProcess(
                "shm-bsampler", common + ["--channel-config", "name=data,type=push,method=bind,address=\(address)", "--msg-size", "1024"] + samplerArguments,
                shmDirectory: shm.path)
            id = ShmID(session: session)
            if waitForStart { waitUntilRunning(shm) }
        }

        func waitUntilRunning(_ shm: ShmFixtureDirectory) {
            let (sink, id) = (self.sink, self.id)
            #expect(waitUntil(seconds: 10) { shm.entries().contains("fmq_\(id)_mng") && sink.output.contains("Starting sink") })
            usleep(300_000)
        }
    }

    @Test func sigtermDetachesAndTheLastOneOutRemovesTheSession() throws {
        let shm = try ShmFixtureDirectory("dev-term")
        defer { _ = shm.remove() }
        let pair = try RunningPair("term", shm: shm, samplerArguments: ["--msg-rate", "2000"])
        pair.sink.signal(SIGTERM)
        #expect(pair.sink.wait(seconds: 5) == 0, "sink after SIGTERM: \(pair.sink.output)")
        #expect(shm.entries().contains("fmq_\(pair.id)_mng"), "the sampler still uses the session")
        pair.sampler.signal(SIGINT)
        #expect(pair.sampler.wait(seconds: 5) == 0, "sampler after SIGINT: \(pair.sampler.output)")
        #expect(shm.entries() == [], "the last one out removes the session")
    }

    /// With `--shm-message-records true`, `shmmonitor -b` lists the messages in flight to a
    /// stopped sink: all the sampler's, all of its message size, none twice.
    @Test func debugListsTheMessagesAStoppedSinkHasNotTakenYet() throws {
        let shm = try ShmFixtureDirectory("dev-debug")
        defer { _ = shm.remove() }
        let records = ["--shm-message-records", "true"]
        let pair = try RunningPair("debug", shm: shm, samplerArguments: records, sinkArguments: records)
        pair.sink.signal(SIGSTOP)
        // The queues between them fill up, then the sampler waits: what is in flight stays live.
        var messages: [[String: Any]] = []
        var last = -1
        #expect(
            waitUntil(seconds: 15) {
                guard let result = try? runTool("shmmonitor", ["-b", "--json", "--shmid", "\(pair.id)", "--shm-dir", shm.path]),
                    let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                    let segments = (object["sessions"] as? [[String: Any]])?.first?["segments"] as? [[String: Any]]
                else { return false }
                messages = segments.flatMap { $0["messages"] as? [[String: Any]] ?? [] }
                defer { last = messages.count }
                usleep(200_000)
                return messages.count > 1 && messages.count == last
            }, "\(messages.count) messages")
        #expect(messages.allSatisfy { $0["creator_pid"] as? Int == Int(pair.sampler.pid) && $0["size"] as? Int == 1024 })
        #expect(Set(messages.compactMap { $0["offset"] as? Int }).count == messages.count)
        let text = try runTool("shmmonitor", ["-b", "--shmid", "\(pair.id)", "--shm-dir", shm.path])
        #expect(text.stdout.hasPrefix("found \(messages.count) messages."), "\(text.stdout.prefix(300))")
        #expect(text.stdout.contains("size:       1024, creator PID: \(pair.sampler.pid), at: "))
        pair.sink.signal(SIGCONT)
        pair.sampler.signal(SIGINT)
        pair.sink.signal(SIGINT)
        #expect(pair.sampler.wait(seconds: 5) == 0, "sampler: \(pair.sampler.output)")
        #expect(pair.sink.wait(seconds: 5) == 0, "sink: \(pair.sink.output)")
        #expect(shm.entries() == [])
    }

    @Test func sigkilledDevicesLeaveASessionThatShmmonitorRemoves() throws {
        let shm = try ShmFixtureDirectory("dev-kill")
        defer { _ = shm.remove() }
        let pair = try RunningPair("kill", shm: shm, samplerArguments: [])
        pair.sampler.signal(SIGKILL)
        pair.sink.signal(SIGKILL)
        #expect(pair.sampler.wait(seconds: 5) == 128 + SIGKILL)
        #expect(pair.sink.wait(seconds: 5) == 128 + SIGKILL)
        #expect(shm.entries().contains("fmq_\(pair.id)_mng"), "a SIGKILLed device cannot clean up")
        let clean = try runTool("shmmonitor", ["-c", "--shmid", "\(pair.id)", "--shm-dir", shm.path])
        #expect(clean.status == 0, "shmmonitor -c: \(clean.stdout) \(clean.stderr)")
        #expect(shm.entries() == [])
    }

    /// Four devices started at once with `--shm-monitor true` give exactly one monitor daemon;
    /// SIGKILL of all four leads to cleanup within the monitor's timeout + 1 s, and the daemon exits.
    @Test func fourDevicesWithShmMonitorGiveOneDaemon() throws {
        let shm = try ShmFixtureDirectory("dev-mon")
        defer { _ = shm.remove() }
        let session = ShmFixtureDirectory.uniqueSession("mon")
        let monitor = ["--shm-monitor", "true", "--msg-rate", "1000"]
        let pairs = try (0..<2).map { _ in
            try RunningPair("mon", shm: shm, samplerArguments: monitor, sinkArguments: ["--shm-monitor", "true"], session: session, waitForStart: false)
        }
        // The sinks take the option too: four devices race to start the daemon.
        for pair in pairs { pair.waitUntilRunning(shm) }
        let id = pairs[0].id
        #expect(waitUntil(seconds: 5) { shm.entries().contains("sem.fmq_\(id)_ms") }, "a device started the monitor daemon: \(shm.entries())")
        usleep(500_000)  // daemons that lost the race have exited by now
        #expect(Self.monitors(of: session).count == 1, "monitor daemons: \(Self.monitors(of: session))")
        // No zombie under a device: each reaped the short-lived starter, and the daemon is no
        // device's child (its own session, reparented), so no device ever holds its exit status.
        let devices = Set(pairs.flatMap { [$0.sampler.pid, $0.sink.pid] })
        let children = Self.processStates().filter { devices.contains($0.value.ppid) }
        #expect(children.isEmpty, "children of the devices (state, parent): \(children)")
        for pid in Self.monitors(of: session) {
            #expect(Self.processStates()[pid].map { !devices.contains($0.ppid) && $0.state != "Z" } ?? false)
        }
        for pair in pairs {
            pair.sampler.signal(SIGKILL)
            pair.sink.signal(SIGKILL)
        }
        for pair in pairs {
            _ = pair.sampler.wait(seconds: 5)
            _ = pair.sink.wait(seconds: 5)
        }
        let killed = Date()
        #expect(waitUntil(seconds: 20) { shm.entries().isEmpty }, "left after the monitor's timeout: \(shm.entries())")
        let took = Date().timeIntervalSince(killed)
        print("monitor daemon cleaned the session \(String(format: "%.2f", took)) s after the SIGKILLs (timeout 5 s)")
        #expect(took <= 6.0, "cleanup took \(took) s, more than the timeout + 1 s")
        #expect(waitUntil(seconds: 3) { Self.monitors(of: session).isEmpty }, "the daemon exits after its cleanup (-x)")
    }

    /// Pids of running shmmonitor processes watching `session`.
    /// State and parent of every process, from `/proc/<pid>/stat`.
    static func processStates() -> [Int32: (state: String, ppid: Int32)] {
        var states: [Int32: (state: String, ppid: Int32)] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let ppid = Int32(fields[1]) else { continue }
            states[pid] = (String(fields[0]), ppid)
        }
        return states
    }

    static func monitors(of session: SessionID) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = Int32(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard arguments.first?.hasSuffix("shmmonitor") == true, arguments.contains(session.rawValue) else { return nil }
            return pid
        }
    }

    @Test func badConfigurationExitsWithStatus2AndOneLine() throws {
        let shm = try ShmFixtureDirectory("dev-bad")
        defer { _ = shm.remove() }
        let sampler = try DeviceProcess(
            "shm-bsampler", ["--id", "s1", "--channel-config", "name=data,type=pusher,method=bind,address=ipc:///tmp/x"], shmDirectory: shm.path)
        #expect(sampler.wait(seconds: 10) == 2)
        #expect(sampler.output.contains("device 's1', channel 'data', type: unknown type 'pusher'"), "\(sampler.output)")
        let sink = try DeviceProcess("shm-sink", ["--id", "k1", "--in-channel", "nope", "--channel-config", "name=data,type=pull,method=connect,address=ipc:///tmp/x"], shmDirectory: shm.path)
        #expect(sink.wait(seconds: 10) == 1)
        #expect(sink.output.contains("device 'k1', channel 'nope', name: the device has no such channel (it has data)"), "\(sink.output)")
        #expect(shm.entries() == [])
    }
}
