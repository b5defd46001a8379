import Foundation
import SQLKit
import SwitchyardConsoleAPI

/// The console's records of rollouts: what runners report, what the console starts itself,
/// the controls given to them and their leases. Every write is idempotent (a report can be
/// repeated), so a report half-applied before a crash is completed by the next one.
public struct RolloutStore: Sendable {
    let database: ConsoleDatabase
    var sql: any SQLDatabase { database.sql }

    public init(database: ConsoleDatabase) { self.database = database }

    static let liveStates = ["pending", "running"]
    /// Who reports the rollouts a console runs itself (its runs' token, on any instance).
    static let consoleRunner = "console-runner"

    /// Why a report was refused before anything of it was stored.
    public enum ReportRefusal: Error, Equatable {
        /// The run was first reported by someone else.
        case notTheReporter(owner: String)
        /// The run is recorded for another service.
        case otherService(String)
    }

    // MARK: Rows

    struct RolloutRow: Decodable {
        var id: Int, run: String, service: String, version: String, state: String, reason: String?
        var mode: String, kind: String, actor: String, host: String?, pid: Int?, planPath: String?
        var environments: String, startedAt: String, endedAt: String?, heartbeatAt: String?, environment: String?, progress: String?
        var commitSha: String?, commitTime: String?, ticket: String?, link: String?, changelog: String?
        var owner: String?, reporter: String, leaseUntil: Int
    }

    struct DeploymentRow: Decodable {
        var id: Int, rolloutId: Int, localId: Int, service: String, environment: String, version: String, strategy: String, actor: String
        var startedAt: String, endedAt: String?, outcome: String, reason: String?, pool: String?, previousPool: String?, previousVersion: String?

        var resource: RolloutDetail.Deployment {
            RolloutDetail.Deployment(id: id, rollout: rolloutId, service: service, environment: environment, version: version, strategy: strategy,
                                     actor: actor, startedAt: startedAt, endedAt: endedAt, outcome: outcome, reason: reason, pool: pool,
                                     previousPool: previousPool, previousVersion: previousVersion, steps: nil, hooks: nil)
        }
    }

    static let rolloutColumns = """
        id, run, service, version, state, reason, mode, kind, actor, host, pid, plan_path, environments, started_at, ended_at,
        heartbeat_at, environment, progress, commit_sha, commit_time, ticket, link, changelog, owner, reporter, lease_until
        """

    func decodeRollout(_ row: any SQLRow) throws -> RolloutRow { try row.decode(model: RolloutRow.self, keyDecodingStrategy: .convertFromSnakeCase) }
    func decodeDeployment(_ row: any SQLRow) throws -> DeploymentRow { try row.decode(model: DeploymentRow.self, keyDecodingStrategy: .convertFromSnakeCase) }

    func summary(_ row: RolloutRow, deployments: [DeploymentRow]) -> RolloutSummary {
        let names = (try? JSONDecoder().decode([String].self, from: Data(row.environments.utf8))) ?? []
        let environments = names.map { name -> RolloutSummary.EnvironmentState in
            guard let latest = deployments.last(where: { $0.environment == name }) else { return .init(name: name, state: "waiting", deployment: nil) }
            return .init(name: name, state: latest.outcome, deployment: latest.id)
        }
        let change = [row.commitSha, row.commitTime, row.ticket, row.link, row.changelog].contains { $0 != nil }
            ? ChangeInfo(commit: row.commitSha, commitTime: row.commitTime, ticket: row.ticket, link: row.link, changelog: row.changelog) : nil
        return RolloutSummary(id: row.id, run: row.run, service: row.service, version: row.version, state: row.state, reason: row.reason,
                              mode: row.mode, kind: row.kind, actor: row.actor, host: row.host, startedAt: row.startedAt, endedAt: row.endedAt,
                              environment: row.environment, progress: row.progress, environments: environments, change: change)
    }

    // MARK: Starting a rollout the console runs

