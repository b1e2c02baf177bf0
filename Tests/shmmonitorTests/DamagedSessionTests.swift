import Foundation
import ShmCleanup
import ShmTestSupport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A damaged management segment must not crash any tool, and must not keep any session from
/// being cleaned (DESIGN.md, "Reading shared memory"). Real sessions are made by `shm-keepalive`
/// and left behind by SIGKILL; one session's `_mng` is then corrupted in many ways (random bytes
/// in its first 2 KiB, header words with high bits, words in its region table, truncation) and
/// every mode runs on it, plus an attach through ShmCore (`shmcore-worker attach`) and a
/// keep-alive that adopts and makes regions: none may die of a signal, each exits with
/// a documented code within 30 s, and `-c` and `-c --all-sessions` still remove it (and the
/// healthy one). Every fourth round `-r` rebuilds it instead, and an attach must then succeed. (Before the attach checked the session lock, a damaged lock word hung it.)
/// `SHMMONITOR_CORRUPTION_ROUNDS` sets the rounds (the long form: 2000).
@Suite("Damaged management segments", .serialized)
struct DamagedSessionTests {
    static let rounds = Int(ProcessInfo.processInfo.environment["SHMMONITOR_CORRUPTION_ROUNDS"] ?? "") ?? 40

    /// A session left behind by a killed keep-alive: its objects' names and bytes.
    struct LeftSession {
        let session: SessionID
        let id: ShmID
        var objects: [String: [UInt8]]

        init(_ label: String, in dir: ShmFixtureDirectory, regions: [String] = []) throws {
            session = ShmFixtureDirectory.uniqueSession(label)
            let keeper = try KeepAliveChild(session: session, directory: dir.path, segments: ["0,65536"], regions: regions)
            id = keeper.shmID
            keeper.kill()
            objects = [:]
            for name in dir.entries() where name.hasPrefix("fmq_\(id)_") {
                objects[name] = Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/\(name)")))
            }
        }

        var managementName: String { "fmq_\(id)_mng" }

        /// Writes every object again as it was left, `_mng` replaced by `management`.
        func restore(in dir: ShmFixtureDirectory, management: [UInt8]? = nil) throws {
            for (name, bytes) in objects {
                let data = Data(name == managementName ? (management ?? bytes) : bytes)
                try data.write(to: URL(fileURLWithPath: "\(dir.path)/\(name)"))
                chmod("\(dir.path)/\(name)", 0o600)
            }
        }

        func remaining(in dir: ShmFixtureDirectory) -> [String] { dir.entries().filter { $0.hasPrefix("fmq_\(id)_") } }
    }

    /// One corruption of `bytes`, its kind named for the failure message.
    static func corrupt(_ bytes: [UInt8], _ rng: inout SplitMix64) -> (String, [UInt8]) {
        var out = bytes
        switch rng.below(5) {
        case 4:
            // The region table: its first two entries (the session's two regions).
            let table = ManagementLayout.defaultRegionTableOffset
            let at = table + rng.below(2 * ManagementLayout.RegionEntry.size / 4) * 4
            let word: UInt32 = [UInt32.max, 1 << 31, UInt32(truncatingIfNeeded: rng.next()), 0, 2][rng.below(5)]
            withUnsafeBytes(of: word.littleEndian) { for (i, b) in $0.enumerated() { out[at + i] = b } }
            return ("32-bit word \(word) in the region table at offset \(at)", out)
        case 0:
            let n = 1 + rng.below(8)
            for _ in 0..<n { out[rng.below(2048)] = UInt8(truncatingIfNeeded: rng.next()) }
            return ("\(n) random bytes in the first 2 KiB", out)
        case 1:
            let at = rng.below(512 / 8) * 8
            let word: UInt64 = [UInt64.max, 1 << 63, 1 << 40, UInt64(UInt32.max), 0x7FFF_FFFF_FFFF_FFF0][rng.below(5)]
            withUnsafeBytes(of: word.littleEndian) { for (i, b) in $0.enumerated() { out[at + i] = b } }
            return ("word \(String(word, radix: 16)) at header offset \(at)", out)
        case 2:
            let at = rng.below(2048 / 4) * 4
            let word = UInt32.max - UInt32(rng.below(16))
            withUnsafeBytes(of: word.littleEndian) { for (i, b) in $0.enumerated() { out[at + i] = b } }
            return ("32-bit word \(word) at offset \(at)", out)
        default:
            let length = rng.below(4096)
            return ("truncated to \(length) bytes", Array(out.prefix(length)))
        }
    }

