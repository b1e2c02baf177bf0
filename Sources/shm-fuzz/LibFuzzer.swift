#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// libFuzzer's driver, found at run time: present only in a build with `-sanitize=fuzzer`, so
/// the same executable builds (and runs seeded) everywhere else.
enum LibFuzzer {
    typealias Callback = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    typealias Driver = @convention(c) (
        UnsafeMutablePointer<Int32>, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>, Callback
    ) -> Int32

    nonisolated(unsafe) private static var target: (any FuzzTarget)?
    /// Runs when libFuzzer ends the process (it calls exit() once its runs are done).
    nonisolated(unsafe) static var atExit: (() -> Void)?

    static func run(_ target: any FuzzTarget, arguments: [String]) throws {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "LLVMFuzzerRunDriver") else {
            throw FuzzFailure("this shm-fuzz was built without libFuzzer; build it with -Xswiftc -sanitize=fuzzer (docs/reliability.md) or drop --libfuzzer for the seeded mode")
        }
        let driver = unsafeBitCast(symbol, to: Driver.self)
        Self.target = target
        atexit { LibFuzzer.atExit?() }
        var argc = Int32(arguments.count)
        var pointers: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        let status = pointers.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
            return driver(&argc, &argv) { data, size in
                let bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
                _ = LibFuzzer.target!.run(bytes)
                return 0
            }
        }
        guard status == 0 else { throw FuzzFailure("libFuzzer ended with status \(status)") }
    }
}
