import Foundation
import Glibc
import Testing

/// Rollouts through environments with several proxies (an HA pair in front of the same
/// pools), rolling updates in batches, bakes and per-environment hooks, end to end: real
/// proxies, real instances replaced by hook scripts, real load. The plan lists the proxies
/// `prod` and `prod-b`; sorted by address, `prod-b` comes first, so it is changed first.
@Suite(.serialized) struct FleetDeployTests {
    /// The canary's weight and the active pool a proxy reports, e.g. "blue 20%".
    static func routing(_ lab: DeployLab, _ proxy: String) throws -> String {
        let service = try lab.service(proxy)
        let weight = (service["canary"] as? [String: Any])?["weight"] as? String ?? "0%"
        return "\(service["active"] as? String ?? "?") \(weight)"
    }

    /// The rollout's changes of the service in a proxy's audit trail, in order: "canary 20%", "flip".
    static func changes(_ lab: DeployLab, _ proxy: String) throws -> [String] {
        try lab.audit(proxy).compactMap { entry -> String? in
            switch entry["action"] as? String {
            case "canary":
                let weight = (((entry["after"] as? [String: Any])?["canary"] as? [String: Any])?["weight"] as? String) ?? "0%"
                return "canary \(weight)"
            case "flip": return "flip to \((entry["after"] as? [String: Any])?["active"] as? String ?? "?")"
            default: return nil
            }
        }
    }

    func canaryPlan(_ lab: DeployLab, steps: String, extra: String = "") throws -> String {
        try lab.writePlan("""
            service: web
            environments:
              - name: prod
                admin: \(lab.admins("prod", count: 2))
                strategy: canary
                steps: \(steps)
            \(extra)
            \(DeployTests.analysis)
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            lock_ttl: 60s
            """)
    }

