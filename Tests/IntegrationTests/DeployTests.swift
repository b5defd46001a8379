import Foundation
import Glibc
import Testing

/// Rollouts end to end: real proxies as environments, real instances started and replaced
/// by hook scripts, real load, a real webhook receiver. Serialized: they measure time and load.
@Suite(.serialized) struct DeployTests {
    static let analysis = """
        analysis:
          interval: 1s
          min_requests: 20
          max_error_rate: 5%
          max_error_rate_vs_baseline: 3x
          max_p99: 250ms
          failure_limit: 2
        """

    @Test func goodVersionIsPromotedThroughDevStageAndProd() throws {
        let lab = try DeployLab()
        let dev = try lab.environment("dev", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", preview: true)
        let stage = try lab.environment("stage", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", preview: true)
        try lab.environment("prod", pools: [("blue", 2), ("green", 2)], active: "blue", standby: "green")
        let webhook = try lab.startReceiver(failFirst: 2)
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: dev, admin: "\(lab.admin("dev"))", strategy: bluegreen, watch: 0s, preview_url: "\(dev.url)" }
              - name: stage
                admin: "\(lab.admin("stage"))"
                strategy: bluegreen
                approval: manual
                preview_url: \(stage.url)
                watch: 2s
                keep_previous: 1s
              - name: prod
                admin: "\(lab.admin("prod"))"
                strategy: canary
                steps: [ {weight: 20%}, {pause: 2s}, {weight: 50%}, {pause: 2s} ]
                guard: { max_error_rate: 50%, min_requests: 20, window: 5s }
            \(Self.analysis)
            hooks:
              pre_deploy: [ "touch \(lab.directory)/migrated-{version}" ]
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
              smoke: [ "curl -fsS -H 'X-Preview: letmein' {preview_url}/ | grep -q -- -{version}" ]
              post_deploy: [ "echo deployed {version} to {env}" ]
              retire: [ "echo retiring {pool} in {env}" ]
            notify:
              - { kind: webhook, url: "\(webhook)" }
              - { kind: slack, url: "http://127.0.0.1:\(lab.receiverPort)/slack" }
            history: \(lab.directory)/history.sqlite
            lock_ttl: 15s
            """)
        let check = try lab.switchyard(["deploy", "check", plan, "--connect"])
        defer { for report in lab.stopLoad() where WrkReport(report).connectErrors > 0 { print("wrk connect errors:\n\(report)") } }
        #expect(check.status == 0 && check.output.contains("stage: bluegreen") && check.output.contains("reachable; web active blue"), "\(check.output)")
        for env in ["dev", "stage", "prod"] { try lab.startLoad(env) }
        let rollout = try lab.deployInBackground(plan, version: "v2")
        try lab.waitForEvent(rollout, "approval_needed")
        #expect(try lab.service("stage")["active"] as? String == "blue", "stage must wait for approval")
        let approve = try lab.switchyard(["deploy", "approve", plan, "--actor", "release-manager"])
        #expect(approve.status == 0, "\(approve)")
        let code = rollout.waitForExit(timeout: 240)
        let reports = lab.stopLoad()
        #expect(code == 0, "\(rollout.stdout)\n\(rollout.stderr)")

        for env in ["dev", "stage", "prod"] {
            let service = try lab.service(env)
            #expect(service["active"] as? String == "green", "\(env): \(service)")
            #expect(service["canary"] is NSNull, "\(env): \(service)")
            #expect(try lab.servedBy(env, count: 6).allSatisfy { $0.hasSuffix("-v2") }, "\(env) must serve v2")
        }
        // No request failed while traffic moved (flips, canary steps, promotion).
        for report in reports.filter({ $0.contains("requests in") }) {
            #expect(WrkReport(report).failedRequests == 0, "\(report)")
        }
        // History: one promoted deployment per environment, with analysis steps and hook output.
        let history = try lab.switchyard(["history", "--plan", plan, "--json"])
        let rows = (try JSONSerialization.jsonObject(with: Data(history.output.utf8))) as? [[String: Any]] ?? []
        #expect(Set(rows.map { $0["environment"] as? String ?? "" }) == ["dev", "stage", "prod"])
        #expect(rows.allSatisfy { $0["outcome"] as? String == "promoted" && $0["version"] as? String == "v2" }, "\(rows)")
        let prodID = rows.first { $0["environment"] as? String == "prod" }?["id"] as? Int ?? 0
        let show = try lab.switchyard(["history", "show", "\(prodID)", "--plan", plan, "--json"])
        let detail = (try JSONSerialization.jsonObject(with: Data(show.output.utf8))) as? [String: Any] ?? [:]
        let steps = detail["steps"] as? [[String: Any]] ?? []
        #expect(steps.contains { $0["verdict"] as? String == "pass" && ($0["requests"] as? Int ?? 0) >= 20 }, "\(steps)")
        #expect((detail["hooks"] as? [[String: Any]] ?? []).contains { ($0["output"] as? String ?? "").contains("started g1-v2") })
        let approval = try lab.switchyard(["history", "--plan", plan, "--env", "stage"])
        #expect(approval.output.contains("stage") && !approval.output.contains("prod "))
        // Notifications arrived despite the receiver's first failures, and the URL was never printed.
        usleep(300_000)
        let kinds = lab.webhookEvents.map { $0["event"] as? String ?? "" }
        for kind in ["started", "approval_needed", "step", "promoted", "finished"] { #expect(kinds.contains(kind), "\(kinds)") }
        #expect(!rollout.stdout.contains(webhook) && !rollout.stderr.contains(webhook))
        #expect(!rollout.stdout.contains("\(lab.receiverPort)"), "the receiver's address must not be printed")
        let slack = ((try? String(contentsOfFile: "\(lab.directory)/webhook.log", encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.hasPrefix("/slack ") }
        #expect(slack.contains { $0.contains(#"{"text":"#) && $0.contains("promoted") }, "Slack gets {\"text\": ...}: \(slack)")
        #expect(FileManager.default.fileExists(atPath: "\(lab.directory)/migrated-v2"), "pre_deploy ran once before traffic moved")
        let stageID = rows.first { $0["environment"] as? String == "stage" }?["id"] as? Int ?? 0
        let stageShow = try lab.switchyard(["history", "show", "\(stageID)", "--plan", plan])
        #expect(stageShow.output.contains("retiring blue in stage") && stageShow.output.contains("deployed v2 to stage"), "\(stageShow.output)")
        // Locks were renewed while the rollout ran (lock_ttl 15s: every 5 s), and released everywhere at the end.
        for env in ["dev", "stage", "prod"] {
            #expect(try lab.locks(env).isEmpty)
            let audit = try lab.switchyard(["ctl", "--admin", "\(lab.directory)/\(env)/admin.sock", "audit", "--limit", "200"])
            #expect(audit.output.contains("renew lock") && audit.output.contains("test  unlock"), "\(env): \(audit.output)")
        }
    }

    @Test func badCanaryIsRolledBackByAnalysisWithTheReasonRecordedAndNotified() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let webhook = try lab.startReceiver()
        let plan = try lab.writePlan("""
            service: web
            environments:
              - name: prod
                admin: "\(lab.admin("prod"))"
                strategy: canary
                steps: [ {weight: 40%}, {pause: 10s}, {weight: 50%}, {pause: 10s} ]
                rollback: { gradual: 200ms }
            \(Self.analysis)
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            notify:
              - { kind: slack, url_env: SWITCHYARD_TEST_UNSET_SLACK }
              - { kind: webhook, url: "\(webhook)" }
              - { kind: webhook, url: "http://127.0.0.1:\(freePort())/nobody-listens" }
            history: \(lab.directory)/history.sqlite
            """)
        try lab.startLoad("prod")
        let began = Date()
        let result = try lab.switchyard(["deploy", "run", plan, "--version", "v2-flaky", "--json"])
        _ = lab.stopLoad()
        #expect(result.status == 1, "\(result.output)\(result.error)")
        // A receiver nobody listens on costs retries in the background, bounded at exit.
        #expect(Date().timeIntervalSince(began) < 30)
        #expect(result.output.contains("notify[2] (webhook)") && !result.output.contains("nobody-listens"))
        #expect(result.output.contains("canary down to 20%") && result.output.contains("canary down to 1.25%"), "gradual rollback: \(result.output)")
        let service = try lab.service("prod")
        #expect(service["active"] as? String == "blue")
        #expect(service["canary"] is NSNull)
        #expect(try lab.servedBy("prod", count: 6).allSatisfy { $0.hasSuffix("-v1") })
        let rows = (try JSONSerialization.jsonObject(with: Data(try lab.switchyard(["history", "--plan", plan, "--json"]).output.utf8))) as? [[String: Any]] ?? []
        #expect(rows.first?["outcome"] as? String == "rolled_back")
        #expect((rows.first?["reason"] as? String ?? "").contains("analysis failed 2 time(s): error rate"), "\(rows)")
        usleep(300_000)
        let events = lab.webhookEvents
        #expect(events.contains { $0["event"] as? String == "rolled_back" && ($0["reason"] as? String ?? "").contains("error rate") }, "\(events)")
        #expect(events.contains { $0["event"] as? String == "finished" && $0["outcome"] as? String == "rolled_back" })
        // The receiver whose variable is unset is named by position, never by a URL.
        #expect(result.output.contains("notify[0] (slack): SWITCHYARD_TEST_UNSET_SLACK is not set"))
    }

    @Test func guardInTheProxyTakesAFailingCanaryOutWithinOneSecond() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let plan = try lab.writePlan("""
            service: web
            environments:
              - name: prod
                admin: "\(lab.admin("prod"))"
                strategy: canary
                steps: [ {weight: 50%}, {pause: 30s} ]
                guard: { max_error_rate: 50%, min_requests: 20, window: 5s }
            analysis: { interval: 10s, min_requests: 1000, max_error_rate: 5% }
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            """)
        try lab.startLoad("prod", connections: 1)
        let started = Date()
        let result = try lab.switchyard(["deploy", "run", plan, "--version", "v2-bad", "--json"])
        let reports = lab.stopLoad()
        #expect(result.status == 1, "exit \(result.status): \(result.output)\(result.error)")
        // Well before the orchestrator's own 10 s analysis interval.
        #expect(Date().timeIntervalSince(started) < 10, "\(result.output)")
        #expect(result.output.contains("guard tripped"))
        let audit = try lab.switchyard(["ctl", "--admin", "\(lab.directory)/prod/admin.sock", "audit", "--json"])
        let entries = (try JSONSerialization.jsonObject(with: Data(audit.output.utf8))) as? [[String: Any]] ?? []
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let canarySet = entries.first { $0["action"] as? String == "canary" }.flatMap { formatter.date(from: $0["time"] as? String ?? "") }
        let trip = entries.first { $0["action"] as? String == "guard trip" }
        let tripTime = trip.flatMap { formatter.date(from: $0["time"] as? String ?? "") }
        #expect(trip?["actor"] as? String == "switchyard-guard", "\(entries)")
        #expect(((trip?["after"] as? [String: Any])?["guard_trip"] as? [String: Any])?["reason"] as? String != nil)
        if let canarySet, let tripTime {
            let seconds = tripTime.timeIntervalSince(canarySet)
            print("guard: canary out of rotation \(Int(seconds * 1000)) ms after it took traffic (\(reports.first { $0.contains("Requests/sec") }?.split(separator: "\n").first { $0.contains("Requests/sec") } ?? ""))")
            #expect(seconds < 1.0, "the guard took \(seconds)s")
        } else {
            Issue.record("audit lacks the canary or the trip: \(entries)")
        }
        #expect(try lab.service("prod")["canary"] is NSNull)
        let metrics = try curl(["--unix-socket", "\(lab.directory)/prod/admin.sock", "http://x/metrics"]).output
        #expect(metrics.contains(#"switchyard_canary_guard_trips_total{service="web"} 1"#))
    }

    /// A gradual rollback starts from the weight the proxy gives the canary now: once the
    /// guard took a failing canary out, it must not come back at half its weight.
    @Test func gradualRollbackNeverPutsBackACanaryTheGuardTookOut() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let plan = try lab.writePlan("""
            service: web
            environments:
              - name: prod
                admin: "\(lab.admin("prod"))"
                strategy: canary
                steps: [ {weight: 50%}, {pause: 30s} ]
                guard: { max_error_rate: 50%, min_requests: 20, window: 5s }
                rollback: { gradual: 100ms }
            analysis: { interval: 10s, min_requests: 1000, max_error_rate: 5% }
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            """)
        try lab.startLoad("prod", connections: 1)
        let result = try lab.switchyard(["deploy", "run", plan, "--version", "v2-bad", "--json"])
        _ = lab.stopLoad()
        #expect(result.status == 1, "exit \(result.status): \(result.output)\(result.error)")
        #expect(result.output.contains("guard tripped"), "\(result.output)")
        #expect(!result.output.contains("canary down to"), "the rollback raised the canary again: \(result.output)")
        let audit = try lab.switchyard(["ctl", "--admin", "\(lab.directory)/prod/admin.sock", "audit", "--json"])
        let entries = (try JSONSerialization.jsonObject(with: Data(audit.output.utf8))) as? [[String: Any]] ?? []
        let trip = entries.firstIndex { $0["action"] as? String == "guard trip" }
        #expect(trip != nil, "\(entries)")
        let raised = entries.suffix(from: (trip ?? entries.count - 1) + 1).filter {
            $0["action"] as? String == "canary" && ((($0["after"] as? [String: Any])?["canary"] as? [String: Any])?["weight"] as? String).map { $0 != "0%" } == true
        }
        #expect(raised.isEmpty, "canary changes after the trip: \(raised)")
        #expect(try lab.service("prod")["canary"] is NSNull)
        #expect(try lab.servedBy("prod", count: 6).allSatisfy { $0.hasSuffix("-v1") })
    }

    @Test func blueGreenWhoseSmokeTestFailsNeverFlips() throws {
        let lab = try DeployLab()
        let proxy = try lab.environment("stage", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", preview: true)
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: stage, admin: "\(lab.admin("stage"))", strategy: bluegreen, preview_url: "\(proxy.url)" }
            analysis: { interval: 1s, min_requests: 20, max_error_rate: 5% }
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
              smoke: [ "curl -fsS -H 'X-Preview: letmein' {preview_url}/checkout" ]
            history: \(lab.directory)/history.sqlite
            """)
        let result = try lab.switchyard(["deploy", "run", plan, "--version", "v2-bad"])
        #expect(result.status == 1, "exit \(result.status): \(result.output)\(result.error)")
        #expect(result.output.contains("smoke hook"), "\(result.output)")
        #expect(try lab.service("stage")["active"] as? String == "blue")
        let audit = try lab.switchyard(["ctl", "--admin", "\(lab.directory)/stage/admin.sock", "audit", "--json"])
        #expect(!audit.output.contains("\"flip\""), "no flip may be recorded")
        let rows = (try JSONSerialization.jsonObject(with: Data(try lab.switchyard(["history", "--plan", plan, "--json"]).output.utf8))) as? [[String: Any]] ?? []
        #expect((rows.first?["reason"] as? String ?? "").contains("traffic never moved"))
        let show = try lab.switchyard(["history", "show", "\(rows.first?["id"] as? Int ?? 0)", "--plan", plan])
        #expect(show.output.contains("smoke") && show.output.contains("exit 22"), "curl's exit code and output are kept: \(show.output)")
    }

