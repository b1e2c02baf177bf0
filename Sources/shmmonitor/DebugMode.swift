import Logging
import ShmCleanup
import ShmCore
import SystemPackage

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `--debug/-b`: lists the live messages of the selected sessions from their segments' message
/// records (segment, offset, size, creator pid, creation time and age), as the original does in
/// its `FAIRMQ_DEBUG_MODE` builds. Here the records are a per-session choice made when a segment
/// is created (`--shm-message-records true`); a segment without them says how to turn them on.
struct DebugMode {
    let selection: SessionSelection
    let directory: FilePath
    let logger: Logger

    private struct SessionMessages: Encodable {
        let shmid: ShmID
        let session: String?
        let segments: [SegmentMessages]
    }

    private struct Result: Encodable {
        let directory: String
        let sessions: [SessionMessages]
    }

    func run(output: Output) throws {
        var sessions: [SessionMessages] = []
        for target in try selection.resolve() {
            let segments = try MessageRecords.read(target.id, directory: directory, logger: logger)
            sessions.append(SessionMessages(shmid: target.id, session: target.session?.rawValue, segments: segments))
        }
        if output.json {
            try output.emit(Result(directory: directory.string, sessions: sessions))
            return
        }
        for s in sessions {
            for line in Self.lines(s.segments, shmID: s.shmid, now: WallClock.nanoseconds()) { output.line(line) }
        }
    }

    /// The text listing of one session's records (also what `b` shows in `-i`).
    static func lines(_ segments: [SegmentMessages], shmID: ShmID, now: UInt64) -> [String] {
        guard !segments.isEmpty else { return ["No segments found (shm id \(shmID))."] }
        var lines: [String] = []
        if !segments.contains(where: \.recordsMessages) {
            lines.append(
                "shm id \(shmID): message records are off (segments \(segments.map { "\($0.segmentID)" }.joined(separator: ", ")) were created without them); start the session's first device with '--shm-message-records true' (SessionConfiguration.messageRecords, or shm-keepalive --message-records) to list its live messages"
            )
        } else {
            let messages = segments.flatMap(\.messages)
            lines.append("found \(messages.count) messages.")
            for m in messages {
                lines.append(
                    "segment: \(pad(m.segmentID, 3)), offset: \(pad(m.offset, 12)), size: \(pad(m.size, 10)), creator PID: \(m.creatorPID), at: \(clockTime(m.createdAtNanos)), age: \(age(now, m.createdAtNanos))"
                )
            }
            for s in segments where !s.recordsMessages {
                lines.append("segment \(s.segmentID): created without message records, its messages are not listed")
            }
        }
        for s in segments { if let problem = s.problem { lines.append("segment \(s.segmentID): \(problem)") } }
        return lines
    }

    private static func pad(_ value: some BinaryInteger, _ width: Int) -> String {
        let text = "\(value)"
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }

    /// `HH:MM:SS.uuuuuu` in local time, as the original prints it.
    private static func clockTime(_ nanos: UInt64) -> String {
        var seconds = time_t(truncatingIfNeeded: nanos / 1_000_000_000)
        var parts = tm()
        localtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let micros = "\(nanos % 1_000_000_000 / 1000)"
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))."
            + String(repeating: "0", count: 6 - micros.count) + micros
    }

    private static func age(_ now: UInt64, _ then: UInt64) -> String {
        guard now >= then else { return "0.000 s" }
        let millis = (now - then) / 1_000_000
        let fraction = "\(millis % 1000)"
        return "\(millis / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction + " s"
    }
}
