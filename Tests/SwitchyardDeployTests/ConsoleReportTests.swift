import Foundation
import SwitchyardAdminClient
import SwitchyardConfig
import SwitchyardConsoleAPI
import Testing
@testable import SwitchyardDeploy

/// What a runner reports to a console, built from its local history: rows above the
/// console's acknowledgements, controls from the console queued once, a run imported from a
/// report reporting the same rows, and histories written before reporting existed.
@Suite struct ConsoleReportTests {
    /// A history file in a directory of its own, removed with the value.
    final class Scratch {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchyard-console-\(UUID().uuidString)").path
        var path: String { "\(directory)/history.sqlite" }
        func history(_ name: String = "history.sqlite") throws -> History { try History(path: "\(directory)/\(name)") }
        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    static let change = ChangeInfo(commit: "4f9c2e1", commitTime: "2026-11-30T09:12:00Z", ticket: "OPS-142", link: "https://git.example.com/c/4f9c2e1",
                                   changelog: "Faster checkout")

    /// A rollout through stage and prod with a step, a hook and events of each, and a lock.
    static func recordRun(_ history: History, run: String = "run-1") -> (rollout: Int, deployments: [Int]) {
        let id = history.startRollout(service: "web", version: "v2", actor: "alice", plan: "deploy/plan.yaml", run: run,
                                      environments: ["stage", "prod"], planText: "service: web\n", change: change)
        history.saveLock(rollout: id, environment: "stage", token: "lock-token-stage")
        history.saveLock(rollout: id, environment: "prod", token: "lock-token-prod")
        var deployments: [Int] = []
        for (environment, strategy) in [("stage", "bluegreen"), ("prod", "canary")] {
            let deployment = history.startDeployment(rollout: id, service: "web", environment: environment, version: "v2", strategy: strategy,
                                                     actor: "alice", pool: "green", previousPool: "blue", previousVersion: "v1")
            deployments.append(deployment)
            history.recordEvent(rollout: id, time: Date(), kind: "environment", environment: environment, message: "\(environment): \(strategy)",
                                fields: #"{"pool":"green"}"#)
            history.recordStep(deployment: deployment, kind: "weight", detail: "canary at 20%", weight: "20%")
            history.recordStep(deployment: deployment, kind: "analysis", detail: "pass",
                               analysis: AnalysisResult(verdict: .pass, requests: 240, errorRate: 0.004, baselineRequests: 900, baselineErrorRate: 0.003,
                                                        p99: 0.120, reasons: []))
            history.recordHook(rollout: id, deployment: deployment, phase: "start", command: "start.sh \(environment) green v2",
                               result: HookResult(exitCode: 0, durationMilliseconds: 812, output: "started g1-v2\n", timedOut: false))
            history.finishDeployment(deployment, outcome: "promoted", reason: nil)
        }
        history.releaseLock(rollout: id, environment: "stage")
        return (id, deployments)
    }

    static func acknowledgingAll(_ report: RunReport, consoleRollout: Int = 41, controls: [ControlOrder] = []) -> ReportAnswer {
        ReportAnswer(rollout: consoleRollout,
                     acknowledged: .init(steps: report.steps.map(\.localId).max() ?? 0, hooks: report.hooks.map(\.localId).max() ?? 0,
                                         events: report.events.map(\.localId).max() ?? 0),
                     controls: controls)
    }

    @Test func aReportCarriesWhatTheConsoleHasNotAcknowledgedAndNothingAgainOnceItHas() throws {
        let scratch = Scratch()
        let history = try scratch.history()
        let (id, deployments) = Self.recordRun(history)
        guard let first = history.report(rollout: id) else { Issue.record("no report"); return }
        #expect(first.run == "run-1" && first.service == "web" && first.version == "v2" && first.actor == "alice" && first.planPath == "deploy/plan.yaml")
        #expect(first.environments == ["stage", "prod"])
        #expect(first.change == Self.change)
        #expect(first.planText == "service: web\n", "the plan goes with the reports until one is acknowledged")
        #expect(first.deployments.map(\.localId) == deployments && first.deployments.allSatisfy { $0.outcome == "promoted" })
        #expect(first.steps.count == 4 && first.hooks.count == 2 && first.events.count == 2)
        let analysis = first.steps.first { $0.verdict == "pass" }
        #expect(analysis?.requests == 240 && analysis?.p99Ms == 120 && analysis?.errorRate == 0.004 && analysis?.baselineErrorRate == 0.003)
        #expect(first.hooks.first?.output == "started g1-v2\n" && first.hooks.first?.exitCode == 0 && first.hooks.first?.durationMs == 812)
        #expect(first.locks == [LockRecord(environment: "prod", token: "lock-token-prod", released: false),
                                LockRecord(environment: "stage", token: "lock-token-stage", released: true)])
        #expect(first.rollout.outcome == "running" && first.controlsAfter == 0 && first.controlResults.isEmpty)

