import Foundation
import ShmCleanup
import ShmTransport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The whole run: every throughput point and latency point, in repetitions, each in a fresh
/// session that must be gone when the point ends.
struct BenchRun {
    let options: ShmBench
    let fairmq: FairMQ?
    let shmDirectory: String
    let progress: Progress
    let started = Date()

    init(options: ShmBench, fairmq: FairMQ?) throws {
        self.options = options
        self.fairmq = fairmq
        shmDirectory = ProcessInfo.processInfo.environment["SHMTRANSPORT_SHM_DIR"] ?? "/dev/shm"
        let throughputSteps = options.repetitions * (options.sizeList.count * options.kinds.count + options.regionSizeList.count)
            + (fairmq == nil ? 0 : options.repetitions * options.sizeList.reduce(0) { $0 + ($1 <= 65536 ? 2 : 1) })
        let latencySteps = options.latencySizeList.count * options.kinds.count * options.waits.count
        progress = Progress(total: throughputSteps + latencySteps, quiet: options.json)
    }

    func execute() throws -> Report {
        var report = Report(options: options, started: started, fairmq: fairmq?.directory)
        for repetition in 1...options.repetitions {
            for size in options.sizeList {
                for kind in options.kinds {
                    progress.step("throughput \(kind) \(Report.bytes(size)), repetition \(repetition)/\(options.repetitions)")
                    do {
                        let point = try throughput(kind, size: size)
                        report.add(throughput: point, transport: "\(kind)", size: size, repetition: repetition)
                    } catch {
                        report.problems.append("throughput \(kind) \(Report.bytes(size)): \(error)")
                    }
                }
                if let fairmq {
                    // The original's zeromq sampler is done when its queue (1000 messages) holds the
                    // last one, so above 64 KiB its time measures the queue, not the transfer.
                    for kind in TransportKind.allCases where kind == .shmem || size <= 65536 {
                        progress.step("FairMQ \(kind) \(Report.bytes(size)), repetition \(repetition)/\(options.repetitions)")
                        do {
                            let rate = try fairmq.throughput(kind, size: size, seconds: options.seconds, memset: options.memset)
                            report.add(fairmqRate: rate, transport: "\(kind)", size: size, repetition: repetition)
                        } catch {
                            report.problems.append("FairMQ \(kind) \(Report.bytes(size)): \(error)")
                        }
                    }
                }
            }
        }
        for repetition in 1...options.repetitions where !options.regionSizeList.isEmpty {
            for size in options.regionSizeList {
                progress.step("throughput shmem region \(Report.bytes(size)), repetition \(repetition)/\(options.repetitions)")
                do {
                    let (sampler, sink) = try pair(.regionSampler, .sink, .shmem, size: size, wait: .sleep)
                    report.add(
                        throughput: ThroughputPoint(sampler: sampler, sink: sink), transport: "shmem-region", size: size,
                        repetition: repetition)
                } catch {
                    report.problems.append("throughput shmem region \(Report.bytes(size)): \(error)")
                }
            }
        }
        for size in options.latencySizeList {
            for kind in options.kinds {
                for wait in options.waits {
                    progress.step("latency \(kind) \(Report.bytes(size)), \(wait)")
                    do {
                        let (ping, _) = try pair(.ping, .pong, kind, size: size, wait: wait)
                        report.add(latency: ping, transport: "\(kind)", size: size, wait: wait)
                    } catch {
                        report.problems.append("latency \(kind) \(Report.bytes(size)) \(wait): \(error)")
                    }
                }
            }
        }
        progress.finish()
        return report
    }

    struct ThroughputPoint {
        var sampler: ChildReport
        var sink: ChildReport
    }

    private func throughput(_ kind: TransportKind, size: Int) throws -> ThroughputPoint {
        let (sampler, sink) = try pair(.sampler, .sink, kind, size: size, wait: .sleep)
        return ThroughputPoint(sampler: sampler, sink: sink)
    }

    /// Runs `first` (which binds) and `second` (which connects) as two processes in a fresh
    /// session; checks that the session is gone afterwards.
    private func pair(_ first: Role, _ second: Role, _ kind: TransportKind, size: Int, wait: WaitMode) throws -> (ChildReport, ChildReport) {
        let session = try SessionID("shmbench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let ipcDirectory = try makeIPCDirectory("shmbench")
        defer { try? FileManager.default.removeItem(atPath: ipcDirectory) }
        let common = [
            "--transport", "\(kind)", "--session", session.rawValue, "--endpoint", "ipc://\(ipcDirectory)/data", "--size", "\(size)",
            "--seconds", "\(options.seconds)", "--warmup-seconds", "\(options.warmupSeconds)", "--segment-size", "\(options.segmentSize)",
            "--wait", wait.rawValue, "--spin-microseconds", "\(options.spinMicroseconds)",
        ] + (options.memset ? ["--memset"] : [])
        let a = try Child(role: first, arguments: common)
        let b = try Child(role: second, arguments: common)
        defer {
            a.release()
            if a.process.isRunning { a.process.terminate() }
            if b.process.isRunning { b.process.terminate() }
        }
        let reportB = try b.finish()
        a.release()
        let reportA = try a.finish()
        let id = ShmID(session: session)
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: shmDirectory)) ?? []).filter { $0.contains("fmq_\(id)_") }
        guard left.isEmpty else { throw BenchError("the run left \(left) in \(shmDirectory)") }
        return (reportA, reportB)
    }
}

/// A fresh directory under /tmp for one run's `ipc://` socket (short: a Unix socket path holds 107 bytes).
func makeIPCDirectory(_ prefix: String) throws -> String {
    var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw BenchError("cannot make a directory under /tmp for the ipc socket (errno \(errno))")
    }
    return String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
}

/// A child shmbench process in one role; its report is the JSON line it prints.
struct Child {
    let process = Process()
    let output = Pipe()
    let errors = Pipe()
    let input = Pipe()
    let role: Role

    init(role: Role, arguments: [String]) throws {
        self.role = role
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["--role", role.rawValue] + arguments
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = input
        try process.run()
    }

    /// Lets a child that waits for the end of its standard input finish.
    func release() { try? input.fileHandleForWriting.close() }

    func finish() throws -> ChildReport {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let problems = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, process.terminationReason == .exit,
            let report = try? JSONDecoder().decode(ChildReport.self, from: data)
        else {
            throw BenchError("the \(role) failed (status \(process.terminationStatus)): \(problems.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return report
    }
}

/// Progress on standard error: one rewritten line on a terminal, plain lines otherwise.
final class Progress {
    let total: Int
    let quiet: Bool
    let terminal = isatty(2) == 1
    private var done = 0
    private let start = Date()

    init(total: Int, quiet: Bool) {
        self.total = total
        self.quiet = quiet
    }

    func step(_ what: String) {
        done += 1
        guard !quiet else { return }
        let elapsed = Int(Date().timeIntervalSince(start))
        let line = String(format: "[%3d/%d %4ds] %@", done, total, elapsed, what)
        FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
    }

    func finish() {
        guard !quiet else { return }
        if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        FileHandle.standardError.write(Data("shmbench: \(done) runs in \(Int(Date().timeIntervalSince(start))) s\n".utf8))
    }
}
