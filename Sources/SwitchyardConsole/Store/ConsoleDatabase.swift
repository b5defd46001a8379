import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresKit
import SQLKit
import SQLiteKit
import SQLiteNIO

/// Where the console keeps its records: a SQLite file (the embedded default) or a PostgreSQL
/// database (for several console instances). Both are reached through SQLKit, so every query
/// is written once; `Dialect` covers the few places where their SQL differs.
public final class ConsoleDatabase: Sendable {
    public enum Dialect: String, Sendable { case sqlite, postgres }

    public let dialect: Dialect
    /// What the operator gave, without a password: for logs and errors.
    public let displayName: String
    // The pools lock their own state; AsyncKit predates Sendable annotations.
    private enum Pool: @unchecked Sendable {
        case sqlite(SQLiteConnection)
        case postgres(EventLoopGroupConnectionPool<PostgresConnectionSource>)
    }
    private let pool: Pool
    private let logger: Logger

    /// Opens `location`: `sqlite:PATH` (a file; its directory is created) or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    public init(location: String, logger: Logger) async throws(ConsoleError) {
        self.logger = logger
        if location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") {
            let configuration: SQLPostgresConfiguration
            do { configuration = try SQLPostgresConfiguration(url: location) } catch {
                throw ConsoleError("database: \(Self.redacted(location)) is not a PostgreSQL URL postgres-kit understands (\(error)); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=disable]")
            }
            dialect = .postgres
            displayName = Self.redacted(location)
            pool = .postgres(EventLoopGroupConnectionPool(source: PostgresConnectionSource(sqlConfiguration: configuration),
                                                          maxConnectionsPerEventLoop: 4, requestTimeout: .seconds(5),
                                                          logger: logger, on: MultiThreadedEventLoopGroup.singleton))
        } else {
            var path = location
            if path.hasPrefix("sqlite://") { path.removeFirst("sqlite://".count) } else if path.hasPrefix("sqlite:") { path.removeFirst("sqlite:".count) }
            guard !path.isEmpty else { throw ConsoleError("database: give sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE") }
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                    throw ConsoleError("database: cannot create the directory \(directory) for \(path): \(error.localizedDescription)")
                }
            }
            dialect = .sqlite
            displayName = "sqlite:\(path)"
            // One connection: SQLite serialises writers anyway, and a single connection never
            // waits for its own lock. WAL lets other readers (backups, sqlite3) in meanwhile.
            do {
                let connection = try await SQLiteConnection.open(storage: .file(path: path), threadPool: .singleton, logger: logger,
                                                                 on: MultiThreadedEventLoopGroup.singleton.any())
                _ = try await connection.query("PRAGMA journal_mode=WAL")
                _ = try await connection.query("PRAGMA synchronous=FULL")
                _ = try await connection.query("PRAGMA busy_timeout=5000")
                pool = .sqlite(connection)
            } catch {
                throw ConsoleError("database: cannot open the SQLite file \(path): \(error); check the path and its permissions")
            }
        }
    }

    /// The database for one query or a few independent ones (pooled).
    public var sql: any SQLDatabase {
        switch pool {
        case .sqlite(let connection): return connection.sql()
        case .postgres(let pool): return pool.database(logger: logger).sql()
        }
    }

    /// Runs `body` on one connection held for its duration (migrations and anything needing
    /// a transaction or a session lock).
    public func withConnection<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        switch pool {
        case .postgres(let pool):
            let connection = try await pool.requestConnection(logger: logger).get()
            defer { pool.releaseConnection(connection, logger: logger) }
            return try await body(connection.sql())
        case .sqlite(let connection):
            return try await body(connection.sql())
        }
    }

    public func shutdown() async {
        switch pool {
        case .postgres(let pool): try? await pool.shutdownAsync()
        case .sqlite(let connection):
            try? await connection.close()
        }
    }

    /// A URL with its password replaced, for messages.
    static func redacted(_ location: String) -> String {
        guard let at = location.lastIndex(of: "@"), let scheme = location.range(of: "://") else { return location }
        let credentials = location[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return location }
        return String(location[..<colon]) + ":***" + String(location[at...])
    }

    /// The column type of an auto-numbered primary key.
    var idColumn: String { dialect == .postgres ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY" }
}

/// A problem the console reports to the operator: what was wrong, where, and what to do.
public struct ConsoleError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
