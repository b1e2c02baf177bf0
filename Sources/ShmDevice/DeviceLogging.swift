import Logging
import ShmCleanup

/// Logging of device executables at FairMQ's `--severity` (names: ``Severity``).
public enum DeviceLogging {
    /// A logger for a device executable at `severity`, writing to standard error; call once at
    /// start-up (it bootstraps swift-log's logging system).
    public static func bootstrap(severity: String, label: String) -> Logger {
        let level = Severity.level(severity)
        LoggingSystem.bootstrap { label in
            guard let level else { return SwiftLogNoOpLogHandler() }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}
