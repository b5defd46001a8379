import Foundation
import Glibc

/// Set by SIGINT/SIGTERM: the rollout rolls back and exits, as an abort would.
nonisolated(unsafe) public var rolloutInterrupted: sig_atomic_t = 0

/// What `deploy pause`, `resume`, `promote`, `approve` and `abort` have done to a running
/// rollout, and how the next one is answered. The commands reach the rollout through the
/// history's `controls` table; the answers are pure, so they are unit-tested alone.
struct RolloutControls: Equatable {
    var paused = false
    /// Set by `deploy promote` without `--full`: the current wait ends.
    var skipWait = false
    /// Environments approved with `deploy approve`.
    var approvals: Set<String> = []
    /// The environment waiting for `deploy approve`.
    var awaitingApproval: String?
    /// A full promotion asked for during a health wait: it ends the next pause or analysis
    /// of the same environment, once the new version is healthy.
    var fullPromotionPending = false

    /// What the rollout does about a control, besides recording `result` as its answer.
    enum Effect: Equatable {
        /// Nothing (refused or unknown); the answer says why.
        case none
        case paused, resumed
        case approved(String)
        /// End the current wait (`deploy promote`).
        case nextStep
        /// Skip the environment's remaining steps and analysis (`deploy promote --full`).
        case promoteFull
        case abort
    }

    struct Decision: Equatable {
        /// The answer the control command prints.
        var result: String
        var effect: Effect
    }

    /// Answers one control command and updates the state. `position` says where the rollout
    /// is, for an approval nobody waits for.
    mutating func handle(_ command: String, argument: String?, position: String) -> Decision {
        switch command {
        case "pause":
            paused = true
            return Decision(result: "paused", effect: .paused)
        case "resume":
            paused = false
            return Decision(result: "resumed", effect: .resumed)
        case "approve":
            // Only the environment that waits can be approved: no approval in advance.
            guard let waiting = awaitingApproval else {
                return Decision(result: "refused: no environment waits for approval (now: \(position))", effect: .none)
            }
            if let argument, !argument.isEmpty, argument != waiting {
                return Decision(result: "refused: \(waiting) waits for approval, not \(argument)", effect: .none)
            }
            approvals.insert(waiting)
            return Decision(result: "approved \(waiting)", effect: .approved(waiting))
        case "promote":
            // A manual approval is passed with approve, never by skipping past it.
            if let waiting = awaitingApproval {
                return Decision(result: "refused: \(waiting) waits for approval; use `switchyard deploy approve`", effect: .none)
            }
            if argument == "full" { return Decision(result: "promoting fully", effect: .promoteFull) }
            paused = false
            skipWait = true
            return Decision(result: "skipping to the next step", effect: .nextStep)
        case "abort":
            return Decision(result: "rolling back", effect: .abort)
        default:
            return Decision(result: "unknown command", effect: .none)
        }
    }
}

extension Rollout {
    /// Handles the controls sent since the last tick; throws `Interruption` for abort and
    /// full promotion. A rollback in progress is not interrupted: signals and controls wait
    /// until it is done.
    func housekeeping() throws {
        guard !inRollback else { return }
        if rolloutInterrupted != 0 { throw Interruption.abort("interrupted by a signal (SIGINT/SIGTERM)") }
        for control in history.pendingControls(rollout: rolloutID) {
            guard let id = control["id"] as? Int else { continue }
            let actor = control["actor"] as? String ?? "?"
            let decision = controls.handle(control["command"] as? String ?? "", argument: control["argument"] as? String,
                                           position: "\(currentEnvironment ?? "-"), \(live.phase)")
            history.handleControl(id, result: decision.result)
            switch decision.effect {
            case .none: continue
            case .paused:
                step("pause", "paused by \(actor)")
                emit(.paused, "paused by \(actor); `switchyard deploy resume` continues", ["actor": actor])
            case .resumed:
                step("resume", "resumed by \(actor)")
                emit(.resumed, "resumed by \(actor)", ["actor": actor])
            case .approved(let environment):
                emit(.approved, "\(environment) approved by \(actor)", ["actor": actor])
            case .nextStep:
                step("promote", "next step by \(actor)")
                emit(.notice, "promoted to the next step by \(actor)")
            case .promoteFull:
                step("promote", "full promotion by \(actor)")
                emit(.notice, "full promotion by \(actor): remaining steps and analysis skipped")
                throw Interruption.promoteFull
            case .abort:
                throw Interruption.abort("aborted by \(actor)")
            }
        }
    }

    /// Waits until `deploy approve` approves `env`; an abort meanwhile moves nothing.
    func waitForApproval(_ env: DeployPlan.Environment) throws {
        emit(.approvalNeeded, "\(env.name) waits for approval: switchyard deploy approve \(plan.path)", ["plan": plan.path])
        step("approval", "waiting for approval")
        live.phase = "waiting for approval (deploy approve)"
        controls.awaitingApproval = env.name
        defer { controls.awaitingApproval = nil }
        while !controls.approvals.contains(env.name) {
            do {
                try wait(1)
            } catch Interruption.abort(let reason) {
                throw Failure(reason: "\(reason) while \(env.name) waited for approval; nothing moved there")
            }
        }
        step("approval", "approved")
    }
}
