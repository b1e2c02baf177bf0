import Foundation
import ShmCleanup
import ShmTestSupport
import ShmTransport
import Testing

/// A program that keeps its factory (and a message) in globals and ends normally — returning
/// from top-level code, or calling `exit(0)` — must leave nothing behind: Swift never
/// deinitializes globals, so the library's exit hook detaches it, and the last one out removes
/// the session. Two real `global-factory-peer` processes play ping-pong, then end.
@Suite("Detach at normal process exit")
struct ExitDetachTests {
    @Test(arguments: [("return", "return"), ("exit", "exit"), ("return", "exit")])
    func globalFactoryLeavesNothing(pingEnds: String, pongEnds: String) throws {
        let fixture = try TransportFixture(.shmem, "exit")
        let environment = [
            "SHMTRANSPORT_SESSION": fixture.session.rawValue, "SHMTRANSPORT_SHM_DIR": fixture.shmDirectory.path,
        ]
        let endpoint = fixture.endpoint(.ipc, "pp")
        let ping = try PeerProcess(
            ["ping", endpoint, "200", pingEnds],
            executable: builtProductsDirectory().appendingPathComponent("global-factory-peer"), environment: environment)
        let pong = try runTool("global-factory-peer", ["pong", endpoint, "200", pongEnds], environment: environment)
        let (pingStatus, pingErrors) = ping.wait()
        #expect(pong.status == 0 && !pong.crashed, "pong: \(pong.stderr)")
        #expect(pong.stdout == "pong done 200\n")
        #expect(pingStatus == 0, "ping: \(pingErrors)")
        #expect(fixture.finish() == [], "left in the shm directory after both ended by \(pingEnds)/\(pongEnds)")
    }
}
