import Foundation

/// Blue/green: the new version starts on the standby pool, passes its health checks and smoke
/// tests against the preview, then takes all traffic in one flip; analysis watches it while
/// the previous pool stays standby. Rollback flips back.
struct BlueGreenStrategy: RolloutStrategy {
    let deployment: Deployment

    func deploy(in r: Rollout) throws {
        let env = deployment.environment, client = deployment.client, target = deployment.pool
        let active = deployment.previousPool ?? ""
        let plan = r.plan
        var flipped = false
        // A full promotion whose flip is refused is rolled back like any failure.
        do {
            do { try flipAndWatch(in: r, flipped: &flipped) } catch Rollout.Interruption.promoteFull {
                if !flipped {
                    try r.flip(client, to: target)
                    r.step("flip", "pool \(target) is active (full promotion)")
                }
            }
        } catch {
            guard let reason = Rollout.rollbackReason(error) else { throw error }
            try r.rollingBack(reason) { try rollBack(in: r) }
        }
        if !plan.hooks.retire.isEmpty, let failure = r.runHooks("retire", plan.hooks.retire, values: r.baseValues(pool: active, env: env)) {
            r.emit(.notice, "warning: retire hook failed: \(failure)")
        }
    }

    /// Start hook, health, smoke tests, the flip, then the watch and the time the previous
    /// pool is kept, analysed. `flipped` says whether the flip was made.
    func flipAndWatch(in r: Rollout, flipped: inout Bool) throws {
        let env = deployment.environment, client = deployment.client, target = deployment.pool
        let active = deployment.previousPool ?? ""
        let plan = r.plan
        r.live.phase = "starting \(target)"
        let started = Date()
        if let failure = r.runHooks("start", plan.hooks.start, values: r.baseValues(pool: target, env: env)) { throw Rollout.Failure(reason: failure) }
        try r.waitHealthy(env, client, pool: target, after: started)
        r.live.phase = "smoke tests against the preview"
        if let failure = r.runHooks("smoke", plan.hooks.smoke, values: r.baseValues(pool: target, env: env)) {
            throw Rollout.Failure(reason: "\(failure); traffic never moved")
        }
        r.step("smoke", "smoke tests passed")
        try r.flip(client, to: target)
        flipped = true
        r.live.progress = 0.5
        r.live.span = 0.5
        r.live.weight = "100%"
        r.step("flip", "pool \(target) is active; \(active) is standby")
        r.emit(.flipped, "flipped: pool \(target) takes all traffic; \(active) is standby for instant rollback", ["pool": target, "previous": active])
        var failures = 0
        let watch = env.watch.map { Double($0.milliseconds) / 1000 } ?? Double(plan.analysis.interval.milliseconds) / 1000
        let keep = Double(env.keepPrevious.milliseconds) / 1000
        if watch > 0 {
            r.live.phase = "watching \(target)"
            try r.analyse(client, pool: target, baseline: nil, duration: watch, failures: &failures, label: "watch")
        }
        if keep > 0 {
            r.live.phase = "keeping \(active) for rollback"
            r.emit(.notice, "keeping \(active) as standby for \(Int(keep))s; analysis continues")
            try r.analyse(client, pool: target, baseline: nil, duration: keep, failures: &failures, label: "keep")
        }
    }

    func recover(in r: Rollout, reason: String) throws { try rollBack(in: r) }

    /// Flips back to the previous pool when the new one is active; the proxy says whether
    /// the flip happened, so an answer lost on the way changes nothing.
    func rollBack(in r: Rollout) throws {
        let active = try r.status(deployment.client).services[r.plan.service]?.active
        guard let previous = deployment.previousPool, active == deployment.pool else {
            r.emit(.notice, "never flipped: \(active ?? "no pool") is active")
            return
        }
        try Self.flipBack(in: r, deployment.client, to: previous, from: deployment.pool)
    }

    /// Puts the previous pool back in front in one flip.
    static func flipBack(in r: Rollout, _ client: AdminClient, to active: String, from target: String) throws {
        r.emit(.rollingBack, "flipping back to \(active)")
        try r.flip(client, to: active)
        r.live.weight = "0%"
        r.step("rollback", "flipped back: pool \(active) is active again")
    }
}
