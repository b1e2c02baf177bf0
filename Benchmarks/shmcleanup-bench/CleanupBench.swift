import ArgumentParser
import Logging
import ShmCleanup
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `shmcleanup-bench`: fills a shm directory with many dead sessions, and times the engine's
/// scan and cleanup of them in-process. `scripts/bench-cleanup` also times the CLI end to end.
@main
struct CleanupBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shmcleanup-bench",
        abstract: "Populate a shm directory with dead sessions; time scanning and cleaning them.")

    @Option(help: "Directory to fill (created if missing; must not hold transport objects already).")
    var dir: String

    @Option(help: "Number of sessions.")
    var sessions = 1000

    @Option(help: "Repetitions of the in-process measurement (each repopulates).")
    var repeats = 5

    @Flag(help: "Only populate the directory, then exit (for hyperfine --prepare).")
    var populateOnly = false

    func run() throws {
        mkdir(dir, 0o700)
        if populateOnly {
            try populate()
            return
        }
        let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        var scanTimes: [Double] = []
        var cleanTimes: [Double] = []
        for _ in 0..<repeats {
            try populate()
            let t0 = now()
            let scan = try SessionScanner(directory: FilePath(dir), logger: logger).scan()
            let t1 = now()
            precondition(scan.sessions.count == sessions)
            let report = try SessionCleaner(directory: FilePath(dir), logger: logger).sweep { _ in true }
            let t2 = now()
            precondition(report.sessions.count == sessions && report.sessions.allSatisfy { $0.status == .removed })
            scanTimes.append(t1 - t0)
            cleanTimes.append(t2 - t1)
        }
        print("| operation (\(sessions) sessions × 5 objects) | median | min | max |")
        print("|---|---|---|---|")
        for (name, times) in [("scan with liveness", scanTimes), ("sweep cleanup (scan + remove)", cleanTimes)] {
            let sorted = times.sorted()
            print("| \(name) | \(ms(sorted[sorted.count / 2])) | \(ms(sorted[0])) | \(ms(sorted.last!)) |")
        }
    }

    /// Creates `sessions` dead sessions of 5 objects each: our management record (a dead pid
    /// registered), a segment, a region with its queue and ref-count pool.
    private func populate() throws {
        for i in 0..<sessions {
            let session = try SessionID("bench-\(i)")
            let id = ShmID(session: session)
            let record = ManagementRecord(
                sessionName: session.rawValue, creatorUID: geteuid(), creatorPID: 999_999,
                processes: [.init(pid: 999_999, uid: geteuid(), startTime: 1)],
                segments: [.init(id: 0, size: 4096, freeBytes: 4096)], regions: [.init(id: 1024, size: 4096)])
            try write(ShmObjectName(id, .management).fileName, record.encoded())
            for kind: ShmObjectName.Kind in [.segment(0), .region(1024), .regionQueue(1024), .regionRefCount(1024)] {
                try write(ShmObjectName(id, kind).fileName, [UInt8](repeating: 1, count: 4096))
            }
        }
    }

    private func write(_ name: String, _ bytes: [UInt8]) throws {
        let fd = open("\(dir)/\(name)", O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ShmCleanupError(.systemCall, "cannot create \(dir)/\(name)", errno: errno) }
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    private func ms(_ seconds: Double) -> String {
        "\((seconds * 10_000).rounded() / 10) ms"
    }

    private func now() -> Double { Double(MonotonicClock.nanoseconds()) / 1e9 }
}
