import Logging
import Synchronization
import ShmCleanup
import ShmCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Makes messages, sockets and pollers of one transport (`shmem` or `zeromq`), behind one API.
///
/// A `shmem` factory attaches the session's shared memory when it is made (creating it if it is
/// the first process of the session) and detaches when the last of its messages and sockets is
/// gone; the last process of the session removes the memory unless `noCleanup` is set.
/// A factory owns one ZeroMQ context: `inproc://` endpoints connect sockets of the same factory.
public final class TransportFactory: @unchecked Sendable {
    /// The transport this factory implements.
    public let kind: TransportKind
    /// How it was configured.
    public let configuration: TransportConfiguration
    /// The shmId of the configured session (also used by `zeromq` factories, for logs).
    public let shmID: ShmID
    let context: ZmqContext
    let interrupter: Interrupter
    let logger: Logger
    let shm: ShmemState?
    /// The region event subscription, if any.
    let regionEventWatcher = Mutex<RegionEventWatcher?>(nil)
    /// Automatic ids of `zeromq` regions (local to this factory, from 1024 up as over `shmem`).
    private let localRegionIDs = Atomic<UInt16>(1024)

    /// Creates a factory.
    /// - Parameters:
    ///   - kind: `shmem` or `zeromq`.
    ///   - configuration: session, segment size and the other options; FairMQ's defaults.
    ///   - logger: where the transport logs (metadata `shm.session`, `shm.id`, `transport`).
    /// - Throws: ``TransportError`` when the options make no sense or the session's memory
    ///   cannot be created or attached (the message says how to fix it).
    public init(_ kind: TransportKind, configuration: TransportConfiguration = TransportConfiguration(), logger: Logger)
        throws(TransportError)
    {
        guard configuration.ioThreads >= 1 else {
            throw TransportError(.invalidArgument, "io threads is \(configuration.ioThreads); give 1 or more")
        }
        guard configuration.metadataMessageSize >= 0, configuration.metadataMessageSize <= 1 << 20 else {
            throw TransportError(.invalidArgument, "metadata message size is \(configuration.metadataMessageSize); give 0 ... 1048576 bytes")
        }
        self.kind = kind
        self.configuration = configuration
        self.shmID = ShmID(session: configuration.session)
        var logger = logger
        logger[metadataKey: "transport"] = "\(kind)"
        logger[metadataKey: "shm.session"] = "\(configuration.session)"
        logger[metadataKey: "shm.id"] = "\(shmID)"
        self.logger = logger
        self.context = try ZmqContext(ioThreads: configuration.ioThreads)
        self.interrupter = try Interrupter()
        self.shm = kind == .shmem ? try ShmemState(configuration, logger: logger) : nil
        // A session overwritten by another process: end every blocked transfer, so the program
        // sees .interrupted at once and ``sessionDamage`` says why.
        let interrupter = self.interrupter
        shm?.memory.onDamage { _ in interrupter.interrupt() }
    }

    /// Over `shmem`: why the session's management segment counts as damaged (overwritten by
    /// another process while in use), as an error that says how to clean up; nil when intact.
    public var sessionDamage: TransportError? {
        shm?.memory.damageError.map { TransportError(.sharedMemory, $0.message) }
    }

    deinit { unsubscribeFromRegionEvents() }

    func nextLocalRegionID() -> UInt16 { localRegionIDs.wrappingAdd(1, ordering: .relaxed).oldValue }

    /// An empty message; `alignment` applies to what is later received into it.
    public func makeMessage(alignment: Int = 0) -> Message {
        Message(factory: self, storage: .empty, base: nil, size: 0, alignment: alignment)
    }

    /// A message of `size` bytes (uninitialised), its first byte aligned to `alignment`
    /// (0 = 16; else a power of two up to 1 MiB). Size 0 gives an empty message.
    /// - Throws: ``TransportError/Code/invalidArgument`` for a bad size or alignment,
    ///   ``TransportError/Code/badAlloc`` when the memory is full (after the configured retries).
    public func makeMessage(size: Int, alignment: Int = 0) throws(TransportError) -> Message {
        let (storage, base) = try makePayload(size: size, alignment: alignment)
        return Message(factory: self, storage: storage, base: base, size: size, alignment: alignment)
    }

