import Logging

/// FairMQ's `--severity` names (and swift-log's own) as log levels, for every tool that takes
/// the option: `trace`, `debug`/`debug1`…`debug4`, `info`/`state`/`detail`, `notice`,
/// `warn`/`warning`/`alarm`/`important`, `error`, `fatal`/`critical`; `nolog` logs nothing.
public enum Severity {
    /// Whether `name` is a severity the tools accept.
    public static func isValid(_ name: String) -> Bool { name.lowercased() == "nolog" || level(name) != nil }

    /// The level of `name`; `nil` for `nolog` and for unknown names.
    public static func level(_ name: String) -> Logger.Level? {
        switch name.lowercased() {
        case "warn", "alarm", "important": return .warning
        case "fatal": return .critical
        case "state", "detail": return .info
        case "debug1", "debug2", "debug3", "debug4": return .debug
        default: return Logger.Level(rawValue: name.lowercased())
        }
    }
}
