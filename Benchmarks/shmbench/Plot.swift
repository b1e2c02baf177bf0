import Foundation

/// `throughput.png`: messages per second against message size, log axes, a line per transport
/// (and per FairMQ transport when compared), drawn by gnuplot.
struct Plot {
    let report: Report

    func draw(into folder: String) throws {
        guard let gnuplot = ["/usr/bin/gnuplot", "/usr/local/bin/gnuplot"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BenchError("gnuplot is not installed, so throughput.png cannot be drawn; install it (apt-get install gnuplot-nox) or run scripts/shmbench, which does")
        }
        var series: [(title: String, points: [(Int, Double)])] = []
        for transport in report.settings.transports {
            series.append(("ShmTransport \(transport)", report.throughput.filter { $0.transport == transport && $0.medianMessagesPerSecond > 0 }.map { ($0.size, $0.medianMessagesPerSecond) }))
        }
        if report.fairmq != nil {
            for transport in ["shmem", "zeromq"] {
                series.append(("FairMQ \(transport)", report.throughput.compactMap { t in
                    t.transport == transport ? t.fairmqMedianMessagesPerSecond.map { (t.size, $0) } : nil
                }))
            }
        }
        series = series.filter { !$0.points.isEmpty }
        guard !series.isEmpty else { return }
        var data = ""
        for s in series {
            data += "# \(s.title)\n" + s.points.map { "\($0.0) \($0.1)" }.joined(separator: "\n") + "\n\n\n"
        }
        let dataPath = "\(folder)/throughput.dat"
        try Data(data.utf8).write(to: URL(fileURLWithPath: dataPath))
        defer { try? FileManager.default.removeItem(atPath: dataPath) }
        let plots = series.enumerated().map { "'\(dataPath)' index \($0.offset) using 1:2 with linespoints lw 2 pt 7 title '\($0.element.title)'" }
        let script = """
            set terminal pngcairo size 1000,640 font ',11'
            set output '\(folder)/throughput.png'
            set title 'Throughput, sampler -> sink in two processes (\(report.date), \(report.machine.cores) cores)'
            set logscale xy
            set xlabel 'message size (bytes)'
            set ylabel 'messages per second'
            set grid
            set key outside right
            set format x '%.0s%cB'
            plot \(plots.joined(separator: ", "))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: gnuplot)
        let input = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(script.utf8))
        try input.fileHandleForWriting.close()
        let problems = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw BenchError("gnuplot failed: \(problems)") }
    }
}
