import CLibevent
import COpenSSL
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// `GET /v1/status`: services, pools and servers with their counters and health.
///
/// With thousands of servers the whole status is megabytes of JSON; two views answer in a
/// fraction of the time: `?service=NAME` (that service and the pools it routes to, each with
/// its servers) and `?view=summary` (every service and pool, without the server lists).
extension AdminServer {
    func status(query: [String: String] = [:]) throws(AdminError) -> [String: Any] {
        let summary: Bool
        switch query["view"] {
        case nil, "full"?: summary = false
        case "summary"?: summary = true
        case let other?: throw AdminError(400, "invalid view", "view=\(other) is not a status view; use view=summary or view=full")
        }
        let snapshot = control.currentSnapshot
        var routes = snapshot.services
        var poolIndexes = Array(snapshot.pools.indices)
        if let name = query["service"] {
            guard let route = snapshot.services.first(where: { $0.name == name }) else {
                throw AdminError(404, "no such service", "service \(name) is not configured; services: \(snapshot.services.map(\.name).sorted().joined(separator: ", "))")
            }
            routes = [route]
            // The pools the service routes to (active, standby, canary, rules), in the snapshot's order.
            let used = Set([route.activePool] + [route.standbyPool, route.canaryPool].compactMap { $0 } + route.rules.map(\.pool))
            poolIndexes = poolIndexes.filter { used.contains($0) }
        }
        let stats = control.collectStats()
        var services: [String: Any] = [:]
        for route in routes {
            var s = control.state.services[route.name].map(ControlPlane.json) ?? [:]
            s["traffic"] = Counters(stats.services, index: route.statsID).json
            s["guard_trip"] = control.guardTrips[route.name] ?? NSNull()
            services[route.name] = s
        }
        var pools: [String: Any] = [:]
        for index in poolIndexes {
            let pool = snapshot.pools[index]
            if summary {
                var entry = Counters(sum: pool.servers.map { Counters(stats.servers, index: $0.id) }).json
                entry["balance"] = pool.balance.rawValue
                entry["version"] = pool.version ?? NSNull()
                entry["servers_total"] = pool.servers.count
                entry["servers_ready"] = pool.servers.count { $0.state == .ready }
                entry["servers_healthy"] = pool.servers.count { $0.healthy }
                entry["servers_in_rotation"] = pool.servers.count { $0.weight > 0 }
                pools[pool.name] = entry
                continue
            }
            var entry: [String: Any] = [
                "balance": pool.balance.rawValue,
                "version": pool.version ?? NSNull(),
                "servers": pool.servers.map { server in
                    serverJSON(server, counters: Counters(stats.servers, index: server.id),
                               health: control.health?.json(pool: pool.name, server: server.name) ?? ["status": "not checked"],
                               resolution: resolution(pool: pool.name, server: server))
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

    /// One server of the whole status, written as text: thousands of them made a dictionary
    /// each, and hashing and sorting their keys took most of a status's time. The members are
    /// in sorted order, as the dictionary's were written.
    private func serverJSON(_ server: ServerSnapshot, counters c: Counters, health: [String: Any],
                            resolution: (resolvedFrom: String, inAnswer: Bool)?) -> AdminJSON.Fragment {
        AdminJSON.Fragment { indent, out in
            var object = AdminJSON.ObjectWriter(indent: indent, out: &out)
            object.member("active_requests", c[ServerStats.active], to: &out)
            object.member("address", server.address.description, to: &out)
            object.member("effective_weight", server.weight, to: &out)
            object.member("ejected_in_workers", c[ServerStats.ejectedNow], to: &out)
            object.member("ejections", c[ServerStats.ejections], to: &out)
            object.member("failures", c[ServerStats.failures], to: &out)
            object.member("health", any: health, to: &out)
            if let resolution { object.member("in_answer", resolution.inAnswer, to: &out) }
            object.member("name", server.name, to: &out)
            object.member("open_connections", c[ServerStats.openConnections], to: &out)
            object.member("requests", c[ServerStats.requests], to: &out)
            if let resolution { object.member("resolved_from", resolution.resolvedFrom, to: &out) }
            object.key("responses", to: &out)
            var responses = AdminJSON.ObjectWriter(indent: indent + 1, out: &out)
            for (i, name) in Counters.statusClasses.enumerated() { responses.member(name, c[ServerStats.statusClass + i], to: &out) }
            responses.end(to: &out)
            object.member("state", server.state.rawValue, to: &out)
            object.member("weight", server.configuredWeight, to: &out)
            object.end(to: &out)
        }
    }
}
