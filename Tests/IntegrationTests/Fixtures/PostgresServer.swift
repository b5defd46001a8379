import Foundation
import Glibc

/// A throwaway PostgreSQL server for one test, from Debian's packages (scripts/deps installs them):
/// its own cluster, made by initdb in a fresh temporary directory, served by `postgres` on 127.0.0.1
/// and a free port, its Unix socket inside that directory. Tests may start many at once: they share
/// nothing but the programs.
///
/// - Access: over TCP the one role, `switchyard`, signs in with a password (SCRAM-SHA-256) that is
///   random per cluster; ``url`` carries it in the form that both postgres-kit's
///   `SQLPostgresConfiguration(url:)` and libpq read. The Unix socket trusts whoever reaches it, and
///   only the harness does (its directory is private): it asks there whether the server is ready, so
///   that a server of another test on a port just taken cannot answer for this one.
/// - Speed over durability: initdb runs with `--no-sync`, and the server with `fsync` and
///   `full_page_writes` off. A killed server still loses no committed transaction, since each
///   commit is written to the kernel; only a crash of the machine would lose it, and nothing here
///   outlives the test run. `synchronous_commit` stays on: off, a commit waits in shared memory
///   for the WAL writer, and a kill() loses it (the harness tests saw that). A cluster starts in
///   well under a second.
/// - Root: PostgreSQL refuses to run as root, and CI runs as root. Then initdb and postgres run as
///   the system account `switchyard-pg`, created with useradd the first time it is missing, and the
///   directory is handed to it. A dedicated account rather than `nobody`, which should own no files
///   and whose processes any other `nobody` process may signal, or Debian's `postgres`, which owns
///   the machine's own clusters. They are started through setpriv, which execs in place, so the PID
///   the harness holds is the postmaster's (runuser stays as their parent, and a SIGKILL meant for
///   the server would kill runuser only).
///
/// One test drives one server from one task; ``stop()`` runs when it is released. `scripts/postgres`
/// does the same for people, with the same settings.
final class PostgresServer: @unchecked Sendable {
    /// The role the console signs in as; initdb makes it the cluster's superuser.
    static let user = "switchyard"
    /// The database made for the console at start.
    static let database = "switchyard"

    /// The cluster's own temporary directory: `data/`, the Unix socket, the server's logs.
    let directory: String
    /// The TCP port on 127.0.0.1; ``restart()`` keeps it.
    private(set) var port: UInt16 = 0
    private let password: String
    private let programs: PostgresPrograms
    private let account: ServerAccount?
    private var process: ManagedProcess?
    private var launches = 0
    private var removed = false

    /// Where a client connects, e.g. `postgres://switchyard:PASSWORD@127.0.0.1:PORT/switchyard?sslmode=disable`.
    /// It holds the password: pass it to the console, never print it.
    var url: String {
        "postgres://\(Self.user):\(password)@127.0.0.1:\(port)/\(Self.database)?sslmode=disable"
    }

    var dataDirectory: String { "\(directory)/data" }

    /// Whether the postmaster is running (its children are not counted).
    var isRunning: Bool { process?.isRunning ?? false }

    /// The postmaster's PID while it runs.
    var processID: pid_t? { isRunning ? process?.pid : nil }

    /// What the server wrote to standard error (its log), over all its starts, for a failing test's message.
    var log: String {
        (1...max(launches, 1)).map { (try? String(contentsOfFile: "\(directory)/postgres-\($0).err", encoding: .utf8)) ?? "" }
            .joined()
    }

    private init(directory: String, password: String, programs: PostgresPrograms, account: ServerAccount?) {
        self.directory = directory
        self.password = password
        self.programs = programs
        self.account = account
    }

