import Foundation
import Glibc
import SwitchyardAdminAPI

/// Rolling: the pool's servers are updated in place one at a time (drain, `update` hook,
/// healthy, back in rotation), each analysed before the next. Rollback restores the servers
/// already touched to the version before, in reverse order.
struct RollingStrategy: RolloutStrategy {
    let deployment: Deployment

    /// A server of the pool, as the update hook sees it.
    struct Server: Equatable {
        var name: String
        var address: String
    }

    /// The servers to update, in the proxy's order: those in rotation now.
    static func serversToUpdate(_ status: AdminStatus, pool: String) -> [Server] {
        status.servers(pool).filter { $0.state == "ready" }.map { Server(name: $0.name, address: $0.address) }
    }

    func deploy(in r: Rollout) throws {
        let client = deployment.client, pool = deployment.pool
        let servers = Self.serversToUpdate(try r.status(client), pool: pool)
        guard !servers.isEmpty else { throw Rollout.Failure(reason: "pool \(pool) has no server in rotation to update") }
        var changed: [Server] = []
        // A failure while the rest is updated after a full promotion is rolled back like any other.
        do {
            do { try updateOneByOne(in: r, servers, changed: &changed) } catch Rollout.Interruption.promoteFull {
                // The rest of the servers are updated without analysis.
                for server in servers where !changed.contains(server) {
                    changed.append(server)
                    try replace(in: r, server, version: r.version, label: "rest")
                }
            }
        } catch {
            guard let reason = Rollout.rollbackReason(error) else { throw error }
            try r.rollingBack(reason) { try restore(in: r, changed, reason: reason) }
        }
    }

    /// Updates `servers` in order, each analysed before the next; `changed` lists those touched.
    func updateOneByOne(in r: Rollout, _ servers: [Server], changed: inout [Server]) throws {
        let client = deployment.client, pool = deployment.pool
        var failures = 0
        for (i, server) in servers.enumerated() {
            r.live.progress = Double(i) / Double(servers.count)
            r.live.span = 1 / Double(servers.count)
            r.live.phase = "server \(i + 1)/\(servers.count): \(server.name)"
            changed.append(server)
            try replace(in: r, server, version: r.version, label: "\(i + 1) of \(servers.count)")
            r.live.phase = "server \(i + 1)/\(servers.count): analysing \(server.name)"
            // Passive outlier detection ejecting the new instance is a verdict of its own:
            // an ejected server gets no traffic, so the analysis alone would wait forever.
            func ejections() throws -> Int {
                try r.status(client).servers(pool).first { $0.name == server.name }?.ejections ?? 0
            }
            let ejectedBefore = try ejections()
            try r.analyse(client, pool: pool, server: server.name, baseline: nil, duration: Double(r.plan.analysis.interval.milliseconds) / 1000,
                          failures: &failures, label: "\(pool)/\(server.name)") {
                let count = try ejections() - ejectedBefore
                if count > 0 { throw Rollout.Failure(reason: "passive outlier detection ejected \(pool)/\(server.name) (\(count) time(s)) running \(r.version)") }
            }
        }
    }

    /// Drain, update hook, healthy, undrain: one server.
    func replace(in r: Rollout, _ server: Server, version: String, label: String) throws {
        let env = deployment.environment, client = deployment.client, pool = deployment.pool
        // Recorded first: a crash after the drain must leave the server in the record, for `deploy abort`.
        r.step("drain", "\(pool)/\(server.name) draining (\(label))", server: server.name)
        try r.setServer(client, pool: pool, server: server.name, inRotation: false)
        r.emit(.step, "\(pool)/\(server.name): draining (\(label))", ["server": server.name, "pool": pool])
        let deadline = Date().addingTimeInterval(Double(env.drainTimeout.milliseconds) / 1000)
        while true {
            let active = try r.status(client).servers(pool).first { $0.name == server.name }?.activeRequests ?? 0
            if active == 0 { break }
            if Date() >= deadline {
                r.emit(.notice, "warning: \(pool)/\(server.name) still has \(active) request(s) after drain_timeout \(env.drainTimeout.milliseconds / 1000)s; updating anyway")
                break
            }
            usleep(100_000)
        }
        var values = r.baseValues(pool: pool, env: env)
        values["version"] = version
        values["server"] = server.name
        values["address"] = server.address
        let hookStart = Date()
        if let failure = r.runHooks("update", r.plan.hooks.update, values: values) { throw Rollout.Failure(reason: failure) }
        try r.waitHealthy(env, client, pool: pool, server: server.name, after: hookStart)
        try r.setServer(client, pool: pool, server: server.name, inRotation: true)
        try r.waitHealthy(env, client, pool: pool, server: server.name)
        r.step("undrain", "\(pool)/\(server.name) runs \(version) and is back in rotation")
        r.emit(.step, "\(pool)/\(server.name): \(version) in rotation", ["server": server.name, "pool": pool])
    }

    func recover(in r: Rollout, reason: String) throws {
        guard let id = r.deploymentID else { return }
        let drained = r.history.drainedServers(deployment: id)
        guard !drained.isEmpty else {
            r.emit(.notice, "no server of \(deployment.pool) had been drained; nothing to restore")
            return
        }
        let inPool = try r.status(deployment.client).servers(deployment.pool)
        var servers: [Server] = []
        for name in drained {
            guard let entry = inPool.first(where: { $0.name == name }) else {
                r.emit(.notice, "warning: \(deployment.pool)/\(name) is no longer in the pool; not restored")
                continue
            }
            servers.append(Server(name: name, address: entry.address))
        }
        try restore(in: r, servers, reason: reason)
    }

    /// Puts `servers` back on the version before, last first; without one in history they
    /// stay drained, out of rotation.
    func restore(in r: Rollout, _ servers: [Server], reason: String) throws {
        let env = deployment.environment, client = deployment.client, pool = deployment.pool
        let names = servers.map(\.name).joined(separator: ", ")
        r.emit(.rollingBack, "restoring \(names) after: \(reason)")
        guard let previousVersion = deployment.previousVersion else {
            for server in servers {
                try r.setServer(client, pool: pool, server: server.name, inRotation: false)
            }
            r.step("rollback", "no previous version of \(r.plan.service) in \(env.name) is recorded; \(names) left drained")
            r.emit(.notice, "no earlier promoted version in history: \(names) left drained, out of rotation")
            return
        }
        for server in servers.reversed() {
            try replace(in: r, server, version: previousVersion, label: "restore to \(previousVersion)")
        }
        r.step("rollback", "restored \(names) to \(previousVersion)")
    }
}
