import Foundation
import SwitchyardAdminClient
import SwitchyardConfig
import Testing
@testable import SwitchyardDeploy

@Suite struct PlanTests {
    static let example = """
        service: web
        environments:
          - name: dev
            admin: unix:///run/switchyard-dev/admin.sock
            strategy: bluegreen
            preview_url: http://dev-lb:8080
          - name: stage
            admin: https://stage-lb.internal:9901
            strategy: bluegreen
            approval: manual
            preview_url: http://stage-lb:8080
          - name: prod
            admin: unix:///run/switchyard/admin.sock
            strategy: canary
            steps: [ {weight: 5%}, {pause: 2m}, {weight: 25%}, {pause: 5m}, {weight: 50%}, {pause: manual} ]
            guard: { max_error_rate: 50%, min_requests: 20, window: 10s }
            rollback: { gradual: 10s }
        analysis:
          interval: 30s
          min_requests: 200
          max_error_rate: 1%
          max_error_rate_vs_baseline: 2x
          max_p99: 400ms
          failure_limit: 2
        hooks:
          pre_deploy:  [ "scripts/migrate-db.sh {version}" ]
          start:       [ "scripts/start-instances.sh {env} {pool} {version}" ]
          smoke:       [ "scripts/smoke.sh {preview_url}" ]
          post_deploy: [ ]
        notify:
          - { kind: slack, url_env: SLACK_WEBHOOK_URL }
          - { kind: webhook, url: http://127.0.0.1:9999/hooks/deploy }
        history: .switchyard/history.sqlite
        """

    @Test func aRunCanTakeSomeOfThePlansEnvironmentsInThePlansOrder() throws {
        let plan = try PlanLoader.parse(yaml: Self.example, file: "plan.yaml")
        #expect(try plan.selecting(environments: ["prod", "dev"]).environments.map(\.name) == ["dev", "prod"])
        #expect(try plan.selecting(environments: ["stage"]).environments.map(\.name) == ["stage"])
        do {
            _ = try plan.selecting(environments: ["prod", "qa"])
            Issue.record("an unknown environment is refused")
        } catch {
            #expect(error.description == "plan.yaml has no environment qa; its environments: dev, stage, prod")
        }
    }

    @Test func readsTheExamplePlan() throws {
        let plan = try PlanLoader.parse(yaml: Self.example, file: "plan.yaml")
        #expect(plan.service == "web")
        #expect(plan.environments.map(\.name) == ["dev", "stage", "prod"])
        #expect(plan.environments[1].admin == .tcp(host: "stage-lb.internal", port: 9901, tls: true))
        #expect(plan.environments[1].tokenEnv == "SWITCHYARD_TOKEN_STAGE")
        #expect(plan.environments[1].manualApproval)
        #expect(plan.environments[2].steps == [.weight(500), .pause(.seconds(120)), .weight(2500), .pause(.seconds(300)), .weight(5000), .pause(nil)])
        #expect(plan.environments[2].guardrail == CanaryGuard(maxErrorRate: 5000, minRequests: 20, windowMilliseconds: 10_000))
        #expect(plan.environments[2].rollback == .gradual(interval: .seconds(10)))
        #expect(plan.analysis.maxErrorRate == 100 && plan.analysis.maxErrorRateVsBaseline == 2 && plan.analysis.maxP99 == .milliseconds(400))
        #expect(plan.hooks.preDeploy == ["scripts/migrate-db.sh {version}"])
        #expect(plan.notify.map(\.kind) == [.slack, .webhook])
    }

    @Test func theShippedExamplePlanIsValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let plan = try PlanLoader.load(path: root.appendingPathComponent("conf/rollout.example.yaml").path)
        #expect(plan.environments.count == 3)
    }

    func problems(_ yaml: String) -> [String] {
        do { _ = try PlanLoader.parse(yaml: yaml, file: "p.yaml"); return [] } catch { return error.problems.map(\.description) }
    }

    @Test func reportsEachProblemWithItsLineAndKey() {
        let found = problems("""
            service: web
            environments:
              - name: prod
                admin: tcp://x
                strategy: canary
                steps: [ {weight: 50%}, {weight: 10%}, {wait: 1m} ]
              - name: prod
                admin: unix:///a.sock
                strategy: rolling
                guard: { max_error_rate: 10% }
              - { name: qa, admin: "unix:///a.sock", strategy: rolling }
            hooks:
              start: [ "run {versoin}" ]
            notify:
              - { kind: teams, url: http://x }
            """)
        #expect(found.contains { $0.hasPrefix("p.yaml:4:") && $0.contains("environments[0].admin") && $0.contains("unix:///") })
        #expect(found.contains { $0.contains("steps[1].weight") && $0.contains("weights only rise") })
        #expect(found.contains { $0.contains("steps[2].wait") && $0.contains("unknown key") })
        #expect(found.contains { $0.contains("environments[1].name") && $0.contains("appears twice") })
        #expect(found.contains { $0.contains("environments[1].guard") && $0.contains("strategy: canary") })
        #expect(found.contains { $0.contains("environments[2].admin") && $0.contains("also prod's proxy") })
        #expect(found.contains { $0.contains("{versoin}") })
        #expect(found.contains { $0.contains("notify[0].kind") && $0.contains("slack, webhook or email") })
        #expect(found.contains { $0.contains("analysis") && $0.contains("needs a criterion") })
    }

    @Test func requiresTheEssentials() {
        let found = problems("environments:\n  - { name: dev }\n")
        #expect(found.contains { $0.contains("service: missing") })
        #expect(found.contains { $0.contains("environments[0].admin: missing") })
        #expect(found.contains { $0.contains("environments[0].strategy: missing") })
        #expect(problems("service: web\nenvironments:\n  - { name: dev, admin: 'unix:///a', strategy: canary }\nanalysis: { max_error_rate: 1% }\n")
            .contains { $0.contains("a canary needs steps") })
        #expect(problems("service: web\nenvironments:\n  - { name: dev, admin: 'unix:///a', strategy: bluegreen }\nhooks: { smoke: 'curl {preview_url}' }\n")
            .contains { $0.contains("environments.dev.preview_url") })
    }

    @Test func notifyURLsNeverAppearInProblems() {
        let found = problems("service: web\nenvironments:\n  - { name: dev, admin: 'unix:///a', strategy: bluegreen, watch: 0s }\nnotify:\n  - { kind: slack, url: 'ftp://secret-token@hooks' }\n")
        #expect(!found.isEmpty)
        #expect(!found.joined().contains("secret-token"))
    }

    @Test func versionNamesFollowTicketModuleAndUTCTime() {
        let date = Date(timeIntervalSince1970: 1_795_275_000) // 2026-11-21 15:30:00 UTC
        #expect(VersionName.make(ticket: "OPS-142", module: "api", at: date) == "OPS-142-api-20261121153000")
        #expect(VersionName.isValid("OPS-142-api-20261121153000"))
        #expect(!VersionName.isValid("v1; rm -rf /"))
        #expect(!VersionName.isValid("-rf"))
    }

    @Test func hookValuesAreShellQuoted() {
        #expect(HookRunner.expand("deploy {version} {env}", values: ["version": "v1.2", "env": "prod"]) == "deploy v1.2 prod")
        #expect(HookRunner.expand("echo {preview_url}", values: ["preview_url": "http://x/?a=1&b=$(id)"]) == "echo 'http://x/?a=1&b=$(id)'")
        #expect(HookRunner.expand("echo {pool}", values: ["pool": "it's"]) == "echo 'it'\\''s'")
        #expect(HookRunner.placeholders(in: "a {version} {env} {x y} {}") == ["version", "env"])
    }

    @Test func hooksRunWithOutputExitCodeAndTimeout() {
        let ok = HookRunner.run("echo hello {version}; echo $SWITCHYARD_ENV >&2", values: ["version": "v9", "env": "stage"], timeout: .seconds(5))
        #expect(ok.exitCode == 0 && ok.output.contains("hello v9") && ok.output.contains("stage"))
        #expect(HookRunner.run("exit 7", values: [:], timeout: .seconds(5)).exitCode == 7)
        let slow = HookRunner.run("sleep 5", values: [:], timeout: .milliseconds(300))
        #expect(slow.timedOut && slow.exitCode == 124 && slow.durationMilliseconds < 3000)
        // A background child holding the output open does not hold the hook.
        let background = HookRunner.run("sleep 3 & echo started", values: [:], timeout: .seconds(10))
        #expect(background.exitCode == 0 && background.durationMilliseconds < 2000 && background.output.contains("started"))
        // Nor does one that keeps writing to it (an instance started without redirecting its log).
        let chatty = HookRunner.run("(i=0; while [ $i -lt 300 ]; do echo line; i=$((i+1)); sleep 0.01; done) & exit 3",
                                    values: [:], timeout: .seconds(10))
        #expect(chatty.exitCode == 3 && chatty.durationMilliseconds < 2000, "\(chatty.exitCode) after \(chatty.durationMilliseconds) ms")
    }

    @Test func urlsAndAdminAddressesParse() {
        #expect(DeployPlan.AdminAddress.parse("unix:///run/s.sock") == .unix(path: "/run/s.sock"))
        #expect(DeployPlan.AdminAddress.parse("http://127.0.0.1:9901") == .tcp(host: "127.0.0.1", port: 9901, tls: false))
        #expect(DeployPlan.AdminAddress.parse("unix://relative.sock") == nil)
        #expect(DeployPlan.AdminAddress.parse("https://host") == nil)
        let u = HTTPURL("https://hooks.slack.com/services/T/B/X")
        #expect(u?.host == "hooks.slack.com" && u?.port == 443 && u?.path == "/services/T/B/X" && u?.tls == true)
        #expect(HTTPURL("http://[::1]:8080/x")?.host == "::1")
        #expect(HTTPURL("ftp://x") == nil)
    }
}

