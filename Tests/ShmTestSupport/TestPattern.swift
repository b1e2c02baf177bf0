/// The byte pattern that test processes write into messages and check on the other side: 64-bit
/// words counting up from a seed of (message, part), so a byte in the wrong place, a stale
/// buffer or a copy of the wrong message is seen. `transport-peer` and the tests share it.
public func fillPattern(_ buffer: UnsafeMutableRawBufferPointer, message: Int, part: Int) {
    let seed = patternSeed(message: message, part: part)
    let words = buffer.count / 8
    for k in 0..<words { buffer.storeBytes(of: seed &+ UInt64(k), toByteOffset: k * 8, as: UInt64.self) }
    for k in (words * 8)..<buffer.count { buffer[k] = UInt8(truncatingIfNeeded: seed &+ UInt64(k)) }
}

/// Whether a buffer holds the pattern of (message, part) written by ``fillPattern(_:message:part:)``.
public func checkPattern(_ buffer: UnsafeRawBufferPointer, message: Int, part: Int) -> Bool {
    let seed = patternSeed(message: message, part: part)
    let words = buffer.count / 8
    for k in 0..<words where buffer.loadUnaligned(fromByteOffset: k * 8, as: UInt64.self) != seed &+ UInt64(k) {
        return false
    }
    for k in (words * 8)..<buffer.count where buffer[k] != UInt8(truncatingIfNeeded: seed &+ UInt64(k)) {
        return false
    }
    return true
}

private func patternSeed(message: Int, part: Int) -> UInt64 {
    UInt64(message) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(part) &* 0x1000_0001
}
