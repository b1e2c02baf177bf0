import ArgumentParser
import Foundation
import Logging
import ShmCleanup
import ShmCore
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// What a first touch of a segment page costs, with and without `prefaultSegment`, and what bulk
/// allocation (`allocate(sizes:)`) saves against one block at a time. Prints Markdown tables.
struct PagesAndBulk: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pages-and-bulk", abstract: "First-touch page cost and prefault; bulk against single allocation.")

    @Option(help: "Directory for the benchmark's sessions (a tmpfs).") var dir: String
    @Option(help: "Segment size for the page measurement.") var segmentSize: Int = 512 << 20
    @Option(help: "Blocks per batch.") var batch: Int = 64
    @Option(help: "Bytes per block.") var blockSize: Int = 1024
    @Option(help: "Batches per measurement.") var batches: Int = 20_000
    @Option(help: "Repetitions; the median is printed.") var repeats: Int = 5

    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    func run() throws {
        var logger = Logger(label: "shmcore-bench")
        logger.logLevel = .warning
        let pages = segmentSize / 4096
        var touch: [Double] = []
        var prefault: [Double] = []
        var touchAfter: [Double] = []
        for repeat_ in 0..<repeats {
            let config = SessionConfiguration(
                session: try SessionID("pages-\(getpid())-\(repeat_)"), directory: FilePath(dir), segmentSize: segmentSize, arenaCount: 1)
            // Creating process: time its first write to every page.
            let creator = try SessionMemory(config, logger: logger)
            let probe = try creator.allocate(size: 16)
            let base = creator.address(of: probe) - Int(probe.offset)
            let start = monotonicNanos()
            for page in stride(from: 8 << 20, to: segmentSize, by: 4096) { base.storeBytes(of: UInt8(1), toByteOffset: page, as: UInt8.self) }
            touch.append(Double(monotonicNanos() - start) / Double(pages - 2048))
            // A second process-local attachment with prefault: time the attach, then the writes.
            var eagerConfig = config
            eagerConfig.prefaultSegment = true
            let attachStart = monotonicNanos()
            let eager = try SessionMemory(eagerConfig, logger: logger)
            prefault.append(Double(monotonicNanos() - attachStart) / Double(pages))
            let eagerBase = eager.address(of: probe) - Int(probe.offset)
            let again = monotonicNanos()
            for page in stride(from: 8 << 20, to: segmentSize, by: 4096) { eagerBase.storeBytes(of: UInt8(2), toByteOffset: page, as: UInt8.self) }
            touchAfter.append(Double(monotonicNanos() - again) / Double(pages - 2048))
            creator.release(probe)
            eager.detach()
            creator.detach()
        }
        print("| \(segmentSize >> 20) MiB segment, 4 KiB pages | ns per page (median of \(repeats)) |")
        print("|---|---:|")
        print("| first write to a page, no prefault | \(String(format: "%.0f", median(touch))) |")
        print("| prefault at attach (MADV_POPULATE_WRITE), per page | \(String(format: "%.0f", median(prefault))) |")
        print("| first write to a page after prefault | \(String(format: "%.0f", median(touchAfter))) |")
        print("")

        print("| \(batch) blocks of \(blockSize) B | local cache | ns per block, one at a time | ns per block, bulk | bulk ÷ one at a time |")
        print("|---|---|---:|---:|---:|")
        for cache in [0, nil] as [Int?] {
            let config = SessionConfiguration(
                session: try SessionID("bulk-\(getpid())-\(cache ?? 1)"), directory: FilePath(dir), segmentSize: 256 << 20,
                localCacheBytes: cache)
            let memory = try SessionMemory(config, logger: logger)
            let sizes = [Int](repeating: blockSize, count: batch)
            var single: [Double] = []
            var bulk: [Double] = []
            var blocks: [ShmBlock] = []
            blocks.reserveCapacity(batch)
            for _ in 0..<repeats {
                let start = monotonicNanos()
                for _ in 0..<batches {
                    for _ in 0..<batch { blocks.append(try memory.allocate(size: blockSize)) }
                    for block in blocks { memory.release(block) }
                    blocks.removeAll(keepingCapacity: true)
                }
                single.append(Double(monotonicNanos() - start) / Double(batches * batch))
                let bulkStart = monotonicNanos()
                for _ in 0..<batches {
                    for block in try memory.allocate(sizes: sizes) { memory.release(block) }
                }
                bulk.append(Double(monotonicNanos() - bulkStart) / Double(batches * batch))
            }
            print("| allocate + release | \(cache == 0 ? "off" : "on") | \(String(format: "%.0f", median(single))) | \(String(format: "%.0f", median(bulk))) | \(String(format: "%.2f", median(bulk) / median(single))) |")
            guard memory.freeMemory(segmentID: 0) == memory.heapSize(segmentID: 0) else {
                throw ValidationError("the benchmark leaked shared memory")
            }
            memory.detach()
        }
    }
}
