import Foundation
import SwitchyardConfig

/// One environment's deployment as a strategy sees it: where the new version goes and what
/// was there before. The running rollout builds it when the environment starts; `deploy
/// abort` builds it from the history record of a rollout whose process died.
struct Deployment {
    var environment: DeployPlan.Environment
    /// The environment's proxies, changed together.
    var fleet: ProxyFleet
    /// The pool that receives the new version (the pool updated in place, for rolling).
    var pool: String
    /// The pool active before: what canary and blue/green fall back to. Rolling has none.
    var previousPool: String?
    /// The version last promoted in this environment: what a rolling update restores.
    var previousVersion: String?
}

/// A way of moving one environment's traffic to a new version, and back.
///
/// Each strategy owns its rollback. The running rollout uses it when analysis, the proxy's
/// guard, a hook or an abort turns the version back; `deploy abort` of a crashed rollout
/// uses the same code through `recover(in:)`, starting from where the proxy (and, for
/// rolling, the history) says the deployment had got to.
protocol RolloutStrategy {
    var deployment: Deployment { get }

    /// Moves the environment's traffic to the new version. A failure or an abort is rolled
    /// back before this throws `Rollout.Failure`; a full promotion is handled here.
    func deploy(in rollout: Rollout) throws

    /// Puts traffic back where it was before the deployment, after the rollout's process
    /// died somewhere in `deploy(in:)` or in the bake after it; `reason` is what the rollback
    /// is recorded with.
    func recover(in rollout: Rollout, reason: String) throws

    /// Puts the previous version back after `deploy(in:)` promoted the new one: a failed bake.
    func rollBackPromotion(in rollout: Rollout) throws

    /// What is left once the environment is promoted for good (its bake passed): blue/green
    /// retires the previous pool. Failures are reported, never rolled back.
    func finish(in rollout: Rollout)
}

extension RolloutStrategy {
    func finish(in rollout: Rollout) {}
}

extension Rollout {
    /// The strategy type for `deployment`'s environment.
    static func strategy(_ strategy: DeployPlan.Strategy, for deployment: Deployment) -> any RolloutStrategy {
        switch strategy {
        case .canary: return CanaryStrategy(deployment: deployment)
        case .bluegreen: return BlueGreenStrategy(deployment: deployment)
        case .rolling: return RollingStrategy(deployment: deployment)
        }
    }

    /// The pool that receives the new version in an environment: the planned pool, else the
    /// standby (canary, blue/green) or the active pool (rolling, which updates in place).
    /// Nil when canary or blue/green would have to deploy to the active pool.
    static func targetPool(strategy: DeployPlan.Strategy, planned: String?, active: String, standby: String?) -> String? {
        switch strategy {
        case .rolling: return planned ?? active
        case .canary, .bluegreen:
            guard let pool = planned ?? standby, pool != active else { return nil }
            return pool
        }
    }

    /// Runs a rollback and then fails with `reason`; a rollback that fails itself makes the
    /// rollout an error (exit 2): traffic may not be where it should be.
    func rollingBack(_ reason: String, _ body: () throws -> Void) throws -> Never {
        inRollback = true
        defer { inRollback = false }
        do {
            try body()
        } catch {
            let why = (error as? Failure)?.reason ?? "\(error)"
            throw Failure(reason: "\(reason); then the rollback failed: \(why); see `switchyard deploy status \(plan.path)`", unreachable: true)
        }
        throw Failure(reason: reason)
    }

    /// Why a strategy rolls back: a failure or an abort. Nil for what it does not roll back:
    /// a lost proxy (where traffic is is not known), a full promotion, anything unforeseen.
    static func rollbackReason(_ error: any Error) -> String? {
        switch error {
        case let failure as Failure: return failure.unreachable ? nil : failure.reason
        case Interruption.abort(let reason): return reason
        default: return nil
        }
    }
}
