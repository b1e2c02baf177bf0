import ShmTestSupport
import ShmTransport
import Testing

/// The metadata frame codec on its own: known layout, every refusal, and a fuzz run.
@Suite struct MetadataCodecTests {
    let shmID: UInt64 = 0x1234_abcd

    func decode(_ frame: [UInt8]) -> Result<(partCount: Int, part: BlockDescriptor), TransportError> {
        frame.withUnsafeBytes { buffer in
            Result { () throws(TransportError) in try MetadataCodec.decode(buffer, expectedShmID: shmID) }
        }
    }

    @Test func roundTripAndLayout() throws {
        let parts = [
            BlockDescriptor(segmentID: 3, offset: 4096, size: 100),
            .empty,
            BlockDescriptor(segmentID: 0, offset: 64, size: 1),
        ]
        let frames = MetadataCodec.encode(shmID: shmID, parts: parts)
        #expect(frames.count == 3)
        for (index, frame) in frames.enumerated() {
            #expect(frame.count == 32)  // below libzmq's 33-byte inline limit
            #expect(Array(frame[0..<4]) == Array("SHMT".utf8))
            #expect(frame[4] == 2 && frame[5] == 0)  // version 2, no flags
            #expect(frame[6] == 3 && frame[7] == 0)  // three parts, little-endian
            #expect(Array(frame[8..<12]) == [0xcd, 0xab, 0x34, 0x12])
            let decoded = try decode(frame).get()
            #expect(decoded.partCount == 3 && decoded.part == parts[index])
        }
        #expect(Array(frames[0][12..<20]) == [0, 0x10, 0, 0, 0, 0, 0, 0])  // offset 4096
        #expect(frames[0][20] == 100 && frames[0][28] == 3)
        #expect(frames[1][12...].allSatisfy { $0 == 0 })  // an empty part is all zeros
        let padded = MetadataCodec.encode(shmID: shmID, parts: parts, minimumSize: 2048)
        #expect(padded.allSatisfy { $0.count == 2048 })
        #expect(padded[0][..<32].elementsEqual(frames[0]))
        #expect(try decode(padded[2]).get().part == parts[2])
    }

    /// Each kind of bad frame is refused with a message naming the problem.
    @Test(arguments: [
        ("short", "shorter than the 32-byte frame"),
        ("tiny", "shorter than the 32-byte frame"),
        ("magic", "does not start with the shmem magic"),
        ("version", "has version 7"),
        ("flags", "unknown flags 0x4"),
        ("zeroParts", "names 0 parts"),
        ("session", "same session"),
        ("session", "from session shmId 00000063"),
        ("padding", "non-zero byte at 90"),
        ("emptyWithPayload", "payload of 0 bytes at offset 64"),
        ("region", "managed part names region 5"),
        ("overflow", "overflow"),
    ])
    func refusals(_ mutation: String, _ expected: String) {
        var frame = MetadataCodec.encode(
            shmID: shmID, parts: [BlockDescriptor(segmentID: 0, offset: 64, size: 10), .empty], minimumSize: 100)[0]
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { frame[offset + i] = b } }
        }
        switch mutation {
        case "short": frame = Array(frame[0..<31])
        case "tiny": frame = Array(frame[0..<2])
        case "magic": frame[0] = 0
        case "version": frame[4] = 7
        case "flags": frame[5] = 4
        case "zeroParts": put(UInt16(0), at: 6)
        case "session": put(UInt32(99), at: 8)
        case "padding": frame[90] = 1
        case "emptyWithPayload": put(UInt64(0), at: 20)
        case "region": put(UInt16(5), at: 30)
        case "overflow": put(UInt64.max - 1, at: 20)
        default: Issue.record("unknown mutation \(mutation)")
        }
        guard case .failure(let error) = decode(frame) else {
            Issue.record("\(mutation): accepted")
            return
        }
        #expect(error.code == .invalidMetadata)
        #expect(error.message.contains(expected), "\(error.message)")
    }

    /// A zeromq payload arriving at a shmem receiver names the likely transport mismatch.
    @Test func transportMismatchHint() {
        guard case .failure(let error) = decode(Array("hello from a zeromq peer, not a metadata frame".utf8)) else {
            Issue.record("accepted a text payload")
            return
        }
        #expect(error.message.contains("zeromq transport"))
    }

    /// 100,000 random and mutated frames: each one is refused, or decodes to a part whose canonical
    /// re-encoding is byte for byte the frame received (so nothing corrupt is ever accepted).
    @Test func fuzz() throws {
        var rng = SplitMix64(seed: 0x5EED_0002)
        let iterations = 100_000
        var accepted = 0
        for iteration in 0..<iterations {
            let frames = makeFuzzFrames(&rng, shmID: shmID, iteration: iteration)
            let frame = frames[Int.random(in: 0..<frames.count, using: &rng)]
            switch decode(frame) {
            case .success(let (count, part)):
                accepted += 1
                var again = [UInt8](repeating: 0, count: frame.count)
                again.withUnsafeMutableBytes { MetadataCodec.encode(shmID: shmID, partCount: count, part: part, into: $0) }
                if again != frame {
                    Issue.record("iteration \(iteration): accepted a frame that is not canonical")
                    return
                }
            case .failure(let error):
                if error.code != .invalidMetadata || error.message.isEmpty {
                    Issue.record("iteration \(iteration): wrong error \(error)")
                    return
                }
            }
        }
        // Both outcomes must actually occur, or the fuzzer tests nothing.
        #expect(accepted > 1_000)
        #expect(accepted < iterations - 1_000)
    }
}

