import Foundation
import Glibc
import Testing

/// `deploy run --console` against the real console (`switchyard console` on SQLite, or on a
/// real PostgreSQL): a run replicated under the runner's own ids, every control through the
/// console's API and through the CLI, a console that fails while the rollout carries on (its
/// database down, the console stopped, the token refused), `deploy upload`, `deploy status
/// --watch`, `history`, https, and the run's own flags. Real proxies and rollouts.
/// ConsoleRolloutTests has the rest: an approval from another process, executed rollouts, a
/// console restarted mid-rollout, no console at all, two consoles on one PostgreSQL.
/// Serialized: they measure nothing, but each runs rollouts.
@Suite(.serialized) struct ConsoleReportingTests {
    typealias Output = (status: Int32, output: String, error: String)

    /// `switchyard ARGS` with `token` as the console's token.
    static func switchyard(_ arguments: [String], token: String?) throws -> Output {
        try run("/usr/bin/env", (token.map { ["SWITCHYARD_CONSOLE_TOKEN=\($0)"] } ?? []) + [switchyardBinary] + arguments)
    }

    /// Rows of an SQLite file (a runner's history, or the console's database), through Python's
    /// sqlite3: the tests do not link SQLite.
    static func sqlite(_ path: String, _ sql: String) throws -> [[Any]] {
        let script = "import json, sqlite3, sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))"
        let result = try run("/usr/bin/env", ["python3", "-c", script, path, sql])
        guard result.status == 0 else { throw HarnessError("sqlite \(path): \(result.error)") }
        return (try JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [[Any]] ?? []
    }

    static func ids(_ path: String, _ sql: String) throws -> [Int] { try sqlite(path, sql).compactMap { $0.first as? Int } }

    static func runIdentity(of history: String) throws -> String {
        guard let run = try sqlite(history, "SELECT run FROM rollouts ORDER BY id DESC LIMIT 1").first?.first as? String else {
            throw HarnessError("no rollout in \(history)")
        }
        return run
    }

    /// How many lines of `text` hold `needle`.
    static func lines(_ text: String, containing needle: String) -> Int {
        text.split(separator: "\n").filter { $0.contains(needle) }.count
    }

    /// Waits until a background process printed `text`.
    static func waitForOutput(_ p: ManagedProcess, _ text: String, timeout: Double = 30) throws {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if p.stdout.contains(text) { return }
            if !p.isRunning {
                if p.stdout.contains(text) { return }
                throw HarnessError("it exited without printing \"\(text)\": \(p.stdout)\(p.stderr)")
            }
            usleep(100_000)
        }
        throw HarnessError("no \"\(text)\" within \(timeout)s: \(p.stdout)\(p.stderr)")
    }

    /// The console's id of a run, once it knows it.
    static func consoleRollout(_ console: ConsoleProcess, run: String) throws -> Int {
        let json = try console.waitFor("/api/v1/rollouts?service=web&limit=100", timeout: 30, what: "run \(run) at the console") {
            (($0["rollouts"] as? [[String: Any]]) ?? []).contains { $0["run"] as? String == run }
        }
        let rollouts = (json["rollouts"] as? [[String: Any]]) ?? []
        guard let id = rollouts.first(where: { $0["run"] as? String == run })?["id"] as? Int else { throw HarnessError("run \(run) has no id") }
        return id
    }

    /// The newest rollout of web once it is newer than `previous`.
    static func waitForRollout(_ console: ConsoleProcess, after previous: Int) throws -> Int {
        let json = try console.waitFor("/api/v1/rollouts?service=web", timeout: 60, what: "a rollout of web after #\(previous)") {
            ((($0["rollouts"] as? [[String: Any]])?.first?["id"] as? Int) ?? 0) > previous
        }
        return ((json["rollouts"] as? [[String: Any]])?.first?["id"] as? Int) ?? 0
    }

    /// The answer the rollout gave to a control the console queued.
    static func waitForAnswer(_ console: ConsoleProcess, rollout: Int, control: Int) throws -> String {
        func answer(_ json: [String: Any]) -> String? {
            ((json["controls"] as? [[String: Any]]) ?? []).first { $0["id"] as? Int == control }?["result"] as? String
        }
        let json = try console.waitFor("/api/v1/rollouts/\(rollout)", timeout: 30, what: "the answer to control #\(control)") { answer($0) != nil }
        return answer(json) ?? ""
    }

    /// Where the console keeps its rows: read to see the local ids of events, which its API
    /// answers without them.
    enum ConsoleRecords {
        case sqlite(String)
        case postgres(PostgresServer)

        func eventIDs(run: String) throws -> [Int] {
            let sql = "SELECT events.local_id FROM events JOIN rollouts ON rollouts.id = events.rollout_id WHERE rollouts.run = '\(run)' ORDER BY events.local_id"
            switch self {
            case .sqlite(let path): return try ConsoleReportingTests.ids(path, sql)
            case .postgres(let server): return try server.psql(sql).split(separator: "\n").compactMap { Int($0) }
            }
        }
    }

