import ShmCleanup

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `--get-shmid`: prints FairMQ's exact line.
struct GetShmIDMode {
    let selection: SessionSelection

    private struct Result: Encodable {
        let session: String
        let userID: Int
        let shmid: String
    }

    func run(output: Output) throws {
        let name = selection.session.first ?? SessionID.default.rawValue
        let session = try SessionID(name)
        let uid = selection.userID >= 0 ? uid_t(selection.userID) : geteuid()
        let id = ShmID(session: session, userID: uid)
        if output.json {
            try output.emit(Result(session: session.rawValue, userID: Int(uid), shmid: id.rawValue))
        } else if selection.userID >= 0 {
            output.line("shmem id for session '\(session)' and user id \(uid) is: \(id)")
        } else {
            output.line("shmem id for session '\(session)' and current user id \(uid) is: \(id)")
        }
    }
}
