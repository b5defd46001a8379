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
        let client = deployment.client, target = deployment.pool
        let active = deployment.previousPool ?? ""
        let service = r.plan.service
        // A promotion the proxy refuses is rolled back like a failed step.
        do {
            do { try runSteps(in: r) } catch Rollout.Interruption.promoteFull {
                // Skip the remaining steps and analysis.
            }
            // Promotion: the canary pool becomes active, and the canary is cleared in the same change.
            try r.flip(client, to: target)
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
    /// proxy's guard checked all along.
    func runSteps(in r: Rollout) throws {
        let env = deployment.environment, client = deployment.client, target = deployment.pool
        let active = deployment.previousPool ?? ""
        let service = r.plan.service
        var weight = 0
        let started = Date()
        if let failure = r.runHooks("start", r.plan.hooks.start, values: r.baseValues(pool: target, env: env)) { throw Rollout.Failure(reason: failure) }
        try r.waitHealthy(env, client, pool: target, after: started)
        var failures = 0
        let steps = env.steps
        // A trip is new when its time differs from the one before this rollout: no clock
        // comparison between this machine and the proxy's.
        let tripBefore = try r.status(client).services[service]?.guardTrip?.time
        let guardCheck: () throws -> Void = {
            let s = try r.status(client).services[service]
            if let trip = s?.guardTrip, trip.time != tripBefore {
                let reason = "the proxy's guard tripped: \(trip.reason)"
                r.emit(.guardTripped, "\(env.name): \(reason)", ["trip": trip.jsonObject])
                throw Rollout.Failure(reason: reason)
            }
            if weight > 0 && s?.canary?.pool != target {
                throw Rollout.Failure(reason: "the canary of \(service) was removed outside this rollout (now: \(s?.canary?.weight ?? "none")); see `switchyard ctl audit`")
            }
        }
        for (i, s) in steps.enumerated() {
            r.live.progress = Double(i) / Double(steps.count)
            r.live.span = 1 / Double(steps.count)
            switch s {
            case .weight(let w):
                if weight > 0 { try guardCheck() } // never raise a canary the guard just pulled
                weight = w
                try r.setCanary(client, pool: target, weight: w, guardrail: env.guardrail)
                r.live.weight = BasisPoints.format(w)
                r.live.phase = "canary step \(i + 1)/\(steps.count)"
                r.step("weight", "canary \(target) at \(BasisPoints.format(w))", weight: BasisPoints.format(w))
                r.emit(.step, "canary \(target) at \(BasisPoints.format(w)) (step \(i + 1) of \(steps.count))",
                       ["weight": BasisPoints.format(w), "step": i + 1, "steps": steps.count, "pool": target])
            case .pause(nil):
                r.live.phase = "paused until `deploy promote`"
                r.step("pause", "pause until promoted", weight: r.live.weight)
                r.emit(.paused, "waiting for `switchyard deploy promote \(r.plan.path)` at \(r.live.weight ?? "0%")")
                try r.wait(nil, tick: guardCheck)
            case .pause(let d?):
                r.live.phase = "canary step \(i + 1)/\(steps.count): analysing"
                r.step("pause", "pause \(d.milliseconds / 1000)s", weight: r.live.weight)
                r.emit(.step, "pause \(Rollout.seconds(d)) at \(r.live.weight ?? "0%") (step \(i + 1) of \(steps.count)): analysis every \(Rollout.seconds(r.plan.analysis.interval))",
                       ["weight": r.live.weight ?? "0%", "step": i + 1, "steps": steps.count, "pause_seconds": Double(d.milliseconds) / 1000])
                try r.analyse(client, pool: target, baseline: active, duration: Double(d.milliseconds) / 1000, failures: &failures,
                              label: "step \(i + 1)", guardCheck: guardCheck)
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

    /// Takes the canary out, from the weight the proxy gives it now: at once, or by halving
    /// it every interval (`rollback: gradual`). A canary the guard or an operator already
    /// took out is never put back, not even at a lower weight. After a crash right after
    /// the promotion's flip, flips back instead, as blue/green does.
    func rollBack(in r: Rollout) throws {
        let client = deployment.client, target = deployment.pool, service = r.plan.service
        let status = try r.status(client)
        if let previous = deployment.previousPool, previous != target, status.services[service]?.active == target {
            try BlueGreenStrategy.flipBack(in: r, client, to: previous, from: target)
            return
        }
        let weight = Self.weight(of: target, in: status, service: service)
        r.emit(.rollingBack, weight > 0 ? "rolling back the canary \(target) from \(BasisPoints.format(weight))"
                                        : "rolling back the canary \(target), which takes no traffic now")
        if case .gradual(let interval) = deployment.environment.rollback {
            for (i, w) in Self.rollbackWeights(from: weight, mode: deployment.environment.rollback).enumerated() {
                // The guard keeps watching while the weight goes down; once it trips, the canary stays out.
                if i > 0, Self.weight(of: target, in: try r.status(client), service: service) == 0 { break }
                try r.setCanary(client, pool: target, weight: w, guardrail: deployment.environment.guardrail)
                r.live.weight = BasisPoints.format(w)
                r.step("rollback", "canary down to \(BasisPoints.format(w))", weight: r.live.weight)
                r.emit(.notice, "canary down to \(BasisPoints.format(w))")
                usleep(UInt32(min(Int64(UInt32.max / 1000), interval.milliseconds)) * 1000)
            }
        }
        try r.clearCanary(client)
        r.live.weight = "0%"
        r.step("rollback", "canary weight 0%: all traffic on the stable pool", weight: "0%")
    }

    /// The share `pool` has as the service's canary in `status`; 0 when it is not the canary.
    static func weight(of pool: String, in status: AdminStatus, service: String) -> Int {
        guard let canary = status.services[service]?.canary, canary.pool == pool else { return 0 }
        return BasisPoints.parse(canary.weight) ?? 0
    }
}
