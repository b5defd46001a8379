import Crypto
import Foundation
import SQLKit

/// What a caller may do. Each role is a set of permissions (`Role.allows`), not a rank:
/// an approver approves but does not start rollouts.
public enum Role: String, Sendable, CaseIterable, Codable {
    case viewer, deployer, approver, admin

    public enum Permission: String, Sendable {
        /// Read rollouts, services, history, statistics, the feed.
        case read
        /// Start rollouts and rollbacks, report runs.
        case deploy
        /// Pause, resume, promote and abort rollouts.
        case control
        /// Approve an environment that waits for approval.
        case approve
        /// Manage tokens.
        case administer
    }

    public func allows(_ permission: Permission) -> Bool {
        switch (self, permission) {
        case (_, .read): return true
        case (.admin, _): return true
        case (.deployer, .deploy), (.deployer, .control): return true
        case (.approver, .approve), (.approver, .control): return true
        default: return false
        }
    }
}

/// Who is calling, once authenticated.
public struct Caller: Sendable, Equatable {
    public var name: String
    public var role: Role
    /// Set for a browser session: unsafe methods must carry it in `X-CSRF-Token`.
    public var csrf: String?
}

/// Tokens (stored as SHA-256 digests, never in clear), browser sessions and the audit trail.
public struct AccessStore: Sendable {
    let database: ConsoleDatabase
    var sql: any SQLDatabase { database.sql }

    public init(database: ConsoleDatabase) { self.database = database }

    static func digest(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A new random secret: 32 bytes from the system's generator, hex.
    static func newSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    // MARK: Tokens

    public struct TokenInfo: Codable, Sendable, Equatable {
        public var name: String
        public var role: String
        public var createdAt: String
        public var createdBy: String
        public var revokedAt: String?
    }

    /// Creates a token and returns its secret (shown once; only its digest is stored).
    public func createToken(name: String, role: Role, by creator: String) async throws -> String {
        let secret = "sy_" + Self.newSecret()
        try await sql.raw("""
            INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES (\(bind: name), \(bind: role.rawValue), \(bind: Self.digest(secret)), \(bind: Clock.now()), \(bind: creator))
            """).run()
        return secret
    }

    public func tokenExists(name: String) async throws -> Bool {
        try await sql.raw("SELECT name FROM tokens WHERE name = \(bind: name)").first() != nil
    }

    public func tokens() async throws -> [TokenInfo] {
        try await sql.raw("SELECT name, role, created_at, created_by, revoked_at FROM tokens ORDER BY name").all().map {
            try $0.decode(model: TokenInfo.self, keyDecodingStrategy: .convertFromSnakeCase)
        }
    }

    /// Revokes a token and ends the browser sessions opened with it; false when there is no such live token.
    public func revokeToken(name: String) async throws -> Bool {
        let revoked = !(try await sql.raw("UPDATE tokens SET revoked_at = \(bind: Clock.now()) WHERE name = \(bind: name) AND revoked_at IS NULL RETURNING name").all().isEmpty)
        if revoked { try await sql.raw("DELETE FROM sessions WHERE actor = \(bind: name)").run() }
        return revoked
    }

    /// Names the console gives its own callers; no token may take them.
    static let reservedNames: Set<String> = ["admin", "anonymous", RolloutStore.consoleRunner]

    public func caller(token secret: String) async throws -> Caller? {
        guard let row = try await sql.raw("SELECT name, role FROM tokens WHERE hash = \(bind: Self.digest(secret)) AND revoked_at IS NULL").first() else { return nil }
        guard let role = Role(rawValue: try row.decode(column: "role", as: String.self)) else { return nil }
        return Caller(name: try row.decode(column: "name", as: String.self), role: role, csrf: nil)
    }

    // MARK: Sessions

    /// Opens a browser session; returns the cookie's secret and the CSRF token.
    public func openSession(for caller: Caller, lifetime: Double) async throws -> (cookie: String, csrf: String) {
        let cookie = Self.newSecret(), csrf = Self.newSecret()
        let expires = Clock.milliseconds(Date().addingTimeInterval(lifetime))
        try await sql.raw("""
            INSERT INTO sessions (hash, actor, role, csrf, expires_at) VALUES (\(bind: Self.digest(cookie)), \(bind: caller.name), \(bind: caller.role.rawValue), \(bind: csrf), \(bind: expires))
            """).run()
        try await sql.raw("DELETE FROM sessions WHERE expires_at < \(bind: Clock.milliseconds())").run()
        return (cookie, csrf)
    }

    public func caller(session cookie: String) async throws -> Caller? {
        guard let row = try await sql.raw("""
            SELECT actor, role, csrf FROM sessions WHERE hash = \(bind: Self.digest(cookie)) AND expires_at > \(bind: Clock.milliseconds())
            """).first(), let role = Role(rawValue: try row.decode(column: "role", as: String.self)) else { return nil }
        return Caller(name: try row.decode(column: "actor", as: String.self), role: role, csrf: try row.decode(column: "csrf", as: String.self))
    }

    public func closeSession(cookie: String) async throws {
        try await sql.raw("DELETE FROM sessions WHERE hash = \(bind: Self.digest(cookie))").run()
    }

    // MARK: Audit

    public struct AuditEntry: Codable, Sendable, Equatable {
        public var id: Int
        public var time: String
        public var actor: String
        public var role: String
        public var action: String
        public var target: String
        public var detail: String?
        public var outcome: String
    }

    public func audit(_ caller: Caller, action: String, target: String, detail: String?, outcome: String) async throws {
        try await sql.raw("""
            INSERT INTO audit (time, actor, role, action, target, detail, outcome)
            VALUES (\(bind: Clock.now()), \(bind: caller.name), \(bind: caller.role.rawValue), \(bind: action), \(bind: target), \(bind: detail), \(bind: outcome))
            """).run()
    }

    public func auditTrail(target: String? = nil, limit: Int = 200) async throws -> [AuditEntry] {
        var query: SQLQueryString = "SELECT * FROM audit WHERE 1 = 1"
        if let target { query += " AND target LIKE \(bind: target + "%")" }
        query += " ORDER BY id DESC LIMIT \(bind: max(1, min(limit, 5000)))"
        return try await sql.raw(query).all().map { try $0.decode(model: AuditEntry.self, keyDecodingStrategy: .convertFromSnakeCase) }
    }
}
