import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig

/// Canary: the new version's pool takes a growing share of the traffic, step by step, with
/// analysis against the stable pool at each pause and the proxy's guard watching in between;
/// promotion flips the canary pool to active. Rollback sets the weight to 0, at once or by
/// halving it (`rollback: gradual`).
struct CanaryStrategy: RolloutStrategy {
    let deployment: Deployment

    func deploy(in r: Rollout) throws {
        let fleet = deployment.fleet, target = deployment.pool
        let active = deployment.previousPool ?? ""
        // A promotion the proxies refuse is rolled back like a failed step.
        do {
            do { try runSteps(in: r) } catch Rollout.Interruption.promoteFull {
                // Skip the remaining steps and analysis.
            }
            // Promotion: the canary pool becomes active, and the canary is cleared in the same change.
            try r.apply(.flip(to: target), to: fleet)
        } catch {
            guard let reason = Rollout.rollbackReason(error) else { throw error }
            try r.rollingBack(reason) { try rollBack(in: r) }
        }
        r.live.weight = "100%"
        r.live.progress = 1
        r.step("promote", "pool \(target) is active; \(active) is standby")
        r.emit(.flipped, "promoted: pool \(target) takes all traffic; \(active) is standby", ["pool": target, "previous": active])
    }

    /// Start hook, health, then the plan's steps: weights and pauses with analysis, the
    /// proxies' guards and routing checked all along.
    func runSteps(in r: Rollout) throws {
        let env = deployment.environment, fleet = deployment.fleet, target = deployment.pool
        let active = deployment.previousPool ?? ""
        let started = Date()
        if let failure = r.runHooks("start", r.plan.hooks.start, values: r.baseValues(pool: target, env: env)) { throw Rollout.Failure(reason: failure) }
        r.labelVersion(fleet, pool: target, version: r.version)
        try r.waitHealthy(fleet, pool: target, after: started)
        var failures = 0
        let steps = env.steps
        // Every step looks at every proxy first: a guard trip or a proxy changed by hand
        // fails it (see FleetChanges.swift). In a manual pause, the same look every half second.
        let check = r.periodicCheck(fleet)
        for (i, s) in steps.enumerated() {
            r.live.progress = Double(i) / Double(steps.count)
            r.live.span = 1 / Double(steps.count)
            switch s {
            case .weight(let w):
                try r.apply(.canary(pool: target, weight: w, guardrail: env.guardrail), to: fleet)
                r.live.weight = BasisPoints.format(w)
                r.live.phase = "canary step \(i + 1)/\(steps.count)"
                r.step("weight", "canary \(target) at \(BasisPoints.format(w))", weight: BasisPoints.format(w))
                r.emit(.step, "canary \(target) at \(BasisPoints.format(w)) (step \(i + 1) of \(steps.count))",
                       ["weight": BasisPoints.format(w), "step": i + 1, "steps": steps.count, "pool": target])
            case .pause(nil):
                r.live.phase = "paused until `deploy promote`"
                r.step("pause", "pause until promoted", weight: r.live.weight)
                r.emit(.paused, "waiting for `switchyard deploy promote \(r.plan.path)` at \(r.live.weight ?? "0%")")
                try r.wait(nil, tick: check)
            case .pause(let d?):
                r.live.phase = "canary step \(i + 1)/\(steps.count): analysing"
                r.step("pause", "pause \(d.milliseconds / 1000)s", weight: r.live.weight)
                r.emit(.step, "pause \(Rollout.seconds(d)) at \(r.live.weight ?? "0%") (step \(i + 1) of \(steps.count)): analysis every \(Rollout.seconds(r.plan.analysis.interval))",
                       ["weight": r.live.weight ?? "0%", "step": i + 1, "steps": steps.count, "pause_seconds": Double(d.milliseconds) / 1000])
                try r.analyse(fleet, pool: target, baseline: active, duration: Double(d.milliseconds) / 1000, failures: &failures,
                              label: "step \(i + 1)")
            }
        }
    }

