import Foundation
import SQLKit
import SwitchyardConsoleAPI

/// Deployments (one per environment of a rollout) across all rollouts: the history queries,
/// what runs where, and the rows statistics are computed from.
public struct DeploymentStore: Sendable {
    let database: ConsoleDatabase
    var sql: any SQLDatabase { database.sql }
    let rollouts: RolloutStore

    public init(database: ConsoleDatabase) {
        self.database = database
        rollouts = RolloutStore(database: database)
    }

    /// What `GET /api/v1/deployments` filters by.
    public struct Filter: Sendable {
        public var service: String?
        public var environment: String?
        public var outcome: String?
        public var actor: String?
        /// ISO 8601 bounds on the start time.
        public var since: String?
        public var until: String?
        public var limit = 100
        public init() {}
    }

    public func deployments(_ filter: Filter) async throws -> [RolloutDetail.Deployment] {
        var query: SQLQueryString = "SELECT * FROM deployments WHERE 1 = 1"
        if let v = filter.service { query += " AND service = \(bind: v)" }
        if let v = filter.environment { query += " AND environment = \(bind: v)" }
        if let v = filter.outcome { query += " AND outcome = \(bind: v)" }
        if let v = filter.actor { query += " AND actor = \(bind: v)" }
        if let v = filter.since { query += " AND started_at >= \(bind: v)" }
        if let v = filter.until { query += " AND started_at < \(bind: v)" }
        query += " ORDER BY started_at DESC, id DESC LIMIT \(bind: max(1, min(filter.limit, 10_000)))"
        return try await sql.raw(query).all().map { try rollouts.decodeDeployment($0).resource }
    }

    public func deployment(_ id: Int) async throws -> RolloutDetail.Deployment? {
        guard let row = try await sql.raw("SELECT * FROM deployments WHERE id = \(bind: id)").first().map(rollouts.decodeDeployment) else { return nil }
        var out = row.resource
        out.steps = try await rollouts.steps(rollout: row.rolloutId).filter { $0.deployment == row.localId }
        out.hooks = try await rollouts.hooks(rollout: row.rolloutId).filter { $0.deployment == row.localId }
        return out
    }

    /// The deployments promoted in one environment of `service`, newest first by when they
    /// started (a run uploaded late takes its place in time, not at the end).
    public func promotedVersions(service: String, environment: String, limit: Int = 50) async throws -> [RolloutDetail.Deployment] {
        try await sql.raw("""
            SELECT * FROM deployments WHERE service = \(bind: service) AND environment = \(bind: environment) AND outcome = 'promoted'
            ORDER BY started_at DESC, id DESC LIMIT \(bind: limit)
            """).all().map { try rollouts.decodeDeployment($0).resource }
    }

    /// The newest deployment per service and environment (what the overview shows).
    public func latestPerEnvironment() async throws -> [RolloutDetail.Deployment] {
        try await sql.raw("""
            SELECT d.* FROM deployments d
            WHERE d.id = (SELECT n.id FROM deployments n WHERE n.service = d.service AND n.environment = d.environment ORDER BY n.started_at DESC, n.id DESC LIMIT 1)
            ORDER BY d.service, d.environment
            """).all().map { try rollouts.decodeDeployment($0).resource }
    }

    /// The version promoted last in every service and environment, by "service/environment":
    /// one query for the overview, however many services there are.
    public func livePromotedVersions() async throws -> [String: String] {
        var out: [String: String] = [:]
        for row in try await sql.raw("""
            SELECT d.service, d.environment, d.version FROM deployments d
            WHERE d.outcome = 'promoted' AND d.id = (SELECT n.id FROM deployments n WHERE n.service = d.service AND n.environment = d.environment
                                                     AND n.outcome = 'promoted' ORDER BY n.started_at DESC, n.id DESC LIMIT 1)
            """).all() {
            let key = "\(try row.decode(column: "service", as: String.self))/\(try row.decode(column: "environment", as: String.self))"
            out[key] = try row.decode(column: "version", as: String.self)
        }
        return out
    }

    /// Every finished deployment in a time range, with its rollout's commit time: what
    /// statistics are computed from.
    public func statisticsRows(service: String?, environment: String?, since: String?, until: String?) async throws -> [DeploymentFacts] {
        var query: SQLQueryString = """
            SELECT d.id, d.service, d.environment, d.version, d.outcome, d.started_at, d.ended_at, r.commit_time, r.commit_sha, r.kind
            FROM deployments d JOIN rollouts r ON r.id = d.rollout_id WHERE d.outcome <> 'running'
            """
        if let v = service { query += " AND d.service = \(bind: v)" }
        if let v = environment { query += " AND d.environment = \(bind: v)" }
        if let v = since { query += " AND d.started_at >= \(bind: v)" }
        if let v = until { query += " AND d.started_at < \(bind: v)" }
        query += " ORDER BY d.started_at, d.id"
        return try await sql.raw(query).all().map { try $0.decode(model: DeploymentFacts.self, keyDecodingStrategy: .convertFromSnakeCase) }
    }
}

extension DeploymentStore {
    /// Every deployment and every step's time: what the console's `/metrics` is computed from.
    public func metricsRows() async throws -> (deployments: [RolloutMetrics.Deployment], steps: [RolloutMetrics.Step]) {
        let deployments = try await sql.raw("""
            SELECT rollout_id, local_id, service, environment, outcome, started_at, ended_at FROM deployments
            """).all().map { row in
            RolloutMetrics.Deployment(rolloutID: try row.decode(column: "rollout_id", as: Int.self),
                                      localID: try row.decode(column: "local_id", as: Int.self),
                                      service: try row.decode(column: "service", as: String.self),
                                      environment: try row.decode(column: "environment", as: String.self),
                                      outcome: try row.decode(column: "outcome", as: String.self),
                                      startedAt: try row.decode(column: "started_at", as: String.self),
                                      endedAt: try row.decode(column: "ended_at", as: String?.self))
        }
        let steps = try await sql.raw("SELECT rollout_id, deployment_local_id, time FROM steps").all().map { row in
            RolloutMetrics.Step(rolloutID: try row.decode(column: "rollout_id", as: Int.self),
                                deploymentLocalID: try row.decode(column: "deployment_local_id", as: Int.self),
                                time: try row.decode(column: "time", as: String.self))
        }
        return (deployments, steps)
    }
}

/// One finished deployment as statistics see it.
public struct DeploymentFacts: Codable, Sendable, Equatable {
    public var id: Int
    public var service: String
    public var environment: String
    public var version: String
    public var outcome: String
    public var startedAt: String
    public var endedAt: String?
    public var commitTime: String?
    public var commitSha: String?
    /// deploy or rollback.
    public var kind: String
    public init(id: Int, service: String, environment: String, version: String, outcome: String, startedAt: String, endedAt: String?,
                commitTime: String?, commitSha: String?, kind: String) {
        self.id = id; self.service = service; self.environment = environment; self.version = version; self.outcome = outcome
        self.startedAt = startedAt; self.endedAt = endedAt; self.commitTime = commitTime; self.commitSha = commitSha; self.kind = kind
    }
}
