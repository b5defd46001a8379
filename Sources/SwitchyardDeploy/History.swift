import CSQLite
import Foundation
import Glibc
import SwitchyardAdminClient
import SwitchyardConsoleAPI

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
            // One writer at a time: two processes opening an older file must not both add a column.
            try exec("BEGIN IMMEDIATE")
            do {
                try exec(Self.schema)
                // Histories written by older versions get the columns added since; their old rows have none.
                for (table, columns) in Self.addedColumns { try addMissingColumns(table, columns) }
                try exec(Self.indexes)
                try exec("COMMIT")
            } catch {
                try? exec("ROLLBACK")
                throw error
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
            pid INTEGER NOT NULL, host TEXT NOT NULL, heartbeat_at TEXT, environment TEXT, progress TEXT,
            run TEXT, environments TEXT, plan_text TEXT,
            commit_sha TEXT, commit_time TEXT, ticket TEXT, link TEXT, changelog TEXT);
        CREATE TABLE IF NOT EXISTS deployments (
            id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, service TEXT NOT NULL, environment TEXT NOT NULL,
            version TEXT NOT NULL, strategy TEXT NOT NULL, actor TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
            outcome TEXT NOT NULL, reason TEXT, pool TEXT, previous_pool TEXT, previous_version TEXT, proxies TEXT);
        CREATE TABLE IF NOT EXISTS steps (
            id INTEGER PRIMARY KEY, deployment_id INTEGER NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL,
            detail TEXT NOT NULL, weight TEXT, verdict TEXT, requests INTEGER, error_rate REAL,
            baseline_error_rate REAL, p99_ms REAL, server TEXT);
        CREATE TABLE IF NOT EXISTS hooks (
            id INTEGER PRIMARY KEY, deployment_id INTEGER, rollout_id INTEGER NOT NULL, phase TEXT NOT NULL,
            command TEXT NOT NULL, exit_code INTEGER, duration_ms INTEGER, output TEXT, time TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS controls (
            id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, command TEXT NOT NULL, argument TEXT,
            actor TEXT NOT NULL, created_at TEXT NOT NULL, handled_at TEXT, result TEXT, console_id INTEGER);
        CREATE TABLE IF NOT EXISTS locks (
            rollout_id INTEGER NOT NULL, environment TEXT NOT NULL, token TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (rollout_id, environment));
        CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL, environment TEXT,
            message TEXT NOT NULL, fields TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS console_sync (
            rollout_id INTEGER PRIMARY KEY, console_rollout INTEGER, steps INTEGER NOT NULL DEFAULT 0,
            hooks INTEGER NOT NULL DEFAULT 0, events INTEGER NOT NULL DEFAULT 0, plan_acked INTEGER NOT NULL DEFAULT 0,
            acked_state TEXT);
        """

    /// Columns added after the first release, by table: `init` adds the missing ones to older files.
    static let addedColumns: [(table: String, columns: [(name: String, type: String)])] = [
        ("steps", [("server", "TEXT")]),
        ("rollouts", [("run", "TEXT"), ("environments", "TEXT"), ("plan_text", "TEXT"), ("commit_sha", "TEXT"),
                      ("commit_time", "TEXT"), ("ticket", "TEXT"), ("link", "TEXT"), ("changelog", "TEXT")]),
        ("controls", [("console_id", "INTEGER")]),
        ("deployments", [("proxies", "TEXT")]),
    ]

    /// Created after the columns they cover exist in older files too.
    static let indexes = """
        CREATE INDEX IF NOT EXISTS deployments_by_service ON deployments(service, environment);
        CREATE INDEX IF NOT EXISTS events_by_rollout ON events(rollout_id, id);
        CREATE UNIQUE INDEX IF NOT EXISTS rollouts_by_run ON rollouts(run);
        CREATE UNIQUE INDEX IF NOT EXISTS controls_by_console_id ON controls(rollout_id, console_id);
        """

    func addMissingColumns(_ table: String, _ columns: [(name: String, type: String)]) throws(ClientError) {
        let present = Set(query("PRAGMA table_info(\(table))").compactMap { $0["name"] as? String })
        for column in columns where !present.contains(column.name) {
            try exec("ALTER TABLE \(table) ADD COLUMN \(column.name) \(column.type)")
        }
    }

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

    /// Runs a statement; returns the rows as dictionaries (column name to Int, Double, String
    /// or NSNull). An error is printed, and the rows read before it are returned: the history
    /// is a record of the rollout, and a failed write must not stop the rollout.
    @discardableResult
    func query(_ sql: String, _ values: [Value] = []) -> [[String: Any]] {
        var rows: [[String: Any]] = []
        do { try run(sql, values) { rows.append($0) } }
        catch { FileHandle.standardError.write(Data("switchyard deploy: history: \(error)\n".utf8)) }
        return rows
    }

    /// Runs a statement whose failure must stop what the caller does (an import).
    func write(_ sql: String, _ values: [Value] = []) throws(ClientError) {
        try run(sql, values) { _ in }
    }

    private func run(_ sql: String, _ values: [Value], row: ([String: Any]) -> Void) throws(ClientError) {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else { throw ClientError(String(cString: sqlite3_errmsg(db))) }
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
        while true {
            let rc = sqlite3_step(statement)
            guard rc == SQLITE_ROW else {
                if rc != SQLITE_DONE { throw ClientError(String(cString: sqlite3_errmsg(db))) }
                return
            }
            var values: [String: Any] = [:]
            for c in 0..<sqlite3_column_count(statement) {
                let name = String(cString: sqlite3_column_name(statement, c))
                switch sqlite3_column_type(statement, c) {
                case SQLITE_INTEGER: values[name] = Int(sqlite3_column_int64(statement, c))
                case SQLITE_FLOAT: values[name] = sqlite3_column_double(statement, c)
                case SQLITE_TEXT: values[name] = String(cString: sqlite3_column_text(statement, c))
                default: values[name] = NSNull()
                }
            }
            row(values)
        }
    }

    /// Rows the last statement on this connection changed.
    func sqlite3Changes() -> Int32 { sqlite3_changes(db) }

    var lastID: Int { Int(sqlite3_last_insert_rowid(db)) }

    public static func now() -> String { format(Date()) }

    /// ISO 8601 in UTC with milliseconds, as every time in the history.
    public static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    // MARK: Rollouts and deployments

    /// Records a rollout that starts now in this process.
    /// - Parameters:
    ///   - run: the run's identity (a UUID), by which a console knows it.
    ///   - environments: the environments the run goes through, in order.
    ///   - planText: the plan file's content, which a console keeps to abort a crashed run.
    public func startRollout(service: String, version: String, actor: String, plan: String, run: String = UUID().uuidString.lowercased(),
                             environments: [String] = [], planText: String? = nil, change: ChangeInfo? = nil) -> Int {
        query("""
            INSERT INTO rollouts (service, version, actor, plan, started_at, outcome, pid, host, heartbeat_at, run, environments, plan_text,
                                  commit_sha, commit_time, ticket, link, changelog)
            VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            """, [.text(service), .text(version), .text(actor), .text(plan), .text(Self.now()), .text("running"),
                  .int(Int(getpid())), .text(Self.hostName), .text(Self.now()), .text(run), .text(Self.jsonArray(environments)), .text(planText),
                  .text(change?.commit), .text(change?.commitTime), .text(change?.ticket), .text(change?.link), .text(change?.changelog)])
        return lastID
    }

    /// The rollout recorded with the run identity `run`.
    public func rollout(run: String) -> [String: Any]? { query("SELECT * FROM rollouts WHERE run = ?", [.text(run)]).first }

    static func jsonArray(_ strings: [String]) -> String {
        let encoder = JSONEncoder()
        // Addresses keep their slashes: the text is read by people too.
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return (try? encoder.encode(strings)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }

    public func finishRollout(_ id: Int, outcome: String, reason: String?) {
        query("UPDATE rollouts SET ended_at = ?, outcome = ?, reason = ? WHERE id = ?", [.text(Self.now()), .text(outcome), .text(reason), .int(id)])
    }

    public func heartbeat(_ id: Int, environment: String?, progress: String?) {
        query("UPDATE rollouts SET heartbeat_at = ?, environment = COALESCE(?, environment), progress = COALESCE(?, progress) WHERE id = ?",
              [.text(Self.now()), .text(environment), .text(progress), .int(id)])
    }

    /// Records a deployment that starts now; `proxies` are the addresses of the environment's
    /// proxies it changes (a JSON array in `proxies`; rows of older histories have none).
    public func startDeployment(rollout: Int, service: String, environment: String, version: String, strategy: String,
                                actor: String, pool: String?, previousPool: String?, previousVersion: String?, proxies: [String] = []) -> Int {
        query("""
            INSERT INTO deployments (rollout_id, service, environment, version, strategy, actor, started_at, outcome, pool, previous_pool,
                                     previous_version, proxies)
            VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
            """, [.int(rollout), .text(service), .text(environment), .text(version), .text(strategy), .text(actor), .text(Self.now()),
                  .text("running"), .text(pool), .text(previousPool), .text(previousVersion), .text(proxies.isEmpty ? nil : Self.jsonArray(proxies))])
        return lastID
    }

    /// The proxies a deployment row names (empty for rows written before they were recorded).
    public static func proxies(of deployment: [String: Any]) -> [String] {
        guard let text = deployment["proxies"] as? String, let list = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else { return [] }
        return list
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

    // MARK: Events

    /// Records an event of a rollout as `deploy run --json` prints it; `fields` holds its
    /// figures as a JSON object.
    public func recordEvent(rollout: Int, time: Date, kind: String, environment: String?, message: String, fields: String) {
        query("INSERT INTO events (rollout_id, time, kind, environment, message, fields) VALUES (?,?,?,?,?,?)",
              [.int(rollout), .text(Self.format(time)), .text(kind), .text(environment), .text(message), .text(fields)])
    }

    public func events(rollout: Int) -> [[String: Any]] { query("SELECT * FROM events WHERE rollout_id = ? ORDER BY id", [.int(rollout)]) }

    // MARK: Locks held by a rollout (so that `deploy abort` can act for a crashed one)

    /// How a lock is named in `locks.environment`: the environment's name when it has a
    /// single proxy (as every history before fleets), "environment@address" for each proxy
    /// of an environment with several. Environment names never hold "@".
    public static func lockKey(environment: String, proxy: String?) -> String {
        proxy.map { "\(environment)@\($0)" } ?? environment
    }

    /// The environment and (for an environment with several proxies) the proxy of a lock key.
    public static func parseLockKey(_ key: String) -> (environment: String, proxy: String?) {
        guard let at = key.firstIndex(of: "@") else { return (key, nil) }
        return (String(key[..<at]), String(key[key.index(after: at)...]))
    }

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
        _ = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return -1 }
            return base.withMemoryRebound(to: CChar.self, capacity: 256) { gethostname($0, 255) }
        }
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
