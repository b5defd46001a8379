import Foundation
import Glibc
import Synchronization
import Testing

/// Two services behind one proxy, each with a blue and a green pool, plus a pool no service
/// routes to; an admin socket and a state file.
final class TwoServiceScenario {
    let scenario = Scenario()
    var upstreams: [String: Upstream] = [:]
    var proxy: Proxy { scenario.proxy }
    var socketPath: String { "\(scenario.directory)/admin.sock" }
    var admin: AdminSocket { AdminSocket(path: socketPath) }
    var stateFile: String { "\(scenario.directory)/state.json" }
    /// The access log (written only when the scenario was made with `accessLog`).
    var logPath: String { "\(scenario.directory)/access.log" }
    let extra: String

    init(accessLog: Bool = false) throws {
        extra = "access_log: \(accessLog ? "\(scenario.directory)/access.log" : "off")\n"
        for name in ["shop-blue", "shop-green", "api-blue", "api-green", "spare"] { upstreams[name] = try scenario.upstream(name) }
        _ = try scenario.startProxy(config)
    }

    var config: String {
        func pool(_ name: String) -> String { "  \(name): { servers: [{ name: s1, address: \(upstreams[name]?.address ?? "") }] }\n" }
        return "pools:\n" + ["shop-blue", "shop-green", "api-blue", "api-green", "spare"].map(pool).joined() + """
            services:
              shop: { active: shop-blue, standby: shop-green, match: { hosts: [shop.test] } }
              api: { active: api-blue, standby: api-green, match: { hosts: [api.test] } }
            admin: { socket: \(socketPath) }
            state_file: \(stateFile)

            """ + extra
    }

    /// Stops the proxy and starts it again with the same configuration and state file.
    func restart() throws {
        proxy.stop()
        _ = try scenario.startProxy(config)
    }

    /// The upstream that answered a request for `host`, on a new connection.
    func servedBy(host: String) throws -> String {
        let client = try RawClient(port: proxy.port)
        client.send("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n")
        return try client.readResponse().header("X-Served-By") ?? "?"
    }

    func status() throws -> [String: Any] { try admin.call("GET", "/v1/status").json }

    func locks() throws -> [[String: Any]] { try status()["locks"] as? [[String: Any]] ?? [] }

    func ctl(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        try run(switchyardBinary, ["ctl"] + arguments + ["--admin", socketPath])
    }
}

/// What each owner's thread saw.
struct Outcome: Sendable {
    var ownFlips = 0, refusedOnOther = 0
    var errors: [String] = []
}

final class Outcomes: Sendable {
    let results = Mutex<[String: Outcome]>([:])
}

