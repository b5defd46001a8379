import Foundation

/// Blue/green: the new version starts on the standby pool, passes its health checks and smoke
/// tests against the preview, then takes all traffic in one flip; analysis watches it while
/// the previous pool stays standby. Rollback flips back.
struct BlueGreenStrategy: RolloutStrategy {
    let deployment: Deployment

    func deploy(in r: Rollout) throws {
        let fleet = deployment.fleet, target = deployment.pool
        var flipped = false
        // A full promotion whose flip is refused is rolled back like any failure.
        do {
            do { try flipAndWatch(in: r, flipped: &flipped) } catch Rollout.Interruption.promoteFull {
                if !flipped {
                    try r.apply(.flip(to: target), to: fleet)
                    r.step("flip", "pool \(target) is active (full promotion)")
                }
            }
        } catch {
            guard let reason = Rollout.rollbackReason(error) else { throw error }
            try r.rollingBack(reason) { try rollBack(in: r) }
        }
    }

    /// The retire hooks, for the previous pool, once the environment is promoted for good
    /// (after its bake, when it has one: until then the previous pool is what a failure
    /// flips back to).
    func finish(in r: Rollout) {
        let plan = r.plan
        if !plan.hooks.retire.isEmpty,
           let failure = r.runHooks("retire", plan.hooks.retire, values: r.baseValues(pool: deployment.previousPool ?? "", env: deployment.environment)) {
            r.emit(.notice, "warning: retire hook failed: \(failure)")
        }
    }

    /// Start hook, health, smoke tests, the flip, then the watch and the time the previous
    /// pool is kept, analysed. `flipped` says whether the flip was made.
    func flipAndWatch(in r: Rollout, flipped: inout Bool) throws {
        let env = deployment.environment, fleet = deployment.fleet, target = deployment.pool
        let active = deployment.previousPool ?? ""
        let plan = r.plan
        r.live.phase = "starting \(target)"
        let started = Date()
        if let failure = r.runHooks("start", plan.hooks.start, values: r.baseValues(pool: target, env: env)) { throw Rollout.Failure(reason: failure) }
        r.labelVersion(fleet, pool: target, version: r.version)
        try r.waitHealthy(fleet, pool: target, after: started)
        r.live.phase = "smoke tests against the preview"
        if let failure = r.runHooks("smoke", plan.hooks.smoke, values: r.baseValues(pool: target, env: env)) {
            throw Rollout.Failure(reason: "\(failure); traffic never moved")
        }
        r.step("smoke", "smoke tests passed")
        try r.apply(.flip(to: target), to: fleet)
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
            try r.analyse(fleet, pool: target, baseline: nil, duration: watch, failures: &failures, label: "watch")
        }
        if keep > 0 {
            r.live.phase = "keeping \(active) for rollback"
            r.emit(.notice, "keeping \(active) as standby for \(Int(keep))s; analysis continues")
            try r.analyse(fleet, pool: target, baseline: nil, duration: keep, failures: &failures, label: "keep")
        }
    }

    func recover(in r: Rollout, reason: String) throws { try rollBack(in: r) }

    func rollBackPromotion(in r: Rollout) throws { try rollBack(in: r) }

    /// Flips back to the previous pool where the new one is active; the proxies say whether
    /// the flip happened, so an answer lost on the way changes nothing.
    func rollBack(in r: Rollout) throws {
        let views = try r.views(deployment.fleet)
        guard let previous = deployment.previousPool, views.contains(where: { $0.routing.active == deployment.pool }) else {
            r.emit(.notice, "never flipped: \(Set(views.map(\.routing.active)).sorted().joined(separator: ", ")) active")
            return
        }
        try Self.flipBack(in: r, deployment.fleet, to: previous, from: deployment.pool)
    }

    /// Puts the previous pool back in front in one flip on every proxy that is not there yet.
    static func flipBack(in r: Rollout, _ fleet: ProxyFleet, to active: String, from target: String) throws {
        r.emit(.rollingBack, "flipping back to \(active)")
        try r.applyRollback(.flip(to: active), to: fleet)
        r.live.weight = "0%"
        r.step("rollback", "flipped back: pool \(active) is active again")
    }
}
