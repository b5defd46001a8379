import Foundation
import Glibc
import Testing

/// The console on a real PostgreSQL (a throwaway cluster per test): the same API as on
/// SQLite, shared by several instances, and a database that goes away and comes back.
@Suite(.serialized) struct ConsolePostgresTests {
    @Test func twoConsolesOnOnePostgreSQLServeTheSameRecords() throws {
        let postgres = try PostgresServer.start()
        defer { postgres.stop() }
        let dir = makeTemporaryDirectory()
        // Both start at once: the migrations run once, under the database's advisory lock.
        let a = try ConsoleProcess(directory: dir, database: postgres.url, config: "lease: 3s\n", label: "a")
        let b = try ConsoleProcess(directory: dir, database: postgres.url, config: "lease: 3s\n", label: "b")
        defer { a.stop(); b.stop() }
        #expect(try postgres.psql("SELECT count(*) FROM schema_migrations").contains("1"))
        #expect(try a.call("GET", "/api/v1/health").json["database"] as? String == "postgres")

        let run = UUID().uuidString.lowercased()
        let id = try #require(try a.call("POST", "/api/v1/reports", body: ConsoleAPITests.report(run: run)).json["rollout"] as? Int)
        #expect(try b.rollout(id)["state"] as? String == "running")
        // A control given at one instance reaches a runner that reports to the other.
        #expect(try b.call("POST", "/api/v1/rollouts/\(id)/pause", body: #"{"wait":0}"#).status == 202)
        let orders = try a.call("POST", "/api/v1/reports", body: ConsoleAPITests.report(run: run)).json["controls"] as? [[String: Any]] ?? []
        #expect(orders.first?["command"] as? String == "pause")
        // A token made at one instance works at the other.
        let token = try #require(try a.call("POST", "/api/v1/tokens", body: #"{"name":"v","role":"viewer"}"#).json["token"] as? String)
        #expect(try b.call("GET", "/api/v1/rollouts", token: token).status == 200)
        // Reports stop: whichever instance looks first marks the rollout crashed, once.
        try b.waitFor("/api/v1/rollouts/\(id)", timeout: 20, what: "the rollout marked crashed") {
            ($0["rollout"] as? [String: Any])?["state"] as? String == "crashed"
        }
        let crashedEntries = try a.call("GET", "/api/v1/events?after=0&rollout=\(id)").json["events"] as? [[String: Any]] ?? []
        #expect(crashedEntries.filter { $0["kind"] as? String == "crashed" }.count == 1)
    }

    @Test func aDatabaseThatGoesAwayGets503AndNothingRecordedIsLost() throws {
        let postgres = try PostgresServer.start()
        defer { postgres.stop() }
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir, database: postgres.url)
        defer { console.stop() }
        let run = UUID().uuidString.lowercased()
        let id = try #require(try console.call("POST", "/api/v1/reports", body: ConsoleAPITests.report(run: run)).json["rollout"] as? Int)
        postgres.kill()
        let down = try console.call("GET", "/api/v1/rollouts")
        #expect(down.status == 503)
        #expect((down.json["error"] as? String)?.contains("retry") == true)
        #expect(!down.text.contains(postgres.url))
        let health = try console.call("GET", "/api/v1/health", token: nil)
        #expect(health.status == 503)
        #expect(console.process.isRunning)
        try postgres.restart()
        try console.waitFor("/api/v1/rollouts/\(id)", timeout: 30, what: "the console to reach the database again") {
            ($0["rollout"] as? [String: Any])?["run"] as? String == run
        }
    }
}
