import Foundation
import ShmTransport
import Testing

/// The hot path's promise, counted: in steady state a shmem send and a shmem receive allocate
/// nothing on the heap, single or multipart. Two real `transport-peer` processes (linked with
/// the allocation counter) move 100,000 messages with every byte written and checked; after a
/// warm-up each prints how many allocations its sending or receiving thread and its whole
/// process made, and how many of those libzmq made itself (told apart by return address).
/// Ours must be 0. libzmq's own are the chunks of its message pipes (one per 256 messages when
/// the reader lags a chunk behind): amortised, never per message, so they must stay under one
/// per 64 frames.
///
/// The counts are of a release build of `transport-peer` (`SHMTRANSPORT_RELEASE_BIN_DIR`, set by
/// `scripts/test`): an unoptimised build allocates where the optimiser would not.
@Suite("Heap allocations per message")
struct AllocationTests {
    static let messages = Int(ProcessInfo.processInfo.environment["SHMTRANSPORT_ALLOCATION_MESSAGES"] ?? "") ?? 100_000

    static let releaseBinDirectory = ProcessInfo.processInfo.environment["SHMTRANSPORT_RELEASE_BIN_DIR"]

    @Test(
        .enabled(
            if: releaseBinDirectory != nil,
            "needs SHMTRANSPORT_RELEASE_BIN_DIR: a release build of transport-peer (scripts/test builds one)"),
        arguments: [(1, 64), (1, 16384), (4, 1024)])
    func steadyStateAllocatesNothing(parts: Int, size: Int) throws {
        try withFixture(.shmem, "alloc") { fixture in
            let common = fixture.peerArguments + [
                "--messages", "\(Self.messages + 2000)", "--size", "\(size)", "--parts", "\(parts)",
                "--count-allocations-after", "2000", "--segment-size", "\(256 << 20)",
            ]
            let binary = URL(fileURLWithPath: Self.releaseBinDirectory!).appendingPathComponent("transport-peer")
            let sender = try PeerProcess(
                common + ["--socket", "push", "--role", "send", "--bind", fixture.endpoint(.ipc, "a"), "--hold"], executable: binary)
            let ready = sender.readLine() ?? ""
            try #require(ready.hasPrefix("ready "), "sender said '\(ready)'")
            let receiver = try PeerProcess(
                common + ["--socket", "pull", "--role", "receive", "--connect", String(ready.dropFirst(6))], executable: binary)
            #expect(receiver.readLine()?.hasPrefix("ready") == true)
            let sent = sender.readLine() ?? ""
            let got = receiver.readLine() ?? ""
            let (receiveStatus, receiveErrors) = receiver.wait()
            let (sendStatus, sendErrors) = sender.wait()  // the sender holds on until the receiver has all
            #expect(sendStatus == 0, "sender: \(sendErrors)")
            #expect(receiveStatus == 0, "receiver: \(receiveErrors)")
            print("allocations, \(parts) part(s) of \(size) bytes: sender \(sent); receiver \(got)")
            for (side, line) in [("sender", sent), ("receiver", got)] {
                let fields = line.split(separator: " ")
                guard fields.count == 11, fields[0] == "allocations", let thread = Int(fields[2]), let process = Int(fields[4]),
                    let zmqThread = Int(fields[6]), let zmqProcess = Int(fields[8]), Int(fields[10]) == Self.messages
                else {
                    Issue.record("\(side) printed '\(line)'")
                    continue
                }
                #expect(thread - zmqThread == 0, "\(side): \(thread - zmqThread) allocations of ours in its transfer thread over \(Self.messages) messages")
                #expect(process - zmqProcess == 0, "\(side): \(process - zmqProcess) allocations of ours in the whole process over \(Self.messages) messages")
                #expect(zmqProcess < Self.messages * parts / 64, "\(side): libzmq allocated \(zmqProcess) times over \(Self.messages) messages of \(parts) frames")
            }
        }
    }
}