    @Test func slowBlueGreenIsFlippedBackWhenTheWatchFails() throws {
        let lab = try DeployLab()
        let proxy = try lab.environment("stage", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", preview: true)
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: stage, admin: "\(lab.admin("stage"))", strategy: bluegreen, preview_url: "\(proxy.url)", watch: 20s }
            analysis: { interval: 1s, min_requests: 10, max_p99: 250ms, failure_limit: 2 }
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
              smoke: [ "curl -fsS -H 'X-Preview: letmein' {preview_url}/health" ]
            history: \(lab.directory)/history.sqlite
            """)
        try lab.startLoad("stage", connections: 8)
        let result = try lab.switchyard(["deploy", "run", plan, "--version", "v2-slow"])
        let report = lab.stopLoad().first ?? ""
        #expect(result.status == 1, "exit \(result.status): \(result.output)\(result.error)")
        #expect(result.output.contains("flipped: pool green") && result.output.contains("flipping back to blue"), "\(result.output)")
        #expect(result.output.contains("p99") && result.output.contains("is above 250ms"), "\(result.output)")
        #expect(try lab.service("stage")["active"] as? String == "blue")
        #expect(try lab.servedBy("stage", count: 4).allSatisfy { $0.hasSuffix("-v1") })
        // Slow, not failing: every request was answered, before, during and after the flips.
        #expect(WrkReport(report).failedRequests == 0, "\(report)")
    }

    @Test func rollingUpdateReplacesEveryServerWithoutAFailedRequestAndRestoresOnFailure() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("app", 3)], active: "app", standby: nil)
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: prod, admin: "\(lab.admin("prod"))", strategy: rolling, drain_timeout: 5s }
            \(Self.analysis)
            hooks:
              update: [ "\(lab.directory)/start.sh {env} {pool} {version} {server}" ]
            history: \(lab.directory)/history.sqlite
            """)
        try lab.startLoad("prod", connections: 8)
        let good = try lab.switchyard(["deploy", "run", plan, "--version", "v2"])
        let report = lab.stopLoad().first ?? ""
        #expect(good.status == 0, "\(good.output)\(good.error)")
        #expect(report.contains("requests in"), "\(report)")
        #expect(WrkReport(report).failedRequests == 0, "\(report)")
        let served = Set(try lab.servedBy("prod", count: 30))
        #expect(served == ["a1-v2", "a2-v2", "a3-v2"], "\(served)")