    @Test("every mode and an attach survive a damaged _mng; cleanup and the sweep still remove it")
    func corruptionFuzz() throws {
        let dir = try ShmFixtureDirectory("damaged", in: "/dev/shm")
        defer { #expect(dir.remove().isEmpty) }
        let damaged = try LeftSession("damaged", in: dir, regions: ["100,65536", "101,4096"])
        let healthy = try LeftSession("healthy", in: dir)
        try #require(damaged.objects.count == 8 && healthy.objects.count == 2, "\(dir.entries())")
        let pristine = try #require(damaged.objects[damaged.managementName])
        var rng = SplitMix64(seed: 0xDA_3A6E)
        var crashes: [String] = []
        for round in 0..<Self.rounds {
            let (what, bytes) = Self.corrupt(pristine, &rng)
            try damaged.restore(in: dir, management: bytes)
            let runs: [(String, [String])] = [
                ("shmmonitor", ["--list-all", "--shm-dir", dir.path]),
                ("shmmonitor", ["--list-all", "--shm-dir", dir.path, "--json"]),
                ("shmmonitor", ["-v", "-s", damaged.session.rawValue, "--shm-dir", dir.path]),
                ("shmmonitor", ["-c", "--dry-run", "-s", damaged.session.rawValue, "--shm-dir", dir.path]),
                ("shmmonitor", ["-b", "-s", damaged.session.rawValue, "--shm-dir", dir.path]),
                ("shmmonitor", ["--metrics", "--shm-dir", dir.path]),
                ("shmcore-worker", ["attach", "-s", damaged.session.rawValue, "--shm-dir", dir.path, "--segment-size", "65536"]),
                // Reads and writes the region table: adopts region 100, makes region 102.
                ("shm-keepalive", [
                    "-s", damaged.session.rawValue, "--shm-dir", dir.path, "--segment", "0,65536", "--region", "100,65536",
                    "--region", "102,4096", "--lifetime", "0.05", "--no-cleanup",
                ]),
            ]
            for (tool, arguments) in runs {
                // A hang is a failure too: timeout(1) ends it with status 124.
                let path = builtProductsDirectory().appendingPathComponent(tool).path
                let result = try runTool("/usr/bin/timeout", ["30", path] + arguments)
                if result.crashed || ![0, 1, 2, 3].contains(result.status) {
                    crashes.append("round \(round) (\(what)): \(tool) \(arguments.prefix(2).joined(separator: " ")) \(result.crashed ? "died of signal" : "exited") \(result.status): \(result.stderr.suffix(300))")
                }
            }
            // An attach that went through may have removed the session as the last one out.
            if damaged.remaining(in: dir).isEmpty { continue }
            // Every fourth round: -r rebuilds whatever is left into a session a process can attach to.
            if round % 4 == 3 {
                let reset = try runTool("shmmonitor", ["-r", "-s", damaged.session.rawValue, "--shm-dir", dir.path])
                let attach = try runTool(
                    "/usr/bin/timeout",
                    ["30", builtProductsDirectory().appendingPathComponent("shmcore-worker").path, "attach", "-s", damaged.session.rawValue,
                     "--shm-dir", dir.path, "--segment-size", "65536"])
                if reset.crashed || reset.status != 0 || attach.status != 0 {
                    crashes.append("round \(round) (\(what)): -r exited \(reset.status) (\(reset.stderr.suffix(200))), then attach \(attach.status): \(attach.stdout.suffix(200)) \(attach.stderr.suffix(200))")
                }
            }
            let clean = try runTool("shmmonitor", ["-c", "-s", damaged.session.rawValue, "--shm-dir", dir.path])
            if clean.crashed || clean.status != 0 || !damaged.remaining(in: dir).isEmpty {
                crashes.append("round \(round) (\(what)): -c -s exited \(clean.status) crashed \(clean.crashed), left \(damaged.remaining(in: dir)): \(clean.stderr.suffix(300))")
            }
        }
        #expect(crashes.isEmpty, "\(crashes.count) failures in \(Self.rounds) rounds:\n\(crashes.prefix(5).joined(separator: "\n"))")

        // The sweep the Slurm epilog runs: a damaged session does not stop the others' cleanup.
        let (what, bytes) = Self.corrupt(pristine, &rng)
        try damaged.restore(in: dir, management: bytes)
        try healthy.restore(in: dir)
        let sweep = try runTool("shmmonitor", ["-c", "--all-sessions", "--shm-dir", dir.path])
        #expect(!sweep.crashed && sweep.status == 0, "sweep with \(what): \(sweep.status) \(sweep.stderr)")
        #expect(damaged.remaining(in: dir).isEmpty && healthy.remaining(in: dir).isEmpty, "left: \(dir.entries())")
    }
}

