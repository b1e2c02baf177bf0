import ShmCleanup

/// Prints one session in `fairmq-shmmonitor`'s view format, plus what only we know
/// (attached processes, live users, every object with its size).
struct SessionPrinter {
    let output: Output

    /// - Parameter messageCounts: live messages per segment where the segment keeps message
    ///   records (the `msgs:` column; `NODEBUG` for the others, as in the original).
    func print(_ s: ShmSession, messageCounts: [UInt16: Int] = [:]) {
        if let r = s.record {
            let devices = r.deviceCount
            output.line(
                "shm id: \(s.shmID), session: \(r.sessionName), creator id: \(r.creatorUID), devices: \(devices), managed segments:")
            for seg in r.segments.sorted(by: { $0.id < $1.id }) {
                let used = seg.size >= seg.freeBytes ? seg.size - seg.freeBytes : 0
                output.line(
                    "   [\(seg.id)]: total: \(seg.size), msgs: \(messageCounts[seg.id].map { "\($0)" } ?? "NODEBUG"), free: \(seg.freeBytes), used: \(used), allocator: \(seg.allocatorName)")
            }
            if let mng = s.objects.first(where: { $0.name.kind == .management }) {
                output.line("   [m]: total: \(mng.size), processes: \(r.processes.count)")
            }
            if !r.regions.isEmpty {
                output.line("   unmanaged regions:")
                for region in r.regions.sorted(by: { $0.id < $1.id }) {
                    let path = region.path.isEmpty ? "" : ", path: '\(region.path)'"
                    let poolFile = s.objects.first { $0.name.kind == .regionRefCount(UInt32(region.id)) }?.path
                    let pool = poolFile.flatMap(RegionPoolLayout.usage(atPath:)).map { ", rc pool: \($0.inUse)/\($0.capacity) in use" } ?? ""
                    output.line(
                        "      [\(region.id)]: \(region.destroyed ? "destroyed" : "alive"), size: \(region.size), rcCountSegment size: \(region.rcSegmentSize), user flags: \(region.userFlags), creation flags: \(region.creationFlags), controller: \(region.controllerPID == 0 ? "none" : "pid \(region.controllerPID)")\(pool)\(path)")
                }
            }
            if r.creatorSlurmJobID != 0 {
                let step = r.creatorSlurmStepID.map { " step \($0)" } ?? ""
                output.line("   created in slurm job \(r.creatorSlurmJobID)\(step)")
            }
            if !r.processes.isEmpty {
                output.line("   attached processes:")
                let live = Set(s.users.map(\.pid))
                for p in r.processes {
                    var line = "      pid \(p.pid), uid \(p.uid), segment \(p.segmentID)"
                    if p.slurmJobID != 0 { line += ", slurm job \(p.slurmJobID)" }
                    if let step = p.slurmStepID { line += " step \(step)" }
                    line += live.contains(p.pid) ? ", alive" : ", dead"
                    output.line(line)
                }
            }
        } else {
            output.line("shm id: \(s.shmID), management segment: \(s.managementStatus)")
        }
        output.line("   objects (\(s.objects.count), \(s.totalBytes) bytes):")
        for o in s.objects {
            let type = o.fileType == .regular ? "" : " [\(o.fileType.rawValue), never touched]"
            output.line("      \(o.fileName): \(o.size) bytes, owner \(o.ownerUID)\(type)")
        }
        if s.users.isEmpty {
            output.line("   in use: no")
        } else {
            output.line("   in use by: " + s.users.map(\.description).joined(separator: "; "))
        }
    }
}
