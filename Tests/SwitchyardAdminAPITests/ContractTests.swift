import Foundation
import Testing
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// Both ends of the contract: what a client writes is what the proxy reads, and the documents
/// the reference shows read as the client's types.
@Suite("Admin contract")
struct ContractTests {
    /// A client body as the proxy receives it.
    func received(_ body: some Encodable) throws -> [String: Any] {
        try AdminBody.object(from: Array(try JSONEncoder().encode(body)))
    }

    @Test func canaryBodiesReadAsWritten() throws {
        let plain = try AdminBody.CanaryChange(received(CanaryBody(pool: "green", weight: "5%")))
        #expect(plain.pool == "green" && plain.weight == 500)
        // Absent keeps the setting; null clears it; a value sets it.
        #expect(plain.guardrail == nil && plain.sticky == nil)
        let cleared = try AdminBody.CanaryChange(received(CanaryBody(weight: "0%", sticky: .clear, guardrail: .clear)))
        #expect(cleared.pool == nil && cleared.weight == 0)
        #expect(cleared.guardrail == .some(nil) && cleared.sticky == .some(nil))
        let armed = try AdminBody.CanaryChange(received(CanaryBody(
            pool: "green", weight: "0.25%", sticky: .set(.cookie("sw_canary")),
            guardrail: .set(GuardBody(maxErrorRate: "40%", minRequests: 10, window: "5s")))))
        #expect(armed.weight == 25)
        #expect(armed.sticky == .some(.cookie("sw_canary")))
        #expect(armed.guardrail == .some(CanaryGuard(maxErrorRate: 4000, minRequests: 10, windowMilliseconds: 5000)))
        let defaults = try AdminBody.CanaryChange(received(CanaryBody(weight: "1%", sticky: .set(.clientIP), guardrail: .set(GuardBody(maxErrorRate: "50%")))))
        #expect(defaults.sticky == .some(.clientIP))
        #expect(defaults.guardrail == .some(CanaryGuard(maxErrorRate: 5000, minRequests: CanaryGuard.defaultMinRequests,
                                                         windowMilliseconds: CanaryGuard.defaultWindowMilliseconds)))
        #expect(try AdminBody.CanaryChange(received(CanaryBody(weight: "1%", sticky: .set(.header("X-User"))))).sticky == .some(.header("X-User")))
    }

    @Test func otherBodiesReadAsWritten() throws {
        #expect(try AdminBody.flipTarget(received(FlipBody())) == nil)
        #expect(try AdminBody.flipTarget(received(FlipBody(to: "green"))) == "green")
        let rules = try AdminBody.rules(received(RulesBody(rules: [
            .init(kind: .header, name: "X-Canary", value: "always", pool: "green"),
            .init(kind: .cookie, name: "canary", value: "never", pool: "blue"),
        ])))
        #expect(rules == [RouteRule(kind: .header, name: "X-Canary", value: "always", pool: "green"),
                          RouteRule(kind: .cookie, name: "canary", value: "never", pool: "blue")])
        let drain = try AdminBody.ServerChange(received(ServerUpdateBody(state: .drain)))
        #expect(drain.state == .drain && drain.weight == nil)
        let weight = try AdminBody.ServerChange(received(ServerUpdateBody(weight: 0)))
        #expect(weight.weight == 0 && weight.state == nil)
        let server = try AdminBody.NewServer(received(NewServerBody(name: "b3", address: "127.0.0.1:8000", weight: 7, state: .maint)))
        #expect(server.name == "b3" && server.address.description == "127.0.0.1:8000" && server.weight == 7 && server.state == .maint)
        let plainServer = try AdminBody.NewServer(received(NewServerBody(name: "b4", address: "[::1]:8000")))
        #expect(plainServer.weight == 100 && plainServer.state == .ready)
        let lock = try AdminBody.LockRequest(received(LockBody(owner: "deploy-42", ttl: "90000ms", reason: "release 7")))
        #expect(lock.owner == "deploy-42" && lock.reason == "release 7" && lock.ttl == .seconds(90))
        let defaultLock = try AdminBody.LockRequest(received(LockBody(owner: "me")))
        #expect(defaultLock.reason == "" && defaultLock.ttl == .seconds(600) && defaultLock.service == nil)
        #expect(try AdminBody.LockRequest(received(LockBody(owner: "me", service: "web"))).service == "web")
        #expect(try AdminBody.poolVersion(received(PoolVersionBody(version: "v2.4.1+build.7"))) == "v2.4.1+build.7")
        // A nil version is sent as null (never left out): it clears the label.
        #expect(try AdminBody.poolVersion(received(PoolVersionBody(version: nil))) == nil)
    }

    /// The status example in docs/admin-api.md.
    func documentedStatus() throws -> Data {
        let url = EndpointTests.docs.appendingPathComponent("admin-api.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        let section = try #require(text.range(of: "### GET /v1/status"), "admin-api.md has no GET /v1/status section")
        let start = try #require(text.range(of: "```json\n", range: section.upperBound..<text.endIndex))
        let end = try #require(text.range(of: "```", range: start.upperBound..<text.endIndex))
        return Data(text[start.upperBound..<end.lowerBound].utf8)
    }

    @Test func documentedStatusReads() throws {
        let status = try JSONDecoder().decode(AdminStatus.self, from: documentedStatus())
        #expect(status.generation == 5 && status.lock == nil && status.workers == 2)
        #expect(status.allLocks.map(\.service) == ["web"] && status.allLocks.first?.owner == "deploy-42")
        #expect(status.pools["blue"]?.version == "v2.4.1")
        let web = try #require(status.services["web"])
        #expect(web.active == "blue" && web.standby == "green")
        #expect(web.canary?.pool == "green" && web.canary?.weight == "2.5%" && web.canary?.sticky?.cookie == "sw_canary")
        #expect(web.rules?.map { "\($0.kind) \($0.name)=\($0.value) -> \($0.pool)" } == ["header X-Canary=always -> green"])
        #expect(status.poolNames == ["blue"])
        let b1 = try #require(status.servers("blue").first)
        #expect(b1.name == "b1" && b1.state == "ready" && b1.activeRequests == 3 && b1.responses?["5xx"] == 3)
        // The example leaves health out: a pool without checks.
        #expect(b1.healthStatus == "not checked")
        #expect(status.servers("nope").isEmpty)
    }

    @Test func statusWithEveryFieldReads() throws {
        // The fields the proxy writes beyond the reference's example, as it writes them.
        let json = #"""
        {"generation": 12, "workers": 2, "uptime_seconds": 5,
         "publish_ack_us": {"p50": 40.5, "p99": 80, "count": 3},
         "lock": {"owner": "switchyard-deploy/web", "reason": "rollout", "since": "2026-01-01T00:00:00Z", "expires": "2026-01-01T00:10:00Z"},
         "services": {"my_web": {"active": "blue", "standby": null, "canary": {"pool": "green", "weight": "5%",
                         "guard": {"max_error_rate": "20%", "min_requests": 20, "window": "10.0s"}},
                      "rules": [], "traffic": {"active_requests": 0, "requests": 9,
                         "responses": {"1xx": 0, "2xx": 9, "3xx": 0, "4xx": 0, "5xx": 0}, "failures": 0},
                      "guard_trip": {"time": "2026-01-01T00:00:01.5Z", "pool": "green", "weight": "5%", "requests": 20,
                         "errors": 10, "error_rate": 0.5, "reason": "canary pool green failed"}}},
         "pools": {"green": {"balance": "least_request", "servers": [
            {"name": "g1", "address": "127.0.0.1:1", "weight": 100, "effective_weight": 50, "state": "drain",
             "active_requests": 1, "open_connections": 2, "requests": 3, "failures": 0, "ejections": 1, "ejected_in_workers": 0,
             "responses": {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 0, "5xx": 0},
             "health": {"status": "up", "last_result": "HTTP 200", "last_check": "2026-01-01T00:00:01.000Z",
                        "reported_load": {"cpu": 0.5, "weight_percent": 80}, "consecutive_passes": 3, "consecutive_failures": 0}}]}}}
        """#
        let status = try JSONDecoder().decode(AdminStatus.self, from: Data(json.utf8))
        // Service names are kept as they are (no key conversion).
        let web = try #require(status.services["my_web"])
        #expect(web.standby == nil)
        #expect(web.canary?.guardrail?.maxErrorRate == "20%" && web.canary?.guardrail?.window == "10.0s")
        #expect(web.guardTrip?.time == "2026-01-01T00:00:01.5Z" && web.guardTrip?.errorRate == 0.5)
        #expect(web.traffic?.requests == 9)
        #expect(status.lock?.owner == "switchyard-deploy/web" && status.lock?.token == nil)
        // A proxy that predates service locks writes `lock` alone.
        #expect(status.locks == nil && status.allLocks.map(\.owner) == ["switchyard-deploy/web"] && status.lock?.service == nil)
        #expect(status.pools["green"]?.version == nil)
        #expect(status.publishAcknowledgement?.p50 == 40.5)
        let g1 = try #require(status.servers("green").first)
        #expect(g1.healthStatus == "up" && g1.health?.lastCheck == "2026-01-01T00:00:01.000Z")
        #expect(g1.health?.reportedLoad?.cpu == 0.5 && g1.health?.reportedLoad?.weightPercent == 80)
        #expect(g1.effectiveWeight == 50 && g1.ejections == 1)
    }

    @Test func otherAnswersRead() throws {
        let change = try JSONDecoder().decode(AdminChange.self, from: Data(#"{"generation": 7, "acknowledged_us": 31}"#.utf8))
        #expect(change.generation == 7 && change.acknowledgedMicroseconds == 31)
        let lock = try JSONDecoder().decode(AdminLock.self, from: Data(#"{"owner": "o", "reason": "", "since": "s", "expires": "e", "token": "t"}"#.utf8))
        #expect(lock.token == "t")
        let entry = try JSONDecoder().decode(AdminAuditEntry.self, from: Data(#"""
            {"time": "t", "actor": "alice", "actor_label": "ci", "action": "flip", "target": "service web", "generation": 3,
             "before": {"active": "blue"}, "after": null}
            """#.utf8))
        #expect(entry.actorLabel == "ci" && entry.generation == 3)
        let error = try JSONDecoder().decode(AdminErrorBody.self, from: Data(#"{"error": "locked", "detail": "locked by x"}"#.utf8))
        #expect(error.error == "locked")
    }
}
