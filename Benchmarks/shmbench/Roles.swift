import CMallocCounter
import Foundation
import Logging
import ShmCleanup
import ShmCore
import ShmDevice
import ShmTransport
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The two ends of one measured point, each a device process of its own (shmbench runs itself
/// with `--role`). Each prints one JSON line of figures on standard output.
enum Role: String, CaseIterable {
    case sampler, sink, ping, pong
    /// A sampler whose messages point into an unmanaged region (slots handed back by the callback).
    case regionSampler = "region-sampler"
}

/// What a child tells the parent.
struct ChildReport: Codable {
    var messages: UInt64 = 0
    var seconds: Double = 0
    var allocations: UInt64 = 0
    var libzmqAllocations: UInt64 = 0
    var cpuSeconds: Double = 0
    /// One-way latency (half the round trip), ping only.
    var latency: LatencySummary?
}

/// Percentiles of one-way latency in microseconds.
struct LatencySummary: Codable {
    var p50: Double
    var p99: Double
    var p999: Double
    var min: Double
    var max: Double

    /// From sorted round-trip times in nanoseconds.
    init(sortedRoundTrips r: [UInt64]) {
        func oneWay(_ q: Double) -> Double { Double(r[Swift.min(r.count - 1, Int(Double(r.count) * q))]) / 2000 }
        p50 = oneWay(0.5)
        p99 = oneWay(0.99)
        p999 = oneWay(0.999)
        min = Double(r.first!) / 2000
        max = Double(r.last!) / 2000
    }
}

/// How the receiving end of a ping-pong waits for the next message.
enum WaitMode: String, CaseIterable, Codable {
    /// A blocking receive: the thread sleeps until libzmq wakes it.
    case sleep
    /// Non-blocking receives in a loop (yielding the core between tries) for up to
    /// `--spin-microseconds`, then a blocking one.
    case spin
}

/// Heap allocations of this process (every thread): ours, and those libzmq made itself.
struct Allocations {
    var ours: UInt64
    var libzmq: UInt64

    static func now() -> Allocations {
        let libzmq = cmc_process_libzmq_allocations()
        return Allocations(ours: cmc_process_allocations() - libzmq, libzmq: libzmq)
    }

    static func - (a: Allocations, b: Allocations) -> Allocations {
        Allocations(ours: a.ours &- b.ours, libzmq: a.libzmq &- b.libzmq)
    }
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func clockSeconds() -> Double { Double(MonotonicClock.nanoseconds()) / 1e9 }

/// The settings a child runs with (passed on its command line by the parent).
struct ChildSettings {
    var role: Role
    var transport: TransportKind
    var session: SessionID
    var endpoint: String
    var size: Int
    var seconds: Double
    var warmup: Double
    var memset: Bool
    var segmentSize: Int
    var wait: WaitMode
    var spinMicroseconds: Int

    /// A device with one channel `data` of the role's socket type.
    func makeDevice(logger: Logger) throws -> Device {
        let type: SocketType
        let method: ChannelMethod
        switch role {
        case .sampler, .regionSampler: (type, method) = (.push, .bind)
        case .sink: (type, method) = (.pull, .connect)
        case .ping: (type, method) = (.pair, .bind)
        case .pong: (type, method) = (.pair, .connect)
        }
        var sub = SubChannelConfiguration(type: type, method: method, addresses: [ChannelAddress(endpoint: endpoint)])
        sub.rateLogging = 0
        sub.linger = 5000
        var transportConfiguration = TransportConfiguration(session: session, segmentSize: segmentSize)
        transportConfiguration.badAlloc = .forever(intervalMilliseconds: 50)  // as FairMQ's benchmark: wait, never throw
        let configuration = DeviceConfiguration(
            id: "shmbench-\(role)", transport: transport, channels: [ChannelConfiguration(name: "data", subChannels: [sub])],
            transportConfiguration: transportConfiguration)
        return try Device(configuration, logger: logger)
    }

    func run(logger: Logger) throws -> ChildReport {
        let device = try makeDevice(logger: logger)
        // The channel lives only inside `run(_:)`: once it and the device are gone, the factory
        // ends its ZeroMQ context, which delivers what is still queued (within the linger).
        // Each role ends on a handshake (the sampler waits for the parent, which has the sink's
        // report; ping and pong acknowledge the last message), so no wait for receivers.
        defer { device.close(waitingForReceivers: false) }
        return try run(device)
    }

    private func run(_ device: Device) throws -> ChildReport {
        let channel = try device.channel("data")
        switch role {
        case .sampler: return try runSampler(channel)
        case .regionSampler: return try runRegionSampler(channel)
        case .sink: return try runSink(channel)
        case .ping: return try runPing(channel)
        case .pong: return try runPong(channel)
        }
    }

    /// The sequence number that ends a run.
    static let endMark = UInt64.max
    /// Warm-up messages carry sequence numbers with the top bit set.
    static let warmupBit: UInt64 = 1 << 63

    /// A new payload every message (as FairMQ's bsampler), in one reused handle, with a sequence
    /// number in its first 8 bytes; warm-up, then `seconds` timed, then the end mark.
    private func runSampler(_ channel: Channel) throws -> ChildReport {
        let message = channel.makeMessage()
        return try sample(channel) {
            try message.rebuild(size: size)
            return message
        }
    }

    /// As ``runSampler(_:)``, but every message points into an unmanaged region of `slots`
    /// blocks of `size` bytes: a block is filled and sent, and taken again only after its release
    /// callback came back (as a readout buffer is refilled once every consumer let go).
    private func runRegionSampler(_ channel: Channel) throws -> ChildReport {
        let slots = Swift.max(16, Swift.min(1024, (64 << 20) / size))
        let free = SlotStack(count: slots)
        let region = try channel.factory.makeUnmanagedRegion(
            size: slots * size, callback: .bulk { blocks in free.push(blocks.map { Int($0.hint) }) })
        defer { region.destroy() }
        return try sample(channel) {
            var slot = free.pop()
            while slot == nil {
                sched_yield()
                slot = free.pop()
            }
            return try region.makeMessage(offset: slot! * size, size: size, hint: UInt64(slot!))
        }
    }

    /// The sampler's loop: `next` gives the message to fill (its first 8 bytes the sequence
    /// number) and send; warm-up, then `seconds` timed, then the end mark.
    private func sample(_ channel: Channel, next: () throws -> Message) throws -> ChildReport {
        func send(_ sequence: UInt64) throws {
            let message = try next()
            message.withUnsafeMutableBytes { bytes in
                if memset { _ = Glibc.memset(bytes.baseAddress!, Int32(truncatingIfNeeded: sequence), bytes.count) }
                bytes.storeBytes(of: sequence, toByteOffset: 0, as: UInt64.self)
            }
            let result = channel.send(message, timeout: 30_000)
            guard case .transferred = result else { throw BenchError("\(role): send \(sequence) failed: \(result)") }
        }
        var sequence = Self.warmupBit
        let warmupEnd = clockSeconds() + warmup
        while clockSeconds() < warmupEnd {
            try send(sequence)
            sequence += 1
        }
        let allocationsBefore = Allocations.now()
        let cpuBefore = cpuSeconds()
        let start = clockSeconds()
        let end = start + self.seconds
        sequence = 0
        while true {
            // The clock every 64 messages: a clock read costs about as much as a small message.
            if sequence & 63 == 0 && clockSeconds() >= end { break }
            try send(sequence)
            sequence += 1
        }
        let elapsed = clockSeconds() - start
        let allocations = Allocations.now() - allocationsBefore
        let cpu = cpuSeconds() - cpuBefore
        try send(Self.endMark)
        // Stay until the parent has the sink's report (it closes our standard input then): a
        // PUSH socket closed while its peer's queue is full can lose the last queued messages
        // in libzmq, linger or not.
        var byte: UInt8 = 0
        while read(0, &byte, 1) > 0 {}
        return ChildReport(
            messages: sequence, seconds: elapsed, allocations: allocations.ours, libzmqAllocations: allocations.libzmq, cpuSeconds: cpu)
    }

    /// Counts and checks the timed messages (in order, of the right size) until the end mark.
    private func runSink(_ channel: Channel) throws -> ChildReport {
        let message = channel.makeMessage()
        var expected: UInt64 = 0
        var start = 0.0
        var allocationsBefore = Allocations.now()
        var cpuBefore = 0.0
        while true {
            let result = channel.receive(message, timeout: 30_000)
            guard case .transferred(let n) = result, n == size else { throw BenchError("sink: receive after \(expected) timed messages: \(result) (expected \(size) bytes)") }
            let sequence = message.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self) }
            if sequence == Self.endMark { break }
            if sequence & Self.warmupBit != 0 { continue }
            guard sequence == expected else { throw BenchError("sink: expected message \(expected), got \(sequence)") }
            if sequence == 0 {
                start = clockSeconds()
                allocationsBefore = Allocations.now()
                cpuBefore = cpuSeconds()
            }
            expected += 1
        }
        guard expected > 0 else { throw BenchError("sink: no timed message arrived") }
        let allocations = Allocations.now() - allocationsBefore
        return ChildReport(
            messages: expected, seconds: clockSeconds() - start, allocations: allocations.ours, libzmqAllocations: allocations.libzmq,
            cpuSeconds: cpuSeconds() - cpuBefore)
    }

    /// Receives into `message`, sleeping or spinning per `wait`.
    private func receive(_ channel: Channel, _ message: Message) -> TransferResult {
        if wait == .spin {
            let deadline = MonotonicClock.nanoseconds() + UInt64(spinMicroseconds) * 1000
            repeat {
                let result = channel.receive(message, timeout: 0)
                guard case .timeout = result else { return result }
                // Yield between tries: libzmq's I/O threads carry the message to this socket,
                // and on a machine with few cores a spinning thread would keep them off a core.
                sched_yield()
            } while MonotonicClock.nanoseconds() < deadline
        }
        return channel.receive(message, timeout: 30_000)
    }

    /// A new message every round (as a user's ping-pong would), timed from before it is made to
    /// the reply's arrival; one-way latency is half the round trip.
    private func runPing(_ channel: Channel) throws -> ChildReport {
        let reply = channel.makeMessage()
        var roundTrips: [UInt64] = []
        roundTrips.reserveCapacity(1 << 22)
        func round(_ sequence: UInt64) throws -> UInt64 {
            let t0 = MonotonicClock.nanoseconds()
            let message = try channel.makeMessage(size: size)
            message.withUnsafeMutableBytes { $0.storeBytes(of: sequence, toByteOffset: 0, as: UInt64.self) }
            guard case .transferred = channel.send(message, timeout: 30_000) else { throw BenchError("ping: send \(sequence) failed") }
            let result = receive(channel, reply)
            guard case .transferred(let n) = result, n == size,
                reply.withUnsafeBytes({ $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self) }) == sequence
            else { throw BenchError("ping: reply \(sequence): \(result)") }
            return MonotonicClock.nanoseconds() - t0
        }
        var sequence: UInt64 = 0
        let warmupEnd = clockSeconds() + warmup
        while clockSeconds() < warmupEnd {
            _ = try round(sequence)
            sequence += 1
        }
        let start = clockSeconds()
        let end = start + self.seconds
        let cpuBefore = cpuSeconds()
        let allocationsBefore = Allocations.now()
        while roundTrips.count < roundTrips.capacity && (roundTrips.count & 15 != 0 || clockSeconds() < end) {
            roundTrips.append(try round(sequence))
            sequence += 1
        }
        let allocations = Allocations.now() - allocationsBefore
        let cpu = cpuSeconds() - cpuBefore
        let elapsed = clockSeconds() - start
        // The end: a 1-byte message, acknowledged by a 1-byte reply.
        let last = try channel.makeMessage(size: 1)
        guard case .transferred = channel.send(last, timeout: 30_000), case .transferred(1) = channel.receive(reply, timeout: 30_000) else {
            throw BenchError("ping: the end of the run was not acknowledged")
        }
        roundTrips.sort()
        guard !roundTrips.isEmpty else { throw BenchError("ping: no timed round trip") }
        return ChildReport(
            messages: UInt64(roundTrips.count), seconds: elapsed, allocations: allocations.ours, libzmqAllocations: allocations.libzmq,
            cpuSeconds: cpu, latency: LatencySummary(sortedRoundTrips: roundTrips))
    }

    /// Sends every message straight back (zero-copy over shmem) until the 1-byte end message.
    private func runPong(_ channel: Channel) throws -> ChildReport {
        let message = channel.makeMessage()
        var rounds: UInt64 = 0
        while true {
            let result = receive(channel, message)
            guard case .transferred(let n) = result else { throw BenchError("pong: receive: \(result)") }
            if n == 1 {
                guard case .transferred = channel.send(message, timeout: 30_000) else { throw BenchError("pong: acknowledging the end failed") }
                break
            }
            guard case .transferred = channel.send(message, timeout: 30_000) else { throw BenchError("pong: send failed") }
            rounds += 1
        }
        return ChildReport(messages: rounds)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The free slots of the region sampler: the release callback pushes, the sampler pops.
final class SlotStack: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [Int]

    init(count: Int) { free = Array((0..<count).reversed()) }

    func push(_ slots: [Int]) {
        lock.lock()
        free.append(contentsOf: slots)
        lock.unlock()
    }

    func pop() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        return free.popLast()
    }
}
