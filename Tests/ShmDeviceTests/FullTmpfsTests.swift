import Foundation
import ShmTestSupport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A full `/dev/shm`: in a private mount namespace a small tmpfs is mounted over `/dev/shm`
/// itself (the host's is untouched), and real devices fill it from several processes at once.
/// Space is reserved when an object is made, so running out is an error at creation naming the
/// size, the space left and the fix — never a SIGBUS when a page is first written.
@Suite("A full /dev/shm", .serialized, .enabled(if: geteuid() == 0, "mounting a tmpfs in a private mount namespace needs root"))
struct FullTmpfsTests {
    /// Runs `script` with `sh` in a new private mount namespace whose `/dev/shm` is a tmpfs of
    /// `size`; the script's lines `<name>=<status>` are collected (a status above 128: a signal).
    func inSmallShm(size: String, _ script: String) throws -> (statuses: [String: Int], stdout: String, stderr: String) {
        let full = """
            mount -t tmpfs -o size=\(size),mode=1777 tmpfs /dev/shm || exit 97
            # waitfor PID TENTHS: waits for a child to end (SIGKILL after TENTHS/10 s); its status
            waitfor() {
                n=0
                while [ $n -lt $2 ] && [ -e /proc/$1 ] && ! grep -q ') Z' /proc/$1/stat 2>/dev/null; do sleep 0.1; n=$((n + 1)); done
                kill -KILL $1 2>/dev/null
                wait $1
            }
            \(script)
            echo "left=[$(ls -A /dev/shm)]"
            """
        let result = try runTool("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", full])
        #expect(result.status == 0 && !result.crashed, "the namespace script: \(result.status) \(result.stderr)")
        var statuses: [String: Int] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = Int(parts[1]) { statuses[String(parts[0])] = value }
        }
        return (statuses, result.stdout, result.stderr)
    }

    /// The devices' command lines: `bin` holds them, `ipc` the endpoints.
    static func pair(_ name: String, ipc: String, segment: String, sampler: String = "", sink: String = "") -> String {
        let bin = builtProductsDirectory().path
        let common = "--session full-\(name)-$$ --transport shmem --control static --severity warn --shm-segment-size \(segment)"
        return """
            '\(bin)/shm-sink' --id sink-\(name) \(common) --channel-config name=data,type=pull,method=connect,address=ipc://\(ipc)/\(name) \(sink) \
                >'\(ipc)/\(name)-sink.log' 2>&1 &
            sink_\(name)=$!
            '\(bin)/shm-bsampler' --id sampler-\(name) \(common) --channel-config name=data,type=push,method=bind,address=ipc://\(ipc)/\(name) \(sampler) \
                >'\(ipc)/\(name)-sampler.log' 2>&1 &
            sampler_\(name)=$!
            """
    }

    /// Two sessions whose segments (16 MiB each) do not both fit a 24 MiB tmpfs start at the
    /// same moment, each a sampler writing every byte of 200 messages of 1 MiB and a sink. At
    /// most one session runs to the end (two reservations at once can also both fail: tmpfs
    /// reserves page by page); every device that fails exits 2 with the clear error; a sampler
    /// whose sink failed is stopped by SIGINT; no process dies of a signal; the tmpfs is empty.
    @Test func twoSessionsRaceForTooLittleSpaceAndGetClearErrors() throws {
        let ipc = try TemporaryDirectory()
        let samplerOptions = "--msg-size 1048576 --memset true --max-iterations 200 --shm-throw-bad-alloc false"
        let script = """
            \(Self.pair("a", ipc: ipc.path, segment: "16777216", sampler: samplerOptions, sink: "--max-iterations 200"))
            \(Self.pair("b", ipc: ipc.path, segment: "16777216", sampler: samplerOptions, sink: "--max-iterations 200"))
            waitfor $sink_a 600; echo "sink_a=$?"
            waitfor $sink_b 600; echo "sink_b=$?"
            sleep 1
            kill -INT $sampler_a $sampler_b 2>/dev/null
            waitfor $sampler_a 100; echo "sampler_a=$?"
            waitfor $sampler_b 100; echo "sampler_b=$?"
            """
        let (statuses, stdout, _) = try inSmallShm(size: "24m", script)
        let logs = { (name: String) in (try? String(contentsOfFile: ipc.path + "/" + name + ".log", encoding: .utf8)) ?? "" }
        for (name, status) in statuses { #expect(status < 128, "\(name) died of signal \(status - 128): \(stdout)") }
        let completed = ["a", "b"].filter { statuses["sink_\($0)"] == 0 && statuses["sampler_\($0)"] == 0 }
        #expect(completed.count <= 1, "both sessions cannot fit: \(stdout)")
        var refused = 0
        for session in ["a", "b"] where !completed.contains(session) {
            for device in ["sink", "sampler"] where statuses["\(device)_\(session)"] != 0 {
                refused += 1
                let log = logs("\(session)-\(device)")
                #expect(statuses["\(device)_\(session)"] == 2, "\(device) \(session): \(log)")
                #expect(log.contains("cannot reserve 16777216 bytes (16.0 MiB)") && log.contains("free there"), "\(device) \(session): \(log)")
            }
        }
        #expect(refused >= 1, "a session that does not fit is refused with the error: \(stdout)")
        #expect(stdout.contains("left=[]"), "\(stdout)")
    }

    /// One segment of 8 MiB whose sink stops taking messages (SIGSTOP): with the default policy
    /// the sampler gets bad-alloc and exits 1 with the segment-full error; with
    /// `--shm-throw-bad-alloc false` it waits, still running after 2 s, and SIGINT ends it with
    /// status 0. Every message's bytes are written (`--memset true`); no process dies of a signal.
    @Test func aFullSegmentGivesBadAllocOrWaitsPerPolicyNeverSIGBUS() throws {
        let ipc = try TemporaryDirectory()
        let sampler = "--msg-size 1048576 --memset true"
        let script = """
            \(Self.pair("throw", ipc: ipc.path, segment: "8388608", sampler: sampler))
            sleep 0.5; kill -STOP $sink_throw
            waitfor $sampler_throw 300; echo "sampler_throw=$?"
            kill -CONT $sink_throw; kill -INT $sink_throw; wait $sink_throw; echo "sink_throw=$?"
            \(Self.pair("wait", ipc: ipc.path, segment: "8388608", sampler: sampler + " --shm-throw-bad-alloc false"))
            sleep 0.5; kill -STOP $sink_wait
            sleep 2
            if kill -0 $sampler_wait 2>/dev/null; then echo "waiting=1"; else echo "waiting=0"; fi
            kill -INT $sampler_wait
            waitfor $sampler_wait 100; echo "sampler_wait=$?"
            kill -CONT $sink_wait; kill -INT $sink_wait; wait $sink_wait; echo "sink_wait=$?"
            """
        let (statuses, stdout, _) = try inSmallShm(size: "16m", script)
        let logs = { (name: String) in (try? String(contentsOfFile: ipc.path + "/" + name + ".log", encoding: .utf8)) ?? "" }
        #expect(statuses["sampler_throw"] == 1, "bad-alloc ends the sampler: \(logs("throw-sampler"))")
        #expect(logs("throw-sampler").contains("segment") && logs("throw-sampler").contains("1048576 bytes"), "\(logs("throw-sampler"))")
        #expect(statuses["sink_throw"] == 0, "\(logs("throw-sink"))")
        #expect(statuses["waiting"] == 1, "with --shm-throw-bad-alloc false the sampler waits for room: \(logs("wait-sampler"))")
        #expect(statuses["sampler_wait"] == 0, "SIGINT ends a sampler waiting for room cleanly: \(logs("wait-sampler"))")
        #expect(statuses["sink_wait"] == 0, "\(logs("wait-sink"))")
        for (name, status) in statuses { #expect(status < 128, "\(name) died of a signal: \(stdout)") }
        #expect(stdout.contains("left=[]"), "\(stdout)")
    }
}