    @Test func canaryAcrossTwoProxiesUnderLoadKeepsThemInStepAtEveryChange() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 2), ("green", 2)], active: "blue", standby: "green", proxies: 2)
        let plan = try lab.writePlan("""
            service: web
            environments:
              - name: prod
                admin: \(lab.admins("prod", count: 2))
                strategy: canary
                steps: [ {weight: 20%}, {pause: 2s}, {weight: 50%}, {pause: 2s} ]
                guard: { max_error_rate: 50%, min_requests: 20, window: 5s }
            \(DeployTests.analysis)
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            lock_ttl: 6s
            """)
        try lab.startLoad("prod")
        try lab.startLoad("prod-b")
        let rollout = try lab.deployInBackground(plan, version: "v2")
        // Each change the rollout reports is on both proxies already (the next is at least a pause away).
        var seen = 0
        var compared: [String] = []
        let deadline = Date().addingTimeInterval(180)
        while rollout.isRunning && Date() < deadline {
            let acknowledged = rollout.stdout.split(separator: "\n").filter { $0.contains("\"event\":\"step\"") && $0.contains("canary green at") }
            for line in acknowledged.dropFirst(seen) {
                let weight = line.contains("at 20%") ? "20%" : "50%"
                let (a, b) = (try Self.routing(lab, "prod-b"), try Self.routing(lab, "prod"))
                #expect(a == "blue \(weight)" && b == "blue \(weight)", "after the \(weight) step: prod-b \(a), prod \(b)")
                compared.append(weight)
            }
            seen = acknowledged.count
            usleep(50_000)
        }
        let reports = lab.stopLoad().filter { $0.contains("requests in") }
        #expect(rollout.waitForExit(timeout: 5) == 0, "\(rollout.stdout)\(rollout.stderr)")
        #expect(compared == ["20%", "50%"], "\(rollout.stdout)")
        for proxy in ["prod", "prod-b"] {
            #expect(try Self.routing(lab, proxy) == "green 0%", "\(proxy)")
            #expect(try lab.locks(proxy).isEmpty, "\(proxy) unlocked")
        }
        #expect(reports.count == 2)
        for report in reports { #expect(WrkReport(report).failedRequests == 0, "\(report)") }
        // Both proxies took the same changes in the same order.
        let first = try Self.changes(lab, "prod-b")
        #expect(first == ["canary 20%", "canary 50%", "flip to green"], "\(first)")
        #expect(try Self.changes(lab, "prod") == first)
        #expect(try lab.servedBy("prod", count: 6).allSatisfy { $0.hasSuffix("-v2") })
        #expect(try lab.servedBy("prod-b", count: 6).allSatisfy { $0.hasSuffix("-v2") })
        // The history names the proxies; status shows each.
        let show = try lab.switchyard(["history", "show", "1", "--plan", plan, "--json"])
        let detail = (try JSONSerialization.jsonObject(with: Data(show.output.utf8))) as? [String: Any] ?? [:]
        #expect((detail["proxies"] as? String ?? "").contains("prod-b/admin.sock") && (detail["proxies"] as? String ?? "").contains("prod/admin.sock"), "\(detail)")
        let status = try lab.switchyard(["deploy", "status", plan])
        #expect(status.output.contains("2 proxies, in step") && status.output.contains("\(lab.socket("prod-b"))  active green"), "\(status.output)")
    }

    /// Analysis judges the environment's traffic, whichever proxy carries it: here all of it
    /// goes through the second proxy.
    @Test func analysisAddsTheProxiesCountersAndRollsBackBoth() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", proxies: 2)
        let plan = try canaryPlan(lab, steps: "[ {weight: 40%}, {pause: 20s} ]")
        try lab.startLoad("prod")
        // Reading one proxy alone, analysis would see no traffic and wait: a deadline, not a hang.
        let rollout = try lab.deployInBackground(plan, version: "v2-flaky")
        let code = rollout.waitForExit(timeout: 120)
        _ = lab.stopLoad()
        #expect(code == 1, "\(rollout.stdout)\(rollout.stderr)")
        #expect(rollout.stdout.contains("analysis failed 2 time(s): error rate"), "\(rollout.stdout)")
        #expect(try Self.routing(lab, "prod") == "blue 0%" && Self.routing(lab, "prod-b") == "blue 0%")
    }

    @Test func theGuardOfEitherProxyTakesTheCanaryOutOfBoth() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", proxies: 2)
        let plan = try lab.writePlan("""
            service: web
            environments:
              - name: prod
                admin: \(lab.admins("prod", count: 2))
                strategy: canary
                steps: [ {weight: 50%}, {pause: 30s} ]
                guard: { max_error_rate: 50%, min_requests: 20, window: 5s }
            analysis: { interval: 10s, min_requests: 1000, max_error_rate: 5% }
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            """)
        try lab.startLoad("prod", connections: 1)
        let result = try lab.switchyard(["deploy", "run", plan, "--version", "v2-bad", "--json"])
        _ = lab.stopLoad()
        #expect(result.status == 1, "\(result.output)\(result.error)")
        #expect(result.output.contains("guard tripped on \(lab.admin("prod"))".replacingOccurrences(of: "/", with: "\\/")), "\(result.output)")
        #expect(try Self.routing(lab, "prod") == "blue 0%" && Self.routing(lab, "prod-b") == "blue 0%")
        #expect(try lab.audit("prod").contains { $0["action"] as? String == "guard trip" })
        #expect(try Self.changes(lab, "prod-b") == ["canary 50%", "canary 0%"], "the rollout took it out of the other proxy")
    }

    /// Someone takes one proxy's lock from the rollout: the step that raises the canary
    /// changes the first proxy, is refused by the second, and puts the first back.
    @Test func aProxyRefusingAChangeMidStepIsNamedAndTheOtherIsPutBack() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", proxies: 2)
        let plan = try canaryPlan(lab, steps: "[ {weight: 10%}, {pause: manual}, {weight: 50%}, {pause: manual} ]")
        let rollout = try lab.deployInBackground(plan, version: "v2")
        try lab.waitForEvent(rollout, "paused", timeout: 90)
        #expect(try lab.ctl("prod", ["unlock", "--force", "--service", "web"]).status == 0)
        #expect(try lab.ctl("prod", ["lock", "--owner", "oncall", "--reason", "maintenance"]).status == 0)
        #expect(try lab.switchyard(["deploy", "promote", plan]).status == 0)
        let code = rollout.waitForExit(timeout: 120)
        let output = rollout.stdout.replacingOccurrences(of: "\\/", with: "/")
        // The rollback cannot reach the locked proxy either: the rollout cannot vouch for it.
        #expect(code == 2, "\(output)\(rollout.stderr)")
        #expect(output.contains("prod (\(lab.admin("prod"))) refused PUT /v1/services/web/canary") && output.contains("locked"), "\(output)")
        #expect(output.contains("\(lab.admin("prod-b")) put back to active blue, canary green at 10%"), "\(output)")
        #expect(try Self.changes(lab, "prod-b") == ["canary 10%", "canary 50%", "canary 10%", "canary 0%"], "raised, put back, rolled back")
        #expect(try Self.changes(lab, "prod") == ["canary 10%"], "the refusing proxy never had 50%")
        #expect(try Self.routing(lab, "prod") == "blue 10%", "left as it was, locked by oncall")
        #expect(try Self.routing(lab, "prod-b") == "blue 0%")
    }

    /// A proxy changed by hand is drift: before the rollout nothing starts; during it the
    /// rollout stops, puts the other proxy back and leaves the changed one as it is.
    @Test func driftIsReportedAndNeverOverwritten() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", proxies: 2)
        let plan = try canaryPlan(lab, steps: "[ {weight: 10%}, {pause: manual}, {weight: 50%}, {pause: manual} ]")
        #expect(try lab.ctl("prod-b", ["canary", "web", "--pool", "green", "--weight", "30%"]).status == 0)
        let refused = try lab.switchyard(["deploy", "run", plan, "--version", "v2"])
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains("the proxies disagree") && refused.output.contains("\(lab.admin("prod-b")) has active blue, canary green at 30%"), "\(refused.output)")
        #expect(try Self.changes(lab, "prod") == [] && Self.changes(lab, "prod-b") == ["canary 30%"], "nothing moved")
        let check = try lab.switchyard(["deploy", "check", plan, "--connect"])
        #expect(check.status == 2 && check.output.contains("the proxies disagree (drift)"), "\(check.output)")
        let before = try lab.switchyard(["deploy", "status", plan])
        #expect(before.output.contains("DRIFT"), "\(before.output)")
        #expect(try lab.ctl("prod-b", ["canary", "web", "--weight", "0%"]).status == 0)

        let rollout = try lab.deployInBackground(plan, version: "v2")
        try lab.waitForEvent(rollout, "paused", timeout: 90)
        #expect(try lab.ctl("prod", ["unlock", "--force", "--service", "web"]).status == 0)
        #expect(try lab.ctl("prod", ["canary", "web", "--pool", "green", "--weight", "40%"]).status == 0)
        let code = rollout.waitForExit(timeout: 120)
        let output = rollout.stdout.replacingOccurrences(of: "\\/", with: "/")
        #expect(code == 2, "\(output)")
        #expect(output.contains("drift: proxy \(lab.admin("prod")) has canary green at 40% (expected: canary green at 10%)"), "\(output)")
        #expect(output.contains("was left as it is"), "\(output)")
        #expect(try Self.routing(lab, "prod") == "blue 40%", "the hand-made change stays")
        #expect(try Self.routing(lab, "prod-b") == "blue 0%", "the other proxy is rolled back")
    }

    /// Two services behind the same two proxies, rolled out at the same time: each rollout
    /// takes its service's lock only, so neither waits for nor disturbs the other.
    @Test func twoServicesRollOutInParallelBehindTheSameProxies() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1), ("api-blue", 1), ("api-green", 1), ("spare", 1)], active: "blue",
                            standby: "green", proxies: 2,
                            otherServices: "  api:\n    match: { path_prefix: /api }\n    active: api-blue\n    standby: api-green\n")
        #expect(try run("/bin/sh", ["\(lab.directory)/start.sh", "prod", "api-blue", "v1"]).status == 0)
        // Changes of a third kind all along (a pool no service routes to, which no service lock
        // covers): every proxy's generation keeps moving under both rollouts' conditional changes.
        var churn: [pid_t] = []
        defer { for pid in churn { kill(pid, SIGKILL); var status: Int32 = 0; waitpid(pid, &status, 0) } }
        for proxy in ["prod", "prod-b"] {
            let loop = "i=0; while true; do i=$((i+1)); curl -s -o /dev/null --unix-socket '\(lab.socket(proxy))' -X PUT "
                + "-d \"{\\\"version\\\":\\\"v$i\\\"}\" http://switchyard/v1/pools/spare/version; sleep 0.05; done"
            churn.append(try spawn("/bin/sh", ["-c", loop], stdout: "/dev/null", stderr: "/dev/null"))
        }
        try lab.startLoad("prod", connections: 1)
        try lab.startLoad("prod-b", connections: 1, path: "/api")
        func plan(_ service: String) throws -> String {
            try lab.writePlan("""
                service: \(service)
                environments:
                  - name: prod
                    admin: \(lab.admins("prod", count: 2))
                    strategy: canary
                    steps: [ {weight: 20%}, {pause: manual}, {weight: 50%}, {pause: 2s} ]
                \(DeployTests.analysis)
                hooks:
                  start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
                history: \(lab.directory)/history-\(service).sqlite
                lock_ttl: 60s
                """, name: "\(service).yaml")
        }
        let webPlan = try plan("web"), apiPlan = try plan("api")
        let web = try lab.deployInBackground(webPlan, version: "v2")
        let api = try lab.deployInBackground(apiPlan, version: "v2")
        // Both reach their manual pause, each at 20% and holding its lock, on both proxies at once
        // (neither waited for the other), then go on together.
        try lab.waitForEvent(web, "paused", timeout: 90)
        try lab.waitForEvent(api, "paused", timeout: 90)
        try eventually("both services locked on both proxies", timeout: 30) {
            try ["prod", "prod-b"].allSatisfy { proxy in
                Set(try lab.locks(proxy).compactMap { $0["service"] as? String }) == ["web", "api"]
            }
        }
        #expect(try lab.switchyard(["deploy", "promote", webPlan]).status == 0)
        #expect(try lab.switchyard(["deploy", "promote", apiPlan]).status == 0)
        #expect(web.waitForExit(timeout: 120) == 0, "\(web.stdout)\(web.stderr)")
        #expect(api.waitForExit(timeout: 120) == 0, "\(api.stdout)\(api.stderr)")
        for proxy in ["prod", "prod-b"] {
            let services = (try lab.status(proxy))["services"] as? [String: Any] ?? [:]
            #expect((services["web"] as? [String: Any])?["active"] as? String == "green", "\(proxy): \(services)")
            #expect((services["api"] as? [String: Any])?["active"] as? String == "api-green", "\(proxy): \(services)")
            // Each rollout labelled the pool it moved to with the version, on every proxy.
            let pools = (try lab.status(proxy))["pools"] as? [String: [String: Any]] ?? [:]
            #expect(pools["green"]?["version"] as? String == "v2" && pools["api-green"]?["version"] as? String == "v2", "\(proxy): \(pools)")
            #expect(try lab.locks(proxy).isEmpty)
        }
        let report = lab.stopLoad().joined()
        #expect(!report.contains("Non-2xx") && !report.contains("Socket errors"), "\(report)")
    }

    @Test func killedRolloutIsAbortedOnEveryProxy() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", proxies: 2)
        let plan = try canaryPlan(lab, steps: "[ {weight: 25%}, {pause: manual} ]")
        let rollout = try lab.deployInBackground(plan, version: "v2")
        try lab.waitForEvent(rollout, "paused", timeout: 90)
        rollout.signal(SIGKILL)
        _ = rollout.waitForExit(timeout: 5)
        let status = try lab.switchyard(["deploy", "status", plan])
        #expect(status.output.contains("CRASHED") && status.output.contains("2 proxies, in step"), "\(status.output)")
        for proxy in ["prod", "prod-b"] {
            #expect(status.output.contains("\(lab.socket(proxy))  active blue, canary green at 25%, standby green; LOCKED by switchyard-deploy/web"), "\(status.output)")
        }
        let abort = try lab.switchyard(["deploy", "abort", plan, "--actor", "oncall"])
        #expect(abort.status == 0, "\(abort.output)\(abort.error)")
        for proxy in ["prod", "prod-b"] {
            #expect(try Self.routing(lab, proxy) == "blue 0%", "\(proxy)")
            #expect(try lab.locks(proxy).isEmpty, "\(proxy)")
        }
    }

    @Test func rollingUpdateInBatchesAcrossTwoProxiesNeverEmptiesThePool() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("app", 4)], active: "app", standby: nil, proxies: 2)
        func plan(_ batch: String, name: String) throws -> String {
            try lab.writePlan("""
                service: web
                environments:
                  - { name: prod, admin: \(lab.admins("prod", count: 2)), strategy: rolling, drain_timeout: 5s, batch: \(batch) }
                \(DeployTests.analysis)
                hooks:
                  update: [ "\(lab.directory)/start.sh {env} {pool} {version} {server}" ]
                history: \(lab.directory)/history.sqlite
                """, name: name)
        }
        try lab.startLoad("prod")
        try lab.startLoad("prod-b")
        let halves = try lab.switchyard(["deploy", "run", try plan("50%", name: "halves.yaml"), "--version", "v2"])
        let whole = try lab.switchyard(["deploy", "run", try plan("100%", name: "whole.yaml"), "--version", "v3"])
        let reports = lab.stopLoad().filter { $0.contains("requests in") }
        #expect(halves.status == 0, "\(halves.output)\(halves.error)")
        for server in ["a1", "a2"] { #expect(halves.output.contains("app/\(server): draining (batch 1, 2 of 4)"), "\(halves.output)") }
        for server in ["a3", "a4"] { #expect(halves.output.contains("app/\(server): draining (batch 2, 4 of 4)"), "\(halves.output)") }
        // All four at once would empty the pool: three go, then the last.
        #expect(whole.status == 0, "\(whole.output)\(whole.error)")
        for server in ["a1", "a2", "a3"] { #expect(whole.output.contains("app/\(server): draining (batch 1, 3 of 4)"), "\(whole.output)") }
        #expect(whole.output.contains("app/a4: draining (batch 2, 4 of 4)"), "\(whole.output)")
        #expect(reports.count == 2)
        for report in reports { #expect(WrkReport(report).failedRequests == 0, "\(report)") }
        for proxy in ["prod", "prod-b"] {
            #expect(Set(try lab.servedBy(proxy, count: 30)) == ["a1-v3", "a2-v3", "a3-v3", "a4-v3"], "\(proxy)")
        }
    }

    /// A version that passes its canary but fails while it bakes is flipped back, and the
    /// next environment never starts.
    @Test func aFailedBakePutsThePreviousVersionBackBeforeTheNextEnvironment() throws {
        let lab = try DeployLab()
        try lab.environment("stage", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green", proxies: 2)
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: stage, admin: \(lab.admins("stage", count: 2)), strategy: bluegreen, watch: 0s, bake: 60s }
              - { name: prod, admin: "\(lab.admin("prod"))", strategy: bluegreen, watch: 0s }
            \(DeployTests.analysis)
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            """)
        try lab.startLoad("stage")
        try lab.startLoad("stage-b")
        let rollout = try lab.deployInBackground(plan, version: "v2")
        try lab.waitForEvent(rollout, "analysis", after: "bake: pass", timeout: 90)
        // The new version goes bad under full traffic.
        #expect(try run("/bin/sh", ["\(lab.directory)/start.sh", "stage", "green", "v2-flaky"]).status == 0)
        let code = rollout.waitForExit(timeout: 120)
        _ = lab.stopLoad()
        #expect(code == 1, "\(rollout.stdout)\(rollout.stderr)")
        #expect(rollout.stdout.contains("flipping back to blue") && rollout.stdout.contains("bake: analysis failed"), "\(rollout.stdout)")
        for proxy in ["stage", "stage-b"] { #expect(try Self.routing(lab, proxy) == "blue 0%", "\(proxy)") }
        #expect(try Self.routing(lab, "prod") == "blue 0%")
        #expect(!rollout.stdout.contains("\"environment\":\"prod\""), "prod never started: \(rollout.stdout)")
        let rows = (try JSONSerialization.jsonObject(with: Data(try lab.switchyard(["history", "--plan", plan, "--json"]).output.utf8))) as? [[String: Any]] ?? []
        #expect(rows.count == 1 && rows.first?["outcome"] as? String == "rolled_back" && (rows.first?["reason"] as? String ?? "").contains("bake"), "\(rows)")
    }

    /// Each environment's pre_deploy runs in its turn (after the one before is promoted and
    /// baked), post_promote after its promotion, the top-level pre_deploy once; a failing
    /// pre_deploy stops its environment before anything moves there. The promoted version's
    /// tag is pushed.
    @Test func environmentHooksRunInTheirTurnAndTheTagIsPushed() throws {
        let lab = try DeployLab()
        try lab.environment("dev", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let git = ["-C", lab.directory, "-c", "user.name=test", "-c", "user.email=test@example.com"]
        _ = try run("/usr/bin/env", ["git", "init", "-q", "--bare", "\(lab.directory)/remote.git"])
        _ = try run("/usr/bin/env", ["git", "-C", lab.directory, "init", "-q"])
        for (key, value) in [("user.name", "test"), ("user.email", "test@example.com")] {
            _ = try run("/usr/bin/env", ["git", "-C", lab.directory, "config", key, value])
        }
        _ = try run("/usr/bin/env", ["git"] + git + ["commit", "-q", "--allow-empty", "-m", "app"])
        _ = try run("/usr/bin/env", ["git", "-C", lab.directory, "remote", "add", "origin", "\(lab.directory)/remote.git"])
        let log = "\(lab.directory)/hooks.log"
        let plan = try lab.writePlan("""
            service: web
            environments:
              - name: dev
                admin: "\(lab.admin("dev"))"
                strategy: bluegreen
                watch: 0s
                bake: 2s
                hooks:
                  pre_deploy: "echo migrate {env} {version} >> \(log)"
                  post_promote: "echo promoted {env} {version} >> \(log)"
              - name: prod
                admin: "\(lab.admin("prod"))"
                strategy: bluegreen
                watch: 0s
                hooks:
                  pre_deploy: [ "echo migrate {env} {version} >> \(log)", "test {version} != v3" ]
                  post_promote: "echo promoted {env} {version} >> \(log)"
            \(DeployTests.analysis)
            hooks:
              pre_deploy: "echo once {version} >> \(log)"
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            git_tag: true
            git_push: origin
            """)
        func logged() -> [String] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        try lab.startLoad("dev")
        let good = try lab.switchyard(["deploy", "run", plan, "--version", "v2"])
        #expect(good.status == 0, "\(good.output)\(good.error)")
        #expect(logged() == ["once v2", "migrate dev v2", "promoted dev v2", "migrate prod v2", "promoted prod v2"], "\(logged())")
        if let baked = good.output.range(of: "dev: bake passed"), let prod = good.output.range(of: "prod: bluegreen of v2") {
            #expect(baked.lowerBound < prod.lowerBound, "prod starts after dev's bake: \(good.output)")
        } else {
            Issue.record("no bake or no prod: \(good.output)")
        }
        #expect(good.output.contains("pushed tag v2 to origin"), "\(good.output)")
        #expect(try run("/usr/bin/env", ["git", "-C", "\(lab.directory)/remote.git", "tag"]).output.contains("v2"))

        let failing = try lab.switchyard(["deploy", "run", plan, "--version", "v3"])
        #expect(failing.status == 1, "\(failing.output)")
        #expect(failing.output.contains("pre_deploy hook failed before any traffic moved in prod"), "\(failing.output)")
        #expect(Array(logged().suffix(4)) == ["once v3", "migrate dev v3", "promoted dev v3", "migrate prod v3"], "\(logged())")
        #expect(try Self.routing(lab, "dev") == "blue 0%", "dev runs v3 (flipped back to blue, where v3 went)")
        #expect(try Self.routing(lab, "prod") == "green 0%", "prod keeps v2")
        #expect(!(try run("/usr/bin/env", ["git", "-C", "\(lab.directory)/remote.git", "tag"]).output.contains("v3")))

        // The hotfix path: one environment of the plan, with its own pre_deploy only.
        let hotfix = try lab.switchyard(["deploy", "run", plan, "--version", "v4", "--env", "prod"])
        _ = lab.stopLoad()
        #expect(hotfix.status == 0, "\(hotfix.output)\(hotfix.error)")
        #expect(Array(logged().suffix(3)) == ["once v4", "migrate prod v4", "promoted prod v4"], "\(logged())")
    }
}