    /// A payload of `size` bytes for a message of this factory (`.empty` for 0); the checks of
    /// ``makeMessage(size:alignment:)``. Allocates no Swift object over `shmem`, so a handle
    /// rebuilt with it costs no heap allocation.
    func makePayload(size: Int, alignment: Int) throws(TransportError) -> (Message.Storage, UnsafeMutableRawPointer?) {
        guard size >= 0 else { throw TransportError(.invalidArgument, "message size \(size) is negative; give 0 or more bytes") }
        try Self.checkAlignment(alignment)
        if size == 0 { return (.empty, nil) }
        switch kind {
        case .zeromq:
            let payload = try HeapPayload(size: size, alignment: alignment)
            return (.heap(payload), payload.base)
        case .shmem:
            let (payload, base) = try shmAllocate(size: size, alignment: alignment)
            return (.shm(payload), base)
        }
    }

    /// Refuses an alignment that is not 0 or a power of two up to 1 MiB.
    static func checkAlignment(_ alignment: Int) throws(TransportError) {
        guard alignment == 0 || (alignment > 0 && alignment & (alignment - 1) == 0 && alignment <= 1 << 20) else {
            throw TransportError(.invalidArgument, "alignment \(alignment) is not a power of two up to 1048576; give e.g. 64 or 4096, or 0 for the default")
        }
    }

    /// Messages of the given sizes made at once (FairMQ #480): over `shmem` their payloads are
    /// allocated under one lock hold of the segment, all or none. Sizes of 0 give empty messages.
    /// - Throws: like ``makeMessage(size:alignment:)``; on error no message is made.
    public func makeMessages(sizes: [Int], alignment: Int = 0) throws(TransportError) -> [Message] {
        guard kind == .shmem, let shm else {
            var messages: [Message] = []
            messages.reserveCapacity(sizes.count)
            for size in sizes { messages.append(try makeMessage(size: size, alignment: alignment)) }
            return messages
        }
        guard sizes.allSatisfy({ $0 >= 0 }) else {
            throw TransportError(.invalidArgument, "message sizes \(sizes.filter { $0 < 0 }) are negative; give 0 or more bytes")
        }
        try Self.checkAlignment(alignment)
        let nonEmpty = sizes.filter { $0 > 0 }
        let blocks: [ShmBlock]
        do {
            blocks = try shm.memory.allocate(sizes: nonEmpty, alignment: max(alignment, 16))
        } catch {
            throw TransportError(error, "cannot create \(nonEmpty.count) messages of \(nonEmpty.reduce(0, +)) bytes in all")
        }
        var next = blocks.makeIterator()
        return sizes.map { size in
            guard size > 0, let block = next.next() else { return makeMessage(alignment: alignment) }
            return Message(factory: self, storage: .shm(block), base: shm.memory.address(of: block), size: size, alignment: alignment)
        }
    }

    /// A message holding a copy of `bytes`.
    public func makeMessage(copying bytes: UnsafeRawBufferPointer, alignment: Int = 0) throws(TransportError) -> Message {
        let message = try makeMessage(size: bytes.count, alignment: alignment)
        if let base = message.data, bytes.count > 0 { base.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        return message
    }

    /// A socket of this transport.
    /// - Throws: ``TransportError/Code/unsupported`` for PUB/SUB over `shmem` (one receiver per message).
    public func makeSocket(_ type: SocketType, name: String = "") throws(TransportError) -> Socket {
        try Socket(factory: self, type: type, name: name)
    }

    /// Makes every blocked or later transfer of this factory's sockets return
    /// ``TransferResult/interrupted`` (and, over `shmem`, aborts allocations waiting for room)
    /// until ``resume()``. Safe to call from any thread.
    public func interrupt() {
        interrupter.interrupt()
        shmInterrupt()
    }

    /// Lets transfers run again after ``interrupt()``.
    public func resume() {
        interrupter.resume()
        shmResume()
    }

    /// Waits until every shared-memory message this process made has been released — by its
    /// receivers, or here — or `timeoutMilliseconds` pass; returns whether they all were. Call
    /// it before closing a sending socket: libzmq drops the messages still queued at a receiver
    /// whose queue is full when the sender's connection closes, linger or not, and this wait
    /// lets the receivers take them first. Over `zeromq` it returns `true` at once (ZeroMQ keeps
    /// no account of what a peer has read).
    @discardableResult
    public func waitForReceivers(timeoutMilliseconds: Int) -> Bool {
        guard let shm else { return true }
        let deadline = MonotonicClock.nanoseconds() + UInt64(max(0, timeoutMilliseconds)) * 1_000_000
        while shm.memory.liveBlocksAllocatedHere() > 0 {
            guard MonotonicClock.nanoseconds() < deadline else { return false }
            usleep(1000)
        }
        return true
    }

    /// Whether ``interrupt()`` is in effect.
    public var isInterrupted: Bool { interrupter.isInterrupted }
}
