import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle

/// A device's run as a swift-service-lifecycle `Service`: the blocking run loop goes on a
/// thread of its own, and a graceful shutdown (SIGTERM, SIGINT, SIGHUP) or a cancellation calls
/// ``Device/stop()``, which ends blocked transfers so the loop returns.
public struct DeviceService: Service {
    public let device: Device
    private let body: @Sendable (Device) throws -> Void

    /// `body` runs the device (usually through ``Device/run(_:)``) and returns when it is done.
    public init(device: Device, body: @escaping @Sendable (Device) throws -> Void) {
        self.device = device
        self.body = body
    }

    public func run() async throws {
        let device = self.device
        let body = self.body
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let thread = Thread {
                    do {
                        try body(device)
                        continuation.resume()
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
                thread.name = "device \(device.configuration.id)"
                thread.start()
            }
        } onCancelOrGracefulShutdown: {
            device.stop()
        }
    }
}

/// The `main` of a device executable: builds the device from its options, runs `body` as a
/// ``DeviceService`` with graceful shutdown on SIGTERM, SIGINT and SIGHUP, then closes the
/// device so it detaches from its session (the last one out removes it). Every way out —
/// the body returning, a signal, an error — ends in the same close.
public enum DeviceMain {
    /// Exit statuses of device executables.
    public enum ExitStatus: Int32 {
        case done = 0
        case failed = 1
        case badConfiguration = 2
    }

    public static func run(
        options: DeviceOptions, logger: Logger, body: @escaping @Sendable (Device) throws -> Void
    ) async -> ExitStatus {
        // Before the device attaches: a signal from now on is never lost (see StopSignals).
        let signals = StopSignals.shared
        let device: Device
        do {
            device = try Device(try options.deviceConfiguration(), logger: logger) { signals.received != nil }
        } catch {
            // stopped while waiting for a peer's address: nothing ran, nothing to report
            if signals.received != nil {
                logger.info("stopped while starting: \(error)")
                return .done
            }
            logger.error("\(error)")
            return .badConfiguration
        }
        defer { device.close() }
        signals.onStop { number in
            logger.debug("stop signal \(number): stopping the device")
            device.stop()
        }
        if signals.received != nil { return .done }  // stopped while starting: close, detach, exit 0
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: DeviceService(device: device, body: body), successTerminationBehavior: .gracefullyShutdownGroup)],
                logger: logger))
        do {
            try await group.run()
            return .done
        } catch {
            logger.error("\(error)")
            return .failed
        }
    }

    /// The whole `run()` of a device command: bootstraps logging at `--severity`, runs the
    /// device, and throws the exit status when it is not ``ExitStatus/done``.
    public static func command(
        _ options: DeviceOptions, label: String, body: @escaping @Sendable (Device) throws -> Void
    ) async throws {
        let logger = DeviceLogging.bootstrap(severity: options.severity, label: label)
        let status = await run(options: options, logger: logger, body: body)
        if status != .done { throw ExitCode(status.rawValue) }
    }
}