        // The console stored only the first step and hook of each: the rest is sent again, nothing else.
        let partial = ReportAnswer(rollout: 41, acknowledged: .init(steps: first.steps[0].localId, hooks: first.hooks[0].localId, events: 0), controls: [])
        history.acknowledge(partial, to: first, rollout: id)
        guard let second = history.report(rollout: id) else { Issue.record("no report"); return }
        #expect(second.planText == nil, "acknowledged once, the plan is not sent again")
        #expect(second.steps.map(\.localId) == Array(first.steps.map(\.localId).dropFirst()))
        #expect(second.hooks.map(\.localId) == Array(first.hooks.map(\.localId).dropFirst()))
        #expect(second.events == first.events)
        #expect(second.deployments == first.deployments, "deployments are sent whole every time")
        #expect(history.consoleSync(rollout: id).consoleRollout == 41)

        history.acknowledge(Self.acknowledgingAll(first), to: second, rollout: id)
        guard let third = history.report(rollout: id) else { Issue.record("no report"); return }
        #expect(third.steps.isEmpty && third.hooks.isEmpty && third.events.isEmpty && third.planText == nil)

        // What happens next is sent, alone.
        history.recordStep(deployment: deployments[1], kind: "promote", detail: "next step by bob")
        history.recordEvent(rollout: id, time: Date(), kind: "notice", environment: "prod", message: "promoted to the next step by bob", fields: "{}")
        guard let fourth = history.report(rollout: id) else { Issue.record("no report"); return }
        #expect(fourth.steps.map(\.detail) == ["next step by bob"] && fourth.events.map(\.message) == ["promoted to the next step by bob"])
        #expect(fourth.hooks.isEmpty)
    }

    @Test func aReportCarriesOnlyItsOwnRolloutsRowsInBatches() throws {
        let scratch = Scratch()
        let history = try scratch.history()
        let (first, _) = Self.recordRun(history, run: "run-1")
        let (second, _) = Self.recordRun(history, run: "run-2")
        let a = history.report(rollout: first)
        let b = history.report(rollout: second)
        #expect(a?.run == "run-1" && b?.run == "run-2")
        let stepsOfA = Set(a?.steps.map(\.localId) ?? [])
        #expect(stepsOfA.isDisjoint(with: b?.steps.map(\.localId) ?? []))
        #expect(a?.steps.count == 4 && b?.steps.count == 4 && a?.events.count == 2 && b?.events.count == 2)

        let (third, deployments) = Self.recordRun(history, run: "run-3")
        for i in 0..<(History.reportBatch + 10) { history.recordStep(deployment: deployments[0], kind: "weight", detail: "step \(i)") }
        guard let big = history.report(rollout: third) else { Issue.record("no report"); return }
        #expect(big.steps.count == History.reportBatch, "a long run goes in several reports")
        history.acknowledge(Self.acknowledgingAll(big), to: big, rollout: third)
        #expect(history.report(rollout: third)?.steps.count == 14, "the rest follows")
    }

