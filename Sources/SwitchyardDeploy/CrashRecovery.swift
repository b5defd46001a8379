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
        var locked: [(env: DeployPlan.Environment, client: AdminClient)] = []
        for env in plan.environments {
            guard let token = locks[env.name], let client = try? AdminClient(environment: env, actor: options.actor, processEnvironment: environment) else { continue }
            client.lockToken = token
            clients[env.name] = client
            locked.append((env, client))
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
                let client = try clients[name] ?? AdminClient(environment: env, actor: options.actor, processEnvironment: environment)
                clients[name] = client
                let deployment = Deployment(environment: env, client: client, pool: pool, previousPool: record["previous_pool"] as? String,
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
        for (env, _) in locked {
            if failed.contains(env.name) {
                // Kept for the next `deploy abort`; it lapses after the lock TTL unless renewed.
                clients[env.name]?.lockToken = nil
                emit(.notice, "\(env.name): the lock stays with the rollout until it expires (\(plan.lockTTL.milliseconds / 1000)s)")
            } else if releaseLock(env.name) {
                emit(.notice, "\(env.name): lock released")
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
