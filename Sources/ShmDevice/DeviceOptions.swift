import ArgumentParser
import Foundation
import ShmCleanup
import ShmCore
import ShmTransport

/// A boolean option value as FairMQ's devices take it (`--shm-monitor true`): true/false, 1/0,
/// yes/no, on/off.
public struct BooleanValue: ExpressibleByArgument, Sendable, Equatable, CustomStringConvertible {
    public let value: Bool
    public init(_ value: Bool) { self.value = value }
    public init?(argument: String) {
        guard let value = parseBoolean(argument) else { return nil }
        self.value = value
    }
    public var description: String { value ? "true" : "false" }
    public var defaultValueDescription: String { description }
}

/// The options every device takes, with FairMQ's names and defaults, so a FairMQ device's
/// command line runs with only the binary name changed.
public struct DeviceOptions: ParsableArguments, Sendable {
    public init() {}

    @Option(help: "Device id: names the device and picks its block of the --mq-config file.")
    public var id: String = ""
    @Option(help: "Pick the --mq-config block by this id or key instead of --id.")
    public var configKey: String?
    @Option(help: "Default transport of the channels: zeromq or shmem.")
    public var transport: String = "zeromq"
    @Option(help: "Session name (default: $SHMTRANSPORT_SESSION, else 'default').")
    public var session: String?
    @Option(help: "JSON file with the channels (FairMQ's format).")
    public var mqConfig: String?
    @Option(parsing: .upToNextOption, help: "A channel: name=data,type=push,method=bind,address=ipc:///tmp/data,... (repeatable).")
    public var channelConfig: [String] = []
    @Option(help: "Rate of the run loop in Hz (0: as fast as possible).")
    public var rate: Double = 0
    @Option(help: "ZeroMQ I/O threads.")
    public var ioThreads: Int = 1

    @Option(help: "Size of a managed segment this device creates, in bytes.")
    public var shmSegmentSize: Int = 2_147_483_648
    @Option(help: "Allocation strategy of a segment this device creates: rbtree_best_fit or simple_seq_fit.")
    public var shmAllocation: String = "rbtree_best_fit"
    @Option(help: "The managed segment new messages are allocated from.")
    public var shmSegmentId: UInt16 = 0
    @Option(help: "Lock the segment in RAM on every attach.")
    public var shmMlockSegment = BooleanValue(false)
    @Option(help: "Lock the segment in RAM once, when it is created.")
    public var shmMlockSegmentOnCreation = BooleanValue(false)
    @Option(help: "Zero the segment on every attach.")
    public var shmZeroSegment = BooleanValue(false)
    @Option(help: "Zero the segment once, when it is created.")
    public var shmZeroSegmentOnCreation = BooleanValue(false)
    @Option(help: "Throw when a segment is full (false: wait and retry).")
    public var shmThrowBadAlloc = BooleanValue(true)
    @Option(help: "Attempts on a full segment before failing (-1: for ever).")
    public var badAllocMaxAttempts: Int = -1
    @Option(help: "Milliseconds between attempts on a full segment.")
    public var badAllocAttemptInterval: Int = 50
    @Option(help: "Pad every shmem metadata frame to this many bytes (0: no padding).")
    public var shmMetadataMsgSize: Int = 0
    @Option(help: "Start the monitor daemon of the session (shmmonitor -m -x -d).")
    public var shmMonitor = BooleanValue(false)
    @Option(help: "The last device out leaves the session's memory in place.")
    public var shmNoCleanup = BooleanValue(false)
    @Option(help: "A segment this device creates records every message (creator, size, time) for 'shmmonitor --debug'.")
    public var shmMessageRecords = BooleanValue(false)

    @Option(help: "Directory where bound channels publish their addresses and channels without an address look them up (default: $SHMTRANSPORT_ADDRESS_DIR); give each job its own.")
    public var addressDir: String?
    @Option(help: "Interface whose IPv4 address is published for a tcp://*:* bind ('default': the default route's).")
    public var networkInterface: String = "default"
    @Option(help: "Seconds a channel without an address waits for its peer to publish one in --address-dir.")
    public var initTimeout: Double = 120

    @Option(help: "FairMQ's state machine control: static or interactive (both run straight to RUNNING here).")
    public var control: String = "interactive"
    @Option(help: "Log severity: trace, debug, info, warn, error, fatal, nolog.")
    public var severity: String = "info"
    @Option(help: "Log verbosity (accepted for FairMQ command lines).")
    public var verbosity: String = "medium"
    @Option(help: "Colored log output (accepted for FairMQ command lines).")
    public var color = BooleanValue(true)