    /// The console has the run as its local history has it: every step, hook and event under
    /// the runner's local id, the same deployments, the same outcome.
    static func expectReplicated(_ console: ConsoleProcess, _ records: ConsoleRecords, history: String, run: String,
                                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard let row = try sqlite(history, "SELECT id, outcome FROM rollouts WHERE run = '\(run)'").first, let rollout = row.first as? Int else {
            Issue.record("no rollout with run \(run) in \(history)", sourceLocation: sourceLocation)
            return
        }
        // NSNull (JSON's null) and a missing key read the same.
        func text(_ rows: [[Any?]]) -> [String] {
            rows.map { row in row.map { value in value.flatMap { $0 is NSNull ? nil : "\($0)" } ?? "null" }.joined(separator: " | ") }
        }
        let steps = text(try sqlite(history, """
            SELECT steps.id, steps.deployment_id, steps.kind, steps.detail FROM steps JOIN deployments ON deployments.id = steps.deployment_id
            WHERE rollout_id = \(rollout) ORDER BY steps.id
            """))
        let hooks = text(try sqlite(history, "SELECT id, phase, command, exit_code FROM hooks WHERE rollout_id = \(rollout) ORDER BY id"))
        let events = try sqlite(history, "SELECT id, kind, message FROM events WHERE rollout_id = \(rollout) ORDER BY id")
        let deployments = text(try sqlite(history, "SELECT environment, version, outcome FROM deployments WHERE rollout_id = \(rollout) ORDER BY id"))
        #expect(!steps.isEmpty && !hooks.isEmpty && !events.isEmpty, "a run with steps, hooks and events", sourceLocation: sourceLocation)

        let detail = try console.call("GET", "/api/v1/rollouts/\(try consoleRollout(console, run: run))").json
        let stored = (detail["deployments"] as? [[String: Any]]) ?? []
        let storedSteps = stored.flatMap { ($0["steps"] as? [[String: Any]]) ?? [] }.sorted { ($0["local_id"] as? Int ?? 0) < ($1["local_id"] as? Int ?? 0) }
        let storedHooks = stored.flatMap { ($0["hooks"] as? [[String: Any]]) ?? [] }.sorted { ($0["local_id"] as? Int ?? 0) < ($1["local_id"] as? Int ?? 0) }
        #expect(text(storedSteps.map { [$0["local_id"], $0["deployment"], $0["kind"], $0["detail"]] }) == steps, sourceLocation: sourceLocation)
        #expect(text(storedHooks.map { [$0["local_id"], $0["phase"], $0["command"], $0["exit_code"]] }) == hooks, sourceLocation: sourceLocation)
        #expect(text(stored.map { [$0["environment"], $0["version"], $0["outcome"]] }) == deployments, sourceLocation: sourceLocation)
        let storedEvents = ((detail["events"] as? [[String: Any]]) ?? []).map { "\($0["kind"] ?? "") | \($0["message"] ?? "")" }
        #expect(storedEvents == events.map { "\($0[1]) | \($0[2])" }, sourceLocation: sourceLocation)
        #expect(try records.eventIDs(run: run) == events.compactMap { $0.first as? Int }, "events under the runner's ids", sourceLocation: sourceLocation)
        #expect((detail["rollout"] as? [String: Any])?["state"] as? String == row[1] as? String, sourceLocation: sourceLocation)
    }

    static func prodLab() throws -> DeployLab {
        let lab = try DeployLab()
        try lab.environment("prod", pools: [("blue", 1), ("green", 1)], active: "blue", standby: "green")
        return lab
    }

    // MARK: Replication

