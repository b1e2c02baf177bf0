import Foundation

/// Writes results as text or JSON on standard output and errors on standard error.
struct Output {
    let json: Bool

    func line(_ text: String = "") {
        print(text)
    }

    func emit(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    static func printError(_ message: String) {
        FileHandle.standardError.write(Data("shmmonitor: \(message)\n".utf8))
    }
}

/// Flushes standard output and exits with `code`.
func Foundation_exit(_ code: Int32) -> Never {
    fflush(nil)
    exit(code)
}