    /// Records a rollout the console is about to run itself (`pending` until its process reports).
    public func createExecuted(run: String, service: String, version: String, environments: [String], actor: String, kind: String,
                               planPath: String, owner: String, leaseUntil: Int) async throws -> Int {
        let names = String(decoding: (try? JSONEncoder().encode(environments)) ?? Data("[]".utf8), as: UTF8.self)
        let now = Clock.now()
        guard let row = try await sql.raw("""
            INSERT INTO rollouts (run, service, version, state, mode, kind, actor, plan_path, environments, started_at, owner, reporter, lease_until, updated_at)
            VALUES (\(bind: run), \(bind: service), \(bind: version), 'pending', 'executed', \(bind: kind), \(bind: actor), \(bind: planPath),
                    \(bind: names), \(bind: now), \(bind: owner), \(bind: Self.consoleRunner), \(bind: leaseUntil), \(bind: now))
            RETURNING id
            """).first() else { throw ConsoleError("database: the new rollout got no id") }
        let id = try row.decode(column: "id", as: Int.self)
        try await feed(topic: "rollout", rollout: id, service: service, environment: nil, kind: "pending",
                       message: "\(kind == "rollback" ? "rollback" : "rollout") #\(id) of \(service) \(version) to \(environments.joined(separator: ", ")) started by \(actor)")
        return id
    }

    /// Ends a rollout that never reported (its process failed to start or died at once).
    public func failUnreported(_ id: Int, reason: String) async throws {
        let rows = try await sql.raw("""
            UPDATE rollouts SET state = 'failed', reason = \(bind: reason), ended_at = \(bind: Clock.now()), updated_at = \(bind: Clock.now())
            WHERE id = \(bind: id) AND state IN ('pending', 'running') RETURNING service
            """).all()
        if let row = rows.first {
            try await feed(topic: "rollout", rollout: id, service: try row.decode(column: "service", as: String.self), environment: nil, kind: "failed", message: reason)
        }
    }

    public func renewLease(_ id: Int, until: Int) async throws {
        try await sql.raw("UPDATE rollouts SET lease_until = \(bind: until) WHERE id = \(bind: id) AND state IN ('pending', 'running')").run()
    }

    // MARK: Reports

