import Foundation
import ShmTransport

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// C++ FairMQ's own benchmark devices (built by the user), run the way its maintainers'
/// benchmark runs them: sink first, then the sampler for a number of messages, waiting on a full
/// segment instead of throwing. The rate comes from the sampler's "Done N iterations in X ms"
/// line; the count grows until a run lasts at least the point's seconds.
struct FairMQ {
    let directory: String

    init?(directory: String?) throws {
        guard let directory, !directory.isEmpty else { return nil }
        for tool in ["fairmq-bsampler", "fairmq-sink"] {
            guard FileManager.default.isExecutableFile(atPath: "\(directory)/\(tool)") else {
                throw BenchError("\(directory) has no executable \(tool); point --compare-fairmq (or FAIRMQ_BIN) at the bin directory of a FairMQ installation")
            }
        }
        self.directory = directory
    }

    func throughput(_ kind: TransportKind, size: Int, seconds: Double, memset: Bool) throws -> Double {
        // About 0.2 s even where the original is slowest.
        var iterations = size >= 4 << 20 ? 20 : size >= 64 << 10 ? 500 : 20_000
        for _ in 0..<6 {
            let (rate, milliseconds) = try once(kind, size: size, iterations: iterations, memset: memset)
            if milliseconds >= seconds * 1000 { return rate }
            iterations = max(iterations * 2, Int(rate * seconds * 1.5))
        }
        throw BenchError("no run lasted \(seconds) s")
    }

    private func once(_ kind: TransportKind, size: Int, iterations: Int, memset: Bool) throws -> (Double, Double) {
        let session = "fmqbench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let ipcDirectory = try makeIPCDirectory("fmqbench")
        defer { try? FileManager.default.removeItem(atPath: ipcDirectory) }
        let address = "ipc://\(ipcDirectory)/data"
        let common = ["--transport", "\(kind)", "--session", session, "--max-iterations", "\(iterations)", "--control", "static"]
        let sink = Process()
        sink.executableURL = URL(fileURLWithPath: "\(directory)/fairmq-sink")
        sink.arguments = ["--id", "sink", "--channel-config", "name=data,type=pull,method=connect,address=\(address)", "--severity", "warn"] + common
        sink.standardOutput = FileHandle.nullDevice
        sink.standardError = FileHandle.nullDevice
        try sink.run()
        defer {
            if sink.isRunning { sink.terminate() }
            sink.waitUntilExit()
        }
        usleep(500_000)
        let sampler = Process()
        sampler.executableURL = URL(fileURLWithPath: "\(directory)/fairmq-bsampler")
        sampler.arguments = [
            "--id", "bsampler", "--channel-config", "name=data,type=push,method=bind,address=\(address)", "--msg-size", "\(size)",
            "--memset", memset ? "true" : "false", "--shm-throw-bad-alloc", "false", "--severity", "info", "--color", "false",
        ] + common
        let output = Pipe()
        sampler.standardOutput = output
        sampler.standardError = output
        try sampler.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        sampler.waitUntilExit()
        guard let range = text.range(of: #"Done (\d+) iterations in ([0-9.]+) ?ms"#, options: .regularExpression) else {
            throw BenchError("fairmq-bsampler printed no 'Done' line (status \(sampler.terminationStatus))")
        }
        let numbers = text[range].split(whereSeparator: { !$0.isNumber && $0 != "." }).compactMap { Double($0) }
        guard numbers.count >= 2, numbers[1] > 0 else { throw BenchError("cannot read '\(text[range])'") }
        return (numbers[0] / (numbers[1] / 1000), numbers[1])
    }
}
