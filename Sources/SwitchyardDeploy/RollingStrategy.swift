import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardRouting

/// Rolling: the pool's servers are updated in place, a batch at a time (one server unless
/// the plan says `batch`): drain, `update` hook, healthy, back in rotation, each batch
/// analysed before the next. A batch never takes a pool's last healthy server in rotation
/// out. Rollback restores the servers already touched to the version before, in reverse order.
struct RollingStrategy: RolloutStrategy {
    let deployment: Deployment

    /// A server of the pool, as the update hook sees it.
    struct Server: Equatable {
        var name: String
        var address: String
    }

    /// The servers to update, in the first proxy's order: those in rotation on every proxy.
    static func serversToUpdate(_ statuses: [AdminStatus], pool: String) -> [Server] {
        guard let first = statuses.first else { return [] }
        return first.servers(pool)
            .filter { server in statuses.allSatisfy { $0.servers(pool).contains { $0.name == server.name && $0.state == "ready" } } }
            .map { Server(name: $0.name, address: $0.address) }
    }

    /// Whether `server` takes traffic in `status`: in rotation, healthy (or unchecked) and
    /// not ejected by passive outlier detection in any worker.
    static func servesTraffic(_ server: AdminStatus.Server) -> Bool {
        server.state == "ready" && (server.healthStatus == "up" || server.healthStatus == "not checked") && (server.ejectedInWorkers ?? 0) == 0
    }

    /// The next batch: up to `size` of `remaining`, in order, such that on every proxy at
    /// least one server outside the batch still takes traffic. Empty when even one would
    /// take the last one out.
    static func nextBatch(_ remaining: [Server], size: Int, statuses: [AdminStatus], pool: String) -> [Server] {
        var batch: [Server] = []
        for server in remaining where batch.count < size {
            let candidate = batch + [server]
            let keepsOne = statuses.allSatisfy { status in
                status.servers(pool).contains { s in servesTraffic(s) && !candidate.contains { $0.name == s.name } }
            }
            guard keepsOne else { break }
            batch = candidate
        }
        return batch
    }

    /// The batch size of this deployment for `count` servers in rotation.
    func batchSize(for count: Int) -> Int {
        (deployment.environment.batch ?? .servers(1)).size(of: count)
    }

    func deploy(in r: Rollout) throws {
        let fleet = deployment.fleet, pool = deployment.pool
        let servers = Self.serversToUpdate(try r.statuses(fleet).map(\.status), pool: pool)
        guard !servers.isEmpty else { throw Rollout.Failure(reason: "pool \(pool) has no server in rotation to update") }
        let size = batchSize(for: servers.count)
        if size > 1 { r.emit(.notice, "updating \(servers.count) servers of \(pool) in batches of up to \(size)") }
        var changed: [Server] = []
        // A failure while the rest is updated after a full promotion is rolled back like any other.
        do {
            do { try update(in: r, servers, size: size, analysed: true, changed: &changed) } catch Rollout.Interruption.promoteFull {
                // The rest of the servers are updated without analysis.
                try update(in: r, servers.filter { !changed.contains($0) }, size: size, analysed: false, changed: &changed)
            }
            r.labelVersion(fleet, pool: pool, version: r.version)
        } catch {
            guard let reason = Rollout.rollbackReason(error) else { throw error }
            try r.rollingBack(reason) { try restore(in: r, changed, reason: reason) }
        }
    }