    /// Creates a cluster, starts it on a free port, makes the `switchyard` database, and returns once
    /// a client can sign in over TCP.
    static func start() throws -> PostgresServer {
        let programs = try PostgresPrograms.located.get()
        let account = try ServerAccount.forThisProcess.get()
        let directory = makeTemporaryDirectory()
        let server = PostgresServer(directory: directory, password: randomPassword(), programs: programs, account: account)
        do {
            try server.createCluster()
            try server.launchOnAFreePort()
            _ = try server.psql("CREATE DATABASE \(database)", database: "postgres")
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    /// Runs `sql` through psql over TCP, signing in as ``url`` does, and returns what it printed:
    /// rows one a line, columns separated by `|`, no header, no trailing newline. Several statements
    /// in one string run as one transaction and only the last one's rows are printed. Throws psql's
    /// message when a statement fails.
    func psql(_ sql: String) throws -> String {
        try psql(sql, database: Self.database)
    }

    /// Stops the server with a fast shutdown (open sessions are ended, not waited for) and removes
    /// its directory. Safe to call more than once, and after ``kill()``.
    func stop() {
        if let process, process.isRunning {
            process.signal(SIGINT)
            if process.waitForExit(timeout: 20) == nil { kill() }
        }
        if !removed {
            removed = true
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Kills the postmaster and every process it started with SIGKILL, as a crash of its machine
    /// would, and returns once they are gone: connections are reset, the port is free, and the data
    /// stays for ``restart()``.
    func kill() {
        guard let process, process.isRunning else { return }
        // Stopped first, so it forks nothing more while its children are listed (a fork under way
        // when the signal comes completes before the stop shows); the children call setsid, so no
        // process group holds them all.
        Glibc.kill(process.pid, SIGSTOP)
        let stopping = Date().addingTimeInterval(5)
        while Date() < stopping, let state = processState(process.pid), state != "T" { usleep(1_000) }
        let children = childProcesses(of: process.pid)
        for child in children { Glibc.kill(child, SIGKILL) }
        process.signal(SIGKILL)
        _ = process.waitForExit(timeout: 10)
        // Orphaned, the children are reaped (or left as zombies) by PID 1: a zombie holds no socket
        // and no shared memory, so it counts as gone.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, children.contains(where: { processState($0).map { $0 != "Z" } ?? false }) {
            usleep(5_000)
        }
    }

    /// Starts the server again on the same data and port after ``kill()``: PostgreSQL first replays
    /// its write-ahead log, as after a real crash.
    func restart() throws {
        guard !removed else { throw HarnessError("this PostgreSQL server was stopped and its directory removed; start a new one") }
        guard !isRunning else { throw HarnessError("PostgreSQL on port \(port) is still running; kill() it before restart()") }
        do {
            try launch()
        } catch is PortTaken {
            throw HarnessError("port \(port) was taken by another process while PostgreSQL was down")
        }
    }

    deinit { stop() }

    // MARK: - Creating and launching

    private func createCluster() throws {
        if let account { try account.takeOwnership(of: directory) }
        // initdb reads the password from a file, so it appears in no command line.
        let passwordFile = "\(directory)/initdb-password"
        try writePrivateFile(passwordFile, password + "\n")
        if let account { try account.takeOwnership(of: passwordFile) }
        defer { unlink(passwordFile) }
        let result = try run(launcherPath(programs.initdb), launcherArguments(programs.initdb) + [
            "--pgdata=\(dataDirectory)", "--username=\(Self.user)", "--pwfile=\(passwordFile)",
            "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "--locale=C", "--encoding=UTF8",
        ])
        guard result.status == 0 else {
            throw HarnessError("initdb failed (exit \(result.status)) in \(dataDirectory):\n\(result.output)\(result.error)")
        }
        // psql finds the password here (libpq's `passfile`), not in its arguments.
        try writePrivateFile(passFile, "127.0.0.1:*:*:\(Self.user):\(password)\n")
    }

    /// A port that is free when asked may be taken before postgres binds it (other tests ask too):
    /// then another one is tried.
    private func launchOnAFreePort() throws {
        for _ in 1...5 {
            port = freePort()
            do {
                try launch()
                return
            } catch is PortTaken {
                continue
            }
        }
        throw HarnessError("PostgreSQL found each of 5 free ports taken before it could bind it:\n\(log)")
    }

    private struct PortTaken: Error {}

    private func launch() throws {
        launches += 1
        let arguments = [
            "-D", dataDirectory, "-p", "\(port)",
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=\(directory)",
            "-c", "fsync=off", "-c", "full_page_writes=off",
        ]
        let server = try ManagedProcess(executable: launcherPath(programs.postgres),
                                        launcherArguments(programs.postgres) + arguments,
                                        directory: directory, label: "postgres-\(launches)")
        process = server
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            guard server.isRunning else {
                let text = server.stderr
                if text.contains("Address already in use") { throw PortTaken() }
                throw HarnessError("postgres exited while starting on port \(port):\n\(text)")
            }
            // Asked on this cluster's own socket: the answer cannot come from another server.
            let ready = try run(programs.pgIsReady, ["--quiet", "--host=\(directory)", "--port=\(port)",
                                                     "--username=\(Self.user)", "--dbname=postgres", "--timeout=5"])
            if ready.status == 0 { return }
            usleep(20_000)
        }
        kill()
        throw HarnessError("postgres did not accept connections on port \(port) within 60 s:\n\(server.stderr)")
    }

    private func launcherPath(_ program: String) -> String {
        account == nil ? program : ServerAccount.setpriv
    }

    private func launcherArguments(_ program: String) -> [String] {
        account.map { $0.setprivArguments + [program] } ?? []
    }

    // MARK: - psql

    private var passFile: String { "\(directory)/pgpass" }

    /// A libpq connection string for psql, pgbench and the like, signing in as ``url`` does: the
    /// password comes from a file in the cluster's directory, and is not in the string.
    func connectionString(database: String = PostgresServer.database) -> String {
        "host=127.0.0.1 port=\(port) user=\(Self.user) dbname=\(database) sslmode=disable passfile=\(passFile) connect_timeout=30"
    }

    private func psql(_ sql: String, database: String) throws -> String {
        let result = try run(programs.psql, ["--no-psqlrc", "--quiet", "--no-align", "--tuples-only", "--set=ON_ERROR_STOP=1",
                                             "--dbname=\(connectionString(database: database))", "--command=\(sql)"])
        guard result.status == 0 else {
            throw HarnessError("psql failed (exit \(result.status)) on port \(port) running \(sql):\n\(result.error)")
        }
        var output = result.output
        if output.hasSuffix("\n") { output.removeLast() }
        return output
    }
}

/// PostgreSQL's programs: those in `SWITCHYARD_POSTGRES_BINDIR`, or in the newest of Debian's
/// /usr/lib/postgresql/VERSION/bin.
struct PostgresPrograms: Sendable {
    let directory: String
    var initdb: String { "\(directory)/initdb" }
    var postgres: String { "\(directory)/postgres" }
    var psql: String { "\(directory)/psql" }
    var pgIsReady: String { "\(directory)/pg_isready" }

    static let located: Result<PostgresPrograms, HarnessError> = {
        if let given = ProcessInfo.processInfo.environment["SWITCHYARD_POSTGRES_BINDIR"] {
            guard FileManager.default.isExecutableFile(atPath: "\(given)/initdb") else {
                return .failure(HarnessError("SWITCHYARD_POSTGRES_BINDIR is \(given), which has no initdb; point it at PostgreSQL's bin directory"))
            }
            return .success(PostgresPrograms(directory: given))
        }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .filter { FileManager.default.isExecutableFile(atPath: "\(root)/\($0)/bin/initdb") }
            .sorted { $0.compare($1, options: .numeric) == .orderedAscending }
        guard let newest = versions.last else {
            return .failure(HarnessError("PostgreSQL's server is not installed (no \(root)/*/bin/initdb): run scripts/deps, "
                                         + "or set SWITCHYARD_POSTGRES_BINDIR to the directory holding initdb and postgres"))
        }
        return .success(PostgresPrograms(directory: "\(root)/\(newest)/bin"))
    }()
}

/// The unprivileged account the servers run as when the tests run as root (nil otherwise: then
/// they run as the tests' own user).
struct ServerAccount: Sendable {
    static let name = "switchyard-pg"
    static let setpriv = "/usr/bin/setpriv"
    let uid: uid_t
    let gid: gid_t

    /// setpriv's arguments before the program: this account's user and group, no supplementary groups.
    var setprivArguments: [String] { ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--"] }

    /// Found or created once per test process (a static let is initialised once, under a lock).
    static let forThisProcess: Result<ServerAccount?, HarnessError> = {
        guard geteuid() == 0 else { return .success(nil) }
        guard FileManager.default.isExecutableFile(atPath: setpriv) else {
            return .failure(HarnessError("\(setpriv) is missing (Debian's util-linux): it runs PostgreSQL as \(name) when the tests run as root"))
        }
        var lastError = ""
        // Another process (scripts/postgres, a second test run) may be creating it at the same
        // moment: useradd then fails on the lock or on the name, and the lookup settles it.
        for _ in 1...5 {
            if let found = lookUp() { return .success(found) }
            do {
                let result = try run("/usr/sbin/useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                                                           "--shell", "/usr/sbin/nologin", "--comment", "Switchyard test PostgreSQL servers", name])
                lastError = result.error
            } catch {
                lastError = "\(error)"
            }
            if let found = lookUp() { return .success(found) }
            usleep(200_000)
        }
        return .failure(HarnessError("cannot create the system user \(name), which runs PostgreSQL when the tests run as root "
                                     + "(PostgreSQL refuses root): \(lastError)"))
    }()

    private static func lookUp() -> ServerAccount? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &found) == 0, found != nil else { return nil }
        return ServerAccount(uid: entry.pw_uid, gid: entry.pw_gid)
    }

    func takeOwnership(of path: String) throws {
        guard chown(path, uid, gid) == 0 else {
            throw HarnessError("cannot hand \(path) to \(Self.name): \(String(cString: strerror(errno)))")
        }
    }
}

/// 128 random bits in hex: needs no escaping in a URL or in a pgpass line.
private func randomPassword() -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<2).map { _ in
        let hex = String(generator.next() as UInt64, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }.joined()
}

/// Writes `text` to a new file only its owner may read (libpq ignores a pgpass file others can read).
private func writePrivateFile(_ path: String, _ text: String) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
        throw HarnessError("cannot write \(path)")
    }
}

/// The processes whose parent is `parent`, from /proc.
func childProcesses(of parent: pid_t) -> [pid_t] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { pid_t($0) }.filter { processStatus($0)?.parent == parent }
}

/// A process's state letter (`R`, `S`, `Z`...), or nil when there is no such process.
func processState(_ pid: pid_t) -> Character? {
    processStatus(pid)?.state
}

/// State and parent from /proc/PID/stat: "PID (COMMAND) STATE PARENT ...". The command may hold
/// spaces and parentheses, so the fields are read after the last ")".
private func processStatus(_ pid: pid_t) -> (state: Character, parent: pid_t)? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count >= 2, let state = fields[0].first, let parent = pid_t(fields[1]) else { return nil }
    return (state, parent)
}
