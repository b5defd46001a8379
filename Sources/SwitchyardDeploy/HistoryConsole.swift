import Foundation
import SwitchyardAdminClient
import SwitchyardConsoleAPI

/// The history's side of reporting to a console: a run's report is built from the local
/// record (the record stays here; the console holds a replica), the console's answers advance
/// what it has acknowledged (`console_sync`), and the controls it sends are queued in the
/// `controls` table, where the rollout's housekeeping handles them like local ones.
extension History {
    /// How much of one rollout a console has acknowledged.
    public struct ConsoleSync: Equatable, Sendable {
        /// The console's id of the rollout, once it answered.
        public var consoleRollout: Int?
        /// The highest local ids it stored, per kind of row.
        public var steps = 0
        public var hooks = 0
        public var events = 0
        public var planAcknowledged = false
        /// The whole-rollout part of the last acknowledged report (`wholeState`).
        public var acknowledgedState: String?

        public init(consoleRollout: Int? = nil, steps: Int = 0, hooks: Int = 0, events: Int = 0, planAcknowledged: Bool = false,
                    acknowledgedState: String? = nil) {
            self.consoleRollout = consoleRollout; self.steps = steps; self.hooks = hooks; self.events = events
            self.planAcknowledged = planAcknowledged; self.acknowledgedState = acknowledgedState
        }
    }

    /// Rows of one kind per report at most: a long run is uploaded in several reports.
    public static let reportBatch = 500
    /// Hooks carry their output: fewer per report.
    public static let hookBatch = 50

    public func consoleSync(rollout id: Int) -> ConsoleSync {
        guard let row = query("SELECT * FROM console_sync WHERE rollout_id = ?", [.int(id)]).first else { return ConsoleSync() }
        return ConsoleSync(consoleRollout: row["console_rollout"] as? Int, steps: row["steps"] as? Int ?? 0, hooks: row["hooks"] as? Int ?? 0,
                           events: row["events"] as? Int ?? 0, planAcknowledged: (row["plan_acked"] as? Int ?? 0) != 0,
                           acknowledgedState: row["acked_state"] as? String)
    }

    func saveConsoleSync(_ sync: ConsoleSync, rollout id: Int) {
        query("""
            INSERT OR REPLACE INTO console_sync (rollout_id, console_rollout, steps, hooks, events, plan_acked, acked_state)
            VALUES (?,?,?,?,?,?,?)
            """, [.int(id), .int(sync.consoleRollout), .int(sync.steps), .int(sync.hooks), .int(sync.events),
                  .int(sync.planAcknowledged ? 1 : 0), .text(sync.acknowledgedState)])
    }

    // MARK: Reports

    /// Gives a run identity to a rollout recorded before rollouts had one, and returns it.
    @discardableResult
    public func ensureRun(rollout id: Int) -> String? {
        guard let row = rollout(id) else { return nil }
        if let run = row["run"] as? String { return run }
        let run = UUID().uuidString.lowercased()
        query("UPDATE rollouts SET run = ? WHERE id = ? AND run IS NULL", [.text(run), .int(id)])
        return rollout(id)?["run"] as? String
    }

