import ArgumentParser

/// What the built-in sampler writes into its messages and the sink checks (ours; FairMQ's
/// devices have only `--memset`).
public enum MessageContent: String, ExpressibleByArgument, Sendable, CaseIterable {
    /// Nothing is written (FairMQ's default; with `--memset true` every byte is set to 0).
    case none
    /// Every byte is a function of the message's sequence number and part, and the first 8
    /// bytes of each part are the sequence number: the sink checks every byte and the order.
    case sequence

    /// Fills `part` of message `sequence`.
    static func fill(_ buffer: UnsafeMutableRawBufferPointer, sequence: UInt64, part: Int) {
        guard let base = buffer.baseAddress else { return }
        let seed = sequence &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(part)
        var offset = 0
        if buffer.count >= 8 {
            base.storeBytes(of: sequence.littleEndian, as: UInt64.self)
            offset = 8
        }
        while offset + 8 <= buffer.count {
            base.storeBytes(of: (seed &+ UInt64(offset)).littleEndian, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < buffer.count {
            base.storeBytes(of: UInt8(truncatingIfNeeded: seed &+ UInt64(offset)), toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }

    /// The sequence number in `part` (its first 8 bytes), if it has 8 bytes.
    static func sequence(of buffer: UnsafeRawBufferPointer) -> UInt64? {
        guard buffer.count >= 8 else { return nil }
        return UInt64(littleEndian: buffer.loadUnaligned(as: UInt64.self))
    }

    /// Whether `part` holds exactly what ``fill(_:sequence:part:)`` wrote for `sequence`.
    static func check(_ buffer: UnsafeRawBufferPointer, sequence: UInt64, part: Int) -> Bool {
        let seed = sequence &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(part)
        var offset = 0
        if buffer.count >= 8 {
            guard Self.sequence(of: buffer) == sequence else { return false }
            offset = 8
        }
        while offset + 8 <= buffer.count {
            guard UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) == seed &+ UInt64(offset) else { return false }
            offset += 8
        }
        while offset < buffer.count {
            guard buffer[offset] == UInt8(truncatingIfNeeded: seed &+ UInt64(offset)) else { return false }
            offset += 1
        }
        return true
    }
}
