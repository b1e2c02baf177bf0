import Foundation

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Saves the input being run when the process dies of a signal (a fault, a trap, an abort), so
/// `shm-fuzz --replay` can repeat it. The handler only calls write(2) on a descriptor opened
/// beforehand, then dies of the same signal.
enum CrashCapture {
    nonisolated(unsafe) private static var fd: Int32 = -1
    nonisolated(unsafe) private static var input: UnsafeRawBufferPointer?
    nonisolated(unsafe) private static var path = ""
    private static let signals = [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT]

    static func arm(path: String) throws {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FuzzFailure("cannot create --crash-file \(path): \(String(cString: strerror(errno)))") }
        Self.path = path
        for number in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                if let input = CrashCapture.input, let start = input.baseAddress {
                    _ = write(CrashCapture.fd, start, input.count)
                }
                let note = "shm-fuzz: died of a signal; the input is in the --crash-file\n"
                _ = note.withCString { write(2, $0, strlen($0)) }
                signal(number, SIG_DFL)
                raise(number)
            }
            action.sa_flags = Int32(bitPattern: UInt32(SA_RESETHAND))
            sigaction(number, &action, nil)
        }
    }

    /// Closes and removes the (empty) crash file: the run ended without a crash.
    static func disarm() {
        for number in signals { signal(number, SIG_DFL) }
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(path)
    }

    static func running<T>(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        input = bytes
        defer { input = nil }
        return body(bytes)
    }
}