    @Test func controlsFromTheConsoleAreQueuedOnceAndTheirAnswersReported() throws {
        let scratch = Scratch()
        let history = try scratch.history()
        let (id, _) = Self.recordRun(history)
        guard let report = history.report(rollout: id) else { Issue.record("no report"); return }
        let pause = ControlOrder(id: 5, command: "pause", argument: nil, actor: "bob")
        let approve = ControlOrder(id: 6, command: "approve", argument: "prod", actor: "carol")
        #expect(history.acknowledge(Self.acknowledgingAll(report, controls: [pause]), to: report, rollout: id) == [pause])
        // The console sends it again until it sees the answer: queued once all the same.
        #expect(history.acknowledge(Self.acknowledgingAll(report, controls: [pause, approve]), to: report, rollout: id) == [approve])
        #expect(history.acknowledge(Self.acknowledgingAll(report, controls: [pause, approve]), to: report, rollout: id).isEmpty)
        let pending = history.pendingControls(rollout: id)
        #expect(pending.map { $0["command"] as? String } == ["pause", "approve"])
        #expect(pending.map { $0["actor"] as? String } == ["bob", "carol"] && pending.last?["argument"] as? String == "prod")
        #expect(history.report(rollout: id)?.controlsAfter == 6)
        #expect(history.report(rollout: id)?.controlResults.isEmpty == true, "not handled yet")

        // The rollout's housekeeping answers the first; the answer goes with the next report.
        guard let local = pending.first?["id"] as? Int else { Issue.record("no local id"); return }
        history.handleControl(local, result: "paused")
        let results = history.report(rollout: id)?.controlResults ?? []
        #expect(results.map(\.id) == [5] && results.first?.result == "paused")
        // A local control (deploy pause on the runner's machine) is not the console's to hear about.
        _ = history.addControl(rollout: id, command: "resume", argument: nil, actor: "dave")
        #expect(history.report(rollout: id)?.controlResults.map(\.id) == [5])
        #expect(history.refuseConsoleControls(rollout: id) == 0, "a running rollout answers its controls itself")
    }

    @Test func controlsForAnEndedRolloutAreRefused() throws {
        let scratch = Scratch()
        let history = try scratch.history()
        let (id, _) = Self.recordRun(history)
        history.finishRollout(id, outcome: "promoted", reason: nil)
        history.receive([ControlOrder(id: 9, command: "abort", argument: nil, actor: "bob")], rollout: id)
        #expect(history.refuseConsoleControls(rollout: id) == 1)
        let results = history.report(rollout: id)?.controlResults ?? []
        #expect(results.map(\.id) == [9] && results.first?.result == "refused: rollout #\(id) is not running (promoted)")
    }

    @Test func aRunIsAcknowledgedOnlyWhenTheConsoleHasItAsItIs() throws {
        let scratch = Scratch()
        let history = try scratch.history()
        let (id, _) = Self.recordRun(history)
        guard let running = history.report(rollout: id) else { Issue.record("no report"); return }
        history.acknowledge(Self.acknowledgingAll(running), to: running, rollout: id)
        #expect(!history.isAcknowledged(rollout: id), "still running")
        history.finishRollout(id, outcome: "promoted", reason: nil)
        #expect(!history.isAcknowledged(rollout: id), "the console has not seen the end")
        #expect(history.unacknowledgedRollouts() == [id])
        guard let ended = history.report(rollout: id), let everything = history.report(rollout: id, since: History.ConsoleSync()) else {
            Issue.record("no report"); return
        }
        #expect(ended.steps.isEmpty, "only the end is new")
        // The console answers with the highest ids it has, not just those of this report.
        history.acknowledge(Self.acknowledgingAll(everything), to: ended, rollout: id)
        #expect(history.isAcknowledged(rollout: id))
        #expect(history.unacknowledgedRollouts().isEmpty)
        // A later change (an abort after a crash, say) is the console's to hear about again.
        history.markAborted(id, actor: "oncall")
        #expect(!history.isAcknowledged(rollout: id))
    }