@Suite("Service locks: rollouts of two services behind one proxy", .serialized)
struct ServiceLockTests {
    @Test func twoOwnersLockTwoServicesAndChangeThemInParallel() throws {
        let s = try TwoServiceScenario()
        let admin = s.admin
        // Each owner: lock its service, flip it back and forth with its token while the other
        // service is locked by the other owner, and fail to touch the other's service.
        let outcomes = Outcomes()
        let services = ["shop", "api"]
        let bothLocked = DispatchGroup()
        let finished = DispatchGroup()
        for _ in services { bothLocked.enter(); finished.enter() }
        // A thread per owner (not a GCD pool, which could run both on one thread and deadlock at the barrier).
        for (i, mine) in services.enumerated() {
            let theirs = services[1 - i]
            Thread {
                defer { finished.leave() }
                var outcome = Outcome()
                defer { outcomes.results.withLock { $0[mine] = outcome } }
                do {
                    let lock = try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-\#(mine)", "ttl": "2m", "reason": "release of \#(mine)", "service": "\#(mine)"}"#)
                    guard lock.status == 200, let token = lock.json["token"] as? String else {
                        outcome.errors.append("lock \(mine): \(lock.status) \(AdminSocket.detail(lock))"); bothLocked.leave(); return
                    }
                    if lock.json["service"] as? String != mine { outcome.errors.append("lock answer names \(lock.json["service"] ?? "nothing")") }
                    bothLocked.leave()
                    bothLocked.wait() // from here on, both services are locked
                    for _ in 0..<20 {
                        let flip = try admin.call("POST", "/v1/services/\(mine)/flip", token: token, actor: "deploy-\(mine)")
                        if flip.status == 200 { outcome.ownFlips += 1 } else { outcome.errors.append("own flip: \(flip.status) \(AdminSocket.detail(flip))") }
                        let other = try admin.call("POST", "/v1/services/\(theirs)/flip", token: token)
                        if other.status == 423 && AdminSocket.detail(other).contains("deploy-\(theirs)")
                            && AdminSocket.detail(other).contains("service \(theirs)") {
                            outcome.refusedOnOther += 1
                        } else {
                            outcome.errors.append("flip of \(theirs) with \(mine)'s token: \(other.status) \(AdminSocket.detail(other))")
                        }
                    }
                    // Each owner's canary and rules on its own service pass too.
                    let canary = try admin.call("PUT", "/v1/services/\(mine)/canary", body: #"{"pool": "\#(mine)-green", "weight": "10%"}"#, token: token)
                    if canary.status != 200 { outcome.errors.append("canary: \(canary.status) \(AdminSocket.detail(canary))") }
                    let rules = try admin.call("PUT", "/v1/services/\(mine)/rules", body: #"{"rules": [{"header": "X-Beta", "value": "1", "pool": "\#(mine)-green"}]}"#, token: token)
                    if rules.status != 200 { outcome.errors.append("rules: \(rules.status) \(AdminSocket.detail(rules))") }
                    for _ in 0..<2 { // the rules, then the canary
                        let rollback = try admin.call("POST", "/v1/services/\(mine)/rollback", token: token)
                        if rollback.status != 200 { outcome.errors.append("rollback: \(rollback.status) \(AdminSocket.detail(rollback))") }
                    }
                } catch {
                    outcome.errors.append("\(mine): \(error)")
                }
            }.start()
        }
        #expect(finished.wait(timeout: .now() + 120) == .success, "the owners did not finish")
        let results = outcomes.results.withLock { $0 }
        for service in services {
            let outcome = results[service] ?? Outcome(errors: ["no outcome"])
            #expect(outcome.errors.isEmpty, "\(service): \(outcome.errors)")
            #expect(outcome.ownFlips == 20 && outcome.refusedOnOther == 20, "\(service): \(outcome)")
        }
        // 20 flips each: back to blue; the rollbacks took the rules and the canary off.
        #expect(try s.servedBy(host: "shop.test") == "shop-blue")
        #expect(try s.servedBy(host: "api.test") == "api-blue")
        let locks = try s.locks()
        #expect(locks.map { $0["service"] as? String } == ["api", "shop"])
        #expect(locks.map { $0["owner"] as? String } == ["deploy-api", "deploy-shop"])
        #expect(locks.allSatisfy { $0["token"] == nil }, "a token shown in status")
        let status = try s.status()
        #expect(status["lock"] is NSNull) // no proxy-wide lock
        // Without any token, neither service can be changed, and ctl says who holds it.
        #expect(try admin.call("POST", "/v1/services/shop/flip").status == 423)
        let refused = try s.ctl(["flip", "api"])
        #expect(refused.status == 1)
        #expect(refused.error.hasPrefix("switchyard ctl: locked: locked by deploy-api (the lock of service api)"), "\(refused.error)")
        let printed = try s.ctl(["status"]).output
        #expect(printed.contains("service api LOCKED by deploy-api") && printed.contains("service shop LOCKED by deploy-shop"), "\(printed)")
    }

    @Test func aPoolIsCoveredByTheLocksOfTheServicesRoutingToIt() throws {
        let s = try TwoServiceScenario()
        let admin = s.admin
        let shop = try #require(try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-shop", "service": "shop"}"#).json["token"] as? String)
        let api = try #require(try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-api", "service": "api"}"#).json["token"] as? String)
        // shop-green is only shop's standby: shop's holder drains it, api's holder cannot.
        let drain = #"{"state": "drain"}"#
        let other = try admin.call("PUT", "/v1/pools/shop-green/servers/s1", body: drain, token: api)
        #expect(other.status == 423)
        #expect(AdminSocket.detail(other).contains("pool shop-green takes traffic of service shop"), "\(AdminSocket.detail(other))")
        #expect(try admin.call("PUT", "/v1/pools/shop-green/servers/s1", body: drain, token: shop).status == 200)
        #expect(try admin.call("PUT", "/v1/pools/api-blue/servers/s1", body: #"{"weight": 50}"#, token: api).status == 200)
        // A pool no service routes to: only the proxy-wide lock covers it.
        #expect(try admin.call("PUT", "/v1/pools/spare/servers/s1", body: #"{"weight": 7}"#).status == 200)
        // Once shop routes to it (a rule), spare is shop's: api's holder is refused.
        #expect(try admin.call("PUT", "/v1/services/shop/rules", body: #"{"rules": [{"header": "X-Spare", "value": "1", "pool": "spare"}]}"#, token: shop).status == 200)
        #expect(try admin.call("PUT", "/v1/pools/spare/servers/s1", body: #"{"weight": 8}"#, token: api).status == 423)
        // Routed to by both services, it is covered by both locks: one token is not enough.
        #expect(try admin.call("PUT", "/v1/services/api/canary", body: #"{"pool": "spare", "weight": "1%"}"#, token: api).status == 200)
        let shared = try admin.call("PUT", "/v1/pools/spare/servers/s1", body: #"{"weight": 9}"#, token: shop)
        #expect(shared.status == 423)
        #expect(AdminSocket.detail(shared).contains("takes traffic of services api, shop"), "\(AdminSocket.detail(shared))")
        // A reload is covered by every lock.
        #expect(try admin.call("POST", "/v1/reload", token: shop).status == 423)
        // Renewing with the token of another service's lock is refused; renewing one's own works.
        #expect(try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-api", "service": "shop"}"#, token: api).status == 409)
        let renewed = try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-api", "ttl": "20m", "service": "api"}"#, token: api)
        #expect(renewed.status == 200 && renewed.json["token"] as? String == api)
        #expect(try admin.call("POST", "/v1/lock", body: #"{"owner": "x", "service": "nope"}"#).status == 404)
    }

    @Test func theProxyWideLockBlocksBothAndBreakingALockIsAudited() throws {
        let s = try TwoServiceScenario()
        let admin = s.admin
        let shop = try #require(try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-shop", "service": "shop"}"#).json["token"] as? String)
        let api = try #require(try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-api", "service": "api"}"#).json["token"] as? String)
        // Maintenance cannot start under the rollouts: both holders are named.
        let early = try admin.call("POST", "/v1/lock", body: #"{"owner": "ops", "reason": "kernel upgrade"}"#)
        #expect(early.status == 423)
        #expect(AdminSocket.detail(early).contains("deploy-shop") && AdminSocket.detail(early).contains("deploy-api"), "\(AdminSocket.detail(early))")
        // A crashed rollout's lock is broken by name; a released one goes with its token.
        #expect(try admin.call("DELETE", "/v1/lock?service=shop").status == 423) // no token, no force
        #expect(try admin.call("DELETE", "/v1/lock?service=shop&force=true", actor: "alice").status == 200)
        #expect(try admin.call("DELETE", "/v1/lock", token: api).status == 200)
        #expect(try admin.call("DELETE", "/v1/lock?service=shop&force=true").status == 409) // nothing left to break
        let audit = try admin.call("GET", "/v1/audit").json["entries"] as? [[String: Any]] ?? []
        let broken = try #require(audit.first { $0["action"] as? String == "break lock" })
        #expect(broken["target"] as? String == "lock service shop")
        #expect(broken["actor_label"] as? String == "alice")
        #expect((broken["before"] as? [String: Any])?["owner"] as? String == "deploy-shop")
        #expect(audit.contains { $0["action"] as? String == "unlock" && $0["target"] as? String == "lock service api" })
        // Now the proxy-wide lock: it blocks both services, their pools and new service locks.
        let ops = try #require(try admin.call("POST", "/v1/lock", body: #"{"owner": "ops", "reason": "kernel upgrade"}"#).json["token"] as? String)
        for service in ["shop", "api"] {
            let refused = try admin.call("POST", "/v1/services/\(service)/flip", token: service == "shop" ? shop : api)
            #expect(refused.status == 423 && AdminSocket.detail(refused).hasPrefix("locked by ops since"), "\(AdminSocket.detail(refused))")
        }
        #expect(try admin.call("PUT", "/v1/pools/spare/servers/s1", body: #"{"weight": 7}"#).status == 423)
        let blocked = try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-shop", "service": "shop"}"#)
        #expect(blocked.status == 423 && AdminSocket.detail(blocked).contains("proxy-wide lock is held by ops"), "\(AdminSocket.detail(blocked))")
        #expect(try admin.call("POST", "/v1/services/shop/flip", token: ops).status == 200)
        #expect(try admin.call("POST", "/v1/reload", token: ops).status == 200)
        let status = try s.status()
        #expect((status["lock"] as? [String: Any])?["owner"] as? String == "ops")
        #expect((status["locks"] as? [[String: Any]])?.count == 1)
        #expect(try s.ctl(["unlock", "--lock-token", ops]).status == 0)
        #expect(try admin.call("POST", "/v1/services/api/flip").status == 200)
    }

    @Test func locksSurviveARestartAndAnOldStateFileKeepsItsLockProxyWide() throws {
        let s = try TwoServiceScenario()
        let token = try s.ctl(["lock", "--owner", "deploy-shop", "--service", "shop", "--ttl", "10m"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.count == 32)
        try s.restart()
        #expect(try s.locks().map { $0["service"] as? String } == ["shop"])
        #expect(try s.admin.call("POST", "/v1/services/shop/flip").status == 423)
        #expect(try s.admin.call("POST", "/v1/services/api/flip").status == 200)
        #expect(try s.admin.call("POST", "/v1/services/shop/flip", token: token).status == 200)

        // A state file from before service locks: its one lock, with no service, is proxy-wide.
        s.proxy.stop()
        let data = try Data(contentsOf: URL(fileURLWithPath: s.stateFile))
        var saved = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        saved["serviceLocks"] = nil
        saved["lock"] = ["owner": "old-deploy", "reason": "from an older version", "token": "0123456789abcdef0123456789abcdef",
                         "since": "2026-01-01T00:00:00Z", "expires": "2099-01-01T00:00:00Z"]
        try JSONSerialization.data(withJSONObject: saved).write(to: URL(fileURLWithPath: s.stateFile))
        _ = try s.scenario.startProxy(s.config)
        let status = try s.status()
        #expect((status["lock"] as? [String: Any])?["owner"] as? String == "old-deploy")
        #expect((status["locks"] as? [[String: Any]])?.first?["service"] is NSNull)
        #expect(try s.admin.call("POST", "/v1/services/api/flip").status == 423)
        #expect(try s.admin.call("POST", "/v1/services/api/flip", token: "0123456789abcdef0123456789abcdef").status == 200)
    }
}