@Suite struct AnalysisTests {
    static let metrics = """
        switchyard_pool_responses_total{pool="green",class="2xx"} 950
        switchyard_pool_responses_total{pool="green",class="5xx"} 40
        switchyard_pool_failures_total{pool="green"} 10
        switchyard_pool_request_duration_seconds_bucket{pool="green",le="0.1"} 900
        switchyard_pool_request_duration_seconds_bucket{pool="green",le="0.25"} 980
        switchyard_pool_request_duration_seconds_bucket{pool="green",le="0.5"} 1000
        switchyard_pool_request_duration_seconds_bucket{pool="green",le="+Inf"} 1000
        switchyard_upstream_responses_total{pool="green",server="g1",class="5xx"} 3
        switchyard_service_responses_total{service="web",class="2xx"} 5
        """

    @Test func readsPoolAndServerCountersFromMetrics() {
        let m = MetricsSample(text: Self.metrics)
        #expect(m.pools["green"]?.requests == 1000)
        #expect(m.pools["green"]?.errors == 50)
        #expect(m.servers["green/g1"]?.errors == 3)
        #expect(m.pools["web"] == nil)
    }

    @Test func p99InterpolatesInsideItsBucket() {
        let c = MetricsSample(text: Self.metrics).pools["green"]!
        // Rank 990 lies halfway through the (0.25, 0.5] bucket (980 to 1000).
        #expect(abs(c.quantile(0.99)! - 0.375) < 0.0001)
        #expect(PoolCounters().quantile(0.99) == nil)
    }

    func window(requests: Int, errors: Int) -> PoolCounters {
        PoolCounters(requests: requests, errors: errors, buckets: [(0.1, requests), (.infinity, requests)])
    }

    @Test func fewerThanMinRequestsIsInconclusiveNeverPassOrFail() {
        var criteria = DeployPlan.Analysis()
        criteria.minRequests = 200
        criteria.maxErrorRate = 100
        let a = Analyzer(criteria)
        #expect(a.judge(window(requests: 199, errors: 199), baseline: nil).verdict == .inconclusive)
        #expect(a.judge(window(requests: 0, errors: 0), baseline: nil).verdict == .inconclusive)
        #expect(a.judge(window(requests: 200, errors: 2), baseline: nil).verdict == .pass)
        #expect(a.judge(window(requests: 200, errors: 3), baseline: nil).verdict == .fail)
    }

    @Test func comparesWithTheBaselineInTheSameWindow() {
        var criteria = DeployPlan.Analysis()
        criteria.minRequests = 100
        criteria.maxErrorRateVsBaseline = 2
        let a = Analyzer(criteria)
        // 4% against a 3% baseline passes; 7% does not.
        #expect(a.judge(window(requests: 1000, errors: 40), baseline: window(requests: 1000, errors: 30)).verdict == .pass)
        let failed = a.judge(window(requests: 1000, errors: 70), baseline: window(requests: 1000, errors: 30))
        #expect(failed.verdict == .fail && failed.reasons[0].contains("2.0x the baseline"))
        // A perfect baseline is floored at 0.1%: one error in 1000 is not a failure by ratio alone.
        #expect(a.judge(window(requests: 1000, errors: 1), baseline: window(requests: 1000, errors: 0)).verdict == .pass)
        // Too little baseline traffic: the ratio is not judged.
        #expect(a.judge(window(requests: 1000, errors: 70), baseline: window(requests: 10, errors: 0)).verdict == .pass)
    }

    @Test func slowCanaryFailsOnP99() {
        var criteria = DeployPlan.Analysis()
        criteria.minRequests = 10
        criteria.maxP99 = .milliseconds(400)
        let slow = PoolCounters(requests: 100, errors: 0, buckets: [(0.25, 50), (0.5, 90), (1, 100), (.infinity, 100)])
        let result = Analyzer(criteria).judge(slow, baseline: nil)
        #expect(result.verdict == .fail && result.reasons[0].contains("p99"))
    }
}