        // A failing version stops at the first server and restores it to the version before.
        try lab.startLoad("prod", connections: 8)
        let bad = try lab.switchyard(["deploy", "run", plan, "--version", "v3-flaky"])
        _ = lab.stopLoad()
        #expect(bad.status == 1, "\(bad.output)")
        #expect(bad.output.contains("restoring a1"), "\(bad.output)")
        // a1 runs v2 again; passive outlier detection may still keep it out for its ejection time.
        let restored = try lab.servedBy("prod", count: 30)
        #expect(!restored.isEmpty && restored.allSatisfy { $0.hasSuffix("-v2") }, "\(restored) \(bad.output)")
        #expect(bad.output.contains("app/a1: v2 in rotation"), "\(bad.output)")
        let servers = ((try lab.status("prod"))["pools"] as? [String: Any]).flatMap { ($0["app"] as? [String: Any])?["servers"] as? [[String: Any]] } ?? []
        #expect(servers.allSatisfy { $0["state"] as? String == "ready" }, "\(servers)")
    }

    @Test func secondRolloutIsRefusedByTheLockAndControlsReachTheRunningOne() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        func plan(_ history: String) -> String {
            lab.prodCanaryPlan(steps: "[ {weight: 10%}, {pause: manual}, {weight: 50%}, {pause: 30s} ]", extra: "git_tag: true", history: "\(history)")
        }
        // The plan's directory is the application's repository: a promoted version is tagged there.
        let git = ["-C", lab.directory, "-c", "user.name=test", "-c", "user.email=test@example.com"]
        _ = try run("/usr/bin/env", ["git", "-C", lab.directory, "init", "-q"])
        _ = try run("/usr/bin/env", ["git"] + git + ["commit", "-q", "--allow-empty", "-m", "app"])
        let first = try lab.writePlan(plan("history.sqlite"))
        let elsewhere = try lab.writePlan(plan("other-runner.sqlite"), name: "other.yaml")
        let rollout = try lab.deployInBackground(first, version: "v2")
        try lab.waitForEvent(rollout, "paused")

        // Another runner (its own history) meets the proxy's lock.
        let second = try lab.switchyard(["deploy", "run", elsewhere, "--version", "v3"])
        #expect(second.status == 2)
        #expect(second.output.contains("prod is locked") && second.output.contains("switchyard-deploy/web")
                && second.output.contains("since") && second.output.contains("rollout of web version v2 by test"), "\(second.output)")
        // The same history knows a rollout is running.
        let third = try lab.switchyard(["deploy", "run", first, "--version", "v3"])
        #expect(third.status == 2 && third.output.contains("is running since"), "\(third.output)")

        #expect(try lab.switchyard(["deploy", "pause", first]).output.contains("paused"))
        #expect(try lab.switchyard(["deploy", "resume", first]).output.contains("resumed"))
        let status = try lab.switchyard(["deploy", "status", first])
        #expect(status.output.contains("RUNNING") && status.output.contains("canary green at 10%"), "\(status.output)")
        let next = try lab.switchyard(["deploy", "promote", first])
        #expect(next.status == 0 && next.output.contains("next step"), "\(next)")
        try lab.waitForEvent(rollout, "step", after: "50%")
        let promote = try lab.switchyard(["deploy", "promote", first, "--full"])
        #expect(promote.status == 0, "\(promote)")
        #expect(rollout.waitForExit(timeout: 30) == 0, "\(rollout.stdout)")
        #expect(try run("/usr/bin/env", ["git", "-C", lab.directory, "tag"]).output.contains("v2"), "\(rollout.stdout)")
        #expect(try lab.service("prod")["active"] as? String == "green")
        let rows = (try JSONSerialization.jsonObject(with: Data(try lab.switchyard(["history", "show", "1", "--plan", first, "--json"]).output.utf8))) as? [String: Any] ?? [:]
        let kinds = (rows["steps"] as? [[String: Any]] ?? []).map { $0["kind"] as? String ?? "" }
        for kind in ["weight", "pause", "resume", "promote"] { #expect(kinds.contains(kind), "\(kinds)") }
    }

    @Test func killedOrchestratorLeavesARecordThatStatusExplainsAndAbortRecovers() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 25%}, {pause: manual} ]", extra: "lock_ttl: 60s"))
        let rollout = try lab.deployInBackground(plan, version: "v2")
        try lab.waitForEvent(rollout, "paused")
        rollout.signal(SIGKILL)
        _ = rollout.waitForExit(timeout: 5)

        let status = try lab.switchyard(["deploy", "status", plan])
        #expect(status.output.contains("CRASHED"), "\(status.output)")
        #expect(status.output.contains("canary green at 25%"), "where traffic is: \(status.output)")
        #expect(status.output.contains("LOCKED by switchyard-deploy/web"), "\(status.output)")
        #expect(status.output.contains("deploy abort"), "what to do: \(status.output)")
        #expect(try lab.switchyard(["deploy", "run", plan, "--version", "v3"]).status == 2, "the lock still holds")

        let abort = try lab.switchyard(["deploy", "abort", plan, "--actor", "oncall"])
        #expect(abort.status == 0, "\(abort.output)\(abort.error)")
        let service = try lab.service("prod")
        #expect(service["canary"] is NSNull && service["active"] as? String == "blue", "\(service)")
        #expect(try lab.locks("prod").isEmpty)
        let after = try lab.switchyard(["deploy", "status", plan])
        #expect(after.output.contains("ROLLED_BACK") && after.output.contains("aborted by oncall"), "\(after.output)")
        // unlock --force is recorded in the proxy's audit trail.
        _ = try lab.switchyard(["ctl", "--admin", "\(lab.directory)/prod/admin.sock", "lock", "--owner", "someone", "--service", "web", "--reason", "stuck"])
        let unlock = try lab.switchyard(["deploy", "unlock", plan, "--force", "--actor", "oncall"])
        #expect(unlock.status == 0 && unlock.output.contains("broke the lock of someone"), "\(unlock.output)")
        let audit = try lab.switchyard(["ctl", "--admin", "\(lab.directory)/prod/admin.sock", "audit", "--json"])
        #expect(audit.output.contains("break lock"))
    }

    /// `deploy promote --full` while the new pool is not healthy yet: the rollout waits for
    /// its health, then promotes at once instead of forgetting the promotion.
    @Test func fullPromotionDuringTheHealthWaitPromotesOnceHealthy() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        // The instances come up 3 s after the start hook returns: the rollout waits for their health meanwhile.
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 10%}, {pause: manual} ]")
            .replacingOccurrences(of: "start: [ \"\(lab.directory)/start.sh {env} {pool} {version}\" ]",
                                  with: "start: [ \"(sleep 3; \(lab.directory)/start.sh {env} {pool} {version}) </dev/null >/dev/null 2>&1 &\" ]"))
        let rollout = try lab.deployInBackground(plan, version: "v2")
        try lab.waitForEvent(rollout, "health", after: "waiting for pool green")
        let promote = try lab.switchyard(["deploy", "promote", plan, "--full"])
        #expect(promote.status == 0 && promote.output.contains("promoting fully"), "\(promote.output)\(promote.error)")
        #expect(rollout.waitForExit(timeout: 60) == 0, "the promotion was forgotten: \(rollout.stdout)")
        if let healthy = rollout.stdout.range(of: "pool green is healthy"), let promoted = rollout.stdout.range(of: "promoted: pool green") {
            #expect(healthy.lowerBound < promoted.lowerBound, "health before promotion: \(rollout.stdout)")
        } else {
            Issue.record("no health or no promotion: \(rollout.stdout)")
        }
        #expect(try lab.service("prod")["active"] as? String == "green")
        #expect(try lab.servedBy("prod", count: 6).allSatisfy { $0.hasSuffix("-v2") })
    }

    /// After `deploy promote --full`, the rest of a rolling update runs without analysis; a
    /// server failing there still rolls back every server already on the new version.
    @Test func rollingUpdateFailingAfterAFullPromotionIsRestored() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("app", 2)], active: "app", standby: nil)
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: prod, admin: "\(lab.admin("prod"))", strategy: rolling, drain_timeout: 5s }
            \(Self.analysis)
            hooks:
              update: [ "test {server}-{version} != a2-v3", "\(lab.directory)/start.sh {env} {pool} {version} {server}" ]
            history: \(lab.directory)/history.sqlite
            """)
        try lab.startLoad("prod")
        let good = try lab.switchyard(["deploy", "run", plan, "--version", "v2"])
        _ = lab.stopLoad()
        #expect(good.status == 0, "\(good.output)\(good.error)")
        // Without load the analysis of a1 never concludes: only the promotion moves the rollout on.
        let rollout = try lab.deployInBackground(plan, version: "v3")
        try lab.waitForEvent(rollout, "analysis", after: "a1")
        let promote = try lab.switchyard(["deploy", "promote", plan, "--full"])
        #expect(promote.status == 0 && promote.output.contains("promoting fully"), "\(promote.output)\(promote.error)")
        #expect(rollout.waitForExit(timeout: 60) == 1, "\(rollout.stdout)")
        #expect(rollout.stdout.contains("restoring a1, a2"), "\(rollout.stdout)")
        #expect(Set(try lab.servedBy("prod", count: 20)) == ["a1-v2", "a2-v2"])
        let servers = ((try lab.status("prod"))["pools"] as? [String: Any]).flatMap { ($0["app"] as? [String: Any])?["servers"] as? [[String: Any]] } ?? []
        #expect(servers.count == 2 && servers.allSatisfy { $0["state"] as? String == "ready" }, "\(servers)")
    }

    /// Abort after a crash uses the rolling strategy's own rollback: the servers the update
    /// reached get the version before through the update hook. A rollback that fails leaves
    /// the rollout crashed with its lock, so abort can be run again.
    @Test func killedRollingUpdateIsRestoredByAbortWhichCanBeRunAgain() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("app", 2)], active: "app", standby: nil)
        let hold = "\(lab.directory)/hold-updates"
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: prod, admin: "\(lab.admin("prod"))", strategy: rolling, drain_timeout: 5s }
            \(Self.analysis)
            hooks:
              update: [ "test ! -e \(hold)", "\(lab.directory)/start.sh {env} {pool} {version} {server}" ]
            history: \(lab.directory)/history.sqlite
            lock_ttl: 60s
            """)
        try lab.startLoad("prod")
        let good = try lab.switchyard(["deploy", "run", plan, "--version", "v2"])
        _ = lab.stopLoad()
        #expect(good.status == 0, "\(good.output)\(good.error)")
        // Without load the analysis of a1 never concludes: the rollout is surely killed there.
        let rollout = try lab.deployInBackground(plan, version: "v3")
        try lab.waitForEvent(rollout, "step", after: "a1: v3 in rotation") // JSON writes / as \/
        rollout.signal(SIGKILL)
        _ = rollout.waitForExit(timeout: 5)
        #expect(try lab.servedBy("prod", count: 20).contains("a1-v3"))

        FileManager.default.createFile(atPath: hold, contents: nil)
        let failed = try lab.switchyard(["deploy", "abort", plan, "--actor", "oncall"])
        #expect(failed.status == 2, "\(failed.output)\(failed.error)")
        #expect(failed.output.contains("restoring a1") && failed.output.contains("stays crashed"), "\(failed.output)")
        let between = try lab.switchyard(["deploy", "status", plan])
        #expect(between.output.contains("CRASHED") && between.output.contains("LOCKED by switchyard-deploy/web"), "\(between.output)")

        try FileManager.default.removeItem(atPath: hold)
        let abort = try lab.switchyard(["deploy", "abort", plan, "--actor", "oncall"])
        #expect(abort.status == 0, "\(abort.output)\(abort.error)")
        #expect(abort.output.contains("app/a1: v2 in rotation") && !abort.output.contains("app/a2"), "only a1 had been reached: \(abort.output)")
        #expect(Set(try lab.servedBy("prod", count: 20)) == ["a1-v2", "a2-v2"])
        let servers = ((try lab.status("prod"))["pools"] as? [String: Any]).flatMap { ($0["app"] as? [String: Any])?["servers"] as? [[String: Any]] } ?? []
        #expect(servers.count == 2 && servers.allSatisfy { $0["state"] as? String == "ready" }, "\(servers)")
        #expect(try lab.locks("prod").isEmpty)
        let after = try lab.switchyard(["deploy", "status", plan])
        #expect(after.output.contains("ROLLED_BACK") && after.output.contains("aborted by oncall"), "\(after.output)")
    }

    @Test func interruptedRolloutRollsBackAndExitsOne() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 30%}, {pause: manual} ]"))
        let rollout = try lab.deployInBackground(plan, version: "v2")
        try lab.waitForEvent(rollout, "paused")
        #expect(try lab.service("prod")["canary"] is [String: Any])
        rollout.signal(SIGTERM) // a cancelled pipeline job
        #expect(rollout.waitForExit(timeout: 15) == 1, "\(rollout.stdout)")
        #expect(try lab.service("prod")["canary"] is NSNull)
        #expect(try lab.locks("prod").isEmpty)
        #expect(rollout.stdout.contains("interrupted by a signal"))
    }

    @Test func httpsAdminWithATokenFromTheEnvironment() throws {
        let lab = try DeployLab()
        let pki = try TestPKI(directory: lab.directory, names: ["admin"])
        try "pipeline 0123456789abcdef0123\n".write(toFile: "\(lab.directory)/tokens", atomically: true, encoding: .utf8)
        let port = freePort()
        // The harness's proxy writes its own listeners; the admin TCP listener is added to its configuration.
        let proxy = try lab.environment("stage", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green",
                                        adminExtra: "  tcp: 127.0.0.1:\(port)\n  tokens_file: \(lab.directory)/tokens\n  tls: { certificates: [{ cert: \(pki.cert("admin")), key: \(pki.key("admin")) }] }\n")
        _ = proxy
        func plan(_ tokenVariable: String) throws -> String {
            try lab.writePlan("""
                service: web
                environments:
                  - name: stage
                    admin: https://127.0.0.1:\(port)
                    ca: \(pki.ca)
                    tls_server_name: admin.test
                    token_env: \(tokenVariable)
                    strategy: bluegreen
                    watch: 0s
                hooks:
                  start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
                history: \(lab.directory)/history.sqlite
                """, name: "\(tokenVariable).yaml")
        }
        setenv("SWITCHYARD_TEST_TOKEN_GOOD", "0123456789abcdef0123", 1)
        setenv("SWITCHYARD_TEST_TOKEN_BAD", "not-the-token", 1)
        let refused = try lab.switchyard(["deploy", "run", try plan("SWITCHYARD_TEST_TOKEN_BAD"), "--version", "v2"])
        #expect(refused.status == 2 && refused.output.contains("401"), "\(refused.output)\(refused.error)")
        let missing = try lab.switchyard(["deploy", "run", try plan("SWITCHYARD_TEST_TOKEN_UNSET"), "--version", "v2"])
        #expect(missing.status == 2 && missing.output.contains("set SWITCHYARD_TEST_TOKEN_UNSET or token_file"), "\(missing.output)")
        let good = try lab.switchyard(["deploy", "run", try plan("SWITCHYARD_TEST_TOKEN_GOOD"), "--version", "v2"])
        #expect(good.status == 0, "\(good.output)\(good.error)")
        #expect(try lab.service("stage")["active"] as? String == "green")
        let audit = try lab.switchyard(["ctl", "--admin", "\(lab.directory)/stage/admin.sock", "audit", "--json"])
        #expect(audit.output.contains("token:pipeline"), "the token's name is the audit actor: \(audit.output)")
    }

    @Test func versionNamesAndTheProgramVersion() throws {
        let lab = try DeployLab()
        let name = try lab.switchyard(["version", "--ticket", "OPS-142", "--module", "api"])
        #expect(name.status == 0)
        #expect(name.output.range(of: #"^OPS-142-api-20\d{12}\n$"#, options: .regularExpression) != nil, "\(name.output)")
        #expect(try lab.switchyard(["version"]).output.hasPrefix("switchyard "))
        #expect(try lab.switchyard(["version", "--ticket", "OPS-142"]).status == 2)
        #expect(try lab.switchyard(["deploy", "run", "/nonexistent.yaml", "--version", "v1"]).status == 2)
    }

    @Test func terminalShowsALiveProgressLine() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 10%}, {pause: 2s} ]"))
        try lab.startLoad("prod")
        // script(1) gives the rollout a terminal, as a person running it has.
        let result = try run("/usr/bin/script", ["-qec", "\(switchyardBinary) deploy run \(plan) --version v2", "\(lab.directory)/typescript"])
        _ = lab.stopLoad()
        #expect(result.status == 0, "\(result.output)")
        let screen = (try? String(contentsOfFile: "\(lab.directory)/typescript", encoding: .utf8)) ?? ""
        #expect(screen.contains("\r\u{1B}[K[#"), "a progress bar redrawn in place")
        #expect(screen.contains("weight 10%") && screen.contains("errors 0.00%") && screen.contains("p99 ") && screen.contains("s left"), "\(screen.suffix(600))")
    }
}