    /// Stores what a runner reported and answers with the acknowledgements and the controls it has not received.
    /// A run belongs to whoever reported it first (a token's name): nobody else can write its
    /// records or receive its controls.
    public func ingest(_ report: RunReport, from reporter: String, leaseUntil: Int) async throws -> ReportAnswer {
        let sql = self.sql
        let now = Clock.now()
        let names = String(decoding: (try? JSONEncoder().encode(report.environments)) ?? Data("[]".utf8), as: UTF8.self)
        let before = try await sql.raw("SELECT \(unsafeRaw: Self.rolloutColumns) FROM rollouts WHERE run = \(bind: report.run)").first().map(decodeRollout)
        if let before {
            guard before.reporter == reporter else { throw ReportRefusal.notTheReporter(owner: before.reporter) }
            guard before.service == report.service else { throw ReportRefusal.otherService(before.service) }
        }
        let r = report.rollout
        let change = report.change
        // A runner's word on its own state wins while the console has not seen it end: a run the
        // console marked crashed (lease lapsed while the console was away) comes back when it reports.
        guard let row = try await sql.raw("""
            INSERT INTO rollouts (run, service, version, state, reason, mode, kind, actor, host, pid, plan_path, plan_text, environments,
                                  started_at, ended_at, heartbeat_at, environment, progress, commit_sha, commit_time, ticket, link, changelog,
                                  reporter, lease_until, updated_at)
            VALUES (\(bind: report.run), \(bind: report.service), \(bind: report.version), \(bind: r.outcome), \(bind: r.reason), 'reported', 'deploy',
                    \(bind: report.actor), \(bind: report.host), \(bind: report.pid), \(bind: report.planPath), \(bind: report.planText), \(bind: names),
                    \(bind: r.startedAt), \(bind: r.endedAt), \(bind: r.heartbeatAt), \(bind: r.environment), \(bind: r.progress),
                    \(bind: change?.commit), \(bind: change?.commitTime), \(bind: change?.ticket), \(bind: change?.link), \(bind: change?.changelog),
                    \(bind: reporter), \(bind: leaseUntil), \(bind: now))
            ON CONFLICT (run) DO UPDATE SET
                state = CASE WHEN rollouts.state IN ('pending', 'running', 'crashed') THEN excluded.state ELSE rollouts.state END,
                reason = CASE WHEN rollouts.state IN ('pending', 'running', 'crashed') THEN excluded.reason ELSE rollouts.reason END,
                ended_at = CASE WHEN rollouts.state IN ('pending', 'running', 'crashed') THEN excluded.ended_at ELSE rollouts.ended_at END,
                host = excluded.host, pid = excluded.pid, heartbeat_at = excluded.heartbeat_at,
                environment = excluded.environment, progress = excluded.progress,
                plan_text = COALESCE(rollouts.plan_text, excluded.plan_text),
                commit_sha = COALESCE(excluded.commit_sha, rollouts.commit_sha), commit_time = COALESCE(excluded.commit_time, rollouts.commit_time),
                ticket = COALESCE(excluded.ticket, rollouts.ticket), link = COALESCE(excluded.link, rollouts.link),
                changelog = COALESCE(excluded.changelog, rollouts.changelog),
                lease_until = excluded.lease_until, updated_at = excluded.updated_at
            RETURNING id, state
            """).first() else { throw ConsoleError("database: the report's rollout got no id") }
        let id = try row.decode(column: "id", as: Int.self)
        let state = try row.decode(column: "state", as: String.self)
        if before?.state != state || before?.environment != r.environment || before?.progress != r.progress {
            let message = before?.state != state
                ? "rollout #\(id) of \(report.service) \(report.version): \(state)\(r.reason.map { ": \($0)" } ?? "")"
                : "rollout #\(id) of \(report.service) \(report.version): \(r.environment ?? "-"), \(r.progress ?? "-")"
            try await feed(topic: "rollout", rollout: id, service: report.service, environment: r.environment, kind: state, message: message)
        }
        if let planText = report.planText {
            try await sql.raw("""
                INSERT INTO services (name, plan_path, plan_text, source, updated_at) VALUES (\(bind: report.service), \(bind: report.planPath), \(bind: planText), 'reported', \(bind: now))
                ON CONFLICT (name) DO UPDATE SET plan_path = excluded.plan_path, plan_text = excluded.plan_text, updated_at = excluded.updated_at
                WHERE services.source = 'reported'
                """).run()
        }
        for d in report.deployments {
            try await sql.raw("""
                INSERT INTO deployments (rollout_id, local_id, service, environment, version, strategy, actor, started_at, ended_at, outcome, reason,
                                         pool, previous_pool, previous_version)
                VALUES (\(bind: id), \(bind: d.localId), \(bind: report.service), \(bind: d.environment), \(bind: d.version), \(bind: d.strategy),
                        \(bind: d.actor), \(bind: d.startedAt), \(bind: d.endedAt), \(bind: d.outcome), \(bind: d.reason), \(bind: d.pool),
                        \(bind: d.previousPool), \(bind: d.previousVersion))
                ON CONFLICT (rollout_id, local_id) DO UPDATE SET ended_at = excluded.ended_at, outcome = excluded.outcome, reason = excluded.reason,
                    pool = excluded.pool, previous_pool = excluded.previous_pool, previous_version = excluded.previous_version
                """).run()
        }
        for s in report.steps {
            try await sql.raw("""
                INSERT INTO steps (rollout_id, local_id, deployment_local_id, time, kind, detail, weight, verdict, requests, error_rate,
                                   baseline_error_rate, p99_ms, server)
                VALUES (\(bind: id), \(bind: s.localId), \(bind: s.deployment), \(bind: s.time), \(bind: s.kind), \(bind: s.detail), \(bind: s.weight),
                        \(bind: s.verdict), \(bind: s.requests), \(bind: s.errorRate), \(bind: s.baselineErrorRate), \(bind: s.p99Ms), \(bind: s.server))
                ON CONFLICT (rollout_id, local_id) DO NOTHING
                """).run()
        }
        for h in report.hooks {
            try await sql.raw("""
                INSERT INTO hooks (rollout_id, local_id, deployment_local_id, phase, command, exit_code, duration_ms, output, time)
                VALUES (\(bind: id), \(bind: h.localId), \(bind: h.deployment), \(bind: h.phase), \(bind: h.command), \(bind: h.exitCode),
                        \(bind: h.durationMs), \(bind: h.output), \(bind: h.time))
                ON CONFLICT (rollout_id, local_id) DO NOTHING
                """).run()
        }
        for e in report.events {
            let inserted = try await sql.raw("""
                INSERT INTO events (rollout_id, local_id, time, kind, environment, message, fields)
                VALUES (\(bind: id), \(bind: e.localId), \(bind: e.time), \(bind: e.kind), \(bind: e.environment), \(bind: e.message), \(bind: e.fields))
                ON CONFLICT (rollout_id, local_id) DO NOTHING RETURNING id
                """).all()
            if !inserted.isEmpty {
                try await feed(topic: "event", rollout: id, service: report.service, environment: e.environment, kind: e.kind, message: e.message)
            }
        }
        for c in report.controlResults {
            let updated = try await sql.raw("""
                UPDATE controls SET result = \(bind: c.result), handled_at = \(bind: c.handledAt)
                WHERE id = \(bind: c.id) AND rollout_id = \(bind: id) AND handled_at IS NULL AND handler = 'runner' RETURNING command
                """).all()
            if let first = updated.first {
                let command = try first.decode(column: "command", as: String.self)
                try await feed(topic: "control", rollout: id, service: report.service, environment: nil, kind: command, message: "\(command): \(c.result)")
            }
        }
        for lock in report.locks {
            try await sql.raw("""
                INSERT INTO locks (rollout_id, environment, token, released) VALUES (\(bind: id), \(bind: lock.environment), \(bind: lock.token), \(bind: lock.released ? 1 : 0))
                ON CONFLICT (rollout_id, environment) DO UPDATE SET token = excluded.token, released = excluded.released
                """).run()
        }
        let acknowledged = ReportAnswer.Acknowledged(
            steps: try await maxLocalID("steps", rollout: id),
            hooks: try await maxLocalID("hooks", rollout: id),
            events: try await maxLocalID("events", rollout: id))
        var orders: [ControlOrder] = []
        for control in try await sql.raw("""
            SELECT id, command, argument, actor FROM controls
            WHERE rollout_id = \(bind: id) AND id > \(bind: report.controlsAfter) AND handled_at IS NULL AND handler = 'runner' ORDER BY id
            """).all() {
            orders.append(ControlOrder(id: try control.decode(column: "id", as: Int.self), command: try control.decode(column: "command", as: String.self),
                                       argument: try control.decode(column: "argument", as: String?.self), actor: try control.decode(column: "actor", as: String.self)))
        }
        if let last = orders.last {
            try await sql.raw("UPDATE controls SET delivered_at = \(bind: now) WHERE rollout_id = \(bind: id) AND id <= \(bind: last.id) AND delivered_at IS NULL").run()
        }
        return ReportAnswer(rollout: id, acknowledged: acknowledged, controls: orders)
    }