/// The frames of one fuzz message: random bytes, a valid message, or a valid message with 1-4
/// mutations (random bytes, truncation, extension, interesting integers at field offsets, a frame
/// dropped, repeated or taken from another message).
func makeFuzzFrames(
    _ rng: inout SplitMix64, shmID: UInt64, iteration: Int, valid: [BlockDescriptor]? = nil
) -> [[UInt8]] {
    func randomParts() -> [BlockDescriptor] {
        (0..<Int.random(in: 1...4, using: &rng)).map { _ in
            Int.random(in: 0..<5, using: &rng) == 0
                ? .empty
                : BlockDescriptor(
                    segmentID: UInt16.random(in: 0...2, using: &rng),
                    offset: UInt64.random(in: 0...(1 << 20), using: &rng) & ~15,
                    size: UInt64.random(in: 1...65536, using: &rng))
        }
    }
    let mode = iteration % 4
    if mode == 0 {
        return (0..<Int.random(in: 1...3, using: &rng)).map { _ in
            (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
    }
    var parts = valid.map { Array($0.shuffled(using: &rng).prefix(Int.random(in: 1...$0.count, using: &rng))) } ?? randomParts()
    if Int.random(in: 0..<8, using: &rng) == 0 {  // one block named twice: a receiver must not take it twice
        parts.insert(parts.randomElement(using: &rng)!, at: Int.random(in: 0...parts.count, using: &rng))
    }
    var frames = MetadataCodec.encode(
        shmID: shmID, parts: parts, minimumSize: Bool.random(using: &rng) ? 0 : Int.random(in: 0...128, using: &rng))
    if mode == 1 { return frames }
    let interesting: [UInt64] = [0, 1, 15, 16, 64, 4096, 1 << 20, 1 << 32, UInt64(Int.max), UInt64.max, UInt64.max - 7]
    for _ in 0..<Int.random(in: 1...4, using: &rng) {
        let f = Int.random(in: 0..<frames.count, using: &rng)
        switch Int.random(in: 0..<7, using: &rng) {
        case 0:
            if !frames[f].isEmpty { frames[f][Int.random(in: 0..<frames[f].count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
        case 1:
            if !frames[f].isEmpty { frames[f].removeLast(Int.random(in: 1...min(frames[f].count, 20), using: &rng)) }
        case 2:
            frames[f] += (0..<Int.random(in: 1...40, using: &rng)).map { _ in Bool.random(using: &rng) ? 0 : UInt8.random(in: 0...255, using: &rng) }
        case 3:
            if !frames[f].isEmpty { frames[f][Int.random(in: 0..<frames[f].count, using: &rng)] ^= 1 << UInt8.random(in: 0...7, using: &rng) }
        case 4:
            if frames.count > 1 { frames.remove(at: f) } else { frames.append(frames[0]) }
        case 5:
            frames.insert(frames[f], at: Int.random(in: 0...frames.count, using: &rng))
        default:
            let fieldOffsets = [4, 6, 8, 12, 16, 20, 24, 28, 30]
            let at = fieldOffsets.randomElement(using: &rng)!
            let value = interesting.randomElement(using: &rng)!
            let width = at == 12 || at == 20 ? 8 : at == 8 ? 4 : at == 4 ? 1 : 2
            withUnsafeBytes(of: value.littleEndian) { bytes in
                for i in 0..<width where at + i < frames[f].count { frames[f][at + i] = bytes[i] }
            }
        }
    }
    return frames
}
