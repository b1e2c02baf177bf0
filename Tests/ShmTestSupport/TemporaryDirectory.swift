import Foundation

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A fresh directory under /tmp (short, so `ipc://` paths in it fit a Unix socket), removed with
/// its contents when the value goes.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init() throws {
        var template = Array("/tmp/st.XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "mkdtemp under /tmp failed: errno \(errno)"])
        }
        path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `contents` to the file `name` in the directory; returns the file's path.
    @discardableResult
    public func write(_ contents: String, to name: String) throws -> String {
        let file = path + "/" + name
        try contents.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}
