import Foundation
import ShmCleanup
import ShmTestSupport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A process of the same user that can open a session's management segment scribbles into it
/// while a sampler and a sink use the session. The devices may go on or fail, but a failure is
/// an exit with a clear error naming the damaged management segment — never a signal (an
/// out-of-bounds access, a trap), never a hang: after the scribbling each stops on SIGINT
/// within 10 s, and `shmmonitor -c --force` then removes the whole session.
@Suite("A live scribbler", .serialized)
struct ScribblerTests {
    /// Writes `bursts` bursts of random bytes into `path` (a mapped file), each at a random
    /// offset, for `seconds`: in the header with the session lock after it, only in the lock's 16
    /// bytes, in the tables, anywhere.
    static let scribbler = """
        import mmap, os, random, sys, time
        path, seconds, seed, region = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        rng = random.Random(seed)
        fd = os.open(path, os.O_RDWR)
        size = os.fstat(fd).st_size
        m = mmap.mmap(fd, size)
        start, stop = {"header": (0, 576), "lock": (512, 528), "tables": (0, 65536), "all": (0, size)}[region]
        end = time.monotonic() + seconds
        writes = 0
        while time.monotonic() < end:
            at = rng.randrange(start, min(stop, size))
            n = rng.choice([1, 4, 8, 16, 64])
            n = min(n, stop - at, size - at)
            m[at:at + n] = bytes(rng.randrange(256) for _ in range(n))
            writes += 1
            time.sleep(rng.choice([0, 0, 0.0005, 0.002]))
        print(writes)
        """

    /// "lock" writes only over the session lock's 16 bytes (glibc's robust mutex, the lock
    /// before ``SharedLock``, made devices die of SIGABRT there).
    @Test(arguments: ["header", "lock", "tables", "all"])
    func devicesDetectItOrCarryOnButNeverCrashOrHang(region: String) throws {
        try scribble(region)
    }

    func scribble(_ region: String) throws {
        let shm = try ShmFixtureDirectory("dev-scribble")
        defer { _ = shm.remove() }
        let pair = try TopologyTests.RunningPair(
            "scribble-\(region)", shm: shm, samplerArguments: ["--msg-rate", "5000", "--shm-throw-bad-alloc", "false"])
        let script = try TemporaryDirectory()
        let file = try script.write(Self.scribbler, to: "scribble.py")
        let scribble = try runTool("/usr/bin/python3", [file, shm.path + "/fmq_\(pair.id)_mng", "2", "\(getpid())", region])
        #expect(scribble.status == 0, "the scribbler: \(scribble.stderr)")
        var outcomes: [String] = []
        defer { print("scribbler (\(region), \(scribble.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) writes): \(outcomes.joined(separator: ", "))") }
        for (name, device) in [("sink", pair.sink), ("sampler", pair.sampler)] {
            device.signal(SIGINT)
            let status = device.wait(seconds: 10)
            outcomes.append("\(name) " + (status.map { $0 == 0 ? "exit 0" : "exit \($0)" } ?? "hang"))
            #expect(status != nil, "\(name) hangs after the scribbling (\(region)): \(device.output.suffix(2000))")
            if status == nil { device.signal(SIGKILL) }
            guard let status else { continue }
            #expect(status < 128, "\(name) died of signal \(status - 128) (\(region)): \(device.output.suffix(3000))")
            if status != 0 {
                #expect(status == 1, "\(name) exit status \(status): \(device.output.suffix(2000))")
                #expect(device.output.contains("fmq_\(pair.id)_mng") || device.output.contains("management segment"),
                        "\(name)'s error names the damaged management segment: \(device.output.suffix(2000))")
            }
        }
        let view = try runTool("shmmonitor", ["-v", "--shmid", "\(pair.id)", "--shm-dir", shm.path])
        #expect(!view.crashed && view.status <= 3, "shmmonitor -v: \(view.status) \(view.stderr)")
        let clean = try runTool("shmmonitor", ["-c", "--force", "--shmid", "\(pair.id)", "--shm-dir", shm.path])
        #expect(!clean.crashed && clean.status == 0, "shmmonitor -c --force: \(clean.stdout) \(clean.stderr)")
        #expect(shm.entries() == [], "left: \(shm.entries())")
    }
}
