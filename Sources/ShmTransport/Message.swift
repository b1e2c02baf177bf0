import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A message: a contiguous payload owned by this handle, made by a ``TransportFactory``.
///
/// Over `shmem` the payload lives in the session's shared memory and only a metadata frame
/// travels; over `zeromq` it lives on the heap and libzmq copies it. Either way:
/// - ``Socket/send(_:timeout:)`` moves the payload to the receiver on success and leaves this
///   handle empty; on failure the handle still owns it and freeing it later leaks nothing.
/// - ``copy()`` makes another handle to the same bytes (zero-copy) and bumps the reference count;
///   the payload is freed when the last handle lets go, in whichever process that is.
/// - The bytes are borrowed in place through ``withUnsafeMutableBytes(_:)``; nothing is copied.
///
/// A message may move between threads, but must not be used by two threads at once.
public final class Message: @unchecked Sendable {
    enum Storage {
        case empty
        case heap(HeapPayload)
        case shm(ShmPayload)
        case region(RegionPayload)
    }

    /// The factory (and so the transport) the message belongs to.
    public let factory: TransportFactory
    // Unchecked exclusivity: a message is used by one thread at a time (documented above) and
    // no access to these fields overlaps another; the dynamic checks cost about 5 % of a send.
    @exclusivity(unchecked) var storage: Storage
    /// Address of the payload's first byte, `nil` when empty.
    @exclusivity(unchecked) private(set) var base: UnsafeMutableRawPointer?
    /// The payload size in bytes (after any ``setUsedSize(_:)``); 0 when empty.
    @exclusivity(unchecked) public private(set) var size: Int
    /// The alignment asked for at creation (0 = the transport's default of 16). A message
    /// received into a handle with an alignment is realigned if the sender's was weaker.
    @exclusivity(unchecked) public private(set) var alignment: Int

    init(factory: TransportFactory, storage: Storage, base: UnsafeMutableRawPointer?, size: Int, alignment: Int) {
        self.factory = factory
        self.storage = storage
        self.base = base
        self.size = size
        self.alignment = alignment
    }

    deinit { releaseStorage() }

    /// The transport of the message.
    public var transport: TransportKind { factory.kind }

    /// `true` when the message has no payload (created empty, sent, or rebuilt empty).
    public var isEmpty: Bool {
        if case .empty = storage { return true }
        return false
    }

    /// The address of the payload, `nil` for an empty message. Valid while this handle owns it.
    public var data: UnsafeMutableRawPointer? { base }

    /// How many handles share this payload (1 for a fresh message, +1 per ``copy()``), across all
    /// processes of the session over `shmem`; 0 for an empty message.
    public var referenceCount: Int {
        switch storage {
        case .empty: return 0
        case .heap(let payload): return payload.handles.load(ordering: .acquiring)
        case .shm(let payload): return factory.shmReferenceCount(payload)
        case .region(let payload): return payload.referenceCount
        }
    }

    /// Calls `body` with the payload's bytes, in place. Empty messages give an empty buffer.
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(start: base, count: base == nil ? 0 : size))
    }

    /// Calls `body` with the payload's bytes, read-only and in place.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : size))
    }

    /// Another handle to the same payload, without copying bytes; the reference count goes up by one.
    /// Copying an empty message gives an empty message.
    /// - Throws: ``TransportError/Code/badAlloc`` when the message points into an unmanaged
    ///   region whose reference-count pool is full (managed messages never fail).
    public func copy() throws(TransportError) -> Message {
        switch storage {
        case .empty:
            return Message(factory: factory, storage: .empty, base: nil, size: 0, alignment: alignment)
        case .heap(let payload):
            payload.handles.wrappingAdd(1, ordering: .relaxed)
            return Message(factory: factory, storage: storage, base: base, size: size, alignment: alignment)
        case .shm(let payload):
            factory.shmRetain(payload)
            return Message(factory: factory, storage: storage, base: base, size: size, alignment: alignment)
        case .region(var payload):
            try payload.retain()
            storage = .region(payload)
            return Message(factory: factory, storage: storage, base: base, size: size, alignment: alignment)
        }
    }

    /// Shrinks the payload to `newSize` bytes, keeping the first `newSize` bytes where they are.
    /// 0 frees the payload and leaves an empty message. Other handles (copies) keep their size.
    /// - Throws: ``TransportError/Code/messageTooLarge`` when `newSize` exceeds the current size.
    public func setUsedSize(_ newSize: Int) throws(TransportError) {
        guard newSize >= 0, newSize <= size else {
            throw TransportError(
                .messageTooLarge,
                "cannot resize a message of \(size) bytes to \(newSize): only shrinking is possible; make a new message to grow")
        }
        if newSize == size { return }
        if newSize == 0 {
            rebuild()
            return
        }
        if case .shm(let payload) = storage, factory.shmReferenceCount(payload) == 1 {
            storage = .shm(factory.shmShrink(payload, to: newSize))
        }
        size = newSize
    }

    /// Frees the payload; the message becomes empty (alignment is kept for later receives).
    public func rebuild() {
        releaseStorage()
        storage = .empty
        base = nil
        size = 0
    }

    /// Frees the payload and allocates a new one of `size` bytes. The handle is reused, so over
    /// `shmem` this costs no heap allocation: a steady-state loop rebuilds one handle per message
    /// instead of making a new one. On error the message is left empty.
    /// - Throws: like ``TransportFactory/makeMessage(size:alignment:)``.
    public func rebuild(size: Int, alignment: Int = 0) throws(TransportError) {
        rebuild()
        self.alignment = alignment
        let (newStorage, newBase) = try factory.makePayload(size: size, alignment: alignment)
        storage = newStorage
        base = newBase
        self.size = newBase == nil ? 0 : size
    }

    /// Frees the payload and replaces it with a copy of `bytes`.
    public func rebuild(copying bytes: UnsafeRawBufferPointer, alignment: Int = 0) throws(TransportError) {
        let fresh = try factory.makeMessage(copying: bytes, alignment: alignment)
        adopt(fresh)
    }

    /// Takes `other`'s payload (other becomes empty).
    func adopt(_ other: Message) {
        releaseStorage()
        storage = other.storage
        base = other.base
        size = other.size
        alignment = other.alignment
        other.storage = .empty
        other.base = nil
        other.size = 0
    }

    /// Installs a received payload, replacing (and freeing) the current one.
    func install(_ newStorage: Storage, base newBase: UnsafeMutableRawPointer?, size newSize: Int) {
        releaseStorage()
        storage = newStorage
        base = newBase
        size = newSize
    }

    /// Forgets the payload without freeing it: ownership has moved to a receiver.
    func markSent() {
        switch storage {
        case .heap(let payload): payload.handles.wrappingSubtract(1, ordering: .releasing)
        case .empty, .shm, .region: break
        }
        storage = .empty
        base = nil
        size = 0
    }

    private func releaseStorage() {
        switch storage {
        case .empty: break
        case .heap(let payload): payload.handles.wrappingSubtract(1, ordering: .releasing)
        case .shm(let payload): factory.shmRelease(payload)
        case .region(let payload): payload.release(size: size)
        }
    }
}
