import Foundation
import ShmCleanup
import ShmTestSupport
import Testing

/// `shmmonitor --metrics` is read by a real OpenMetrics parser (`prometheus_client`'s, which the
/// test command installs) and agrees with `--list-all --json`; `--metrics-file` writes the same
/// exposition atomically.
@Suite("Metrics")
struct MetricsTests {
    static let parserAvailable: Bool = {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import prometheus_client.openmetrics.parser"]
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return false }
        probe.waitUntilExit()
        return probe.terminationStatus == 0
    }()

    /// Samples as (name, labels, value), parsed by prometheus_client's OpenMetrics parser.
    static func parse(_ exposition: String) throws -> [(name: String, labels: [String: String], value: Double)] {
        let parser = Process()
        parser.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        parser.arguments = ["python3", "-c", """
            import json, sys
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
            out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]
            print(json.dumps(out))
            """]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        parser.standardInput = input
        parser.standardOutput = output
        parser.standardError = errors
        try parser.run()
        input.fileHandleForWriting.write(Data(exposition.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let problems = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        parser.waitUntilExit()
        try #require(parser.terminationStatus == 0, "the OpenMetrics parser refused the exposition: \(problems)")
        let rows = try #require(try JSONSerialization.jsonObject(with: data) as? [[Any]])
        return rows.map { ($0[0] as! String, $0[1] as! [String: String], ($0[2] as! NSNumber).doubleValue) }
    }

    @Test(.enabled(if: parserAvailable, "needs python3 with prometheus_client (scripts/test installs it)"))
    func metricsParseAndMatchTheJSONListing() throws {
        let mixed = try MixedDirectory()
        defer { mixed.remove() }
        let live = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("metrics"), directory: mixed.dir.path)
        defer { live.stop() }
        let metrics = try runTool("shmmonitor", ["--metrics", "--shm-dir", mixed.dir.path])
        #expect(metrics.status == 0, "\(metrics.stderr)")
        #expect(metrics.stdout.hasSuffix("# EOF\n"))
        let samples = try Self.parse(metrics.stdout)
        let listing = try runTool("shmmonitor", ["--list-all", "--json", "--shm-dir", mixed.dir.path])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])
        let sessions = try #require(json["sessions"] as? [[String: Any]])
        func value(_ name: String, _ labels: [String: String]) -> Double? {
            samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
        }
        let inUse = sessions.filter { $0["in_use"] as? Bool == true }.count
        #expect(value("shmtransport_sessions", ["state": "live"]) == Double(inUse))
        #expect(value("shmtransport_sessions", ["state": "dead"]) == Double(sessions.count - inUse))
        #expect(inUse >= 1, "the keep-alive's session is live")
        var bytesByUser: [String: Double] = [:]
        for session in sessions {
            let shmid = try #require(session["shmid"] as? String)
            let objects = try #require(session["objects"] as? [[String: Any]])
            let state = session["in_use"] as? Bool == true ? "live" : "dead"
            #expect(value("shmtransport_session_bytes", ["shmid": shmid, "state": state]) == (session["total_bytes"] as? NSNumber)?.doubleValue, "\(shmid)")
            #expect(value("shmtransport_session_objects", ["shmid": shmid]) == Double(objects.count), "\(shmid)")
            #expect(value("shmtransport_session_processes", ["shmid": shmid]) == Double((session["users"] as? [Any])?.count ?? -1), "\(shmid)")
            for segment in (session["record"] as? [String: Any])?["segments"] as? [[String: Any]] ?? [] {
                let labels = ["shmid": shmid, "segment": "\(segment["id"] as? Int ?? -1)"]
                #expect(value("shmtransport_segment_size_bytes", labels) == (segment["size"] as? NSNumber)?.doubleValue)
                #expect(value("shmtransport_segment_free_bytes", labels) == (segment["free_bytes"] as? NSNumber)?.doubleValue)
            }
            for object in objects {
                bytesByUser["\(object["owner_uid"] as? Int ?? -1)", default: 0] += (object["size"] as? NSNumber)?.doubleValue ?? 0
            }
        }
        for (uid, bytes) in bytesByUser { #expect(value("shmtransport_user_bytes", ["uid": uid]) == bytes, "uid \(uid)") }

        let file = try TemporaryDirectory()
        let written = try runTool("shmmonitor", ["--metrics", "--metrics-file", file.path + "/shm.prom", "--shm-dir", mixed.dir.path])
        #expect(written.status == 0 && written.stdout.isEmpty, "\(written.stderr)")
        let text = try String(contentsOfFile: file.path + "/shm.prom", encoding: .utf8)
        #expect(try Self.parse(text).count == samples.count)
        #expect(try FileManager.default.contentsOfDirectory(atPath: file.path) == ["shm.prom"], "no temporary file left")
        let refused = try runTool("shmmonitor", ["--metrics-file", file.path + "/x.prom"])
        #expect(refused.status == 2 && refused.stderr.contains("'--metrics-file' applies with '--metrics' or '--monitor'"))
    }
}

extension MetricsTests {
    @Test(.enabled(if: parserAvailable, "needs python3 with prometheus_client (scripts/test installs it)"))
    func monitorKeepsTheMetricsFileCurrent() throws {
        let dir = try ShmFixtureDirectory("metrics-mon")
        defer { dir.remove() }
        let file = try TemporaryDirectory()
        let path = file.path + "/node.prom"
        let holder = try KeepAliveChild(session: ShmFixtureDirectory.uniqueSession("metrics-mon"), directory: dir.path)
        // A long timeout: the monitor only watches here, so the file must follow the session's state.
        let monitor = try startTool("shmmonitor", ["-m", "-t", "60000", "--shmid", "\(holder.shmID)", "--shm-dir", dir.path, "--metrics-file", path])
        defer { if monitor.isRunning { monitor.terminate() } }
        func sessions(_ state: String) -> Double? {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8), let samples = try? Self.parse(text) else { return nil }
            return samples.first { $0.name == "shmtransport_sessions" && $0.labels["state"] == state }?.value
        }
        #expect(waitUntil(seconds: 5) { sessions("live") == 1 && sessions("dead") == 0 }, "the file shows the live session")
        holder.kill()
        #expect(waitUntil(seconds: 5) { sessions("live") == 0 && sessions("dead") == 1 }, "the file follows: the session is dead now")
        monitor.terminate()
        monitor.waitUntilExit()
        let clean = try runTool("shmmonitor", ["-c", "--shmid", "\(holder.shmID)", "--shm-dir", dir.path])
        #expect(clean.status == 0)
        #expect(dir.entries().isEmpty)
    }
}
