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
    /// What a status is written from, copied on the control thread: the published snapshot,
    /// the counters and values of the state, nothing the control thread goes on changing. The
    /// reply thread writes the JSON from it while changes go on.
    struct StatusSource: @unchecked Sendable {
        // @unchecked: `guardTrips` holds `Any`, but only the strings, numbers and
        // dictionaries the guard wrote, which nothing mutates after the copy.
        let summary: Bool
        let snapshot: RoutingSnapshot
        let routes: [ServiceRoute]
        let poolIndexes: [Int]
        let stats: StatsCopy
        let services: [String: RuntimeState.Service]
        let guardTrips: [String: [String: Any]]
        /// Health checks by "pool/server"; nil without health checks.
        let checks: [String: HealthChecker.CheckView]?
        let names: ResolvedNames
        let resolver: String
        let locks: [LockInfo]
        let publishLatencies: [Double]
        let generation: UInt64
        let workers: Int
        let uptimeSeconds: Int
    }

    /// Checks the query and copies what the status is written from; throws the answer to a
    /// bad query (an unknown view or service).
    func statusSource(query: [String: String] = [:]) throws(AdminError) -> StatusSource {
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
        let resolvers = control.config.resolver.servers
        return StatusSource(
            summary: summary, snapshot: snapshot, routes: routes, poolIndexes: poolIndexes,
            stats: control.collectStats(), services: control.state.services, guardTrips: control.guardTrips,
            checks: summary ? nil : control.health?.views(pools: Set(poolIndexes.map { snapshot.pools[$0].name })), names: control.resolution.names,
            resolver: resolvers.isEmpty ? "system" : resolvers.map(\.description).joined(separator: ", "),
            locks: control.activeLocks, publishLatencies: control.publishLatencies,
            generation: control.state.generation, workers: control.workers.count,
            uptimeSeconds: Int(Date().timeIntervalSince(startTime)))
    }

    /// The status as JSON; runs on the reply thread.
    static func status(_ source: StatusSource) -> [String: Any] {
        let snapshot = source.snapshot, stats = source.stats
        // A formatter of its own: the control thread's shared one is not safe to share.
        let dates = ISO8601DateFormatter()
        dates.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var services: [String: Any] = [:]
        for route in source.routes {
            var s = source.services[route.name].map(ControlPlane.json) ?? [:]
            s["traffic"] = Counters(stats.services, index: route.statsID).json
            s["guard_trip"] = source.guardTrips[route.name] ?? NSNull()
            services[route.name] = s
        }
        var pools: [String: Any] = [:]
        for index in source.poolIndexes {
            let pool = snapshot.pools[index]
            if source.summary {
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
                               health: source.checks?["\(pool.name)/\(server.name)"]?.json(dates: dates) ?? ["status": "not checked"],
                               resolution: resolution(pool: pool.name, server: server, names: source.names))
                },
            ]
            entry["names"] = resolutionJSON(pool: pool.name, names: source.names, resolver: source.resolver, dates: dates)
            pools[pool.name] = entry
        }
        let locks = source.locks
        let latencies = source.publishLatencies.sorted()
        func percentile(_ q: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))] }
        return [
            "generation": source.generation,
            "services": services,
            "pools": pools,
            // `lock` is the proxy-wide lock, as before service locks; `locks` lists every lock held.
            "lock": locks.first { $0.service == nil }.map { Self.lockJSON($0, withToken: false) } ?? NSNull(),
            "locks": locks.map { Self.lockJSON($0, withToken: false) },
            "workers": source.workers,
            "uptime_seconds": source.uptimeSeconds,
            "publish_ack_us": ["p50": percentile(0.5), "p99": percentile(0.99), "count": latencies.count],
        ]
    }

    /// One server of the whole status, written as text: thousands of them made a dictionary
    /// each, and hashing and sorting their keys took most of a status's time. The members are
    /// in sorted order, as the dictionary's were written.
    private static func serverJSON(_ server: ServerSnapshot, counters c: Counters, health: [String: Any],
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