    private func maxLocalID(_ table: String, rollout: Int) async throws -> Int {
        let row = try await sql.raw("SELECT MAX(local_id) AS last FROM \(ident: table) WHERE rollout_id = \(bind: rollout)").first()
        return try row?.decode(column: "last", as: Int?.self) ?? 0
    }

    // MARK: Reading rollouts

    public func rollouts(service: String? = nil, state: String? = nil, limit: Int = 50, before: Int? = nil) async throws -> [RolloutSummary] {
        var query: SQLQueryString = "SELECT \(unsafeRaw: Self.rolloutColumns) FROM rollouts WHERE 1 = 1"
        if let service { query += " AND service = \(bind: service)" }
        if let state { query += " AND state = \(bind: state)" }
        if let before { query += " AND id < \(bind: before)" }
        query += " ORDER BY id DESC LIMIT \(bind: max(1, min(limit, 1000)))"
        let rows = try await sql.raw(query).all().map(decodeRollout)
        guard !rows.isEmpty else { return [] }
        let deployments = try await sql.raw("SELECT * FROM deployments WHERE rollout_id IN (\(binds: rows.map(\.id))) ORDER BY id").all().map(decodeDeployment)
        let byRollout = Dictionary(grouping: deployments, by: \.rolloutId)
        return rows.map { summary($0, deployments: byRollout[$0.id] ?? []) }
    }

    func rolloutRow(_ id: Int) async throws -> RolloutRow? {
        try await sql.raw("SELECT \(unsafeRaw: Self.rolloutColumns) FROM rollouts WHERE id = \(bind: id)").first().map(decodeRollout)
    }

    public func rollout(_ id: Int) async throws -> RolloutSummary? {
        guard let row = try await rolloutRow(id) else { return nil }
        let deployments = try await sql.raw("SELECT * FROM deployments WHERE rollout_id = \(bind: id) ORDER BY id").all().map(decodeDeployment)
        return summary(row, deployments: deployments)
    }