    @Test func aReportedRunIsStoredUnderTheRunnersIdsAndItsPlanNeverLeavesTheConsole() throws {
        let lab = try Self.prodLab()
        let console = try ConsoleProcess(directory: lab.directory)
        defer { console.stop() }
        let ci = try ConsoleRolloutTests.token(console, "ci", "deployer")
        // A plan may hold secrets (a webhook URL); the marker stands for them.
        let marker = "plan-marker-3b9d0e1f"
        // Weights only: no analysis, so no traffic needed.
        let plan = try lab.writePlan("# \(marker)\n" + lab.prodCanaryPlan(steps: "[ {weight: 20%}, {weight: 50%} ]"))
        let result = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--actor", "github:alice", "--console", console.url,
                                          "--commit", "4f9c2e1", "--ticket", "OPS-142", "--changelog", "Faster checkout"], token: ci)
        #expect(result.status == 0, "\(result)")
        #expect(Self.lines(result.output, containing: "reporting to the console \(console.url) as its rollout #") == 1, "\(result.output)")
        #expect(!result.output.contains("lost the console"), "\(result.output)")
        #expect(result.output.contains("the console has the whole run"), "\(result.output)")
        #expect(!result.output.contains(ci) && !result.error.contains(ci), "the token is never printed")

        let history = "\(lab.directory)/history.sqlite"
        let run = try Self.runIdentity(of: history)
        let database = "\(lab.directory)/console.sqlite"
        try Self.expectReplicated(console, .sqlite(database), history: history, run: run)
        let id = try Self.consoleRollout(console, run: run)
        let change = try console.rollout(id)["change"] as? [String: Any]
        #expect(change?["commit"] as? String == "4f9c2e1" && change?["ticket"] as? String == "OPS-142" && change?["changelog"] as? String == "Faster checkout")

        // The plan went with the first report and the console keeps it...
        let kept = try Self.sqlite(database, "SELECT plan_text FROM rollouts WHERE run = '\(run)'").first?.first as? String
        #expect(kept == (try String(contentsOfFile: plan, encoding: .utf8)))
        // ...but no answer of its API gives it back.
        let deployment = try #require(try console.call("GET", "/api/v1/deployments?service=web").json["deployments"] as? [[String: Any]]).first?["id"] as? Int ?? 0
        let reads = ["/api/v1/rollouts", "/api/v1/rollouts?service=web", "/api/v1/rollouts/\(id)", "/api/v1/deployments?service=web",
                     "/api/v1/deployments?service=web&format=csv", "/api/v1/deployments/\(deployment)", "/api/v1/services", "/api/v1/services/web",
                     "/api/v1/services/web/environments/prod", "/api/v1/plans/web", "/api/v1/statistics?service=web", "/api/v1/events?after=0",
                     "/api/v1/events?after=0&rollout=\(id)", "/api/v1/audit", "/api/v1/tokens", "/api/v1/session", "/api/v1/health"]
        for path in reads {
            let answer = try console.call("GET", path)
            #expect(answer.status == 200, "\(path): \(answer.text)")
            #expect(!answer.text.contains(marker) && !answer.text.contains(ci), "\(path) gives the plan or the token away: \(answer.text)")
        }
        // The feed as server-sent events, from its start (curl stops it after 3 s).
        let stream = try curl(["-N", "--max-time", "3", "-H", "Authorization: Bearer \(consoleAdminToken)", console.url + "/api/v1/events/stream?after=0"])
        #expect(stream.output.contains("event: event") && !stream.output.contains(marker), "\(stream.output)")
        #expect(!console.process.stdout.contains(marker) && !console.process.stderr.contains(marker))
    }

    // MARK: Controls

    @Test func everyControlGoesThroughTheConsolesAPIAndTheCLI() throws {
        let lab = try Self.prodLab()
        let console = try ConsoleProcess(directory: lab.directory)
        defer { console.stop() }
        let ci = try ConsoleRolloutTests.token(console, "ci", "deployer")
        let alice = try ConsoleRolloutTests.token(console, "alice", "approver")
        // An approval and two manual pauses: the rollout moves only when told to (no analysis waits).
        let plan = try lab.writePlan("""
            service: web
            environments:
              - { name: prod, admin: "\(lab.admin("prod"))", strategy: canary, approval: manual, steps: [ {weight: 20%}, {pause: manual}, {weight: 40%}, {pause: manual} ] }
            \(DeployTests.analysis)
            hooks:
              start: [ "\(lab.directory)/start.sh {env} {pool} {version}" ]
            history: \(lab.directory)/history.sqlite
            """)
        let history = "\(lab.directory)/history.sqlite"
        func cli(_ command: [String]) throws -> Output {
            try Self.switchyard(["deploy"] + command + ["--console", console.url, "--service", "web"], token: alice)
        }
        // Waiting up to a minute (the most the console waits) for the rollout's answer: a 200.
        func api(_ id: Int, _ command: String, _ body: String = #"{"wait":60}"#) throws -> (status: Int, json: [String: Any], text: String) {
            try console.call("POST", "/api/v1/rollouts/\(id)/\(command)", body: body, token: alice)
        }

        // The first rollout: approve (CLI), pause (API, answered within its wait: 200), resume
        // (CLI), pause (CLI), resume (API without waiting: 202), an approval nobody waits for
        // (CLI and API), promote (CLI), promote fully (API).
        let first = try ConsoleRolloutTests.runner(lab, plan: plan, version: "v2", console: console.url, token: ci, extra: ["--commit", "4f9c2e1"])
        try lab.waitForEvent(first, "approval_needed")
        let id = try ConsoleRolloutTests.waitForRollout(console)
        let running = try cli(["status"])
        #expect(running.status == 0 && running.output.contains("RUNNING") && running.output.contains("commit 4f9c2e1"), "\(running)")
        let approve = try cli(["approve"])
        #expect(approve.status == 0 && approve.output.contains("rollout #\(id) of web v2: approved prod"), "\(approve)")
        try lab.waitForEvent(first, "paused", after: "at 20%")
        let pause = try api(id, "pause")
        #expect(pause.status == 200 && pause.json["result"] as? String == "paused", "\(pause.text)")
        let resume = try cli(["resume"])
        #expect(resume.status == 0 && resume.output.contains(": resumed"), "\(resume)")
        let pauseAgain = try cli(["pause"])
        #expect(pauseAgain.status == 0 && pauseAgain.output.contains(": paused"), "\(pauseAgain)")
        let queued = try api(id, "resume", #"{"wait":0}"#)
        #expect(queued.status == 202 && !(queued.json["result"] is String), "\(queued.text)")
        let queuedControl = try #require(queued.json["control"] as? Int)
        #expect(try Self.waitForAnswer(console, rollout: id, control: queuedControl) == "resumed")
        // Refused by the rollout: the CLI exits 1, as locally; the API answers 200 with the refusal.
        let unwaited = try cli(["approve"])
        #expect(unwaited.status == 1 && unwaited.output.contains("refused: no environment waits for approval"), "\(unwaited)")
        let unwaitedByAPI = try api(id, "approve")
        #expect(unwaitedByAPI.status == 200 && (unwaitedByAPI.json["result"] as? String ?? "").hasPrefix("refused: no environment waits for approval"),
                "\(unwaitedByAPI.text)")
        let promote = try cli(["promote"])
        #expect(promote.status == 0 && promote.output.contains("skipping to the next step"), "\(promote)")
        try lab.waitForEvent(first, "paused", after: "at 40%")
        let full = try api(id, "promote", #"{"argument":"full","wait":60}"#)
        #expect(full.status == 200 && full.json["result"] as? String == "promoting fully", "\(full.text)")
        #expect(first.waitForExit(timeout: 60) == 0, "\(first.stdout)\(first.stderr)")
        #expect(first.stdout.contains("the console has the whole run"), "\(first.stdout)")
        let done = try ConsoleRolloutTests.waitForState(console, id, ["promoted"], timeout: 30)

        // Each control once in the local history under the console's id, with the answer the console has.
        let local = try Self.sqlite(history, "SELECT console_id, command, result FROM controls WHERE console_id IS NOT NULL ORDER BY console_id")
        #expect(local.map { $0[1] as? String ?? "" } == ["approve", "pause", "resume", "pause", "resume", "approve", "approve", "promote", "promote"],
                "\(local)")
        let answered = ((done["controls"] as? [[String: Any]]) ?? []).map { "\($0["id"] ?? "") \($0["command"] ?? "") \($0["result"] ?? "")" }
        #expect(answered == local.map { "\($0[0]) \($0[1]) \($0[2])" }, "every answer reached the console")
        #expect(((done["controls"] as? [[String: Any]]) ?? []).allSatisfy { $0["actor"] as? String == "alice" })

        // An ended rollout takes no control: 409 from the API; the CLI finds nothing running (exit 2).
        for command in ["approve", "pause", "resume", "promote", "abort"] {
            let late = try api(id, command)
            #expect(late.status == 409 && (late.json["error"] as? String ?? "").contains("promoted"), "\(command): \(late.text)")
        }
        let latePause = try cli(["pause"])
        #expect(latePause.status == 2 && latePause.error.contains("no rollout of web is running"), "\(latePause)")
        let lateAbort = try cli(["abort"])
        #expect(lateAbort.status == 2 && lateAbort.error.contains("already ended: promoted"), "\(lateAbort)")
        for output in [first.stdout, first.stderr, running.output, approve.output, approve.error, promote.output] {
            #expect(!output.contains(ci) && !output.contains(alice), "a token is never printed")
        }

        // The second: approve without waiting (202), promote (API), promote --full (CLI).
        let second = try ConsoleRolloutTests.runner(lab, plan: plan, version: "v3", console: console.url, token: ci, label: "runner-2")
        try lab.waitForEvent(second, "approval_needed")
        let id2 = try Self.waitForRollout(console, after: id)
        let approval = try api(id2, "approve", #"{"wait":0}"#)
        #expect(approval.status == 202, "\(approval.text)")
        #expect(try Self.waitForAnswer(console, rollout: id2, control: try #require(approval.json["control"] as? Int)) == "approved prod")
        try lab.waitForEvent(second, "paused", after: "at 20%")
        let next = try api(id2, "promote")
        #expect(next.status == 200 && next.json["result"] as? String == "skipping to the next step", "\(next.text)")
        try lab.waitForEvent(second, "paused", after: "at 40%")
        let fully = try cli(["promote", "--full"])
        #expect(fully.status == 0 && fully.output.contains("rollout #\(id2) of web v3: promoting fully"), "\(fully)")
        #expect(second.waitForExit(timeout: 60) == 0, "\(second.stdout)\(second.stderr)")
        _ = try ConsoleRolloutTests.waitForState(console, id2, ["promoted"], timeout: 30)

        // The third: abort (CLI); the runner rolls back and ends 1.
        let third = try ConsoleRolloutTests.runner(lab, plan: plan, version: "v4", console: console.url, token: ci, label: "runner-3")
        try lab.waitForEvent(third, "approval_needed")
        let id3 = try Self.waitForRollout(console, after: id2)
        #expect(try cli(["approve"]).status == 0)
        try lab.waitForEvent(third, "paused", after: "at 20%")
        let abort = try cli(["abort"])
        #expect(abort.status == 0 && abort.output.contains("rollout #\(id3) of web v4: rolling back"), "\(abort)")
        #expect(third.waitForExit(timeout: 60) == 1, "\(third.stdout)\(third.stderr)")
        let aborted = try ConsoleRolloutTests.waitForState(console, id3, ["rolled_back"], timeout: 30)
        #expect(((aborted["rollout"] as? [String: Any])?["reason"] as? String ?? "").contains("aborted by alice"), "\(aborted)")
        #expect(try lab.service("prod")["canary"] is NSNull)
        #expect(try api(id3, "abort").status == 409)
    }

    // MARK: A console that fails

    @Test func aConsoleWhoseDatabaseIsDownAnswers503WhileTheRolloutCarriesOnAndCatchesUpAfter() throws {
        let postgres = try PostgresServer.start()
        defer { postgres.stop() }
        let lab = try Self.prodLab()
        let console = try ConsoleProcess(directory: lab.directory, database: postgres.url)
        defer { console.stop() }
        let ci = try ConsoleRolloutTests.token(console, "ci", "deployer")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {pause: manual} ]"))
        // The flush outlasts the outage.
        let runner = try ConsoleRolloutTests.runner(lab, plan: plan, version: "v2", console: console.url, token: ci, extra: ["--flush-timeout", "90"])
        let id = try ConsoleRolloutTests.waitForRollout(console)
        try console.waitFor("/api/v1/rollouts/\(id)", timeout: 30, what: "the manual pause at the console") {
            ((($0["rollout"] as? [String: Any])?["progress"] as? String) ?? "").contains("paused")
        }

        postgres.kill()
        // The console stays up and says to retry.
        let down = try curl(["-o", "/dev/null", "-D", "-", "-H", "Authorization: Bearer \(ci)", console.url + "/api/v1/rollouts"])
        #expect(down.output.hasPrefix("HTTP/1.1 503") && down.output.lowercased().contains("retry-after: 2"), "\(down)")
        try Self.waitForOutput(runner, "lost the console")
        // What the runner saw first depends on the machine's load: the 503, or no answer in time
        // from a console starved of CPU. The console refused its reports with the database's error.
        #expect(console.process.stderr.contains("POST /api/v1/reports: PSQLError"), "\(console.process.stderr)")
        // The rollout goes on without it: promoted here, ended while the console records nothing.
        let promote = try lab.switchyard(["deploy", "promote", plan])
        #expect(promote.status == 0 && promote.output.contains("skipping to the next step"), "\(promote)")
        try lab.waitForEvent(runner, "finished")
        #expect(try Self.sqlite("\(lab.directory)/history.sqlite", "SELECT outcome FROM rollouts").first?.first as? String == "promoted")
        #expect(try console.call("GET", "/api/v1/rollouts/\(id)").status == 503)

        try postgres.restart()
        #expect(runner.waitForExit(timeout: 90) == 0, "\(runner.stdout)\(runner.stderr)")
        #expect(Self.lines(runner.stdout, containing: "lost the console") == 1, "said once: \(runner.stdout)")
        #expect(Self.lines(runner.stdout, containing: "the console is reachable again") == 1, "said once: \(runner.stdout)")
        #expect(runner.stdout.contains("the console has the whole run (its rollout #\(id))"), "\(runner.stdout)")
        #expect(!runner.stdout.contains(postgres.url) && !runner.stderr.contains(postgres.url))
        let history = "\(lab.directory)/history.sqlite"
        try Self.expectReplicated(console, .postgres(postgres), history: history, run: try Self.runIdentity(of: history))
        #expect(try ConsoleRolloutTests.state(console, id) == "promoted")
    }

    @Test func aConsoleRefusingTheTokenIsSaidOnceAndTheRolloutCarriesOn() throws {
        let lab = try Self.prodLab()
        let console = try ConsoleProcess(directory: lab.directory)
        defer { console.stop() }
        let ci = try ConsoleRolloutTests.token(console, "ci", "deployer")
        let watcher = try ConsoleRolloutTests.token(console, "watcher", "viewer")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {weight: 50%} ]"))
        let history = "\(lab.directory)/history.sqlite"

        // 401: a token the console does not know.
        let unknown = "not-the-token-51d2"
        let refused = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--console", console.url], token: unknown)
        #expect(refused.status == 0, "the rollout does not need the console: \(refused)")
        #expect(Self.lines(refused.output, containing: "the console refused (HTTP 401): the token is not known or was revoked") == 1, "said once: \(refused.output)")
        #expect(refused.error.contains("the console does not have all of this run") && refused.error.contains("switchyard deploy upload"), "\(refused.error)")
        #expect(!refused.output.contains(unknown) && !refused.error.contains(unknown))
        // 403: a token that may read but not report.
        let forbidden = try Self.switchyard(["deploy", "run", plan, "--version", "v3", "--console", console.url], token: watcher)
        #expect(forbidden.status == 0, "\(forbidden)")
        #expect(Self.lines(forbidden.output, containing: "the console refused (HTTP 403): watcher has the role viewer, which may not deploy") == 1,
                "said once: \(forbidden.output)")
        #expect(!forbidden.output.contains(watcher) && !forbidden.error.contains(watcher))
        #expect(try Self.sqlite(history, "SELECT outcome FROM rollouts ORDER BY id").map { $0.first as? String } == ["promoted", "promoted"])
        #expect((try console.call("GET", "/api/v1/rollouts?service=web").json["rollouts"] as? [Any])?.isEmpty == true, "the console has neither")

        let status = try Self.switchyard(["deploy", "status", "--console", console.url, "--service", "web"], token: unknown)
        #expect(status.status == 2 && status.error.contains("HTTP 401") && status.error.contains("SWITCHYARD_CONSOLE_TOKEN"), "\(status)")
        let readOnlyUpload = try Self.switchyard(["deploy", "upload", "--console", console.url, "--db", history], token: watcher)
        #expect(readOnlyUpload.status == 2 && Self.lines(readOnlyUpload.output, containing: "not uploaded: the console refused (HTTP 403)") == 2, "\(readOnlyUpload)")
        // With a token that may report, both runs go up.
        let upload = try Self.switchyard(["deploy", "upload", "--console", console.url, "--db", history], token: ci)
        #expect(upload.status == 0 && Self.lines(upload.output, containing: "uploaded as run") == 2, "\(upload)")
        let listed = (try console.call("GET", "/api/v1/rollouts?service=web").json["rollouts"] as? [[String: Any]]) ?? []
        #expect(listed.map { $0["version"] as? String } == ["v3", "v2"] && listed.allSatisfy { $0["state"] as? String == "promoted" }, "\(listed)")
    }

    @Test func aRunTheConsoleMissedIsUploadedLaterAndASecondUploadSendsNothing() throws {
        let lab = try Self.prodLab()
        let port = freePort()
        var console = try ConsoleProcess(directory: lab.directory, listen: "127.0.0.1:\(port)")
        defer { console.stop() }
        let url = console.url
        let ci = try ConsoleRolloutTests.token(console, "ci", "deployer")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {pause: manual} ]"))
        let history = "\(lab.directory)/history.sqlite"
        let runner = try ConsoleRolloutTests.runner(lab, plan: plan, version: "v2", console: url, token: ci, extra: ["--flush-timeout", "1"])
        let id = try ConsoleRolloutTests.waitForRollout(console)
        try console.waitFor("/api/v1/rollouts/\(id)", timeout: 30, what: "the manual pause at the console") {
            ((($0["rollout"] as? [String: Any])?["progress"] as? String) ?? "").contains("paused")
        }
        // The console goes away with the first half of the run; the run ends without it.
        console.kill()
        try Self.waitForOutput(runner, "lost the console")
        #expect(try lab.switchyard(["deploy", "promote", plan]).status == 0)
        #expect(runner.waitForExit(timeout: 60) == 0, "\(runner.stdout)\(runner.stderr)")
        #expect(Self.lines(runner.stdout, containing: "lost the console") == 1, "said once: \(runner.stdout)")
        let run = try Self.runIdentity(of: history)
        #expect(runner.stderr.contains("the console does not have all of this run"), "\(runner.stderr)")
        #expect(runner.stderr.contains("switchyard deploy upload --console \(url) --db \(history) --run \(run)"), "how to upload: \(runner.stderr)")

        let stillDown = try Self.switchyard(["deploy", "upload", "--console", url, "--db", history, "--timeout", "1"], token: ci)
        #expect(stillDown.status == 2 && stillDown.output.contains("not uploaded"), "\(stillDown)")

        console = try ConsoleProcess(directory: lab.directory, listen: "127.0.0.1:\(port)")
        let upload = try Self.switchyard(["deploy", "upload", "--console", url, "--db", history], token: ci)
        #expect(upload.status == 0 && upload.output.contains("uploaded as run \(run), the console's rollout #\(id)"), "the same rollout: \(upload)")
        try Self.expectReplicated(console, .sqlite("\(lab.directory)/console.sqlite"), history: history, run: run)
        let again = try Self.switchyard(["deploy", "upload", "--console", url, "--db", history], token: ci)
        #expect(again.status == 0 && again.output.contains("nothing to upload"), "\(again)")
        let named = try Self.switchyard(["deploy", "upload", "--console", url, "--db", history, "--run", run], token: ci)
        #expect(named.status == 0 && named.output.contains("the console has it already"), "\(named)")
        // Nothing is sent for a run the console acknowledged: with the console gone, both still succeed.
        console.stop()
        let offline = try Self.switchyard(["deploy", "upload", "--console", url, "--db", history, "--timeout", "1"], token: ci)
        #expect(offline.status == 0 && offline.output.contains("nothing to upload"), "\(offline)")
        let offlineNamed = try Self.switchyard(["deploy", "upload", "--console", url, "--db", history, "--run", run, "--timeout", "1"], token: ci)
        #expect(offlineNamed.status == 0 && offlineNamed.output.contains("the console has it already"), "\(offlineNamed)")
    }

    @Test func theAbortOfACrashedRunIsReportedUnderTheSameRun() throws {
        let lab = try Self.prodLab()
        let console = try ConsoleProcess(directory: lab.directory)
        defer { console.stop() }
        let ci = try ConsoleRolloutTests.token(console, "ci", "deployer")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 25%}, {pause: manual} ]", extra: "lock_ttl: 60s"))
        let history = "\(lab.directory)/history.sqlite"
        let runID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
        let runner = try ConsoleRolloutTests.runner(lab, plan: plan, version: "v2", console: console.url, token: ci, extra: ["--run-id", runID])
        try lab.waitForEvent(runner, "paused")
        #expect(runner.stdout.contains("\"run\":\"\(runID)\""), "the started event names the run")
        let id = try Self.consoleRollout(console, run: runID)
        let recorded = try Self.ids(history, "SELECT id FROM events").count
        try console.waitFor("/api/v1/rollouts/\(id)", timeout: 30, what: "every event so far at the console") {
            (($0["events"] as? [Any]) ?? []).count >= recorded
        }
        runner.signal(SIGKILL)
        _ = runner.waitForExit(timeout: 5)

        let abort = try Self.switchyard(["deploy", "abort", plan, "--history", history, "--console", console.url, "--run-id", runID, "--actor", "oncall"],
                                        token: ci)
        #expect(abort.status == 0, "\(abort)")
        #expect(abort.output.contains("the console has the whole run (its rollout #\(id))"), "\(abort.output)")
        #expect(try lab.service("prod")["canary"] is NSNull)
        try Self.expectReplicated(console, .sqlite("\(lab.directory)/console.sqlite"), history: history, run: runID)
        let rollout = try console.rollout(id)
        #expect(rollout["state"] as? String == "rolled_back" && (rollout["reason"] as? String ?? "").contains("aborted by oncall"), "\(rollout)")
        let status = try Self.switchyard(["deploy", "status", "--console", console.url, "--service", "web"], token: ci)
        #expect(status.status == 0 && status.output.contains("ROLLED_BACK"), "\(status)")
    }

    // MARK: Following and listing through the console

    @Test func statusWatchFollowsTheFeedUntilTheEndAndHistoryListsTheDeployments() throws {
        let lab = try Self.prodLab()
        let console = try ConsoleProcess(directory: lab.directory)
        defer { console.stop() }
        let ci = try ConsoleRolloutTests.token(console, "ci", "deployer")
        let alice = try ConsoleRolloutTests.token(console, "alice", "approver")
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {pause: manual} ]"))
        let via = ["--console", console.url, "--service", "web"]
        func watch(_ label: String) throws -> ManagedProcess {
            let p = try ManagedProcess(["deploy", "status", "--watch"] + via, directory: lab.directory, label: label,
                                       launcher: ["/usr/bin/env", "SWITCHYARD_CONSOLE_TOKEN=\(alice)"])
            lab.background.append(p)
            return p
        }

        // Promoted: the watch ends 0.
        let first = try ConsoleRolloutTests.runner(lab, plan: plan, version: "v2", console: console.url, token: ci)
        let id = try ConsoleRolloutTests.waitForRollout(console)
        try lab.waitForEvent(first, "paused")
        let promoted = try watch("watch-1")
        // Shown as it runs, also when its output is not a terminal.
        try Self.waitForOutput(promoted, "rollout #\(id) (run ", timeout: 30)
        #expect(promoted.isRunning)
        #expect(try Self.switchyard(["deploy", "promote"] + via, token: alice).status == 0)
        #expect(first.waitForExit(timeout: 60) == 0, "\(first.stdout)\(first.stderr)")
        #expect(promoted.waitForExit(timeout: 60) == 0, "\(promoted.stdout)\(promoted.stderr)")
        #expect(promoted.stdout.contains("promote requested by alice") && promoted.stdout.contains("PROMOTED"), "\(promoted.stdout)")

        // Rolled back: the watch ends 1.
        let second = try ConsoleRolloutTests.runner(lab, plan: plan, version: "v3", console: console.url, token: ci, label: "runner-2")
        let id2 = try Self.waitForRollout(console, after: id)
        try lab.waitForEvent(second, "paused")
        let rolledBack = try watch("watch-2")
        try Self.waitForOutput(rolledBack, "rollout #\(id2) (run ", timeout: 30)
        let abort = try console.call("POST", "/api/v1/rollouts/\(id2)/abort", body: #"{"wait":60}"#, token: alice)
        #expect(abort.status == 200 && abort.json["result"] as? String == "rolling back", "\(abort.text)")
        #expect(second.waitForExit(timeout: 60) == 1, "\(second.stdout)\(second.stderr)")
        #expect(rolledBack.waitForExit(timeout: 60) == 1, "\(rolledBack.stdout)\(rolledBack.stderr)")
        #expect(rolledBack.stdout.contains("ROLLED_BACK"), "\(rolledBack.stdout)")
        // An ended rollout: at once.
        let ended = try Self.switchyard(["deploy", "status", "--watch"] + via, token: alice)
        #expect(ended.status == 1 && ended.output.contains("ROLLED_BACK"), "\(ended)")

        let listed = try Self.switchyard(["history", "--console", console.url, "--service", "web"], token: alice)
        let rows = listed.output.split(separator: "\n").filter { $0.first?.isNumber == true }
        #expect(listed.status == 0 && rows.count == 2, "\(listed)")
        #expect(rows.first?.contains("v3") == true && rows.first?.contains("rolled_back") == true, "newest first: \(listed.output)")
        #expect(rows.last?.contains("v2") == true && rows.last?.contains("promoted") == true, "\(listed.output)")
        let json = try Self.switchyard(["history", "--console", console.url, "--env", "prod", "--json"], token: alice)
        let deployments = (try? JSONSerialization.jsonObject(with: Data(json.output.utf8))) as? [[String: Any]] ?? []
        #expect(json.status == 0 && deployments.map { "\($0["version"] ?? "") \($0["outcome"] ?? "") \($0["rollout"] ?? "")" } == ["v3 rolled_back \(id2)", "v2 promoted \(id)"],
                "\(json)")
        let elsewhere = try Self.switchyard(["history", "--console", console.url, "--env", "stage", "--json"], token: alice)
        #expect(elsewhere.status == 0 && ((try? JSONSerialization.jsonObject(with: Data(elsewhere.output.utf8))) as? [Any])?.isEmpty == true, "\(elsewhere)")
    }

    // MARK: https

    @Test func anHTTPSConsoleIsVerifiedWithTheGivenCA() throws {
        let lab = try Self.prodLab()
        let pki = try TestPKI(directory: lab.directory, names: ["console"], loopback: ["console"])
        let console = try ConsoleProcess(directory: lab.directory, config: "tls: { cert: \(pki.cert("console")), key: \(pki.key("console")) }\n")
        defer { console.stop() }
        #expect(console.url.hasPrefix("https://127.0.0.1:"))
        // The admin token: the fixture's own calls do not know the test CA.
        let token = consoleAdminToken
        let trusted = try Self.switchyard(["deploy", "status", "--service", "web", "--console", console.url, "--console-ca", pki.ca], token: token)
        #expect(trusted.status == 0 && trusted.output.contains("no rollout of web at the console \(console.url)"), "\(trusted)")

        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {weight: 50%} ]"))
        let reported = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--console", console.url, "--console-ca", pki.ca], token: token)
        #expect(reported.status == 0 && reported.output.contains("the console has the whole run"), "\(reported)")
        let fromEnvironment = try run("/usr/bin/env", ["SWITCHYARD_CONSOLE_TOKEN=\(token)", "SWITCHYARD_CONSOLE_URL=\(console.url)",
                                                       "SWITCHYARD_CONSOLE_CA=\(pki.ca)", switchyardBinary, "history", "--json"])
        let listed = (try? JSONSerialization.jsonObject(with: Data(fromEnvironment.output.utf8))) as? [[String: Any]]
        #expect(fromEnvironment.status == 0 && listed?.map { $0["version"] as? String } == ["v2"], "the console's history: \(fromEnvironment)")

        let untrusted = try Self.switchyard(["deploy", "status", "--service", "web", "--console", console.url], token: token)
        #expect(untrusted.status == 2 && untrusted.error.contains("TLS handshake with 127.0.0.1 failed"), "\(untrusted)")
        let plain = try Self.switchyard(["deploy", "status", "--service", "web", "--console", console.url.replacingOccurrences(of: "https:", with: "http:")],
                                        token: token)
        #expect(plain.status == 2, "plain HTTP to an https console: \(plain)")
    }

    // MARK: The run's own flags

    @Test func runFlagsAreCheckedAndAnExecutedRunDiesWithItsConsole() throws {
        let lab = try Self.prodLab()
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

        // Any parent: when it goes away, the run goes with it.
        let out = "\(lab.directory)/child.out"
        let pidFile = "\(lab.directory)/child.pid"
        let parent = try ManagedProcess([], directory: lab.directory, label: "parent", launcher: [
            "/bin/sh", "-c", "\"$0\" deploy run \(plan) --version v2 --json --die-with-parent >\(out) 2>&1 & echo $! >\(pidFile); "
                + "while ! grep -q '\"event\":\"paused\"' \(out); do sleep 0.1; done; exit 0",
        ])
        #expect(parent.waitForExit(timeout: 60) == 0)
        let child = try #require(pid_t(try waitForFile(pidFile).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(Self.waitUntilGone([child]), "the run died with its parent: \((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        // Killed, it left its canary and lock behind: rolled back for the console's run.
        let cleared = try lab.switchyard(["deploy", "abort", plan])
        #expect(cleared.status == 0, "\(cleared)")

        // A rollout the console executes runs with --die-with-parent: killed with its console.
        let console = try ConsoleProcess(directory: lab.directory, plans: [plan])
        defer { console.stop() }
        let started = try console.call("POST", "/api/v1/rollouts", body: #"{"service":"web","version":"v2"}"#)
        let id = try #require(started.json["id"] as? Int, "\(started.text)")
        try console.waitFor("/api/v1/rollouts/\(id)", timeout: 60, what: "the executed rollout at its manual pause") {
            ((($0["rollout"] as? [String: Any])?["progress"] as? String) ?? "").contains("paused")
        }
        let runs = childProcesses(of: console.process.pid).filter {
            ((try? String(contentsOfFile: "/proc/\($0)/cmdline", encoding: .utf8)) ?? "").contains("die-with-parent")
        }
        #expect(runs.count == 1, "the console's run: \(runs)")
        console.kill()
        #expect(Self.waitUntilGone(runs), "the run died with its console")
    }

    /// Whether the processes are gone (or zombies) within 10 s; the ones left are killed.
    static func waitUntilGone(_ processes: [pid_t]) -> Bool {
        let end = Date().addingTimeInterval(10)
        var alive = processes
        while !alive.isEmpty && Date() < end {
            alive = alive.filter { processState($0).map { $0 != "Z" } ?? false }
            if !alive.isEmpty { usleep(50_000) }
        }
        for pid in alive { kill(pid, SIGKILL) }
        return alive.isEmpty
    }
}
