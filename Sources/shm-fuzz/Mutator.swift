import ShmTestSupport

/// Structure-aware mutations of a valid input: bit flips, random bytes, aligned words set to
/// boundary values or nudged, copied ranges, truncation and extension — the damage a crashed
/// writer, a scribbling process or a hostile peer can do. Deterministic for a seed.
struct Mutator {
    var random: SplitMix64

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    /// Values that break bounds checks: zero, one, all ones, signed limits, powers of two
    /// around common sizes, and their neighbours.
    static let interesting: [UInt64] = {
        var values: [UInt64] = [0, 1, 2, 7, 8, 15, 16, 31, 32, 63, 64, 0xff, 0x100, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
                                0x1_0000_0000, UInt64(Int64.max), UInt64(bitPattern: Int64.min), UInt64.max, UInt64.max - 1]
        for shift in [10, 12, 16, 20, 21, 24, 30, 32, 40, 48, 62, 63] {
            values += [1 << shift, (1 << shift) - 1, (1 << shift) + 1]
        }
        return values
    }()

    mutating func interestingValue() -> UInt64 {
        random.below(4) == 0 ? random.next() : Self.interesting[random.below(Self.interesting.count)]
    }

    /// Applies 1 ... 8 mutations to `bytes`; `resizable` allows truncation and extension.
    /// `focus` bytes at the start get most of the mutations (headers live there).
    mutating func mutate(_ bytes: inout [UInt8], resizable: Bool, focus: Int? = nil) {
        let rounds = 1 + random.below(8)
        for _ in 0..<rounds {
            if bytes.isEmpty {
                bytes = (0..<(1 + random.below(64))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                continue
            }
            let span = min(bytes.count, focus.map { random.below(8) == 0 ? bytes.count : $0 } ?? bytes.count)
            let at = random.below(span)
            switch random.below(resizable ? 9 : 7) {
            case 0: bytes[at] ^= 1 << UInt8(random.below(8))
            case 1: bytes[at] = UInt8(truncatingIfNeeded: random.next())
            case 2: store(&bytes, at: at & ~7, value: interestingValue(), width: 8)
            case 3: store(&bytes, at: at & ~3, value: interestingValue(), width: 4)
            case 4:
                // nudge an aligned 64-bit word: off-by-one and small overflows
                let o = at & ~7
                guard o + 8 <= bytes.count else { continue }
                var word: UInt64 = 0
                for k in 0..<8 { word |= UInt64(bytes[o + k]) << (8 * UInt64(k)) }
                let delta = UInt64(1 + random.below(64))
                store(&bytes, at: o, value: random.below(2) == 0 ? word &+ delta : word &- delta, width: 8)
            case 5:
                // copy a range over another (a table entry duplicated or shifted)
                let length = 1 + random.below(min(64, bytes.count))
                let from = random.below(max(1, bytes.count - length + 1)), to = random.below(max(1, bytes.count - length + 1))
                let slice = Array(bytes[from..<(from + length)])
                bytes.replaceSubrange(to..<(to + length), with: slice)
            case 6:
                // a run of random bytes (a scribbler)
                let length = min(bytes.count - at, 1 + random.below(32))
                for k in 0..<length { bytes[at + k] = UInt8(truncatingIfNeeded: random.next()) }
            case 7: bytes.removeLast(random.below(bytes.count + 1))
            default: bytes += (0..<(1 + random.below(64))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            }
        }
    }

    private func store(_ bytes: inout [UInt8], at offset: Int, value: UInt64, width: Int) {
        guard offset >= 0, offset + width <= bytes.count else { return }
        for k in 0..<width { bytes[offset + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
    }
}