    /// The report of rollout `id`: the rollout row, its deployments, locks and answered console
    /// controls whole, and its steps, hooks and events above what `sync` acknowledged (at
    /// most a batch of each). The plan's text goes with it until a console acknowledged it.
    /// - Parameter sync: what the console has; nil reads it from `console_sync`.
    /// - Returns: nil when no such rollout, or it has no run identity (`ensureRun`).
    public func report(rollout id: Int, since sync: ConsoleSync? = nil) -> RunReport? {
        guard let row = rollout(id), let run = row["run"] as? String else { return nil }
        let sync = sync ?? consoleSync(rollout: id)
        let deployments = self.deployments(rollout: id).compactMap(Self.deploymentRecord)
        var environments: [String] = []
        if let text = row["environments"] as? String, let names = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) {
            environments = names
        } else {
            // Recorded before rollouts named their environments: the ones it reached.
            for deployment in deployments where !environments.contains(deployment.environment) { environments.append(deployment.environment) }
        }
        let change = ChangeInfo(commit: row["commit_sha"] as? String, commitTime: row["commit_time"] as? String, ticket: row["ticket"] as? String,
                                link: row["link"] as? String, changelog: row["changelog"] as? String)
        let steps = query("""
            SELECT steps.* FROM steps JOIN deployments ON steps.deployment_id = deployments.id
            WHERE deployments.rollout_id = ? AND steps.id > ? ORDER BY steps.id LIMIT ?
            """, [.int(id), .int(sync.steps), .int(Self.reportBatch)]).compactMap(Self.stepRecord)
        let hooks = query("SELECT * FROM hooks WHERE rollout_id = ? AND id > ? ORDER BY id LIMIT ?",
                          [.int(id), .int(sync.hooks), .int(Self.hookBatch)]).compactMap(Self.hookRecord)
        let events = query("SELECT * FROM events WHERE rollout_id = ? AND id > ? ORDER BY id LIMIT ?",
                           [.int(id), .int(sync.events), .int(Self.reportBatch)]).compactMap(Self.eventRecord)
        let results = query("""
            SELECT console_id, result, handled_at FROM controls
            WHERE rollout_id = ? AND console_id IS NOT NULL AND handled_at IS NOT NULL ORDER BY console_id
            """, [.int(id)]).compactMap { r -> ControlResult? in
            guard let console = r["console_id"] as? Int, let handled = r["handled_at"] as? String else { return nil }
            return ControlResult(id: console, result: r["result"] as? String ?? "", handledAt: handled)
        }
        let locks = query("SELECT * FROM locks WHERE rollout_id = ? ORDER BY environment", [.int(id)]).compactMap { r -> LockRecord? in
            guard let environment = r["environment"] as? String, let token = r["token"] as? String else { return nil }
            return LockRecord(environment: environment, token: token, released: (r["released"] as? Int ?? 0) != 0)
        }
        let controlsAfter = query("SELECT MAX(console_id) AS last FROM controls WHERE rollout_id = ?", [.int(id)]).first?["last"] as? Int ?? 0
        return RunReport(
            run: run, service: row["service"] as? String ?? "", version: row["version"] as? String ?? "", actor: row["actor"] as? String ?? "",
            host: row["host"] as? String ?? "", pid: row["pid"] as? Int ?? 0, planPath: row["plan"] as? String ?? "",
            planText: sync.planAcknowledged ? nil : row["plan_text"] as? String, environments: environments,
            change: change == ChangeInfo() ? nil : change,
            rollout: RolloutRecord(startedAt: row["started_at"] as? String ?? "", endedAt: row["ended_at"] as? String,
                                   outcome: row["outcome"] as? String ?? "running", reason: row["reason"] as? String,
                                   heartbeatAt: row["heartbeat_at"] as? String, environment: row["environment"] as? String,
                                   progress: row["progress"] as? String),
            deployments: deployments, steps: steps, hooks: hooks, events: events, controlResults: results, locks: locks,
            controlsAfter: controlsAfter)
    }

    /// The part of a report that is sent whole every time (everything but the rows sent once
    /// and the plan), as canonical JSON: when it equals what the console acknowledged last,
    /// the console has the rollout as it is.
    public static func wholeState(_ report: RunReport) -> String {
        var whole = report
        whole.steps = []
        whole.hooks = []
        whole.events = []
        whole.planText = nil
        return (try? ConsoleJSON.encoder.encode(whole)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// Records the console's answer to `report` (of rollout `id`): its acknowledgements, and
    /// the controls it sent, queued for the rollout. Returns the controls newly queued.
    @discardableResult
    public func acknowledge(_ answer: ReportAnswer, to report: RunReport, rollout id: Int) -> [ControlOrder] {
        var sync = consoleSync(rollout: id)
        sync.consoleRollout = answer.rollout
        // The console's word, not a maximum: a console restored from a backup asks for rows again.
        sync.steps = max(0, answer.acknowledged.steps)
        sync.hooks = max(0, answer.acknowledged.hooks)
        sync.events = max(0, answer.acknowledged.events)
        if report.planText != nil { sync.planAcknowledged = true }
        sync.acknowledgedState = Self.wholeState(report)
        saveConsoleSync(sync, rollout: id)
        return receive(answer.controls, rollout: id)
    }

    /// Queues controls given at the console for rollout `id`, each once however often the
    /// console sends it. Returns the ones newly queued.
    @discardableResult
    public func receive(_ controls: [ControlOrder], rollout id: Int) -> [ControlOrder] {
        var queued: [ControlOrder] = []
        for control in controls {
            query("""
                INSERT OR IGNORE INTO controls (rollout_id, command, argument, actor, created_at, console_id) VALUES (?,?,?,?,?,?)
                """, [.int(id), .text(control.command), .text(control.argument), .text(control.actor), .text(Self.now()), .int(control.id)])
            if changes > 0 { queued.append(control) }
        }
        return queued
    }

    /// Answers the console's controls that no rollout will handle any more: rollout `id` has
    /// ended. Returns how many were answered.
    @discardableResult
    public func refuseConsoleControls(rollout id: Int) -> Int {
        guard let row = rollout(id), let outcome = row["outcome"] as? String, outcome != "running" else { return 0 }
        query("""
            UPDATE controls SET handled_at = ?, result = ? WHERE rollout_id = ? AND console_id IS NOT NULL AND handled_at IS NULL
            """, [.text(Self.now()), .text("refused: rollout #\(id) is not running (\(outcome))"), .int(id)])
        return changes
    }

    /// Whether a console has all of rollout `id` as it is now: the rollout ended, and the
    /// next report would carry nothing it has not acknowledged.
    public func isAcknowledged(rollout id: Int) -> Bool {
        guard rollout(id)?["outcome"] as? String != "running" else { return false }
        let sync = consoleSync(rollout: id)
        guard let report = report(rollout: id, since: sync), sync.acknowledgedState != nil else { return false }
        return report.steps.isEmpty && report.hooks.isEmpty && report.events.isEmpty && report.planText == nil
            && sync.acknowledgedState == Self.wholeState(report)
    }

    /// Rollouts that ended and that a console does not have as they are, oldest first.
    public func unacknowledgedRollouts() -> [Int] {
        query("SELECT id FROM rollouts WHERE outcome != 'running' ORDER BY id").compactMap { $0["id"] as? Int }
            .filter { !isAcknowledged(rollout: $0) }
    }

    /// The services with a rollout marked running (to `markCrashed` them before an upload).
    public func servicesWithRunningRollouts() -> [String] {
        query("SELECT DISTINCT service FROM rollouts WHERE outcome = 'running' ORDER BY service").compactMap { $0["service"] as? String }
    }

    var changes: Int { Int(sqlite3Changes()) }

    // MARK: Import

    /// Writes a run's report into this history, keeping the runner's local ids of its
    /// deployments, steps, hooks and events, so that `deploy abort` run here reports rows a
    /// console matches with the ones it has. The console's answered controls come back as
    /// handled controls, and everything imported counts as acknowledged (the console has it).
    ///
    /// Meant for a new, empty history (a console materialising a crashed run to abort it):
    /// refused when the run, or a row with one of its ids, is already here.
    /// - Returns: the local id of the imported rollout.
    @discardableResult
    public func importRun(_ report: RunReport) throws(ClientError) -> Int {
        if rollout(run: report.run) != nil { throw ClientError("history \(path) already holds run \(report.run)") }
        let taken: [(table: String, ids: [Int])] = [
            ("deployments", report.deployments.map(\.localId)), ("steps", report.steps.map(\.localId)),
            ("hooks", report.hooks.map(\.localId)), ("events", report.events.map(\.localId)),
        ]
        for (table, ids) in taken where !ids.isEmpty {
            let list = ids.map(String.init).joined(separator: ",")
            if let clash = query("SELECT id FROM \(table) WHERE id IN (\(list)) LIMIT 1").first?["id"] as? Int {
                throw ClientError("history \(path) already has a row \(clash) in \(table); import run \(report.run) into a new history file")
            }
        }
        try exec("BEGIN IMMEDIATE")
        let id: Int
        do {
            id = try insertImported(report)
            try exec("COMMIT")
        } catch {
            try? exec("ROLLBACK")
            throw error
        }
        if let imported = self.report(rollout: id, since: ConsoleSync()) {
            saveConsoleSync(ConsoleSync(steps: report.steps.map(\.localId).max() ?? 0, hooks: report.hooks.map(\.localId).max() ?? 0,
                                        events: report.events.map(\.localId).max() ?? 0, planAcknowledged: true,
                                        acknowledgedState: Self.wholeState(imported)), rollout: id)
        }
        return id
    }

    private func insertImported(_ report: RunReport) throws(ClientError) -> Int {
        let r = report.rollout
        let change = report.change
        try write("""
            INSERT INTO rollouts (service, version, actor, plan, started_at, ended_at, outcome, reason, pid, host, heartbeat_at, environment, progress,
                                  run, environments, plan_text, commit_sha, commit_time, ticket, link, changelog)
            VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            """, [.text(report.service), .text(report.version), .text(report.actor), .text(report.planPath), .text(r.startedAt), .text(r.endedAt),
                  .text(r.outcome), .text(r.reason), .int(report.pid), .text(report.host), .text(r.heartbeatAt), .text(r.environment),
                  .text(r.progress), .text(report.run), .text(Self.jsonArray(report.environments)), .text(report.planText),
                  .text(change?.commit), .text(change?.commitTime), .text(change?.ticket), .text(change?.link), .text(change?.changelog)])
        let id = lastID
        for d in report.deployments {
            try write("""
                INSERT INTO deployments (id, rollout_id, service, environment, version, strategy, actor, started_at, ended_at, outcome, reason,
                                         pool, previous_pool, previous_version)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                """, [.int(d.localId), .int(id), .text(report.service), .text(d.environment), .text(d.version), .text(d.strategy), .text(d.actor),
                      .text(d.startedAt), .text(d.endedAt), .text(d.outcome), .text(d.reason), .text(d.pool), .text(d.previousPool),
                      .text(d.previousVersion)])
        }
        for s in report.steps {
            try write("""
                INSERT INTO steps (id, deployment_id, time, kind, detail, weight, verdict, requests, error_rate, baseline_error_rate, p99_ms, server)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
                """, [.int(s.localId), .int(s.deployment), .text(s.time), .text(s.kind), .text(s.detail), .text(s.weight), .text(s.verdict),
                      .int(s.requests), .real(s.errorRate), .real(s.baselineErrorRate), .real(s.p99Ms), .text(s.server)])
        }
        for h in report.hooks {
            try write("""
                INSERT INTO hooks (id, deployment_id, rollout_id, phase, command, exit_code, duration_ms, output, time) VALUES (?,?,?,?,?,?,?,?,?)
                """, [.int(h.localId), .int(h.deployment), .int(id), .text(h.phase), .text(h.command), .int(h.exitCode), .int(h.durationMs),
                      .text(h.output), .text(h.time)])
        }
        for e in report.events {
            try write("INSERT INTO events (id, rollout_id, time, kind, environment, message, fields) VALUES (?,?,?,?,?,?,?)",
                      [.int(e.localId), .int(id), .text(e.time), .text(e.kind), .text(e.environment), .text(e.message), .text(e.fields)])
        }
        for c in report.controlResults {
            // The report keeps the answer, not the command: enough for the console to match it.
            try write("""
                INSERT INTO controls (rollout_id, command, argument, actor, created_at, handled_at, result, console_id) VALUES (?,?,?,?,?,?,?,?)
                """, [.int(id), .text("(from the console)"), .text(nil), .text("console"), .text(c.handledAt), .text(c.handledAt),
                      .text(c.result), .int(c.id)])
        }
        for l in report.locks {
            try write("INSERT INTO locks (rollout_id, environment, token, released) VALUES (?,?,?,?)",
                      [.int(id), .text(l.environment), .text(l.token), .int(l.released ? 1 : 0)])
        }
        return id
    }

    // MARK: Rows to records

    static func double(_ value: Any?) -> Double? { (value as? Double) ?? (value as? Int).map(Double.init) }

    static func deploymentRecord(_ r: [String: Any]) -> DeploymentRecord? {
        guard let id = r["id"] as? Int else { return nil }
        return DeploymentRecord(localId: id, environment: r["environment"] as? String ?? "", version: r["version"] as? String ?? "",
                                strategy: r["strategy"] as? String ?? "", actor: r["actor"] as? String ?? "",
                                startedAt: r["started_at"] as? String ?? "", endedAt: r["ended_at"] as? String,
                                outcome: r["outcome"] as? String ?? "running", reason: r["reason"] as? String, pool: r["pool"] as? String,
                                previousPool: r["previous_pool"] as? String, previousVersion: r["previous_version"] as? String)
    }

    static func stepRecord(_ r: [String: Any]) -> StepRecord? {
        guard let id = r["id"] as? Int, let deployment = r["deployment_id"] as? Int else { return nil }
        return StepRecord(localId: id, deployment: deployment, time: r["time"] as? String ?? "", kind: r["kind"] as? String ?? "",
                          detail: r["detail"] as? String ?? "", weight: r["weight"] as? String, verdict: r["verdict"] as? String,
                          requests: r["requests"] as? Int, errorRate: double(r["error_rate"]), baselineErrorRate: double(r["baseline_error_rate"]),
                          p99Ms: double(r["p99_ms"]), server: r["server"] as? String)
    }

    static func hookRecord(_ r: [String: Any]) -> HookRecord? {
        guard let id = r["id"] as? Int else { return nil }
        return HookRecord(localId: id, deployment: r["deployment_id"] as? Int, phase: r["phase"] as? String ?? "",
                          command: r["command"] as? String ?? "", exitCode: r["exit_code"] as? Int, durationMs: r["duration_ms"] as? Int,
                          output: r["output"] as? String, time: r["time"] as? String ?? "")
    }

    static func eventRecord(_ r: [String: Any]) -> EventRecord? {
        guard let id = r["id"] as? Int else { return nil }
        return EventRecord(localId: id, time: r["time"] as? String ?? "", kind: r["kind"] as? String ?? "", environment: r["environment"] as? String,
                           message: r["message"] as? String ?? "", fields: r["fields"] as? String ?? "{}")
    }
}
