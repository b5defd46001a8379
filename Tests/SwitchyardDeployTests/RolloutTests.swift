import Foundation
import SwitchyardAdminAPI
import SwitchyardConfig
import Testing
@testable import SwitchyardDeploy

/// The rollout's decisions that need no proxy: controls, rollback steps, pools and servers
/// chosen from a status answer, the live line's progress, and what history keeps for abort.
@Suite struct RolloutTests {
    // MARK: Controls

    @Test func pauseAndResumeToggleThePause() {
        var controls = RolloutControls()
        #expect(controls.handle("pause", argument: nil, position: "prod") == .init(result: "paused", effect: .paused))
        #expect(controls.paused)
        #expect(controls.handle("resume", argument: nil, position: "prod") == .init(result: "resumed", effect: .resumed))
        #expect(!controls.paused)
    }

    @Test func onlyTheWaitingEnvironmentCanBeApproved() {
        var controls = RolloutControls()
        let early = controls.handle("approve", argument: "prod", position: "stage, canary step 1/2")
        #expect(early == .init(result: "refused: no environment waits for approval (now: stage, canary step 1/2)", effect: .none))
        #expect(controls.approvals.isEmpty, "no approval in advance")
        controls.awaitingApproval = "prod"
        #expect(controls.handle("approve", argument: "stage", position: "-").result == "refused: prod waits for approval, not stage")
        #expect(controls.approvals.isEmpty)
        #expect(controls.handle("approve", argument: nil, position: "-") == .init(result: "approved prod", effect: .approved("prod")))
        #expect(controls.approvals == ["prod"])
    }

    @Test func promoteNeverPassesAnApproval() {
        var controls = RolloutControls()
        controls.awaitingApproval = "prod"
        let refused = controls.handle("promote", argument: "full", position: "-")
        #expect(refused.effect == .none && refused.result.hasPrefix("refused: prod waits for approval"))
        #expect(!controls.skipWait)
    }

    @Test func promoteEndsTheWaitAndFullPromotionSkipsTheRest() {
        var controls = RolloutControls()
        controls.paused = true
        #expect(controls.handle("promote", argument: nil, position: "-") == .init(result: "skipping to the next step", effect: .nextStep))
        #expect(controls.skipWait && !controls.paused, "a promote also ends a pause")
        #expect(controls.handle("promote", argument: "full", position: "-") == .init(result: "promoting fully", effect: .promoteFull))
        #expect(controls.handle("abort", argument: nil, position: "-") == .init(result: "rolling back", effect: .abort))
        #expect(controls.handle("reboot", argument: nil, position: "-") == .init(result: "unknown command", effect: .none))
    }

    // MARK: Canary

    @Test func gradualRollbackHalvesTheWeightDownToOnePercent() {
        let gradual = DeployPlan.RollbackMode.gradual(interval: .seconds(10))
        #expect(CanaryStrategy.rollbackWeights(from: 4000, mode: gradual) == [2000, 1000, 500, 250, 125])
        #expect(CanaryStrategy.rollbackWeights(from: 10_000, mode: gradual) == [5000, 2500, 1250, 625, 312, 156])
        #expect(CanaryStrategy.rollbackWeights(from: 199, mode: gradual) == [], "half of it is below 1%")
        #expect(CanaryStrategy.rollbackWeights(from: 0, mode: gradual) == [], "a canary the guard took out stays out")
        #expect(CanaryStrategy.rollbackWeights(from: 4000, mode: .instant) == [])
    }

    /// A status document as the proxy writes it.
    static func status(_ json: String) throws -> AdminStatus {
        try JSONDecoder().decode(AdminStatus.self, from: Data(json.utf8))
    }

    @Test func theRollbackStartsFromTheWeightTheProxyGivesThePool() throws {
        func status(canary: String) throws -> AdminStatus {
            try Self.status(#"{"generation": 3, "pools": {}, "services": {"web": {"active": "blue", "standby": "green", "canary": \#(canary)}}}"#)
        }
        #expect(CanaryStrategy.weight(of: "green", in: try status(canary: #"{"pool": "green", "weight": "12.5%"}"#), service: "web") == 1250)
        #expect(CanaryStrategy.weight(of: "green", in: try status(canary: "null"), service: "web") == 0, "the guard cleared the canary")
        #expect(CanaryStrategy.weight(of: "green", in: try status(canary: #"{"pool": "red", "weight": "50%"}"#), service: "web") == 0, "another pool's canary")
        #expect(CanaryStrategy.weight(of: "green", in: try status(canary: #"{"pool": "green", "weight": "lots"}"#), service: "web") == 0)
        #expect(CanaryStrategy.weight(of: "green", in: try status(canary: "null"), service: "api") == 0, "another service")
    }

    @Test func aStepCarriesTheGuardWhenThePlanHasOne() throws {
        #expect(CanaryStrategy.guardSetting(nil) == nil, "no guard in the plan: none sent")
        let setting = CanaryStrategy.guardSetting(CanaryGuard(maxErrorRate: 5000, minRequests: 20, windowMilliseconds: 5000))
        let body = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(CanaryBody(pool: "green", weight: "50%", guardrail: setting))) as? [String: Any]
        let rule = body?["guard"] as? [String: Any]
        #expect(rule?["max_error_rate"] as? String == "50%" && rule?["min_requests"] as? Int == 20 && rule?["window"] as? String == "5000ms", "\(body ?? [:])")
    }