    /// Updates `servers` in batches, in order, each analysed before the next unless
    /// `analysed` is false; `changed` lists those touched.
    func update(in r: Rollout, _ servers: [Server], size: Int, analysed: Bool, changed: inout [Server]) throws {
        let fleet = deployment.fleet, pool = deployment.pool
        var failures = 0
        var remaining = servers
        var number = 0
        let total = servers.count
        while !remaining.isEmpty {
            let batch = try takeBatch(in: r, remaining, size: size)
            number += 1
            let done = total - remaining.count
            let names = batch.map(\.name).joined(separator: ", ")
            r.live.progress = Double(done) / Double(total)
            r.live.span = Double(batch.count) / Double(total)
            let position = size == 1 ? "\(done + 1) of \(total)" : "batch \(number), \(done + batch.count) of \(total)"
            r.live.phase = size == 1 ? "server \(done + 1)/\(total): \(names)" : "batch \(number): \(names)"
            changed += batch
            try replace(in: r, batch, version: r.version, label: analysed ? position : "rest")
            remaining.removeAll { batch.contains($0) }
            guard analysed else { continue }
            r.live.phase = size == 1 ? "server \(done + 1)/\(total): analysing \(names)" : "batch \(number): analysing \(names)"
            // Passive outlier detection ejecting a new instance is a verdict of its own:
            // an ejected server gets no traffic, so the analysis alone would wait forever.
            func ejections() throws -> Int {
                try r.statuses(fleet).reduce(0) { sum, entry in
                    sum + entry.status.servers(pool).filter { s in batch.contains { $0.name == s.name } }.reduce(0) { $0 + ($1.ejections ?? 0) }
                }
            }
            let ejectedBefore = try ejections()
            var lastLook = Date()
            try r.analyse(fleet, pool: pool, servers: batch.map(\.name), baseline: nil, duration: Double(r.plan.analysis.interval.milliseconds) / 1000,
                          failures: &failures, label: batch.map { "\(pool)/\($0.name)" }.joined(separator: ", ")) {
                guard Date().timeIntervalSince(lastLook) >= 0.5 else { return }
                lastLook = Date()
                let count = try ejections() - ejectedBefore
                if count > 0 { throw Rollout.Failure(reason: "passive outlier detection ejected a server of \(pool) (\(names): \(count) time(s)) running \(r.version)") }
            }
        }
    }

    /// The next batch of `remaining`; waits (up to the health timeout) while taking even one
    /// server out would leave a proxy without a server that takes traffic.
    func takeBatch(in r: Rollout, _ remaining: [Server], size: Int) throws -> [Server] {
        let env = deployment.environment, pool = deployment.pool
        let start = Date()
        var said = false
        while true {
            let statuses = try r.statuses(deployment.fleet).map(\.status)
            let batch = Self.nextBatch(remaining, size: size, statuses: statuses, pool: pool)
            if !batch.isEmpty { return batch }
            if Date().timeIntervalSince(start) * 1000 > Double(env.healthTimeout.milliseconds) {
                throw Rollout.Failure(reason: "updating \(remaining.first?.name ?? "a server") would take the last healthy server of pool \(pool) out of rotation "
                                      + "(waited \(env.healthTimeout.milliseconds / 1000)s for another); a rolling update needs at least two servers in the pool")
            }
            if !said {
                said = true
                r.emit(.notice, "waiting for another healthy server in \(pool) before taking \(remaining.first?.name ?? "the next one") out")
            }
            try r.wait(0.5, deferringFullPromotion: true)
        }
    }