    /// The guard a step arms: the plan's, or none sent (the proxy keeps what it has).
    static func guardSetting(_ guardrail: CanaryGuard?) -> AdminSetting<GuardBody>? {
        guardrail.map { .set(GuardBody(maxErrorRate: BasisPoints.format($0.maxErrorRate), minRequests: $0.minRequests, window: "\($0.windowMilliseconds)ms")) }
    }

    /// The weights a gradual rollback passes through from `weight` before 0: halved each
    /// interval while at least 1%. Instant rollback passes through none.
    static func rollbackWeights(from weight: Int, mode: DeployPlan.RollbackMode) -> [Int] {
        guard case .gradual = mode, weight > 100 else { return [] }
        var weights: [Int] = []
        var w = weight / 2
        while w >= 100 {
            weights.append(w)
            w /= 2
        }
        return weights
    }

    func recover(in r: Rollout, reason: String) throws { try rollBack(in: r) }

    /// After the promotion: flips back to the pool active before.
    func rollBackPromotion(in r: Rollout) throws {
        guard let previous = deployment.previousPool else { return }
        try BlueGreenStrategy.flipBack(in: r, deployment.fleet, to: previous, from: deployment.pool)
    }

    /// Takes the canary out, from the weight the proxies give it now: at once, or by halving
    /// it every interval (`rollback: gradual`). A canary the guard or an operator already
    /// took out is never put back, not even at a lower weight. Proxies already promoted
    /// (a crash in the middle of the promotion's flip) are flipped back first, as blue/green does.
    func rollBack(in r: Rollout) throws {
        let fleet = deployment.fleet, target = deployment.pool
        let views = try r.views(fleet)
        if let previous = deployment.previousPool, previous != target, views.contains(where: { $0.routing.active == target }) {
            try BlueGreenStrategy.flipBack(in: r, fleet, to: previous, from: target)
        }
        let weight = Self.weight(of: target, in: try r.views(fleet))
        r.emit(.rollingBack, weight > 0 ? "rolling back the canary \(target) from \(BasisPoints.format(weight))"
                                        : "rolling back the canary \(target), which takes no traffic now")
        if case .gradual(let interval) = deployment.environment.rollback {
            for (i, w) in Self.rollbackWeights(from: weight, mode: deployment.environment.rollback).enumerated() {
                // The guard keeps watching while the weight goes down; once it trips, the canary stays out.
                if i > 0, Self.weight(of: target, in: try r.views(fleet)) == 0 { break }
                try r.applyRollback(.canary(pool: target, weight: w, guardrail: deployment.environment.guardrail), to: fleet)
                r.live.weight = BasisPoints.format(w)
                r.step("rollback", "canary down to \(BasisPoints.format(w))", weight: r.live.weight)
                r.emit(.notice, "canary down to \(BasisPoints.format(w))")
                usleep(UInt32(min(Int64(UInt32.max / 1000), interval.milliseconds)) * 1000)
            }
        }
        try r.applyRollback(.canary(pool: target, weight: 0, guardrail: nil), to: fleet)
        r.live.weight = "0%"
        r.step("rollback", "canary weight 0%: all traffic on the stable pool", weight: "0%")
    }

    /// The highest share any proxy gives `pool` as the service's canary; 0 when none does.
    static func weight(of pool: String, in views: [ProxyView]) -> Int {
        views.compactMap { view in view.routing.canary.flatMap { $0.pool == pool ? $0.weight : nil } }.max() ?? 0
    }

    /// The share `pool` has as the service's canary in `status`; 0 when it is not the canary.
    static func weight(of pool: String, in status: AdminStatus, service: String) -> Int {
        guard let canary = ServiceRouting(status: status, service: service, pools: [])?.canary, canary.pool == pool else { return 0 }
        return canary.weight
    }
}
