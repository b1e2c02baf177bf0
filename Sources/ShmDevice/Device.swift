import Atomics
import Foundation
import Logging
import ShmCleanup
import ShmTransport
import SystemPackage

/// A running device: one factory per transport its channels use, and one ``Channel`` (socket)
/// per sub-channel, bound and connected.
///
/// Made from a checked ``DeviceConfiguration``: every bind happens before any connect, as in
/// FairMQ, so devices of one topology can start in any order. A `tcp://host:*` address with
/// `autoBind` takes a free port from the channel's port range. ``stop()`` (any thread, e.g. a
/// signal handler's task) ends blocked transfers and the run loop; ``close()`` closes every
/// socket and releases the factories, so the device detaches from its session (the last one
/// out removes it).
public final class Device: @unchecked Sendable {
    public let configuration: DeviceConfiguration
    public let logger: Logger
    private var factories: [TransportKind: TransportFactory] = [:]
    private var channelsByName: [String: [Channel]] = [:]
    private let stopping = ManagedAtomic<Bool>(false)
    /// The address files this device published (removed at ``close()``).
    private var publications: [AddressDirectory.Publication] = []

    /// Creates the factories and sockets, binds and connects.
    ///
    /// With an ``DeviceConfiguration/addressDirectory``, every bound sub-channel publishes its
    /// endpoints there, and each sub-channel without an address binds `tcp://*:*` or, to
    /// connect, waits for its peer's file (up to the directory's timeout; `shouldStop`, asked
    /// while waiting, ends the wait early — a stop signal during start-up).
    /// - Throws: ``DeviceConfigurationError`` naming the channel and field when a socket cannot
    ///   be set up (address in use, no such host, no peer address in time, ...) or a factory
    ///   cannot be made.
    public init(_ configuration: DeviceConfiguration, logger: Logger, shouldStop: () -> Bool = { false }) throws(DeviceConfigurationError) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "device"] = "\(configuration.id)"
        self.logger = logger
        let id = configuration.id
        for kind in configuration.transportsInUse {
            do {
                factories[kind] = try TransportFactory(kind, configuration: configuration.transportConfiguration, logger: logger)
            } catch {
                throw DeviceConfigurationError(device: id, field: "--transport \(kind)", error.message)
            }
        }
        let directory = configuration.addressDirectory
        var published: [AddressDirectory.Publication] = []
        // a device that fails half-way removes what it published (close() does it otherwise)
        var started = false
        defer { if !started { published.forEach(AddressDirectory.unpublish) } }
        var pendingConnects: [(Channel, String?)] = []
        for channel in configuration.channels {
            var subChannels: [Channel] = []
            for (index, sub) in channel.subChannels.enumerated() {
                let kind = sub.transport ?? configuration.transport
                guard let factory = factories[kind] else { preconditionFailure("no factory for \(kind)") }
                let label = "\(channel.name)[\(index)]"
                func fail(_ field: String, _ message: String) -> DeviceConfigurationError {
                    DeviceConfigurationError(device: id, channel: label, field: field, message)
                }
                let socket: Socket
                do {
                    socket = try factory.makeSocket(sub.type, name: "\(id).\(label)")
                    try socket.setOption(.sendHighWaterMark, sub.sendBufferSize)
                    try socket.setOption(.receiveHighWaterMark, sub.receiveBufferSize)
                    if sub.sendKernelSize > 0 { try socket.setOption(.sendBufferSize, sub.sendKernelSize) }
                    if sub.receiveKernelSize > 0 { try socket.setOption(.receiveBufferSize, sub.receiveKernelSize) }
                    try socket.setOption(.linger, sub.linger)
                } catch {
                    throw fail("type", error.message)
                }
                let runtime = Channel(name: channel.name, index: index, configuration: sub, socket: socket, factory: factory)
                if sub.addresses.isEmpty {
                    // checked: only with an address directory
                    if sub.method == .bind {
                        do {
                            runtime.boundEndpoints.append(try Self.bind(socket, "tcp://*:*", sub))
                        } catch {
                            throw fail("address", error.message)
                        }
                    } else {
                        pendingConnects.append((runtime, nil))
                    }
                }
                for address in sub.addresses {
                    if sub.method(of: address) == .bind {
                        do {
                            runtime.boundEndpoints.append(try Self.bind(socket, address.endpoint, sub))
                        } catch {
                            throw fail("address", error.message)
                        }
                    } else {
                        pendingConnects.append((runtime, address.endpoint))
                    }
                }
                if let directory, !runtime.boundEndpoints.isEmpty {
                    do {
                        let publication = try directory.publish(channel: channel.name, index: index, endpoints: runtime.boundEndpoints)
                        published.append(publication)
                        logger.info("\(label): bound \(runtime.boundEndpoints.joined(separator: ", ")), published as \(publication.contents.split(separator: "\n").joined(separator: ", ")) in \(publication.file)")
                    } catch {
                        throw fail("--address-dir", error.message)
                    }
                }
                subChannels.append(runtime)
            }
            channelsByName[channel.name] = subChannels
        }
        for (channel, endpoint) in pendingConnects {
            var endpoints: [String]
            if let endpoint {
                endpoints = [endpoint]
            } else {
                guard let directory else { preconditionFailure("an address-less connect without an address directory") }
                do {
                    endpoints = try directory.lookup(channel: channel.name, index: channel.index, shouldStop: shouldStop)
                } catch {
                    throw DeviceConfigurationError(device: id, channel: channel.label, field: "--address-dir", error.message)
                }
                channel.lookedUpEndpoints = endpoints
                logger.info("\(channel.label): connecting to \(endpoints.joined(separator: ", ")) (from \(directory.file(channel: channel.name, index: channel.index)))")
            }
            for endpoint in endpoints {
                do {
                    try channel.socket.connect(endpoint)
                } catch {
                    throw DeviceConfigurationError(device: id, channel: channel.label, field: "address", error.message)
                }
            }
        }
        self.publications = published
        started = true
        for channel in configuration.channels {
            for sub in channelsByName[channel.name] ?? [] {
                logger.debug(
                    "channel ready",
                    metadata: [
                        "channel": "\(sub.label)", "type": "\(sub.configuration.type)", "transport": "\(sub.transport)",
                        "addresses": "\(sub.boundEndpoints + sub.configuration.addresses.filter { sub.configuration.method(of: $0) == .connect }.map(\.endpoint) + sub.lookedUpEndpoints)",
                    ])
            }
        }
        if configuration.launchMonitor { try launchMonitor() }
    }

    /// Binds `endpoint`; a `tcp://host:*` with `autoBind` tries ports of the range in random order.
    private static func bind(_ socket: Socket, _ endpoint: String, _ sub: SubChannelConfiguration) throws(TransportError) -> String {
        guard endpoint.hasPrefix("tcp://"), endpoint.hasSuffix(":*"), sub.autoBind else { return try socket.bind(endpoint) }
        let host = endpoint.dropLast(2)
        var lastError: TransportError?
        for port in sub.portRange.shuffled().prefix(64) {
            do {
                return try socket.bind("\(host):\(port)")
            } catch {
                lastError = error
            }
        }
        throw lastError ?? TransportError(.invalidArgument, "no port of \(sub.portRange) is free for \(endpoint); widen portRangeMin/portRangeMax")
    }

    /// The sub-channels of channel `name`.
    public func channels(_ name: String) -> [Channel] { channelsByName[name] ?? [] }

    /// Sub-channel `index` of channel `name`.
    /// - Throws: ``DeviceConfigurationError`` when the device has no such channel (the built-in
    ///   devices name theirs with `--in-channel`/`--out-channel`).
    public func channel(_ name: String, _ index: Int = 0) throws(DeviceConfigurationError) -> Channel {
        let subChannels = channels(name)
        guard index < subChannels.count else {
            let known = configuration.channels.map(\.name)
            throw DeviceConfigurationError(
                device: configuration.id, channel: name, field: "name",
                subChannels.isEmpty
                    ? "the device has no such channel (it has \(known.isEmpty ? "none" : known.joined(separator: ", "))); configure it with --channel-config name=\(name),... or in --mq-config"
                    : "the channel has \(subChannels.count) sub-channel(s), not \(index + 1)")
        }
        return subChannels[index]
    }

    /// The factory of `kind`, if a channel uses that transport.
    public func transport(_ kind: TransportKind) -> TransportFactory? { factories[kind] }

    /// Whether ``stop()`` was called.
    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Ends the run loop and makes every blocked or later transfer return `.interrupted`.
    /// Safe from any thread; idempotent.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for factory in factories.values { factory.interrupt() }
    }

    /// Closes every socket and drops the factories: the device detaches from its session once no
    /// message of it is left (the last process of the session removes its memory). A factory
    /// ends — delivering what its sockets still queue, within their linger — when the last
    /// ``Channel``, socket and message of it is gone, so keep none past `close()`.
    ///
    /// Before the sockets close, a device that sent messages gives its receivers up to the
    /// longest linger of its sending sub-channels to take them: libzmq drops what is still queued
    /// at a receiver whose queue is full when the sender's connection closes, linger or not. A
    /// `shmem` device that only sends what it made knows when every receiver is done (its blocks
    /// are all released) and closes then; one that forwards or sends over `zeromq` waits the linger.
    ///
    /// `waitingForReceivers: false` skips that wait, for a device that knows by its own protocol
    /// that its receivers have everything (an acknowledged last message, say).
    public func close(waitingForReceivers: Bool = true) {
        let all = channelsByName.values.flatMap { $0 }
        // no new peer finds this device once it winds down
        publications.forEach(AddressDirectory.unpublish)
        publications = []
        if waitingForReceivers { lingerForReceivers(all) }
        for channel in all { channel.socket.close() }
        channelsByName = [:]
        factories = [:]
    }

    private func lingerForReceivers(_ all: [Channel]) {
        let sending: Set<SocketType> = [.push, .pair, .pub, .req, .rep]
        let senders = all.filter { sending.contains($0.configuration.type) && $0.socket.messagesSent > 0 }
        guard let linger = senders.map({ $0.configuration.linger < 0 ? 30_000 : $0.configuration.linger }).max(), linger > 0 else { return }
        let start = MonotonicClock.nanoseconds()
        let forwards = all.contains { $0.socket.messagesReceived > 0 }
        let overZeroMQ = senders.contains { $0.transport == .zeromq }
        if let shm = factories[.shmem], senders.contains(where: { $0.transport == .shmem }) {
            let drained = shm.waitForReceivers(timeoutMilliseconds: linger)
            if drained && !forwards && !overZeroMQ { return }
        }
        let waited = Int((MonotonicClock.nanoseconds() - start) / 1_000_000)
        if waited < linger { usleep(UInt32(linger - waited) * 1000) }
    }

    /// Runs `body` once per iteration until it returns `false`, ``stop()`` is called, or it
    /// throws. With `--rate` above 0 the iterations are spaced to that rate. Every channel's
    /// rate (messages and bytes per second, in and out) is logged each `rateLogging` seconds.
    /// An ``TransportError/Code/interrupted`` error thrown once the device is stopping (a
    /// message creation that waited for room, ended by the stop) ends the loop normally.
    public func run(_ body: () throws -> Bool) throws {
        var limiter = RateLimiter(rate: configuration.rate)
        var rates = RateLog(channels: configuration.channels.flatMap { channels($0.name) }, logger: logger)
        defer { rates.finish() }
        while !isStopping {
            do {
                guard try body() else { break }
            } catch let error as TransportError where error.code == .interrupted && isStopping {
                // a stop ended a wait for room in the segment: the device winds down, no failure
                logger.debug("run loop: \(error.message)")
                break
            }
            limiter.pace()
            rates.tick()
        }
        if let damage = factories.values.lazy.compactMap(\.sessionDamage).first { throw damage }
    }

    /// Starts `shmmonitor -m -x -d` for the device's session (FairMQ's `--shm-monitor true`):
    /// a daemon that cleans the session once no live process uses it, and then exits. Found at
    /// `$SHMTRANSPORT_SHMMONITOR`, next to this program, or on `PATH`. At most one runs per
    /// session: none is started when one holds the session's monitor flag, and of daemons started
    /// at the same moment by several devices all but one see the flag taken and exit. Waits up to
    /// 5 s for a monitor to hold the flag.
    private func launchMonitor() throws(DeviceConfigurationError) {
        let session = configuration.transportConfiguration.session
        let directory = configuration.transportConfiguration.shmDirectory
        let flag = MonitorFlag(ShmID(session: session), directory: directory)
        func running() -> Bool {
            switch flag.holder() {
            case .live, .foreign: return true
            case .stale, nil: return false
            }
        }
        if running() {
            logger.debug("a monitor already watches the session", metadata: ["shm.session": "\(session)"])
            return
        }
        let environment = ProcessInfo.processInfo.environment
        let besideUs = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("shmmonitor").path
        let candidates = (environment["SHMTRANSPORT_SHMMONITOR"].map { [$0] } ?? [])
            + [besideUs] + (environment["PATH"] ?? "").split(separator: ":").map { "\($0)/shmmonitor" }
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw DeviceConfigurationError(
                device: configuration.id, field: "--shm-monitor",
                "shmmonitor is neither at $SHMTRANSPORT_SHMMONITOR, next to this program nor on PATH; install it, or give --shm-monitor false")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        var childEnvironment = environment
        childEnvironment["SHMTRANSPORT_SHM_DIR"] = directory.string
        process.environment = childEnvironment
        process.arguments = ["--session", session.rawValue, "--monitor", "--self-destruct", "--daemonize"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
            process.waitUntilExit()  // -d returns once the daemon is spawned (in a session of its own)
        } catch {
            throw DeviceConfigurationError(device: configuration.id, field: "--shm-monitor", "cannot start \(path): \(error)")
        }
        guard process.terminationStatus == 0 else {
            throw DeviceConfigurationError(
                device: configuration.id, field: "--shm-monitor", "\(path) exited with \(process.terminationStatus); run it by hand to see why")
        }
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while !running() {
            guard MonotonicClock.nanoseconds() < deadline else {
                throw DeviceConfigurationError(
                    device: configuration.id, field: "--shm-monitor",
                    "the monitor daemon did not take the session's monitor flag within 5 s; run '\(path) -m -s \(session)' by hand to see why")
            }
            usleep(10_000)
        }
        logger.info("monitor daemon watching the session", metadata: ["shm.session": "\(session)"])
    }
}