    @Test func anImportedRunReportsTheSameRowsWithTheSameLocalIds() throws {
        let scratch = Scratch()
        let runner = try scratch.history("runner.sqlite")
        // Rows of an earlier rollout first, so that the run's ids do not start at 1.
        _ = Self.recordRun(runner, run: "earlier")
        let (id, deployments) = Self.recordRun(runner, run: "run-2")
        runner.receive([ControlOrder(id: 3, command: "pause", argument: nil, actor: "bob")], rollout: id)
        if let control = runner.pendingControls(rollout: id).first?["id"] as? Int { runner.handleControl(control, result: "paused") }
        runner.finishRollout(id, outcome: "crashed", reason: "the orchestrator stopped")
        guard let original = runner.report(rollout: id, since: History.ConsoleSync()) else { Issue.record("no report"); return }
        #expect(original.deployments.map(\.localId) == deployments && deployments.first ?? 0 > 1)
        #expect(original.controlResults.map(\.id) == [3])

        let console = try scratch.history("materialised.sqlite")
        let imported = try console.importRun(original)
        #expect(console.report(rollout: imported, since: History.ConsoleSync()) == original, "the round trip keeps every row and id")
        #expect(console.isAcknowledged(rollout: imported), "the console has what it imported")
        #expect(console.heldLocks(rollout: imported) == ["prod": "lock-token-prod"])

        // What an abort does there is reported above the imported ids.
        let step = console.startDeployment(rollout: imported, service: "web", environment: "dev", version: "v2", strategy: "canary", actor: "x",
                                           pool: nil, previousPool: nil, previousVersion: nil)
        #expect(step > (deployments.max() ?? 0))
        console.recordStep(deployment: deployments[1], kind: "abort", detail: "aborted by oncall after the orchestrator crashed")
        console.markAborted(imported, actor: "oncall")
        guard let after = console.report(rollout: imported) else { Issue.record("no report"); return }
        #expect(after.steps.map(\.detail) == ["aborted by oncall after the orchestrator crashed"])
        #expect(after.steps.first.map { $0.localId > (original.steps.map(\.localId).max() ?? 0) } == true)
        #expect(after.planText == nil && after.hooks.isEmpty && after.events.isEmpty)
        #expect(after.rollout.outcome == "rolled_back")

        // A run is imported once, and never over rows it would collide with.
        #expect(throws: ClientError.self) { try console.importRun(original) }
        var other = original
        other.run = "run-3"
        #expect(throws: ClientError.self) { try console.importRun(other) }
    }

    @Test func emittedEventsAreRecordedWithTheirFields() throws {
        let scratch = Scratch()
        let history = try scratch.history()
        let plan = try PlanLoader.parse(yaml: """
            service: web
            environments:
              - { name: prod, admin: "unix:///nonexistent/admin.sock", strategy: canary, steps: [ {weight: 20%} ] }
            analysis: { max_error_rate: 1% }
            """, file: "plan.yaml")
        let rollout = Rollout(plan: plan, version: "v2", options: .init(actor: "alice", json: true), history: history)
        rollout.emit(.notice, "before the rollout is recorded")
        rollout.rolloutID = history.startRollout(service: "web", version: "v2", actor: "alice", plan: "plan.yaml")
        rollout.currentEnvironment = "prod"
        rollout.emit(.step, "prod: canary at 20%", ["weight": "20%", "step": 1])
        let events = history.events(rollout: rollout.rolloutID)
        #expect(events.count == 1, "an event before the rollout's row has no rollout to belong to")
        #expect(events.first?["kind"] as? String == "step" && events.first?["environment"] as? String == "prod")
        #expect(events.first?["message"] as? String == "prod: canary at 20%")
        #expect(events.first?["fields"] as? String == #"{"step":1,"weight":"20%"}"#)
        #expect(history.report(rollout: rollout.rolloutID)?.events.first?.fields == #"{"step":1,"weight":"20%"}"#)
    }