    public mutating func validate() throws {
        guard TransportKind(rawValue: transport) != nil else {
            throw ValidationError("--transport '\(transport)' is unknown; use zeromq or shmem")
        }
        guard AllocationStrategy(rawValue: shmAllocation) != nil else {
            throw ValidationError("--shm-allocation '\(shmAllocation)' is unknown; use rbtree_best_fit or simple_seq_fit")
        }
        guard ["static", "interactive"].contains(control) else {
            throw ValidationError("--control '\(control)' is unknown; use static or interactive")
        }
        guard Severity.isValid(severity) else {
            throw ValidationError("--severity '\(severity)' is unknown; use trace, debug, info, warn, error, fatal or nolog")
        }
        guard rate >= 0, rate.isFinite else { throw ValidationError("--rate \(rate) must be 0 or more (Hz)") }
        guard ioThreads >= 1 else { throw ValidationError("--io-threads \(ioThreads) must be 1 or more") }
        guard badAllocMaxAttempts == -1 || badAllocMaxAttempts >= 1 else {
            throw ValidationError("--bad-alloc-max-attempts \(badAllocMaxAttempts) must be -1 (for ever) or 1 or more")
        }
        guard badAllocAttemptInterval >= 0 else { throw ValidationError("--bad-alloc-attempt-interval must be 0 or more ms") }
        guard initTimeout >= 0, initTimeout.isFinite else { throw ValidationError("--init-timeout \(initTimeout) must be 0 or more seconds") }
        guard !networkInterface.isEmpty else { throw ValidationError("--network-interface is empty; give 'default' or an interface name such as eth0") }
        if let session { _ = try SessionID(session) }
    }

    /// The session: `--session`, else `$SHMTRANSPORT_SESSION` (of `environment`), else `default`.
    public func sessionID(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SessionID {
        if let session { return try SessionID(session) }
        guard let value = environment[SessionID.environmentVariable], !value.isEmpty else { return .default }
        return try SessionID(value)
    }

    /// The address directory: `--address-dir`, else `$SHMTRANSPORT_ADDRESS_DIR` (of
    /// `environment`), else none.
    public func addressDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> AddressDirectory? {
        guard let path = addressDir ?? environment[AddressDirectory.environmentVariable], !path.isEmpty else { return nil }
        return AddressDirectory(path: path, networkInterface: networkInterface, timeoutSeconds: initTimeout)
    }

    /// The checked configuration; throws ``DeviceConfigurationError`` naming the bad field.
    public func deviceConfiguration() throws -> DeviceConfiguration {
        let badAlloc: BadAllocPolicy =
            shmThrowBadAlloc.value
            ? .throwImmediately
            : badAllocMaxAttempts == -1
                ? .forever(intervalMilliseconds: badAllocAttemptInterval)
                : .retry(attempts: badAllocMaxAttempts, intervalMilliseconds: badAllocAttemptInterval)
        let transportConfiguration = TransportConfiguration(
            session: try sessionID(), segmentSize: shmSegmentSize, segmentID: shmSegmentId,
            allocationStrategy: AllocationStrategy(rawValue: shmAllocation) ?? .rbtreeBestFit, badAlloc: badAlloc,
            metadataMessageSize: shmMetadataMsgSize,
            zeroSegmentOnCreation: shmZeroSegmentOnCreation.value, mlockSegmentOnCreation: shmMlockSegmentOnCreation.value,
            zeroSegmentOnAttach: shmZeroSegment.value, mlockSegmentOnAttach: shmMlockSegment.value,
            noCleanup: shmNoCleanup.value, messageRecords: shmMessageRecords.value, ioThreads: ioThreads, defaultLinger: 500)
        let configuration = DeviceConfiguration(
            id: id, transport: TransportKind(rawValue: transport) ?? .zeromq,
            channels: try DeviceConfiguration.channels(
                device: id, deviceKey: configKey ?? id, mqConfig: mqConfig, channelConfig: channelConfig),
            transportConfiguration: transportConfiguration, rate: rate, launchMonitor: shmMonitor.value,
            addressDirectory: addressDirectory())
        try configuration.check()
        return configuration
    }
}
