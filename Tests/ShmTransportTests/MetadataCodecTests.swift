import ShmTransport
import Testing

/// The metadata frame codec on its own: known layout, every refusal, and a fuzz run.
@Suite struct MetadataCodecTests {
    let shmID: UInt64 = 0x1234_abcd

    @Test func roundTripAndLayout() throws {
        let parts = [
            BlockDescriptor(segmentID: 3, offset: 4096, size: 100),
            .empty,
            BlockDescriptor(segmentID: 0, offset: 64, size: 1),
        ]
        let frame = MetadataCodec.encode(shmID: shmID, parts: parts)
        #expect(frame.count == 16 + 3 * 24)
        #expect(Array(frame[0..<4]) == Array("SHMT".utf8))
        #expect(frame[4] == 1 && frame[5] == 0)  // version 1, little-endian
        #expect(frame[6] == 3 && frame[7] == 0)  // three parts
        let decoded = try frame.withUnsafeBytes { buffer throws(TransportError) in
            try MetadataCodec.decode(buffer, expectedShmID: shmID)
        }
        #expect(decoded == parts)
        let padded = MetadataCodec.encode(shmID: shmID, parts: parts, minimumSize: 2048)
        #expect(padded.count == 2048)
        #expect(padded[..<frame.count].elementsEqual(frame))
        let decodedPadded = try padded.withUnsafeBytes { buffer throws(TransportError) in
            try MetadataCodec.decode(buffer, expectedShmID: shmID)
        }
        #expect(decodedPadded == parts)
    }

    /// Each kind of bad frame is refused with a message naming the problem.
    @Test(arguments: [
        ("short", "shorter than the 16-byte header"),
        ("magic", "does not start with the shmem magic"),
        ("version", "has version 7"),
        ("zeroParts", "names 0 parts"),
        ("truncated", "too short for its 2 parts"),
        ("session", "same session"),
        ("session", "from session shmId 00000063"),
        ("padding", "non-zero byte at"),
        ("reserved", "non-zero reserved field"),
        ("flags", "unknown flags"),
        ("emptyWithPayload", "marked empty but names a payload"),
        ("region", "names unmanaged region 5"),
        ("zeroSize", "0 bytes without the empty flag"),
        ("overflow", "overflow"),
    ])
    func refusals(_ mutation: String, _ expected: String) {
        var frame = MetadataCodec.encode(
            shmID: shmID, parts: [BlockDescriptor(segmentID: 0, offset: 64, size: 10), .empty], minimumSize: 100)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { frame[offset + i] = b } }
        }
        switch mutation {
        case "short": frame = Array(frame[0..<10])
        case "magic": frame[0] = 0
        case "version": put(UInt16(7), at: 4)
        case "zeroParts": put(UInt16(0), at: 6)
        case "truncated": frame = Array(frame[0..<40])
        case "session": put(UInt64(99), at: 8)
        case "padding": frame[90] = 1
        case "reserved": put(UInt16(1), at: 16 + 22)
        case "flags": put(UInt16(4), at: 16 + 20)
        case "emptyWithPayload": put(UInt64(8), at: 16 + 24)
        case "region": put(UInt16(5), at: 16 + 18)
        case "zeroSize": put(UInt64(0), at: 16 + 8)
        case "overflow": put(UInt64.max - 1, at: 16 + 8)
        default: Issue.record("unknown mutation \(mutation)")
        }
        let outcome = frame.withUnsafeBytes { buffer in
            Result { () throws(TransportError) in try MetadataCodec.decode(buffer, expectedShmID: shmID) }
        }
        guard case .failure(let error) = outcome else {
            Issue.record("\(mutation): accepted")
            return
        }
        #expect(error.code == .invalidMetadata)
        #expect(error.message.contains(expected), "\(error.message)")
    }

    /// A zeromq payload arriving at a shmem receiver names the likely transport mismatch.
    @Test func transportMismatchHint() {
        let payload = Array("hello from a zeromq peer, not a metadata frame".utf8)
        let outcome = payload.withUnsafeBytes { buffer in
            Result { () throws(TransportError) in try MetadataCodec.decode(buffer, expectedShmID: shmID) }
        }
        guard case .failure(let error) = outcome else {
            Issue.record("accepted a text payload")
            return
        }
        #expect(error.message.contains("zeromq transport"))
    }

    /// 100,000 random and mutated frames: each one is refused, or decodes to parts whose canonical
    /// re-encoding is byte for byte the frame received (so nothing corrupt is ever accepted).
    @Test func fuzz() throws {
        var rng = SplitMix64(seed: 0x5EED_0001)
        let iterations = 100_000
        var accepted = 0
        for iteration in 0..<iterations {
            let frame = makeFuzzFrame(&rng, shmID: shmID, iteration: iteration)
            let outcome = frame.withUnsafeBytes { buffer in
                Result { () throws(TransportError) in try MetadataCodec.decode(buffer, expectedShmID: shmID) }
            }
            switch outcome {
            case .success(let parts):
                accepted += 1
                let again = MetadataCodec.encode(shmID: shmID, parts: parts, minimumSize: frame.count)
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

/// A small deterministic generator, so a failing fuzz iteration can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One fuzz frame: pure random bytes, a valid frame, or a valid frame with 1-4 mutations
/// (random bytes, truncation, extension, interesting integers at field offsets).
func makeFuzzFrame(
    _ rng: inout SplitMix64, shmID: UInt64, iteration: Int, valid: [BlockDescriptor]? = nil
) -> [UInt8] {
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
        return (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }
    var parts = valid.map { Array($0.shuffled(using: &rng).prefix(Int.random(in: 1...$0.count, using: &rng))) } ?? randomParts()
    if Int.random(in: 0..<8, using: &rng) == 0 {  // one block named twice: a receiver must not take it twice
        parts.insert(parts.randomElement(using: &rng)!, at: Int.random(in: 0...parts.count, using: &rng))
    }
    var frame = MetadataCodec.encode(
        shmID: shmID, parts: parts, minimumSize: Bool.random(using: &rng) ? 0 : Int.random(in: 0...256, using: &rng))
    if mode == 1 { return frame }
    let interesting: [UInt64] = [0, 1, 15, 16, 64, 4096, 1 << 20, 1 << 32, UInt64(Int.max), UInt64.max, UInt64.max - 7]
    for _ in 0..<Int.random(in: 1...4, using: &rng) {
        switch Int.random(in: 0..<5, using: &rng) {
        case 0:
            if !frame.isEmpty { frame[Int.random(in: 0..<frame.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
        case 1:
            if !frame.isEmpty { frame.removeLast(Int.random(in: 1...min(frame.count, 30), using: &rng)) }
        case 2:
            frame += (0..<Int.random(in: 1...40, using: &rng)).map { _ in Bool.random(using: &rng) ? 0 : UInt8.random(in: 0...255, using: &rng) }
        case 3:
            if !frame.isEmpty { frame[Int.random(in: 0..<frame.count, using: &rng)] ^= 1 << UInt8.random(in: 0...7, using: &rng) }
        default:
            let fieldOffsets = [4, 6, 8, 16, 24, 32, 34, 36, 38, 40, 48, 56]
            let at = fieldOffsets.randomElement(using: &rng)!
            let value = interesting.randomElement(using: &rng)!
            let width = at < 16 && at != 8 ? 2 : (at % 8 == 0 ? 8 : 2)
            withUnsafeBytes(of: value.littleEndian) { bytes in
                for i in 0..<width where at + i < frame.count { frame[at + i] = bytes[i] }
            }
        }
    }
    return frame
}