    /// Drain, update hook, healthy, undrain: one batch of servers.
    func replace(in r: Rollout, _ batch: [Server], version: String, label: String) throws {
        let env = deployment.environment, fleet = deployment.fleet, pool = deployment.pool
        for server in batch {
            // Recorded first: a crash after the drain must leave the server in the record, for `deploy abort`.
            r.step("drain", "\(pool)/\(server.name) draining (\(label))", server: server.name)
            try r.apply(.server(pool: pool, name: server.name, state: .drain), to: fleet)
            r.emit(.step, "\(pool)/\(server.name): draining (\(label))", ["server": server.name, "pool": pool])
        }
        let deadline = Date().addingTimeInterval(Double(env.drainTimeout.milliseconds) / 1000)
        while true {
            // In flight anywhere: each proxy counts its own requests.
            let active = try r.statuses(fleet).reduce(0) { sum, entry in
                sum + entry.status.servers(pool).filter { s in batch.contains { $0.name == s.name } }.reduce(0) { $0 + $1.activeRequests }
            }
            if active == 0 { break }
            if Date() >= deadline {
                r.emit(.notice, "warning: \(batch.map { "\(pool)/\($0.name)" }.joined(separator: ", ")) still \(active == 1 ? "has" : "have") \(active) request(s) "
                       + "after drain_timeout \(env.drainTimeout.milliseconds / 1000)s; updating anyway")
                break
            }
            usleep(100_000)
        }
        var hookStarts: [(Server, Date)] = []
        for server in batch {
            var values = r.baseValues(pool: pool, env: env)
            values["version"] = version
            values["server"] = server.name
            values["address"] = server.address
            hookStarts.append((server, Date()))
            if let failure = r.runHooks("update", r.plan.hooks.update, values: values) { throw Rollout.Failure(reason: failure) }
        }
        // Each checked after its own hook: an instance not replaced yet still passes its checks.
        for (server, started) in hookStarts { try r.waitHealthy(fleet, pool: pool, servers: [server.name], after: started) }
        for server in batch { try r.apply(.server(pool: pool, name: server.name, state: .ready), to: fleet) }
        try r.waitHealthy(fleet, pool: pool, servers: batch.map(\.name))
        for server in batch {
            r.step("undrain", "\(pool)/\(server.name) runs \(version) and is back in rotation")
            r.emit(.step, "\(pool)/\(server.name): \(version) in rotation", ["server": server.name, "pool": pool])
        }
    }

    func recover(in r: Rollout, reason: String) throws {
        guard let id = r.deploymentID else { return }
        let drained = r.history.drainedServers(deployment: id)
        guard !drained.isEmpty else {
            r.emit(.notice, "no server of \(deployment.pool) had been drained; nothing to restore")
            return
        }
        let inPool = try r.statuses(deployment.fleet).first?.status.servers(deployment.pool) ?? []
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

    /// After the promotion (a failed bake): every server of the pool goes back to the
    /// version before. Without one in history, nothing is drained: the pool keeps the new
    /// version and the rollout says so.
    func rollBackPromotion(in r: Rollout) throws {
        guard deployment.previousVersion != nil else {
            throw Rollout.Failure(reason: "no earlier promoted version of \(r.plan.service) in \(deployment.environment.name) is recorded: pool \(deployment.pool) keeps \(r.version)",
                                  unreachable: true)
        }
        let servers = Self.serversToUpdate(try r.statuses(deployment.fleet).map(\.status), pool: deployment.pool)
        try restore(in: r, servers, reason: "the bake failed")
    }

    /// Puts `servers` back on the version before, last first, in batches; without one in
    /// history they stay drained, out of rotation.
    func restore(in r: Rollout, _ servers: [Server], reason: String) throws {
        let env = deployment.environment, fleet = deployment.fleet, pool = deployment.pool
        let names = servers.map(\.name).joined(separator: ", ")
        r.emit(.rollingBack, "restoring \(names) after: \(reason)")
        guard let previousVersion = deployment.previousVersion else {
            for server in servers {
                try r.apply(.server(pool: pool, name: server.name, state: .drain), to: fleet)
            }
            r.step("rollback", "no previous version of \(r.plan.service) in \(env.name) is recorded; \(names) left drained")
            r.emit(.notice, "no earlier promoted version in history: \(names) left drained, out of rotation")
            return
        }
        var remaining = Array(servers.reversed())
        let size = batchSize(for: servers.count)
        while !remaining.isEmpty {
            // Restoring takes out servers that may be failing anyway: when no batch keeps a
            // healthy server in rotation, one at a time.
            let statuses = try r.statuses(fleet).map(\.status)
            var batch = Self.nextBatch(remaining, size: size, statuses: statuses, pool: pool)
            if batch.isEmpty, let next = remaining.first { batch = [next] }
            try replace(in: r, batch, version: previousVersion, label: "restore to \(previousVersion)")
            remaining.removeAll { batch.contains($0) }
        }
        r.labelVersion(fleet, pool: pool, version: previousVersion)
        r.step("rollback", "restored \(names) to \(previousVersion)")
    }
}
