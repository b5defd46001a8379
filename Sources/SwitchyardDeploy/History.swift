import CSQLite
import Foundation
import Glibc
import SwitchyardAdminClient

/// The deploy history: SQLite, one file per repository (`.switchyard/history.sqlite` by
/// default). A rollout writes every step as it happens, so a crash leaves a record that
/// says how far it got; `deploy pause`, `promote` and the others reach a running rollout
/// through its `controls` table. WAL mode lets readers and the runner work at once.
public final class History: @unchecked Sendable {
    let db: OpaquePointer
    public let path: String

    public init(path: String) throws(ClientError) {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        var handle: OpaquePointer?
        guard sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil) == SQLITE_OK, let handle else {
            throw ClientError("cannot open the history database \(path): \(handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory")")
        }
        db = handle
        sqlite3_busy_timeout(db, 5000)
        do {
            try exec("PRAGMA journal_mode=WAL")
            try exec("PRAGMA synchronous=FULL")
            try exec(Self.schema)
            // Histories written before steps named their server get the column; old rows have none.
            if !query("PRAGMA table_info(steps)").contains(where: { $0["name"] as? String == "server" }) {
                try exec("ALTER TABLE steps ADD COLUMN server TEXT")
            }
        } catch {
            throw ClientError("history database \(path): \(error)")
        }
    }

    deinit { sqlite3_close_v2(db) }

    static let schema = """
        CREATE TABLE IF NOT EXISTS rollouts (
            id INTEGER PRIMARY KEY, service TEXT NOT NULL, version TEXT NOT NULL, actor TEXT NOT NULL,
            plan TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT NOT NULL, reason TEXT,
            pid INTEGER NOT NULL, host TEXT NOT NULL, heartbeat_at TEXT, environment TEXT, progress TEXT);
        CREATE TABLE IF NOT EXISTS deployments (
            id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, service TEXT NOT NULL, environment TEXT NOT NULL,
            version TEXT NOT NULL, strategy TEXT NOT NULL, actor TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
            outcome TEXT NOT NULL, reason TEXT, pool TEXT, previous_pool TEXT, previous_version TEXT);
        CREATE TABLE IF NOT EXISTS steps (
            id INTEGER PRIMARY KEY, deployment_id INTEGER NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL,
            detail TEXT NOT NULL, weight TEXT, verdict TEXT, requests INTEGER, error_rate REAL,
            baseline_error_rate REAL, p99_ms REAL, server TEXT);
        CREATE TABLE IF NOT EXISTS hooks (
            id INTEGER PRIMARY KEY, deployment_id INTEGER, rollout_id INTEGER NOT NULL, phase TEXT NOT NULL,
            command TEXT NOT NULL, exit_code INTEGER, duration_ms INTEGER, output TEXT, time TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS controls (
            id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, command TEXT NOT NULL, argument TEXT,
            actor TEXT NOT NULL, created_at TEXT NOT NULL, handled_at TEXT, result TEXT);
        CREATE TABLE IF NOT EXISTS locks (
            rollout_id INTEGER NOT NULL, environment TEXT NOT NULL, token TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (rollout_id, environment));
        CREATE INDEX IF NOT EXISTS deployments_by_service ON deployments(service, environment);
        """

    // MARK: SQL plumbing

    /// SQL stays in this file: callers get named methods, so the schema can change in one place.
    enum Value { case text(String?), int(Int?), real(Double?) }

    func exec(_ sql: String) throws(ClientError) {
        var message: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(db, sql, nil, nil, &message) != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "error"
            sqlite3_free(message)
            throw ClientError(text)
        }
    }

    /// Runs a statement; returns the rows as dictionaries (column name to Int, Double, String or NSNull).
    @discardableResult
    func query(_ sql: String, _ values: [Value] = []) -> [[String: Any]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else {
            FileHandle.standardError.write(Data("switchyard deploy: history: \(String(cString: sqlite3_errmsg(db)))\n".utf8))
            return []
        }
        defer { sqlite3_finalize(statement) }
        for (i, v) in values.enumerated() {
            let index = Int32(i + 1)
            switch v {
            case .text(let s?): _ = sy_sqlite_bind_text(statement, index, s)
            case .int(let n?): sqlite3_bind_int64(statement, index, Int64(n))
            case .real(let d?): sqlite3_bind_double(statement, index, d)
            default: sqlite3_bind_null(statement, index)
            }
        }
        var rows: [[String: Any]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_ROW {
                var row: [String: Any] = [:]
                for c in 0..<sqlite3_column_count(statement) {
                    let name = String(cString: sqlite3_column_name(statement, c))
                    switch sqlite3_column_type(statement, c) {
                    case SQLITE_INTEGER: row[name] = Int(sqlite3_column_int64(statement, c))
                    case SQLITE_FLOAT: row[name] = sqlite3_column_double(statement, c)
                    case SQLITE_TEXT: row[name] = String(cString: sqlite3_column_text(statement, c))
                    default: row[name] = NSNull()
                    }
                }
                rows.append(row)
            } else {
                if rc != SQLITE_DONE {
                    FileHandle.standardError.write(Data("switchyard deploy: history: \(String(cString: sqlite3_errmsg(db)))\n".utf8))
                }
                break
            }
        }
        return rows
    }

    var lastID: Int { Int(sqlite3_last_insert_rowid(db)) }

    public static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }

    // MARK: Rollouts and deployments

    public func startRollout(service: String, version: String, actor: String, plan: String) -> Int {
        query("INSERT INTO rollouts (service, version, actor, plan, started_at, outcome, pid, host, heartbeat_at) VALUES (?,?,?,?,?,?,?,?,?)",
              [.text(service), .text(version), .text(actor), .text(plan), .text(Self.now()), .text("running"),
               .int(Int(getpid())), .text(Self.hostName), .text(Self.now())])
        return lastID
    }

    public func finishRollout(_ id: Int, outcome: String, reason: String?) {
        query("UPDATE rollouts SET ended_at = ?, outcome = ?, reason = ? WHERE id = ?", [.text(Self.now()), .text(outcome), .text(reason), .int(id)])
    }

    public func heartbeat(_ id: Int, environment: String?, progress: String?) {
        query("UPDATE rollouts SET heartbeat_at = ?, environment = COALESCE(?, environment), progress = COALESCE(?, progress) WHERE id = ?",
              [.text(Self.now()), .text(environment), .text(progress), .int(id)])
    }

    public func startDeployment(rollout: Int, service: String, environment: String, version: String, strategy: String,
                                actor: String, pool: String?, previousPool: String?, previousVersion: String?) -> Int {
        query("""
            INSERT INTO deployments (rollout_id, service, environment, version, strategy, actor, started_at, outcome, pool, previous_pool, previous_version)
            VALUES (?,?,?,?,?,?,?,?,?,?,?)
            """, [.int(rollout), .text(service), .text(environment), .text(version), .text(strategy), .text(actor), .text(Self.now()),
                  .text("running"), .text(pool), .text(previousPool), .text(previousVersion)])
        return lastID
    }

    public func finishDeployment(_ id: Int, outcome: String, reason: String?) {
        query("UPDATE deployments SET ended_at = ?, outcome = ?, reason = ? WHERE id = ?", [.text(Self.now()), .text(outcome), .text(reason), .int(id)])
    }

    /// Records a step; `server` names the server a rolling update's step is about.
    public func recordStep(deployment: Int, kind: String, detail: String, weight: String? = nil, analysis: AnalysisResult? = nil, server: String? = nil) {
        query("""
            INSERT INTO steps (deployment_id, time, kind, detail, weight, verdict, requests, error_rate, baseline_error_rate, p99_ms, server)
            VALUES (?,?,?,?,?,?,?,?,?,?,?)
            """, [.int(deployment), .text(Self.now()), .text(kind), .text(detail), .text(weight), .text(analysis?.verdict.rawValue),
                  .int(analysis?.requests), .real(analysis?.errorRate), .real(analysis?.baselineErrorRate), .real(analysis?.p99.map { $0 * 1000 }),
                  .text(server)])
    }

    /// The servers a rolling deployment drained, first drain first, each once: the servers
    /// that may run the new version, which `deploy abort` restores after a crash.
    public func drainedServers(deployment: Int) -> [String] {
        var names: [String] = []
        for row in query("SELECT server FROM steps WHERE deployment_id = ? AND kind = 'drain' AND server IS NOT NULL ORDER BY id", [.int(deployment)]) {
            if let name = row["server"] as? String, !names.contains(name) { names.append(name) }
        }
        return names
    }

    public func recordHook(rollout: Int, deployment: Int?, phase: String, command: String, result: HookResult) {
        query("INSERT INTO hooks (deployment_id, rollout_id, phase, command, exit_code, duration_ms, output, time) VALUES (?,?,?,?,?,?,?,?)",
              [.int(deployment), .int(rollout), .text(phase), .text(command), .int(Int(result.exitCode)), .int(result.durationMilliseconds),
               .text(result.output), .text(Self.now())])
    }

    /// The version last promoted in an environment (what a failed rolling update restores).
    public func lastPromotedVersion(service: String, environment: String) -> String? {
        query("SELECT version FROM deployments WHERE service = ? AND environment = ? AND outcome = 'promoted' ORDER BY id DESC LIMIT 1",
              [.text(service), .text(environment)]).first?["version"] as? String
    }

    /// Marks a crashed rollout rolled back by `deploy abort`, keeping why it crashed.
    public func markAborted(_ id: Int, actor: String) {
        query("UPDATE rollouts SET outcome = 'rolled_back', reason = COALESCE(reason, '') || '; aborted by ' || ? WHERE id = ?", [.text(actor), .int(id)])
    }

    public func rollout(_ id: Int) -> [String: Any]? { query("SELECT * FROM rollouts WHERE id = ?", [.int(id)]).first }

    /// The service's rollout still marked running (`markCrashed` first, to tell a live one from a dead one).
    public func runningRollout(service: String) -> [String: Any]? {
        query("SELECT * FROM rollouts WHERE service = ? AND outcome = 'running' ORDER BY id DESC LIMIT 1", [.text(service)]).first
    }

    public func latestRollout(service: String) -> [String: Any]? {
        query("SELECT * FROM rollouts WHERE service = ? ORDER BY id DESC LIMIT 1", [.text(service)]).first
    }

    public func deployments(rollout: Int) -> [[String: Any]] {
        query("SELECT * FROM deployments WHERE rollout_id = ? ORDER BY id", [.int(rollout)])
    }

    public func list(service: String?, environment: String?, limit: Int) -> [[String: Any]] {
        var sql = "SELECT * FROM deployments WHERE 1=1"
        var values: [Value] = []
        if let service { sql += " AND service = ?"; values.append(.text(service)) }
        if let environment { sql += " AND environment = ?"; values.append(.text(environment)) }
        sql += " ORDER BY id DESC LIMIT ?"
        values.append(.int(limit))
        return query(sql, values)
    }

    public func deployment(_ id: Int) -> [String: Any]? { query("SELECT * FROM deployments WHERE id = ?", [.int(id)]).first }
    public func steps(deployment: Int) -> [[String: Any]] { query("SELECT * FROM steps WHERE deployment_id = ? ORDER BY id", [.int(deployment)]) }
    public func hooks(deployment: Int, rollout: Int) -> [[String: Any]] {
        query("SELECT * FROM hooks WHERE deployment_id = ? OR (deployment_id IS NULL AND rollout_id = ?) ORDER BY id", [.int(deployment), .int(rollout)])
    }

    // MARK: Locks held by a rollout (so that `deploy abort` can act for a crashed one)

    public func saveLock(rollout: Int, environment: String, token: String) {
        query("INSERT OR REPLACE INTO locks (rollout_id, environment, token, released) VALUES (?,?,?,0)", [.int(rollout), .text(environment), .text(token)])
    }

    public func releaseLock(rollout: Int, environment: String) {
        query("UPDATE locks SET released = 1 WHERE rollout_id = ? AND environment = ?", [.int(rollout), .text(environment)])
    }

    public func heldLocks(rollout: Int) -> [String: String] {
        var out: [String: String] = [:]
        for row in query("SELECT environment, token FROM locks WHERE rollout_id = ? AND released = 0", [.int(rollout)]) {
            if let environment = row["environment"] as? String { out[environment] = row["token"] as? String }
        }
        return out
    }

    // MARK: Controls

    public func addControl(rollout: Int, command: String, argument: String?, actor: String) -> Int {
        query("INSERT INTO controls (rollout_id, command, argument, actor, created_at) VALUES (?,?,?,?,?)",
              [.int(rollout), .text(command), .text(argument), .text(actor), .text(Self.now())])
        return lastID
    }

    public func pendingControls(rollout: Int) -> [[String: Any]] {
        query("SELECT * FROM controls WHERE rollout_id = ? AND handled_at IS NULL ORDER BY id", [.int(rollout)])
    }

    public func handleControl(_ id: Int, result: String) {
        query("UPDATE controls SET handled_at = ?, result = ? WHERE id = ?", [.text(Self.now()), .text(result), .int(id)])
    }

    public func control(_ id: Int) -> [String: Any]? { query("SELECT * FROM controls WHERE id = ?", [.int(id)]).first }

    // MARK: Liveness

    public static var hostName: String {
        var bytes = [UInt8](repeating: 0, count: 256)
        _ = bytes.withUnsafeMutableBufferPointer { $0.baseAddress!.withMemoryRebound(to: CChar.self, capacity: 256) { gethostname($0, 255) } }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Whether the rollout's process still runs. On this host: the PID exists and is not a
    /// zombie. On another host: a heartbeat within `staleAfter` seconds.
    public static func isAlive(_ rollout: [String: Any], staleAfter: Double = 60) -> Bool {
        let pid = rollout["pid"] as? Int ?? 0
        if rollout["host"] as? String == hostName {
            guard pid > 0, kill(pid_t(pid), 0) == 0 || errno == EPERM else { return false }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            if let close = stat.lastIndex(of: ")") {
                let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
                return state != "Z" && state != "X"
            }
            return true
        }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let text = rollout["heartbeat_at"] as? String, let beat = f.date(from: text) else { return false }
        return Date().timeIntervalSince(beat) < staleAfter
    }

    /// Marks rollouts whose process is gone as crashed (and their open deployments with them).
    @discardableResult
    public func markCrashed(service: String) -> [Int] {
        var crashed: [Int] = []
        for row in query("SELECT * FROM rollouts WHERE service = ? AND outcome = 'running'", [.text(service)]) where !Self.isAlive(row) {
            guard let id = row["id"] as? Int else { continue }
            let reason = "the orchestrator (pid \(row["pid"] ?? "?") on \(row["host"] ?? "?")) stopped without finishing; last heartbeat \(row["heartbeat_at"] ?? "?")"
            query("UPDATE rollouts SET outcome = 'crashed', reason = ?, ended_at = ? WHERE id = ?", [.text(reason), .text(Self.now()), .int(id)])
            query("UPDATE deployments SET outcome = 'crashed', reason = ?, ended_at = ? WHERE rollout_id = ? AND outcome = 'running'",
                  [.text(reason), .text(Self.now()), .int(id)])
            crashed.append(id)
        }
        return crashed
    }
}
