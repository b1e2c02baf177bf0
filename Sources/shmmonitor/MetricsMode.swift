import Foundation
import Logging
import Prometheus
import ShmCleanup
import SystemPackage

/// `--metrics` / `--metrics-file`: the node's shared-memory state for operators, in the
/// OpenMetrics text format (through swift-prometheus), for a scrape or for node_exporter's
/// textfile collector. The values are those of `--list-all --json`.
struct MetricsMode {
    let directory: FilePath
    let logger: Logger

    /// The exposition of one scan, ending in OpenMetrics' `# EOF`.
    static func exposition(of scan: ShmDirectoryScan) -> String {
        let registry = PrometheusCollectorRegistry()
        func gauge(_ name: String, unit: String = "", _ help: String, _ labels: [(String, String)]) -> Gauge {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(namespace: "shmtransport", metricName: name, unitName: unit, helpText: help), labels: labels)
        }
        let live = scan.sessions.filter(\.isInUse).count
        gauge("sessions", "Sessions in the shm directory by whether a live process uses them", [("state", "live")])
            .set(Double(live))
        gauge("sessions", "Sessions in the shm directory by whether a live process uses them", [("state", "dead")])
            .set(Double(scan.sessions.count - live))
        var bytesByUser: [UInt32: Int64] = [:]
        for session in scan.sessions {
            let labels = [
                ("shmid", "\(session.shmID)"), ("session", session.sessionName ?? ""),
                ("uid", session.ownerUIDs.map(String.init).joined(separator: ",")), ("state", session.isInUse ? "live" : "dead"),
            ]
            gauge("session", unit: "bytes", "Bytes of a session's objects", labels)
                .set(Double(session.totalBytes))
            gauge("session_objects", "Objects of a session", labels)
                .set(Double(session.objects.count))
            gauge("session_processes", "Live processes that use a session (registered or mapping it)", labels)
                .set(Double(session.users.count))
            for segment in session.record?.segments ?? [] {
                let segmentLabels = [("shmid", "\(session.shmID)"), ("segment", "\(segment.id)")]
                gauge("segment_size", unit: "bytes", "Size of a managed segment", segmentLabels)
                    .set(Double(segment.size))
                gauge("segment_free", unit: "bytes", "Free bytes of a managed segment, as its processes last published", segmentLabels)
                    .set(Double(segment.freeBytes))
            }
            for object in session.objects { bytesByUser[object.ownerUID, default: 0] += object.size }
        }
        for (uid, bytes) in bytesByUser.sorted(by: { $0.key < $1.key }) {
            gauge("user", unit: "bytes", "Bytes of transport objects by owner", [("uid", "\(uid)")])
                .set(Double(bytes))
        }
        return registry.emitToString() + "# EOF\n"
    }

    /// Prints the exposition, or writes it to `file` atomically (a temporary file beside it,
    /// renamed over it), so a collector never reads half a file.
    func run(file: String?) throws {
        let scan = try Monitor(directory: directory, logger: logger).listAll()
        let text = Self.exposition(of: scan)
        if let file { try Self.write(text, to: file) } else { FileHandle.standardOutput.write(Data(text.utf8)) }
    }

    static func write(_ text: String, to file: String) throws {
        let temporary = file + ".tmp.\(getpid())"
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, file) == 0 else {
                throw ShmCleanupError(.systemCall, "cannot rename \(temporary) to \(file); check the directory's permissions", errno: errno)
            }
        } catch {
            unlink(temporary)
            throw error as? ShmCleanupError
                ?? ShmCleanupError(.systemCall, "cannot write the metrics file \(file): \(error); check the directory exists and is writable")
        }
    }
}