    public func detail(_ id: Int) async throws -> RolloutDetail? {
        guard let row = try await rolloutRow(id) else { return nil }
        let deploymentRows = try await sql.raw("SELECT * FROM deployments WHERE rollout_id = \(bind: id) ORDER BY id").all().map(decodeDeployment)
        let steps = try await self.steps(rollout: id)
        let hooks = try await self.hooks(rollout: id)
        let deployments = deploymentRows.map { d -> RolloutDetail.Deployment in
            var out = d.resource
            out.steps = steps.filter { $0.deployment == d.localId }
            out.hooks = hooks.filter { $0.deployment == d.localId }
            return out
        }
        let events = try await sql.raw("SELECT time, kind, environment, message FROM events WHERE rollout_id = \(bind: id) ORDER BY local_id").all().map {
            try $0.decode(model: RolloutDetail.Event.self, keyDecodingStrategy: .convertFromSnakeCase)
        }
        let controls = try await sql.raw("SELECT id, command, argument, actor, created_at, handled_at, result FROM controls WHERE rollout_id = \(bind: id) ORDER BY id").all().map {
            try $0.decode(model: RolloutDetail.Control.self, keyDecodingStrategy: .convertFromSnakeCase)
        }
        return RolloutDetail(rollout: summary(row, deployments: deploymentRows), deployments: deployments, events: events, controls: controls)
    }

    func steps(rollout: Int) async throws -> [StepRecord] {
        try await sql.raw("""
            SELECT local_id, deployment_local_id AS deployment, time, kind, detail, weight, verdict, requests, error_rate, baseline_error_rate, p99_ms, server
            FROM steps WHERE rollout_id = \(bind: rollout) ORDER BY local_id
            """).all().map { try $0.decode(model: StepRecord.self, keyDecodingStrategy: .convertFromSnakeCase) }
    }

    func hooks(rollout: Int) async throws -> [HookRecord] {
        try await sql.raw("""
            SELECT local_id, deployment_local_id AS deployment, phase, command, exit_code, duration_ms, output, time
            FROM hooks WHERE rollout_id = \(bind: rollout) ORDER BY local_id
            """).all().map { try $0.decode(model: HookRecord.self, keyDecodingStrategy: .convertFromSnakeCase) }
    }

    /// The service's rollout that is pending or running, if any.
    func liveRollout(service: String) async throws -> RolloutRow? {
        try await sql.raw("SELECT \(unsafeRaw: Self.rolloutColumns) FROM rollouts WHERE service = \(bind: service) AND state IN ('pending', 'running') ORDER BY id DESC LIMIT 1")
            .first().map(decodeRollout)
    }

    /// Everything the console knows of a run, as the run's own report would carry it: what a
    /// history for `deploy abort` is rebuilt from. Includes the lock tokens (never answered by the API).
    func reconstructedReport(_ id: Int) async throws -> RunReport? {
        guard let row = try await rolloutRow(id) else { return nil }
        let planText = try await sql.raw("SELECT plan_text FROM rollouts WHERE id = \(bind: id)").first()?.decode(column: "plan_text", as: String?.self) ?? nil
        let deployments = try await sql.raw("SELECT * FROM deployments WHERE rollout_id = \(bind: id) ORDER BY local_id").all().map(decodeDeployment).map {
            DeploymentRecord(localId: $0.localId, environment: $0.environment, version: $0.version, strategy: $0.strategy, actor: $0.actor,
                             startedAt: $0.startedAt, endedAt: $0.endedAt, outcome: $0.outcome, reason: $0.reason, pool: $0.pool,
                             previousPool: $0.previousPool, previousVersion: $0.previousVersion)
        }
        let locks = try await sql.raw("SELECT environment, token, released FROM locks WHERE rollout_id = \(bind: id)").all().map {
            LockRecord(environment: try $0.decode(column: "environment", as: String.self), token: try $0.decode(column: "token", as: String.self),
                       released: try $0.decode(column: "released", as: Int.self) != 0)
        }
        let names = (try? JSONDecoder().decode([String].self, from: Data(row.environments.utf8))) ?? []
        return RunReport(run: row.run, service: row.service, version: row.version, actor: row.actor, host: row.host ?? "", pid: row.pid ?? 0,
                         planPath: row.planPath ?? "", planText: planText, environments: names, change: nil,
                         rollout: RolloutRecord(startedAt: row.startedAt, endedAt: row.endedAt, outcome: row.state, reason: row.reason,
                                                heartbeatAt: row.heartbeatAt, environment: row.environment, progress: row.progress),
                         deployments: deployments, steps: try await steps(rollout: id), hooks: try await hooks(rollout: id), events: [],
                         controlResults: [], locks: locks, controlsAfter: 0)
    }

    // MARK: Leases

