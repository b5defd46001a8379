import Foundation
import Glibc
import Testing

/// The console's `GET /metrics`: rollouts by outcome, step durations and time to rollback,
/// from real rollouts the console ran against real proxies.
@Suite(.serialized) struct ConsoleMetricsTests {
    @Test func theConsoleCountsRolloutsByOutcomeWithStepDurationsAndTimeToRollback() throws {
        let lab = try ConsoleRolloutTests.makeLab()
        let plan = try lab.writePlan(ConsoleRolloutTests.twoEnvironmentPlan(lab))
        let console = try ConsoleProcess(directory: lab.directory, plans: [plan])
        defer { console.stop() }
        let ops = try ConsoleRolloutTests.token(console, "ops", "deployer")
        let viewer = try ConsoleRolloutTests.token(console, "grafana", "viewer")

        let empty = try console.call("GET", "/metrics", token: viewer)
        #expect(empty.status == 200)
        #expect(empty.text.contains("# TYPE switchyard_rollouts_total counter"))
        #expect(!empty.text.contains("switchyard_rollouts_total{"))
        // Read permission, as the other read endpoints.
        #expect(try console.call("GET", "/metrics", token: nil).status == 401)

        // One promoted, one rolled back by its canary's analysis (a *bad* version answers 500).
        for (version, outcome) in [("v2", "promoted"), ("v3-bad", "rolled_back")] {
            let started = try console.call("POST", "/api/v1/rollouts", body: "{\"service\":\"web\",\"version\":\"\(version)\",\"environments\":[\"prod\"]}", token: ops)
            #expect(started.status == 201, "\(started.text)")
            let id = try #require(started.json["id"] as? Int)
            let done = try ConsoleRolloutTests.waitForState(console, id, ["promoted", "rolled_back", "failed", "crashed"])
            #expect((done["rollout"] as? [String: Any])?["state"] as? String == outcome, "\(done)")
        }

        let metrics = try console.call("GET", "/metrics", token: viewer)
        #expect(metrics.status == 200)
        let text = metrics.text
        let labels = "service=\"web\",environment=\"prod\""
        #expect(ObservabilityTests.sample(text, "switchyard_rollouts_total{\(labels),outcome=\"promoted\"}") == 1, "\(text)")
        #expect(ObservabilityTests.sample(text, "switchyard_rollouts_total{\(labels),outcome=\"rolled_back\"}") == 1, "\(text)")
        #expect(ObservabilityTests.sample(text, "switchyard_rollouts_total{service=\"web\",environment=\"stage\",outcome=\"promoted\"}") == nil)
        // Time to rollback: one sample, as long as the bad deployment lasted.
        #expect(ObservabilityTests.sample(text, "switchyard_rollout_time_to_rollback_seconds_count{\(labels)}") == 1, "\(text)")
        let rollback = ObservabilityTests.sample(text, "switchyard_rollout_time_to_rollback_seconds_sum{\(labels)}") ?? 0
        #expect(rollback > 0 && rollback < 120, "\(rollback)")
        #expect(ObservabilityTests.sample(text, "switchyard_rollout_time_to_rollback_seconds_bucket{\(labels),le=\"+Inf\"}") == 1)
        // Step durations: every step of both deployments, each lasting until the next.
        let steps = ObservabilityTests.sample(text, "switchyard_rollout_step_duration_seconds_count{\(labels)}") ?? 0
        #expect(steps >= 2, "\(text)")
        let stepSum = ObservabilityTests.sample(text, "switchyard_rollout_step_duration_seconds_sum{\(labels)}") ?? 0
        #expect(stepSum > 0 && stepSum < 300, "\(stepSum)")
        #expect(ObservabilityTests.sample(text, "switchyard_rollout_step_duration_seconds_bucket{\(labels),le=\"+Inf\"}") == steps)
        #expect(!text.contains("switchyard_rollouts_in_progress{"))
    }
}
