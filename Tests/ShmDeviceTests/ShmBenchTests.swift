import Foundation
import ShmTestSupport
import Testing

/// The main job in its short form: `shmbench` runs both transports and region messages, throughput and latency,
/// prints results.json with every field a reader needs, and writes the four files, the plot a
/// real PNG; no shared memory is left behind.
@Suite("shmbench")
struct ShmBenchTests {
    @Test(.disabled(
        if: ProcessInfo.processInfo.environment["SHMTRANSPORT_SANITIZER"] != nil,
        "the benchmark counts heap allocations with its own malloc, which a sanitizer replaces"))
    func shortRunWritesTheResultsAndAPlot() throws {
        let shm = try ShmFixtureDirectory("bench")
        defer { _ = shm.remove() }
        let results = try TemporaryDirectory()
        let run = try runTool(
            "shmbench",
            ["--sizes", "64,65536", "--region-sizes", "64", "--seconds", "0.1", "--warmup-seconds", "0.05", "--repetitions", "1", "--latency-sizes", "64",
             "--segment-size", "\(64 << 20)", "--results", results.path, "--json"],
            environment: ["SHMTRANSPORT_SHM_DIR": shm.path])
        #expect(run.status == 0 && !run.crashed, "shmbench: \(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "stdout: \(run.stdout)")
        #expect(json["date"] is String && json["command"] is String)
        let machine = try #require(json["machine"] as? [String: Any])
        #expect((machine["cores"] as? Int ?? 0) >= 1 && machine["cpu"] is String && machine["kernel"] is String)
        let settings = try #require(json["settings"] as? [String: Any])
        #expect(settings["sizes"] as? [Int] == [64, 65536] && settings["transports"] as? [String] == ["shmem", "zeromq"])
        #expect(settings["region_sizes"] as? [Int] == [64])
        #expect((json["problems"] as? [Any])?.isEmpty == true, "problems: \(json["problems"] ?? "none")")

        let throughput = try #require(json["throughput"] as? [[String: Any]])
        #expect(throughput.count == 5, "two transports × two sizes, and region messages at 64 B")
        for (transport, sizes) in [("shmem", [64, 65536]), ("zeromq", [64, 65536]), ("shmem-region", [64])] {
            for size in sizes {
                let point = try #require(throughput.first { $0["transport"] as? String == transport && $0["size"] as? Int == size }, "\(transport) \(size)")
                let median = point["median_messages_per_second"] as? Double ?? 0
                #expect(median > 0 && (point["min_messages_per_second"] as? Double ?? .infinity) <= median)
                #expect((point["gigabytes_per_second"] as? Double ?? 0) > 0)
                #expect((point["cpu_microseconds_per_message"] as? Double ?? 0) > 0)
                #expect(point["allocations_per_message"] is Double && point["libzmq_allocations_per_message"] is Double)
                let repetitions = try #require(point["repetitions"] as? [[String: Any]])
                #expect(repetitions.count == 1 && (repetitions[0]["messages"] as? Int ?? 0) > 0)
            }
        }
        let latency = try #require(json["latency"] as? [[String: Any]])
        #expect(latency.count == 4, "two transports × sleep and spin")
        for point in latency {
            let p50 = point["p50_microseconds"] as? Double ?? 0
            #expect(p50 > 0 && (point["p99_microseconds"] as? Double ?? 0) >= p50, "\(point)")
            #expect((point["round_trips"] as? Int ?? 0) > 0)
        }

        let folders = try FileManager.default.contentsOfDirectory(atPath: results.path)
        try #require(folders.count == 1, "one run folder: \(folders)")
        let folder = results.path + "/" + folders[0]
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder)) == ["results.json", "results.md", "runs.jsonl", "throughput.png"])
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/results.json"))) as? [String: Any]
        #expect(written?["date"] as? String == json["date"] as? String)
        let markdown = try String(contentsOfFile: folder + "/results.md", encoding: .utf8)
        #expect(markdown.contains("| transport | size | msgs/s (median) |") && markdown.contains("| shmem | 64 KiB |"))
        try expectPNG(Data(contentsOf: URL(fileURLWithPath: folder + "/throughput.png")))
        #expect(shm.entries() == [], "shmbench left shared memory behind")
    }

    @Test func badUsageExitsWith2() throws {
        let run = try runTool("shmbench", ["--sizes", "4"])
        #expect(run.status == 2)
        #expect(run.stderr.contains("--sizes takes byte counts of at least 8"))
    }

    /// A PNG: the signature, an IHDR chunk first with a non-empty picture, IEND last.
    private func expectPNG(_ data: Data) throws {
        let bytes = [UInt8](data)
        try #require(bytes.count > 100, "PNG of \(bytes.count) bytes")
        #expect(Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "PNG signature")
        #expect(String(decoding: bytes[12..<16], as: UTF8.self) == "IHDR")
        let width = bytes[16..<20].reduce(0) { $0 << 8 | Int($1) }
        let height = bytes[20..<24].reduce(0) { $0 << 8 | Int($1) }
        #expect(width >= 400 && height >= 300, "\(width)×\(height)")
        #expect(String(decoding: bytes[(bytes.count - 8)..<(bytes.count - 4)], as: UTF8.self) == "IEND")
    }
}
