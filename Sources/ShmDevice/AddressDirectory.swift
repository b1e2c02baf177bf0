import Foundation

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A directory through which the devices of one topology find each other's addresses
/// (`--address-dir`, default `$SHMTRANSPORT_ADDRESS_DIR`), so a topology file needs no
/// host names or ports: a device binding sub-channel `index` of channel `name` (to `tcp://*:*`,
/// `ipc://*` or any address) publishes the endpoints it got in the file `<dir>/<name>.<index>`,
/// and a sub-channel of the same name and index that has no address waits for that file and
/// connects to what it says. A wildcard TCP host is published as the address of
/// `--network-interface`, so a device on another node can reach it.
///
/// Channel names (letters, digits, `-`, `_`) are file names as they are. Give each job its own directory on a file system every node sees (the job's working
/// directory, e.g. `addresses-$SLURM_JOB_ID`): a file is created exclusively and removed when
/// its device closes, so a second binder of one name, or a file a killed device left, is an
/// error rather than a wrong connection.
public struct AddressDirectory: Sendable, Equatable {
    /// The directory's path.
    public var path: String
    /// The interface whose IPv4 address replaces a wildcard TCP host (`default`: the default
    /// route's).
    public var networkInterface: String
    /// How long a connecting sub-channel waits for its peer's address (FairMQ's `--init-timeout`).
    public var timeoutSeconds: Double

    /// The environment variable that gives the directory when `--address-dir` is not given.
    public static let environmentVariable = "SHMTRANSPORT_ADDRESS_DIR"

    public init(path: String, networkInterface: String = "default", timeoutSeconds: Double = 120) {
        self.path = path
        self.networkInterface = networkInterface
        self.timeoutSeconds = timeoutSeconds
    }

    /// The file that holds the addresses of sub-channel `index` of channel `channel`.
    public func file(channel: String, index: Int) -> String { "\(path)/\(channel).\(index)" }

    /// A published file and what it says, so that only its own device removes it.
    struct Publication: Sendable {
        let file: String
        let contents: String
    }

    /// Publishes `endpoints` (as ZeroMQ reported them after the bind) for sub-channel `index` of
    /// `channel`: written to a temporary file, then linked to its name, which fails when the
    /// name exists — the file is complete whenever a reader sees it, and never replaced.
    func publish(channel: String, index: Int, endpoints: [String]) throws(Problem) -> Publication {
        var published: [String] = []
        for endpoint in endpoints { published.append(try reachable(endpoint)) }
        let contents = published.joined(separator: "\n") + "\n"
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw Problem("cannot create the address directory \(path): \(String(cString: strerror(errno))); give an --address-dir you can write to")
        }
        let target = file(channel: channel, index: index)
        let temporary = "\(path)/.\(channel).\(index).\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(contents.utf8)) else {
            throw Problem("cannot write \(temporary): \(String(cString: strerror(errno))); give an --address-dir you can write to")
        }
        defer { unlink(temporary) }
        guard link(temporary, target) == 0 else {
            let reason = errno
            if reason == EEXIST {
                let existing = (try? String(contentsOfFile: target, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                throw Problem(
                    "\(target) exists already (it says \(existing)): another device binds a channel of this name, or a device of an earlier run was killed before it could remove it; give every bound channel its own name and every job its own --address-dir (e.g. addresses-$SLURM_JOB_ID), or remove the file")
            }
            throw Problem("cannot publish \(target): \(String(cString: strerror(reason))); give an --address-dir you can write to")
        }
        return Publication(file: target, contents: contents)
    }

    /// Removes a file this device published, unless another device's file has replaced it.
    static func unpublish(_ publication: Publication) {
        guard let contents = try? String(contentsOfFile: publication.file, encoding: .utf8), contents == publication.contents else { return }
        unlink(publication.file)
    }

    /// The endpoints published for sub-channel `index` of `channel`, waiting for them up to the
    /// timeout. `shouldStop` is asked every 20 ms: a stop signal ends the wait.
    func lookup(channel: String, index: Int, shouldStop: () -> Bool) throws(Problem) -> [String] {
        let target = file(channel: channel, index: index)
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            if let contents = try? String(contentsOfFile: target, encoding: .utf8) {
                let endpoints = contents.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
                guard !endpoints.isEmpty else { throw Problem("\(target) names no address; remove it and restart the device that binds '\(channel)'") }
                return endpoints
            }
            if shouldStop() { throw Problem("stopped while waiting for \(target)") }
            guard Date() < deadline else {
                throw Problem(
                    "no device published \(target) within \(Self.seconds(timeoutSeconds)) s (--init-timeout); start the device that binds '\(channel)' with the same --address-dir, or check the channel names on both sides")
            }
            usleep(20_000)
        }
    }

    /// `endpoint` as another node reaches it: a wildcard TCP host becomes the interface's address.
    func reachable(_ endpoint: String) throws(Problem) -> String {
        guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":") else { return endpoint }
        let host = endpoint[endpoint.index(endpoint.startIndex, offsetBy: 6)..<colon]
        guard ["*", "0.0.0.0", "[::]", "::", "[*]"].contains(host) else { return endpoint }
        do {
            return "tcp://\(try NetworkInterface.address(of: networkInterface))\(endpoint[colon...])"
        } catch {
            throw Problem("cannot publish \(endpoint): \(error.message)")
        }
    }

    private static func seconds(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    struct Problem: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }
}
