import Logging

/// FairMQ's `--severity` names as swift-log levels.
public enum DeviceLogging {
    /// The level of a FairMQ severity (`nolog` has none: nothing is logged).
    public static func level(_ severity: String) -> Logger.Level? {
        switch severity.lowercased() {
        case "trace": return .trace
        case "debug", "debug1", "debug2", "debug3", "debug4": return .debug
        case "info", "state", "detail": return .info
        case "warn", "warning", "alarm", "important": return .warning
        case "error": return .error
        case "fatal", "critical": return .critical
        default: return nil
        }
    }

    /// A logger for a device executable at `severity`, writing to standard error; call once at
    /// start-up (it bootstraps swift-log's logging system).
    public static func bootstrap(severity: String, label: String) -> Logger {
        let level = level(severity)
        LoggingSystem.bootstrap { label in
            guard let level else { return SwiftLogNoOpLogHandler() }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}