    // MARK: Pools and servers

    @Test func targetPoolFollowsTheStrategy() {
        #expect(Rollout.targetPool(strategy: .rolling, planned: nil, active: "app", standby: nil) == "app", "rolling updates in place")
        #expect(Rollout.targetPool(strategy: .canary, planned: nil, active: "blue", standby: "green") == "green")
        #expect(Rollout.targetPool(strategy: .bluegreen, planned: "red", active: "blue", standby: "green") == "red", "the plan's pool wins")
        #expect(Rollout.targetPool(strategy: .bluegreen, planned: nil, active: "blue", standby: nil) == nil)
        #expect(Rollout.targetPool(strategy: .canary, planned: "blue", active: "blue", standby: "green") == nil, "never the active pool")
    }

    @Test func rollingUpdatesTheServersInRotationInTheProxysOrder() throws {
        func server(_ name: String, _ state: String) -> String {
            #"{"name": "\#(name)", "address": "10.0.0.\#(name.dropFirst()):80", "weight": 100, "state": "\#(state)", "active_requests": 0}"#
        }
        let status = try Self.status(#"{"generation": 1, "services": {}, "pools": {"app": {"servers": [\#(server("a1", "ready")), \#(server("a2", "drain")), \#(server("a3", "ready")), \#(server("a4", "maint"))]}}}"#)
        #expect(RollingStrategy.serversToUpdate([status], pool: "app") == [.init(name: "a1", address: "10.0.0.1:80"), .init(name: "a3", address: "10.0.0.3:80")])
        #expect(RollingStrategy.serversToUpdate([status], pool: "other").isEmpty)
        // With several proxies: the servers in rotation on every one of them.
        let other = try Self.status(#"{"generation": 1, "services": {}, "pools": {"app": {"servers": [\#(server("a1", "drain")), \#(server("a2", "drain")), \#(server("a3", "ready")), \#(server("a4", "maint"))]}}}"#)
        #expect(RollingStrategy.serversToUpdate([status, other], pool: "app") == [.init(name: "a3", address: "10.0.0.3:80")])
    }

    // MARK: Live line

    @Test func progressMovesThroughTheCurrentStage() {
        let now = Date()
        var live = LiveStatus(progress: 0.5, span: 0.25, until: now.addingTimeInterval(5), stageLength: 10)
        #expect(abs(live.shownProgress(at: now) - 0.625) < 1e-9, "half the stage waited")
        #expect(abs(live.shownProgress(at: now.addingTimeInterval(60)) - 0.75) < 1e-9, "never past the stage")
        live.stageLength = 0
        #expect(live.shownProgress(at: now) == 0.5, "a stage without a length adds nothing until it ends")
        live.until = nil
        #expect(live.shownProgress(at: now) == 0.5)
        live.phase = "canary step 1/2"
        live.weight = "5%"
        #expect(live.summary(paused: true) == "paused: canary step 1/2 at 5%")
    }

    // MARK: History kept for abort

    @Test func historyListsTheServersARollingDeploymentDrainedOnceEachInOrder() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchyard-rollout-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/history.sqlite"
        // A history written before steps named their server gets the column when opened.
        do {
            let old = try History(path: path)
            try old.exec("DROP TABLE steps; CREATE TABLE steps (id INTEGER PRIMARY KEY, deployment_id INTEGER NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL, weight TEXT, verdict TEXT, requests INTEGER, error_rate REAL, baseline_error_rate REAL, p99_ms REAL)")
        }
        let history = try History(path: path)
        let rollout = history.startRollout(service: "web", version: "v3", actor: "test", plan: "plan.yaml")
        let deployment = history.startDeployment(rollout: rollout, service: "web", environment: "prod", version: "v3", strategy: "rolling",
                                                 actor: "test", pool: "app", previousPool: nil, previousVersion: "v2")
        history.recordStep(deployment: deployment, kind: "drain", detail: "app/a2 draining", server: "a2")
        history.recordStep(deployment: deployment, kind: "undrain", detail: "app/a2 back", server: "a2")
        history.recordStep(deployment: deployment, kind: "drain", detail: "app/a1 draining", server: "a1")
        history.recordStep(deployment: deployment, kind: "drain", detail: "app/a2 draining (restore to v2)", server: "a2")
        history.recordStep(deployment: deployment, kind: "analysis", detail: "pass")
        #expect(history.drainedServers(deployment: deployment) == ["a2", "a1"])
        #expect(history.drainedServers(deployment: deployment + 1).isEmpty)
        #expect(history.runningRollout(service: "web")?["id"] as? Int == rollout)
        history.finishRollout(rollout, outcome: "crashed", reason: "the orchestrator stopped")
        #expect(history.runningRollout(service: "web") == nil)
        history.markAborted(rollout, actor: "oncall")
        let row = history.rollout(rollout)
        #expect(row?["outcome"] as? String == "rolled_back" && row?["reason"] as? String == "the orchestrator stopped; aborted by oncall")
    }
}
