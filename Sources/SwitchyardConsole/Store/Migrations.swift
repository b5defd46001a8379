import Foundation
import SQLKit

/// The console's schema, as numbered migrations run in order on start. Each runs once per
/// database (recorded in `schema_migrations`); the same statements serve SQLite and
/// PostgreSQL, with `{id}` standing for the auto-numbered key's type. Times are ISO 8601 text
/// in UTC (they sort as text); leases are milliseconds since 1970, compared as numbers.
enum Migrations {
    struct Migration {
        let version: Int
        let summary: String
        let statements: [String]
    }

    static let all: [Migration] = [
        Migration(version: 1, summary: "rollouts, deployments, steps, hooks, events, controls, locks, feed, services, tokens, sessions, audit", statements: [
            """
            CREATE TABLE services (
                name TEXT PRIMARY KEY, plan_path TEXT, plan_text TEXT, source TEXT NOT NULL, updated_at TEXT NOT NULL)
            """,
            """
            CREATE TABLE rollouts (
                id {id}, run TEXT NOT NULL UNIQUE, service TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
                mode TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, host TEXT, pid BIGINT, plan_path TEXT, plan_text TEXT,
                environments TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, heartbeat_at TEXT, environment TEXT, progress TEXT,
                commit_sha TEXT, commit_time TEXT, ticket TEXT, link TEXT, changelog TEXT,
                owner TEXT, reporter TEXT NOT NULL, lease_until BIGINT NOT NULL, updated_at TEXT NOT NULL)
            """,
            "CREATE INDEX rollouts_by_service ON rollouts(service, id)",
            "CREATE INDEX rollouts_by_state ON rollouts(state)",
            """
            CREATE TABLE deployments (
                id {id}, rollout_id BIGINT NOT NULL, local_id BIGINT NOT NULL, service TEXT NOT NULL, environment TEXT NOT NULL,
                version TEXT NOT NULL, strategy TEXT NOT NULL, actor TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
                outcome TEXT NOT NULL, reason TEXT, pool TEXT, previous_pool TEXT, previous_version TEXT,
                UNIQUE (rollout_id, local_id))
            """,
            "CREATE INDEX deployments_by_service ON deployments(service, environment, id)",
            """
            CREATE TABLE steps (
                id {id}, rollout_id BIGINT NOT NULL, local_id BIGINT NOT NULL, deployment_local_id BIGINT NOT NULL, time TEXT NOT NULL,
                kind TEXT NOT NULL, detail TEXT NOT NULL, weight TEXT, verdict TEXT, requests BIGINT, error_rate DOUBLE PRECISION,
                baseline_error_rate DOUBLE PRECISION, p99_ms DOUBLE PRECISION, server TEXT, UNIQUE (rollout_id, local_id))
            """,
            """
            CREATE TABLE hooks (
                id {id}, rollout_id BIGINT NOT NULL, local_id BIGINT NOT NULL, deployment_local_id BIGINT, phase TEXT NOT NULL,
                command TEXT NOT NULL, exit_code BIGINT, duration_ms BIGINT, output TEXT, time TEXT NOT NULL, UNIQUE (rollout_id, local_id))
            """,
            """
            CREATE TABLE events (
                id {id}, rollout_id BIGINT NOT NULL, local_id BIGINT NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL,
                environment TEXT, message TEXT NOT NULL, fields TEXT NOT NULL, UNIQUE (rollout_id, local_id))
            """,
            """
            CREATE TABLE controls (
                id {id}, rollout_id BIGINT NOT NULL, command TEXT NOT NULL, argument TEXT, actor TEXT NOT NULL, created_at TEXT NOT NULL,
                handler TEXT NOT NULL, delivered_at TEXT, handled_at TEXT, result TEXT)
            """,
            "CREATE INDEX controls_by_rollout ON controls(rollout_id, id)",
            """
            CREATE TABLE locks (
                rollout_id BIGINT NOT NULL, environment TEXT NOT NULL, token TEXT NOT NULL, released INTEGER NOT NULL,
                PRIMARY KEY (rollout_id, environment))
            """,
            """
            CREATE TABLE feed (
                id {id}, time TEXT NOT NULL, topic TEXT NOT NULL, rollout_id BIGINT, service TEXT, environment TEXT,
                kind TEXT NOT NULL, message TEXT NOT NULL)
            """,
            """
            CREATE TABLE tokens (
                id {id}, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
                created_by TEXT NOT NULL, revoked_at TEXT)
            """,
            """
            CREATE TABLE sessions (
                hash TEXT PRIMARY KEY, actor TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL, expires_at BIGINT NOT NULL)
            """,
            "CREATE INDEX sessions_by_actor ON sessions(actor)",
            """
            CREATE TABLE audit (
                id {id}, time TEXT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
                detail TEXT, outcome TEXT NOT NULL)
            """,
        ]),
    ]

    /// Brings the schema up to date. PostgreSQL: under an advisory lock, so that two console
    /// instances starting together migrate once.
    static func run(on database: ConsoleDatabase) async throws -> [Int] {
        let idColumn = database.idColumn
        let dialect = database.dialect
        return try await database.withConnection { sql in
            if dialect == .postgres { try await sql.raw("SELECT pg_advisory_lock(734917)").run() }
            do {
                try await sql.raw("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, summary TEXT NOT NULL, applied_at TEXT NOT NULL)").run()
                let done = Set(try await sql.raw("SELECT version FROM schema_migrations").all().map { try $0.decode(column: "version", as: Int.self) })
                var applied: [Int] = []
                for migration in all where !done.contains(migration.version) {
                    try await sql.raw("BEGIN").run()
                    do {
                        for statement in migration.statements {
                            try await sql.raw(SQLQueryString(statement.replacingOccurrences(of: "{id}", with: idColumn))).run()
                        }
                        try await sql.raw("INSERT INTO schema_migrations (version, summary, applied_at) VALUES (\(bind: migration.version), \(bind: migration.summary), \(bind: Clock.now()))").run()
                        try await sql.raw("COMMIT").run()
                    } catch {
                        try? await sql.raw("ROLLBACK").run()
                        throw ConsoleError("database migration \(migration.version) (\(migration.summary)) failed: \(String(reflecting: error)); nothing of it was applied")
                    }
                    applied.append(migration.version)
                }
                if dialect == .postgres { try await sql.raw("SELECT pg_advisory_unlock(734917)").run() }
                return applied
            } catch {
                if dialect == .postgres { try? await sql.raw("SELECT pg_advisory_unlock(734917)").run() }
                throw error
            }
        }
    }
}

/// Times as the console stores them.
enum Clock {
    /// Now, ISO 8601 in UTC with milliseconds (sorts as text).
    static func now() -> String { iso(Date()) }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// Reads ISO 8601 with or without fractional seconds.
    static func date(_ text: String?) -> Date? {
        guard let text else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    static func milliseconds(_ date: Date = Date()) -> Int {
        let value = date.timeIntervalSince1970 * 1000
        return value.isFinite && abs(value) < 9e15 ? Int(value) : 0
    }
}
