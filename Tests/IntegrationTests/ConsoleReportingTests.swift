import Foundation
import Glibc
import Testing

/// `deploy run --console`: a rollout reports its local history to a console as it goes and
/// takes the console's controls, carries on when the console fails, and leaves what the console
/// could not take for `deploy upload`; the control commands and `history` work through the
/// console. Real proxies, real rollouts, real HTTP — against `ConsoleStandIn`, a stand-in for
/// the console until the real one is merged. Serialized: they measure nothing, but each runs
/// a rollout.
@Suite(.serialized) struct ConsoleReportingTests {
    static let token = "console-token-7f3a9c"

    /// `switchyard ARGS` with the console's token in its environment.
    static func switchyard(_ arguments: [String], token: String? = ConsoleReportingTests.token) throws -> (status: Int32, output: String, error: String) {
        try run("/usr/bin/env", (token.map { ["SWITCHYARD_CONSOLE_TOKEN=\($0)"] } ?? []) + [switchyardBinary] + arguments)
    }

    /// Rows of the local history, through Python's sqlite3 (the test does not link SQLite).
    static func sqlite(_ path: String, _ sql: String) throws -> [[Any]] {
        let script = "import json, sqlite3, sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))"
        let result = try run("/usr/bin/env", ["python3", "-c", script, path, sql])
        guard result.status == 0 else { throw HarnessError("sqlite: \(result.error)") }
        return (try JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [[Any]] ?? []
    }

    static func ids(_ path: String, _ sql: String) throws -> [Int] { try sqlite(path, sql).compactMap { $0.first as? Int } }

    /// The run's rows the stand-in stored are the local history's, with the same local ids.
    static func expectReplicated(_ console: ConsoleStandIn, history: String, run: String) throws {
        guard let rollout = try sqlite(history, "SELECT id FROM rollouts WHERE run = '\(run)'").first?.first as? Int else {
            Issue.record("no rollout with run \(run) in \(history)"); return
        }
        let steps = try ids(history, "SELECT steps.id FROM steps JOIN deployments ON deployments.id = steps.deployment_id WHERE rollout_id = \(rollout) ORDER BY steps.id")
        let events = try ids(history, "SELECT id FROM events WHERE rollout_id = \(rollout) ORDER BY id")
        let hooks = try ids(history, "SELECT id FROM hooks WHERE rollout_id = \(rollout) ORDER BY id")
        #expect(!steps.isEmpty && !events.isEmpty && !hooks.isEmpty)
        #expect(console.ids("steps", of: run) == steps)
        #expect(console.ids("events", of: run) == events)
        #expect(console.ids("hooks", of: run) == hooks)
        let outcome = try sqlite(history, "SELECT outcome FROM rollouts WHERE id = \(rollout)").first?.first as? String
        let reported = (console.run(run)?["report"] as? [String: Any])?["rollout"] as? [String: Any]
        #expect(reported?["outcome"] as? String == outcome)
    }

    static func runIdentity(of history: String) throws -> String {
        guard let run = try sqlite(history, "SELECT run FROM rollouts ORDER BY id DESC LIMIT 1").first?.first as? String else {
            throw HarnessError("no rollout in \(history)")
        }
        return run
    }

    @Test func aReportedRolloutIsFollowedAndControlledThroughTheConsole() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let console = try ConsoleStandIn(directory: "\(lab.directory)/console", token: Self.token)
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: prod, admin: "\(lab.admin("prod"))", strategy: canary, approval: manual, steps: [ {weight: 20%}, {pause: manual} ] }
            \(DeployTests.analysis)
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            """)
        let runner = try ManagedProcess(["deploy", "run", plan, "--version", "v2", "--json", "--actor", "test", "--console", console.url,
                                         "--commit", "4f9c2e1", "--ticket", "OPS-142", "--changelog", "Faster checkout"],
                                        directory: lab.directory, label: "runner", launcher: ["/usr/bin/env", "SWITCHYARD_CONSOLE_TOKEN=\(Self.token)"])
        lab.background.append(runner)
        try lab.waitForEvent(runner, "approval_needed")
        // The console knows the rollout from its first report on.
        try lab.waitForEvent(runner, "notice", after: "reporting to the console")
        let via = ["--console", console.url, "--service", "web"]

        // The approval goes to the console, which hands it to the runner with its next answer.
        let approve = try Self.switchyard(["deploy", "approve"] + via)
        #expect(approve.status == 0 && approve.output.contains("approved prod"), "\(approve)")
        try lab.waitForEvent(runner, "paused")
        let pause = try Self.switchyard(["deploy", "pause"] + via)
        #expect(pause.status == 0 && pause.output.contains(": paused"), "\(pause)")
        let resume = try Self.switchyard(["deploy", "resume"] + via)
        #expect(resume.status == 0 && resume.output.contains("resumed"), "\(resume)")
        let status = try Self.switchyard(["deploy", "status"] + via)
        #expect(status.status == 0 && status.output.contains("RUNNING") && status.output.contains("commit 4f9c2e1"), "\(status)")
        // Refused by the rollout (nothing waits for approval): exit 1, as locally.
        let again = try Self.switchyard(["deploy", "approve"] + via)
        #expect(again.status == 1 && again.output.contains("refused: no environment waits for approval"), "\(again)")
        let promote = try Self.switchyard(["deploy", "promote"] + via)
        #expect(promote.status == 0 && promote.output.contains("skipping to the next step"), "\(promote)")
        #expect(runner.waitForExit(timeout: 60) == 0, "\(runner.stdout)\(runner.stderr)")
        #expect(runner.stdout.contains("the console has the whole run"), "\(runner.stdout)")

        let history = "\(lab.directory)/history.sqlite"
        let run = try Self.runIdentity(of: history)
        try Self.expectReplicated(console, history: history, run: run)
        let stored = console.run(run) ?? [:]
        #expect(stored["plan_text"] as? String == (try String(contentsOfFile: plan, encoding: .utf8)), "the plan went with the first report")
        let change = (stored["report"] as? [String: Any])?["change"] as? [String: Any]
        #expect(change?["commit"] as? String == "4f9c2e1" && change?["ticket"] as? String == "OPS-142" && change?["changelog"] as? String == "Faster checkout")
        // Each control once in the local history, though the stand-in sent each until it saw the answer.
        let controls = try Self.sqlite(history, "SELECT console_id, command, result FROM controls WHERE console_id IS NOT NULL ORDER BY console_id")
        #expect(controls.map { $0[1] as? String ?? "" } == ["approve", "pause", "resume", "approve", "promote"], "\(controls)")
        let answered = (stored["controls"] as? [[String: Any]] ?? []).map { $0["result"] as? String ?? "(none)" }
        #expect(answered == controls.map { $0[2] as? String ?? "" }, "every answer reached the console: \(answered)")

        let watch = try Self.switchyard(["deploy", "status", "--watch"] + via)
        #expect(watch.status == 0 && watch.output.contains("PROMOTED"), "an ended rollout: \(watch)")
        let listed = try Self.switchyard(["history", "--console", console.url, "--service", "web"])
        #expect(listed.status == 0 && listed.output.contains("prod") && listed.output.contains("promoted"), "\(listed)")
        for output in [runner.stdout, runner.stderr, approve.output, approve.error, status.output, listed.output] {
            #expect(!output.contains(Self.token), "the token is never printed")
        }
        #expect(!runner.stdout.contains("lost the console"), "\(runner.stdout)")
    }

    @Test func theRolloutCarriesOnWhileTheConsoleFailsAndCatchesUpAfter() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let console = try ConsoleStandIn(directory: "\(lab.directory)/console")
        console.setDown(true)
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {pause: 3s} ]"))
        // Traffic for the analysis of the pause.
        try lab.startLoad("prod")
        defer { _ = lab.stopLoad() }
        let runner = try ManagedProcess(["deploy", "run", plan, "--version", "v2", "--json", "--actor", "test", "--console", console.url],
                                        directory: lab.directory, label: "runner")
        lab.background.append(runner)
        try lab.waitForEvent(runner, "step", after: "20%")
        #expect(runner.stdout.contains("lost the console"), "\(runner.stdout)")
        console.setDown(false)
        #expect(runner.waitForExit(timeout: 60) == 0, "\(runner.stdout)\(runner.stderr)")
        let lines = runner.stdout.split(separator: "\n")
        #expect(lines.filter { $0.contains("lost the console") }.count == 1, "said once: \(runner.stdout)")
        #expect(lines.filter { $0.contains("reachable again") }.count == 1, "said once: \(runner.stdout)")
        #expect(runner.stdout.contains("the console has the whole run"), "\(runner.stdout)")
        #expect(console.state["failed"] as? Int ?? 0 >= 1)
        let history = "\(lab.directory)/history.sqlite"
        try Self.expectReplicated(console, history: history, run: try Self.runIdentity(of: history))
    }

    @Test func aRunTheConsoleCouldNotTakeIsUploadedLater() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let port = freePort()
        let url = "http://127.0.0.1:\(port)"
        // Weights only: no analysis, so no traffic needed.
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {weight: 50%} ]"))
        let history = "\(lab.directory)/history.sqlite"
        let result = try lab.switchyard(["deploy", "run", plan, "--version", "v2", "--console", url, "--flush-timeout", "1"])
        #expect(result.status == 0, "the rollout does not need the console: \(result.output)\(result.error)")
        #expect(result.output.components(separatedBy: "lost the console").count == 2, "said once: \(result.output)")
        let run = try Self.runIdentity(of: history)
        #expect(result.error.contains("the console does not have all of this run"), "\(result.error)")
        #expect(result.error.contains("switchyard deploy upload --console \(url) --db \(history) --run \(run)"), "how to upload: \(result.error)")

        let stillDown = try lab.switchyard(["deploy", "upload", "--console", url, "--db", history, "--timeout", "1"])
        #expect(stillDown.status == 2 && stillDown.output.contains("not uploaded"), "\(stillDown)")

        let console = try ConsoleStandIn(directory: "\(lab.directory)/console", port: port)
        let upload = try lab.switchyard(["deploy", "upload", "--console", url, "--db", history])
        #expect(upload.status == 0 && upload.output.contains("uploaded as run \(run)"), "\(upload)")
        try Self.expectReplicated(console, history: history, run: run)
        let again = try lab.switchyard(["deploy", "upload", "--console", url, "--db", history])
        #expect(again.status == 0 && again.output.contains("nothing to upload"), "\(again)")
        let reports = console.state["reports"] as? Int ?? 0
        let named = try lab.switchyard(["deploy", "upload", "--console", url, "--db", history, "--run", run])
        #expect(named.status == 0 && named.output.contains("the console has it already"), "\(named)")
        #expect(console.state["reports"] as? Int == reports, "an acknowledged run is not sent again")
    }

    @Test func aConsoleRefusingTheTokenIsSaidOnceAndTheRolloutCarriesOn() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let console = try ConsoleStandIn(directory: "\(lab.directory)/console", token: Self.token)
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {weight: 50%} ]"))
        let result = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--console", console.url], token: "not-the-token-51d2")
        #expect(result.status == 0, "\(result.output)\(result.error)")
        #expect(result.output.components(separatedBy: "refused (HTTP 401): the token is not valid").count == 2, "said once: \(result.output)")
        #expect(result.error.contains("switchyard deploy upload"), "\(result.error)")
        #expect(!result.output.contains("not-the-token-51d2") && !result.error.contains("not-the-token-51d2"))
        let status = try Self.switchyard(["deploy", "status", "--console", console.url, "--service", "web"], token: "not-the-token-51d2")
        #expect(status.status == 2 && status.error.contains("HTTP 401") && status.error.contains("SWITCHYARD_CONSOLE_TOKEN"), "\(status)")
    }

    @Test func theAbortOfACrashedRunIsReportedUnderTheSameRun() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let console = try ConsoleStandIn(directory: "\(lab.directory)/console", token: Self.token)
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 25%}, {pause: manual} ]", extra: "lock_ttl: 60s"))
        let history = "\(lab.directory)/history.sqlite"
        let runID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
        let runner = try ManagedProcess(["deploy", "run", plan, "--version", "v2", "--json", "--actor", "test", "--console", console.url,
                                         "--run-id", runID],
                                        directory: lab.directory, label: "runner", launcher: ["/usr/bin/env", "SWITCHYARD_CONSOLE_TOKEN=\(Self.token)"])
        lab.background.append(runner)
        try lab.waitForEvent(runner, "paused")
        #expect(runner.stdout.contains("\"run\":\"\(runID)\""), "the started event names the run")
        // Until the console has stored the pause.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, console.ids("events", of: runID).count < (try Self.ids(history, "SELECT id FROM events")).count { usleep(100_000) }
        runner.signal(SIGKILL)
        _ = runner.waitForExit(timeout: 5)

        let abort = try Self.switchyard(["deploy", "abort", plan, "--history", history, "--console", console.url, "--run-id", runID, "--actor", "oncall"])
        #expect(abort.status == 0, "\(abort.output)\(abort.error)")
        #expect(abort.output.contains("the console has the whole run"), "\(abort.output)")
        #expect(try lab.service("prod")["canary"] is NSNull)
        try Self.expectReplicated(console, history: history, run: runID)
        let reported = (console.run(runID)?["report"] as? [String: Any])?["rollout"] as? [String: Any]
        #expect(reported?["outcome"] as? String == "rolled_back" && (reported?["reason"] as? String ?? "").contains("aborted by oncall"), "\(reported ?? [:])")
        let status = try Self.switchyard(["deploy", "status", "--console", console.url, "--service", "web"])
        #expect(status.output.contains("ROLLED_BACK"), "\(status)")
    }

    @Test func anHTTPSConsoleIsVerifiedWithTheGivenCA() throws {
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pki = try TestPKI(directory: directory, names: [])
        // The console's certificate names its address.
        for arguments in [
            ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(directory)/console.key",
             "-out", "\(directory)/console.csr", "-subj", "/CN=console"],
            ["x509", "-req", "-in", "\(directory)/console.csr", "-CA", pki.ca, "-CAkey", "\(directory)/ca.key", "-CAcreateserial", "-days", "30",
             "-extfile", "\(directory)/console.ext", "-out", "\(directory)/console.pem"],
        ] {
            try "subjectAltName=IP:127.0.0.1\n".write(toFile: "\(directory)/console.ext", atomically: true, encoding: .utf8)
            let r = try run("/usr/bin/openssl", arguments)
            try #require(r.status == 0, "\(r.error)")
        }
        let console = try ConsoleStandIn(directory: "\(directory)/console", token: Self.token,
                                         tls: ("\(directory)/console.pem", "\(directory)/console.key"))
        let trusted = try Self.switchyard(["deploy", "status", "--service", "web", "--console", console.url, "--console-ca", pki.ca])
        #expect(trusted.status == 0 && trusted.output.contains("no rollout of web at the console \(console.url)"), "\(trusted)")
        let fromEnvironment = try run("/usr/bin/env", ["SWITCHYARD_CONSOLE_TOKEN=\(Self.token)", "SWITCHYARD_CONSOLE_URL=\(console.url)",
                                                       "SWITCHYARD_CONSOLE_CA=\(pki.ca)", switchyardBinary, "history", "--json"])
        let listed = (try? JSONSerialization.jsonObject(with: Data(fromEnvironment.output.utf8))) as? [Any]
        #expect(fromEnvironment.status == 0 && listed?.isEmpty == true, "the console's (empty) history: \(fromEnvironment)")
        let untrusted = try Self.switchyard(["deploy", "status", "--service", "web", "--console", console.url])
        #expect(untrusted.status == 2 && untrusted.error.contains("TLS handshake with 127.0.0.1 failed"), "\(untrusted)")
    }

    @Test func runFlagsAreCheckedAndAnExecutedRunDiesWithItsParent() throws {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {pause: manual} ]"))
        let unknown = try lab.switchyard(["deploy", "run", plan, "--version", "v2", "--env", "qa"])
        #expect(unknown.status == 2 && unknown.error.contains("has no environment qa; its environments: prod"), "\(unknown)")
        let badRun = try lab.switchyard(["deploy", "run", plan, "--version", "v2", "--run-id", "run-1"])
        #expect(badRun.status == 2 && badRun.error.contains("--run-id run-1 is not a UUID"), "\(badRun)")
        let badTime = try lab.switchyard(["deploy", "run", plan, "--version", "v2", "--commit-time", "yesterday"])
        #expect(badTime.status == 2 && badTime.error.contains("--commit-time yesterday is not an ISO 8601 time"), "\(badTime)")
        let orphan = try run("/usr/bin/env", ["SWITCHYARD_PARENT_PID=1", switchyardBinary, "deploy", "run", plan, "--version", "v2", "--die-with-parent"])
        #expect(orphan.status == 2 && orphan.error.contains("the parent process is gone"), "\(orphan)")
        #expect(!FileManager.default.fileExists(atPath: "\(lab.directory)/history.sqlite"), "nothing was started")

        // The parent (a shell standing in for the console) goes away: the run goes with it.
        let out = "\(lab.directory)/child.out"
        let pidFile = "\(lab.directory)/child.pid"
        let parent = try ManagedProcess([], directory: lab.directory, label: "parent", launcher: [
            "/bin/sh", "-c", "\"$0\" deploy run \(plan) --version v2 --json --die-with-parent >\(out) 2>&1 & echo $! >\(pidFile); "
                + "while ! grep -q '\"event\":\"paused\"' \(out); do sleep 0.1; done; exit 0",
        ])
        #expect(parent.waitForExit(timeout: 60) == 0)
        guard let child = pid_t(try waitForFile(pidFile).trimmingCharacters(in: .whitespacesAndNewlines)) else { Issue.record("no pid"); return }
        let end = Date().addingTimeInterval(10)
        var alive = true
        while alive && Date() < end {
            let stat = (try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8)) ?? ""
            alive = !stat.isEmpty && !stat.contains(") Z ")
            if alive { usleep(50_000) }
        }
        #expect(!alive, "the run died with its parent: \((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        if alive { kill(child, SIGKILL) }
    }
}