    /// Marks rollouts whose lease lapsed as crashed (their runner or owning console stopped
    /// reporting). Safe to run on every instance at once: each row changes once.
    func expireLeases(now: Int = Clock.milliseconds()) async throws -> [Int] {
        let stamp = Clock.now()
        let rows = try await sql.raw("""
            UPDATE rollouts SET state = 'crashed', ended_at = \(bind: stamp), updated_at = \(bind: stamp),
                reason = 'no report from its ' || CASE WHEN mode = 'executed' THEN 'console instance (' || COALESCE(owner, '?') || ')' ELSE 'runner (' || COALESCE(host, '?') || ', pid ' || COALESCE(CAST(pid AS TEXT), '?') || ')' END || ' since ' || COALESCE(heartbeat_at, started_at)
            WHERE state IN ('pending', 'running') AND lease_until < \(bind: now)
            RETURNING id, service, reason
            """).all()
        var ids: [Int] = []
        for row in rows {
            let id = try row.decode(column: "id", as: Int.self)
            try await sql.raw("UPDATE deployments SET outcome = 'crashed', ended_at = \(bind: stamp) WHERE rollout_id = \(bind: id) AND outcome = 'running'").run()
            try await feed(topic: "rollout", rollout: id, service: try row.decode(column: "service", as: String.self), environment: nil, kind: "crashed",
                           message: "rollout #\(id) crashed: \(try row.decode(column: "reason", as: String?.self) ?? "")")
            ids.append(id)
        }
        return ids
    }

    // MARK: Controls

    /// Queues a control. `byConsole`: the console carries it out itself (an abort of a crashed
    /// rollout); it is never sent to a runner, whose answer would race the console's.
    public func addControl(rollout: Int, command: String, argument: String?, actor: String, byConsole: Bool = false) async throws -> Int {
        guard let row = try await sql.raw("""
            INSERT INTO controls (rollout_id, command, argument, actor, created_at, handler)
            VALUES (\(bind: rollout), \(bind: command), \(bind: argument), \(bind: actor), \(bind: Clock.now()), \(bind: byConsole ? "console" : "runner"))
            RETURNING id
            """).first() else { throw ConsoleError("database: the control got no id") }
        return try row.decode(column: "id", as: Int.self)
    }

    public func control(_ id: Int) async throws -> RolloutDetail.Control? {
        try await sql.raw("SELECT id, command, argument, actor, created_at, handled_at, result FROM controls WHERE id = \(bind: id)").first().map {
            try $0.decode(model: RolloutDetail.Control.self, keyDecodingStrategy: .convertFromSnakeCase)
        }
    }

    /// Whether an abort the console started for this rollout is still going.
    func abortInProgress(rollout: Int) async throws -> Bool {
        try await sql.raw("SELECT id FROM controls WHERE rollout_id = \(bind: rollout) AND handler = 'console' AND handled_at IS NULL").first() != nil
    }

    /// Answers a control the console handled itself (an abort of a crashed rollout).
    public func answerControl(_ id: Int, result: String) async throws {
        try await sql.raw("UPDATE controls SET result = \(bind: result), handled_at = \(bind: Clock.now()) WHERE id = \(bind: id) AND handled_at IS NULL").run()
    }

    // MARK: The change feed

    public func feed(topic: String, rollout: Int?, service: String?, environment: String?, kind: String, message: String) async throws {
        try await sql.raw("""
            INSERT INTO feed (time, topic, rollout_id, service, environment, kind, message)
            VALUES (\(bind: Clock.now()), \(bind: topic), \(bind: rollout), \(bind: service), \(bind: environment), \(bind: kind), \(bind: String(message.prefix(2000))))
            """).run()
    }

    /// Feed entries after `after`, oldest first.
    public func feed(after: Int, rollout: Int? = nil, limit: Int = 500) async throws -> [FeedEntry] {
        var query: SQLQueryString = "SELECT id, time, topic, rollout_id AS rollout, service, environment, kind, message FROM feed WHERE id > \(bind: after)"
        if let rollout { query += " AND rollout_id = \(bind: rollout)" }
        query += " ORDER BY id LIMIT \(bind: max(1, min(limit, 5000)))"
        return try await sql.raw(query).all().map { try $0.decode(model: FeedEntry.self, keyDecodingStrategy: .convertFromSnakeCase) }
    }

    public func lastFeedID() async throws -> Int {
        try await sql.raw("SELECT MAX(id) AS last FROM feed").first()?.decode(column: "last", as: Int?.self) ?? 0
    }
}
