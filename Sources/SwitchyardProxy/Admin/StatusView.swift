import CLibevent
import COpenSSL
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// `GET /v1/status`: services, pools and servers with their counters and health.
extension AdminServer {
    func status() -> [String: Any] {
        let stats = control.collectStats()
        let snapshot = control.snapshot()
        var services: [String: Any] = [:]
        for route in snapshot.services {
            var s = control.state.services[route.name].map(ControlPlane.json) ?? [:]
            s["traffic"] = Counters(stats.services, index: route.statsID).json
            s["guard_trip"] = control.guardTrips[route.name] ?? NSNull()
            services[route.name] = s
        }
        var pools: [String: Any] = [:]
        for pool in snapshot.pools {
            var entry: [String: Any] = [
                "balance": pool.balance.rawValue,
                "version": pool.version ?? NSNull(),
                "servers": pool.servers.map { server -> [String: Any] in
                    let c = Counters(stats.servers, index: server.id)
                    var out = c.json
                    out["name"] = server.name
                    out["address"] = server.address.description
                    out["weight"] = server.configuredWeight
                    out["effective_weight"] = server.weight
                    out["state"] = server.state.rawValue
                    out["open_connections"] = c[ServerStats.openConnections]
                    out["ejections"] = c[ServerStats.ejections]
                    out["ejected_in_workers"] = c[ServerStats.ejectedNow]
                    out["health"] = control.health?.json(pool: pool.name, server: server.name) ?? ["status": "not checked"]
                    out.merge(resolutionFields(pool: pool.name, server: server)) { $1 }
                    return out
                },
            ]
            entry["names"] = resolutionJSON(pool: pool.name)
            pools[pool.name] = entry
        }
        let locks = control.activeLocks
        let latencies = control.publishLatencies.sorted()
        func percentile(_ q: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))] }
        return [
            "generation": control.state.generation,
            "services": services,
            "pools": pools,
            // `lock` is the proxy-wide lock, as before service locks; `locks` lists every lock held.
            "lock": locks.first { $0.service == nil }.map { Self.lockJSON($0, withToken: false) } ?? NSNull(),
            "locks": locks.map { Self.lockJSON($0, withToken: false) },
            "workers": control.workers.count,
            "uptime_seconds": Int(Date().timeIntervalSince(startTime)),
            "publish_ack_us": ["p50": percentile(0.5), "p99": percentile(0.99), "count": latencies.count],
        ]
    }
}
