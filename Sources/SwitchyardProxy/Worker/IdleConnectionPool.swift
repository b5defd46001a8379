import CLibevent
import Glibc
import Synchronization
import SwitchyardConfig
import SwitchyardHTTP
import SwitchyardRouting

/// Idle keep-alive connections to each server, most recently used last.
extension Worker {
    // MARK: Upstream connection pool

    func takeIdleConnection(serverID: Int) -> UpstreamConnection? {
        idle[serverID].popLast()
    }

    func parkIdleConnection(_ connection: UpstreamConnection) {
        if stopping || !serverReady[connection.serverID] { connection.close(); return }
        idle[connection.serverID].append(connection)
    }

    func removeIdleConnection(_ connection: UpstreamConnection) {
        if let i = idle[connection.serverID].firstIndex(where: { $0 === connection }) {
            idle[connection.serverID].remove(at: i)
        }
    }
}