    @Test func aHistoryFromBeforeReportingIsUpgradedAndItsRunsCanBeReported() throws {
        let scratch = Scratch()
        // The schema of the first release, with a rollout recorded by it.
        do {
            let old = try scratch.history()
            try old.exec("""
                DROP TABLE rollouts; DROP TABLE controls; DROP TABLE steps; DROP TABLE events; DROP TABLE console_sync; DROP TABLE deployments;
                CREATE TABLE deployments (
                    id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, service TEXT NOT NULL, environment TEXT NOT NULL,
                    version TEXT NOT NULL, strategy TEXT NOT NULL, actor TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
                    outcome TEXT NOT NULL, reason TEXT, pool TEXT, previous_pool TEXT, previous_version TEXT);
                CREATE TABLE rollouts (
                    id INTEGER PRIMARY KEY, service TEXT NOT NULL, version TEXT NOT NULL, actor TEXT NOT NULL,
                    plan TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT NOT NULL, reason TEXT,
                    pid INTEGER NOT NULL, host TEXT NOT NULL, heartbeat_at TEXT, environment TEXT, progress TEXT);
                CREATE TABLE steps (
                    id INTEGER PRIMARY KEY, deployment_id INTEGER NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL,
                    detail TEXT NOT NULL, weight TEXT, verdict TEXT, requests INTEGER, error_rate REAL,
                    baseline_error_rate REAL, p99_ms REAL);
                CREATE TABLE controls (
                    id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, command TEXT NOT NULL, argument TEXT,
                    actor TEXT NOT NULL, created_at TEXT NOT NULL, handled_at TEXT, result TEXT);
                INSERT INTO rollouts (service, version, actor, plan, started_at, ended_at, outcome, pid, host)
                    VALUES ('web', 'v1', 'alice', 'plan.yaml', '2026-01-05T10:00:00.000Z', '2026-01-05T10:09:00.000Z', 'promoted', 4242, 'ci-7');
                INSERT INTO deployments (rollout_id, service, environment, version, strategy, actor, started_at, ended_at, outcome)
                    VALUES (1, 'web', 'prod', 'v1', 'canary', 'alice', '2026-01-05T10:00:01.000Z', '2026-01-05T10:09:00.000Z', 'promoted');
                INSERT INTO steps (deployment_id, time, kind, detail) VALUES (1, '2026-01-05T10:01:00.000Z', 'weight', 'canary at 20%');
                INSERT INTO controls (rollout_id, command, actor, created_at) VALUES (1, 'pause', 'bob', '2026-01-05T10:02:00.000Z');
                """)
        }
        let history = try scratch.history()
        for (table, columns) in History.addedColumns {
            let present = Set(history.query("PRAGMA table_info(\(table))").compactMap { $0["name"] as? String })
            #expect(columns.allSatisfy { present.contains($0.name) }, "\(table) gets \(columns.map(\.name))")
        }
        #expect(history.report(rollout: 1) == nil, "a rollout from before runs had an identity has none yet")
        guard let run = history.ensureRun(rollout: 1) else { Issue.record("no run identity"); return }
        #expect(history.ensureRun(rollout: 1) == run, "given once")
        guard let report = history.report(rollout: 1) else { Issue.record("no report"); return }
        #expect(report.environments == ["prod"], "the environments it reached")
        #expect(report.change == nil && report.planText == nil && report.events.isEmpty)
        #expect(report.steps.map(\.detail) == ["canary at 20%"] && report.steps.first?.server == nil)
        #expect(report.rollout.outcome == "promoted" && report.host == "ci-7" && report.pid == 4242)
        #expect(history.unacknowledgedRollouts() == [1])
        // And the upgraded file records new rollouts in full.
        let id = history.startRollout(service: "web", version: "v2", actor: "alice", plan: "plan.yaml", run: "run-new", environments: ["prod"])
        history.recordEvent(rollout: id, time: Date(), kind: "started", environment: nil, message: "rollout", fields: "{}")
        #expect(history.report(rollout: id)?.events.count == 1)
        let deployment = history.startDeployment(rollout: id, service: "web", environment: "prod", version: "v2", strategy: "canary", actor: "alice",
                                                 pool: "green", previousPool: "blue", previousVersion: "v1", proxies: ["unix:///a.sock", "unix:///b.sock"])
        #expect(History.proxies(of: history.deployment(deployment) ?? [:]) == ["unix:///a.sock", "unix:///b.sock"])
        #expect(History.proxies(of: history.deployment(1) ?? [:]) == [], "an old deployment names no proxies")
        // Opening it again changes nothing.
        #expect(throws: Never.self) { _ = try scratch.history() }
    }
}
