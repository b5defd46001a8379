import Foundation
import Glibc

extension Rollout {
    /// `deploy abort` of a rollout whose process died: puts traffic back in every environment
    /// it had reached with the same rollback its strategy uses while running (canary weight
    /// down to 0, a flip back, servers restored to the version before), acting with the lock
    /// tokens the rollout recorded, then releases those locks.
    ///
    /// An environment whose rollback fails keeps its deployment `crashed` and its lock
    /// recorded, and the rollout stays `crashed`, so that `deploy abort` can be run again.
    /// - Returns: whether every environment is back on the previous version.
    public static func abortCrashed(rollout id: Int, plan: DeployPlan, history: History, actor: String) -> Bool {
        let version = history.rollout(id)?["version"] as? String ?? "?"
        let rollout = Rollout(plan: plan, version: version, options: Options(actor: actor, json: false), history: history)
        return rollout.recoverCrashed(id)
    }

    func recoverCrashed(_ id: Int) -> Bool {
        rolloutID = id
        // Nothing interrupts a rollback, a signal included.
        inRollback = true
        let reason = "aborted by \(options.actor) after the orchestrator crashed"
        let locks = history.heldLocks(rollout: id)
        var locked: [ProxyFleet] = []
        for env in plan.environments {
            guard let clients = try? AdminClient.all(for: env, actor: options.actor, processEnvironment: environment) else { continue }
            let fleet = ProxyFleet(environment: env, proxies: clients)
            for client in clients {
                // A history from before fleets names the lock by the environment alone.
                client.lockToken = locks[lockKey(fleet, client)] ?? (client === clients.first ? locks[env.name] : nil)
            }
            fleets[env.name] = fleet
            if clients.contains(where: { $0.lockToken != nil }) { locked.append(fleet) }
        }
        // Restoring servers runs hooks, which may take longer than the locks live.
        startLockKeeper(locked, reason: "rollback of rollout #\(id) of \(plan.service) by \(options.actor) (pid \(getpid()) on \(History.hostName))") {}
        var failed: [String] = []
        for record in history.deployments(rollout: id) where record["outcome"] as? String == "crashed" {
            guard let name = record["environment"] as? String, let recordID = record["id"] as? Int else { continue }
            currentEnvironment = name
            deploymentID = recordID
            do {
                guard let env = plan.environments.first(where: { $0.name == name }) else {
                    throw Failure(reason: "\(name) is no longer in \(plan.path); put it back, or set its traffic with `switchyard ctl`")
                }
                guard let strategy = (record["strategy"] as? String).flatMap(DeployPlan.Strategy.init(rawValue:)), let pool = record["pool"] as? String else {
                    throw Failure(reason: "the history record of deployment #\(recordID) lacks its strategy or pool; set traffic with `switchyard ctl`")
                }
                let recorded = History.proxies(of: record)
                if !recorded.isEmpty && Set(recorded) != Set(env.proxies.map(\.description)) {
                    emit(.notice, "warning: the rollout changed \(recorded.joined(separator: ", ")) in \(name); the plan now lists \(env.proxies.map(\.description).joined(separator: ", ")): acting on the plan's")
                }
                let fleet = try fleets[name] ?? ProxyFleet(environment: env, proxies: AdminClient.all(for: env, actor: options.actor, processEnvironment: environment))
                fleets[name] = fleet
                fleet.trackedPools = strategy == .rolling ? [pool] : []
                // Whatever the proxies say now is where the rollback starts, on each of them.
                try survey(fleet, requireAgreement: false)
                fleet.expected = [:]
                let deployment = Deployment(environment: env, fleet: fleet, pool: pool, previousPool: record["previous_pool"] as? String,
                                            previousVersion: record["previous_version"] as? String)
                try Self.strategy(strategy, for: deployment).recover(in: self, reason: reason)
                step("abort", reason)
                history.finishDeployment(recordID, outcome: "rolled_back", reason: reason)
                emit(.rolledBack, "\(name): rolled back: \(reason)", ["reason": reason])
            } catch {
                let why = (error as? Failure)?.reason ?? "\(error)"
                emit(.failed, "\(name): the rollback failed: \(why)", ["reason": why])
                failed.append(name)
            }
        }
        lockKeeper?.stop()
        currentEnvironment = nil
        for fleet in locked {
            if failed.contains(fleet.name) {
                // Kept for the next `deploy abort`; it lapses after the lock TTL unless renewed.
                for client in fleet.proxies { client.lockToken = nil }
                emit(.notice, "\(fleet.name): the lock stays with the rollout until it expires (\(plan.lockTTL.milliseconds / 1000)s)")
            } else {
                for client in fleet.proxies where client.lockToken != nil {
                    let key = locks[lockKey(fleet, client)] != nil ? lockKey(fleet, client) : fleet.name
                    if release(client) {
                        history.releaseLock(rollout: id, environment: key)
                        emit(.notice, "\(fleet.proxies.count > 1 ? client.label : fleet.name): lock released")
                    }
                }
            }
        }
        printer.end()
        guard failed.isEmpty else {
            emit(.failed, "rollout #\(id) stays crashed: \(failed.joined(separator: ", ")) not rolled back; fix the cause and run `switchyard deploy abort \(plan.path)` again")
            return false
        }
        history.markAborted(id, actor: options.actor)
        emit(.finished, "rollout #\(id) of \(plan.service) \(version) rolled back", ["outcome": "rolled_back", "rollout": id])
        return true
    }
}
