import Foundation
import Testing
@testable import SwitchyardConsole

/// The console's Prometheus text, computed from deployments and steps.
@Suite struct RolloutMetricsTests {
    @Test func outcomesStepDurationsAndTimeToRollback() {
        let deployments = [
            RolloutMetrics.Deployment(rolloutID: 1, localID: 1, service: "web", environment: "prod", outcome: "promoted",
                                      startedAt: "2026-11-30T06:00:00.000Z", endedAt: "2026-11-30T06:01:00.000Z"),
            RolloutMetrics.Deployment(rolloutID: 2, localID: 1, service: "web", environment: "prod", outcome: "rolled_back",
                                      startedAt: "2026-11-30T07:00:00.000Z", endedAt: "2026-11-30T07:00:42.500Z"),
            RolloutMetrics.Deployment(rolloutID: 3, localID: 1, service: "web", environment: "stage", outcome: "running",
                                      startedAt: "2026-11-30T08:00:00.000Z", endedAt: nil),
        ]
        let steps = [
            // 10 s then 50 s until the end: two steps.
            RolloutMetrics.Step(rolloutID: 1, deploymentLocalID: 1, time: "2026-11-30T06:00:10.000Z"),
            RolloutMetrics.Step(rolloutID: 1, deploymentLocalID: 1, time: "2026-11-30T06:00:00.000Z"),
            // A running deployment's last step is not over: none counted.
            RolloutMetrics.Step(rolloutID: 3, deploymentLocalID: 1, time: "2026-11-30T08:00:01.000Z"),
            // A step of an unknown deployment is ignored.
            RolloutMetrics.Step(rolloutID: 9, deploymentLocalID: 1, time: "2026-11-30T08:00:01.000Z"),
        ]
        let text = RolloutMetrics.text(deployments: deployments, steps: steps)
        let lines = Set(text.split(separator: "\n").map(String.init))
        let labels = #"service="web",environment="prod""#
        #expect(lines.contains(#"switchyard_rollouts_total{\#(labels),outcome="promoted"} 1"#))
        #expect(lines.contains(#"switchyard_rollouts_total{\#(labels),outcome="rolled_back"} 1"#))
        #expect(lines.contains(#"switchyard_rollouts_in_progress{service="web",environment="stage"} 1"#))
        #expect(!text.contains(#"switchyard_rollouts_total{service="web",environment="stage""#))
        #expect(lines.contains(#"switchyard_rollout_step_duration_seconds_count{\#(labels)} 2"#))
        #expect(lines.contains(#"switchyard_rollout_step_duration_seconds_sum{\#(labels)} 60.0"#))
        #expect(lines.contains(#"switchyard_rollout_step_duration_seconds_bucket{\#(labels),le="15"} 1"#))
        #expect(lines.contains(#"switchyard_rollout_step_duration_seconds_bucket{\#(labels),le="60"} 2"#))
        #expect(!text.contains(#"switchyard_rollout_step_duration_seconds_count{service="web",environment="stage"}"#))
        #expect(lines.contains(#"switchyard_rollout_time_to_rollback_seconds_count{\#(labels)} 1"#))
        #expect(lines.contains(#"switchyard_rollout_time_to_rollback_seconds_sum{\#(labels)} 42.5"#))
        #expect(lines.contains(#"switchyard_rollout_time_to_rollback_seconds_bucket{\#(labels),le="30"} 0"#))
        #expect(lines.contains(#"switchyard_rollout_time_to_rollback_seconds_bucket{\#(labels),le="60"} 1"#))
        // Every family has its HELP and TYPE once.
        for name in [RolloutMetrics.rolloutsTotal, RolloutMetrics.rolloutsInProgress, RolloutMetrics.stepDuration, RolloutMetrics.timeToRollback] {
            #expect(text.components(separatedBy: "# TYPE \(name) ").count == 2)
        }
    }

    @Test func labelValuesAreEscaped() {
        let text = RolloutMetrics.text(deployments: [
            RolloutMetrics.Deployment(rolloutID: 1, localID: 1, service: "we\"b", environment: "a\\b", outcome: "promoted",
                                      startedAt: "2026-11-30T06:00:00Z", endedAt: "2026-11-30T06:00:01Z"),
        ], steps: [])
        #expect(text.contains(#"switchyard_rollouts_total{service="we\"b",environment="a\\b",outcome="promoted"} 1"#))
    }
}
