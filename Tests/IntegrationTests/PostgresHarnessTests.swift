import Foundation
import Glibc
import Testing

/// The PostgreSQL harness itself, so that a broken harness fails here, by name, rather than every
/// console test failing obscurely.
@Suite("PostgreSQL harness")
struct PostgresHarnessTests {
    @Test func aNewClusterAnswersOverTCPAndStopRemovesIt() throws {
        let server = try PostgresServer.start()
        #expect(try server.psql("SELECT 1") == "1")
        #expect(try server.psql("SELECT current_user, current_database()") == "switchyard|switchyard")
        #expect(try server.psql("SHOW listen_addresses") == "127.0.0.1")
        server.stop()
        #expect(!server.isRunning)
        #expect(!FileManager.default.fileExists(atPath: server.directory))
        #expect(connectionIsRefused(port: server.port))
    }

    /// The URL read the way postgres-kit reads it (URLComponents), and each part handed to libpq:
    /// the password in it is the one the server takes.
    @Test func theURLSignsIn() throws {
        let server = try PostgresServer.start()
        let url = try #require(URLComponents(string: server.url))
        #expect(url.scheme == "postgres")
        #expect(url.host == "127.0.0.1")
        #expect(url.port == Int(server.port))
        #expect(url.user == PostgresServer.user)
        #expect(url.path == "/\(PostgresServer.database)")
        #expect(url.queryItems == [URLQueryItem(name: "sslmode", value: "disable")])
        let password = try #require(url.password)
        #expect(password.count >= 32)

        let signedIn = try psql(server, password: password, "SELECT current_user")
        #expect(signedIn.status == 0, "\(signedIn.error)")
        #expect(signedIn.output == "switchyard\n")

        let refused = try psql(server, password: "not-" + password, "SELECT 1")
        #expect(refused.status != 0)
        #expect(refused.error.contains("password authentication failed"), "\(refused.error)")
    }

    @Test func killLeavesNoProcessAndFreesThePortAndRestartKeepsTheData() throws {
        let server = try PostgresServer.start()
        _ = try server.psql("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (42)")
        let postmaster = try #require(server.processID)
        let children = childProcesses(of: postmaster)
        #expect(!children.isEmpty, "a running postmaster has a checkpointer, a WAL writer and more")

        // A backend busy computing does not look for its postmaster's death: only kill() ends it.
        let programs = try PostgresPrograms.located.get()
        let busy = try spawn(programs.psql, ["--no-psqlrc", "--dbname=\(server.connectionString())",
                                             "--command=SELECT count(*) FROM generate_series(1, 10000000000)"],
                             stdout: "\(server.directory)/busy.out", stderr: "\(server.directory)/busy.err")
        defer { Glibc.kill(busy, SIGKILL); _ = exitStatus(of: busy, within: 5) }
        let running = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series%' AND pid <> pg_backend_pid()"
        let deadline = Date().addingTimeInterval(30)
        while try server.psql(running) != "1", Date() < deadline { usleep(20_000) }
        #expect(try server.psql(running) == "1", "the busy query never showed in pg_stat_activity")

        server.kill()
        #expect(!server.isRunning)
        let busyStatus = exitStatus(of: busy, within: 20)
        #expect(busyStatus != nil && busyStatus != 0, "psql's busy query outlived kill()")
        let busyError = (try? String(contentsOfFile: "\(server.directory)/busy.err", encoding: .utf8)) ?? ""
        #expect(busyError.contains("server closed the connection unexpectedly"), "\(busyError)")
        for pid in [postmaster] + children {
            let state = processState(pid)
            #expect(state == nil || state == "Z", "process \(pid) of the killed server is still alive (state \(String(describing: state)))")
        }
        #expect(connectionIsRefused(port: server.port))
        #expect(canListen(port: server.port), "port \(server.port) is still held after kill()")

        try server.restart()
        #expect(try server.psql("SELECT n FROM kept") == "42")
        #expect(server.log.contains("database system was not properly shut down"), "restart after kill() recovers from a crash:\n\(server.log)")
        server.stop()
        #expect(!FileManager.default.fileExists(atPath: server.directory))
    }

    @Test func clustersStartedTogetherShareNothing() throws {
        let first = try PostgresServer.start(), second = try PostgresServer.start()
        #expect(first.port != second.port)
        #expect(first.directory != second.directory)
        #expect(first.url != second.url, "each cluster has its own password")
        _ = try first.psql("CREATE TABLE only_in_first (n integer)")
        #expect(try second.psql("SELECT to_regclass('only_in_first') IS NULL") == "t")
        #expect(try first.psql("SELECT to_regclass('only_in_first') IS NULL") == "f")
    }

    /// psql signing in over TCP with the URL's parts and `password` (through a pgpass file, so it is
    /// in no command line).
    private func psql(_ server: PostgresServer, password: String, _ sql: String) throws -> (status: Int32, output: String, error: String) {
        let passFile = "\(server.directory)/pgpass-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: passFile, contents: Data("*:*:*:*:\(password)\n".utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw HarnessError("cannot write \(passFile)")
        }
        defer { unlink(passFile) }
        let programs = try PostgresPrograms.located.get()
        let connection = "host=127.0.0.1 port=\(server.port) user=\(PostgresServer.user) dbname=\(PostgresServer.database) "
            + "sslmode=disable passfile=\(passFile) connect_timeout=10"
        return try run(programs.psql, ["--no-psqlrc", "--no-align", "--tuples-only", "--dbname=\(connection)", "--command=\(sql)"])
    }
}

/// The exit status of child `pid` once it exits, or nil if it runs on after `seconds`.
private func exitStatus(of pid: pid_t, within seconds: Double) -> Int32? {
    let deadline = Date().addingTimeInterval(seconds)
    var status: Int32 = 0
    while Date() < deadline {
        if waitpid(pid, &status, WNOHANG) == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
        usleep(10_000)
    }
    return nil
}

/// Whether a TCP connection to 127.0.0.1:`port` is refused (nothing listens there).
private func connectionIsRefused(port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = loopbackAddress(port: port)
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return result != 0 && errno == ECONNREFUSED
}

/// Whether a server could listen on 127.0.0.1:`port` now. With SO_REUSEADDR, as PostgreSQL binds:
/// connections of the killed server left in TIME_WAIT do not count.
private func canListen(port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var yes: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
    var address = loopbackAddress(port: port)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return bound == 0 && listen(fd, 1) == 0
}

private func loopbackAddress(port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    return address
}
