import Foundation
import Glibc
import Testing

/// A proxy whose servers are given by DNS name, resolved through a tiny DNS server of the test.
final class DNSScenario {
    let scenario = Scenario()
    let dns: DNSServer
    var directory: String { scenario.directory }
    var socket: String { "\(directory)/admin.sock" }
    var proxy: Proxy { scenario.proxy }

    init(names: [String: [String]]) throws {
        dns = try DNSServer(directory: scenario.directory, names: names)
    }

    /// Starts the proxy with `body` (pools, services...) asking the test's DNS server.
    @discardableResult
    func startProxy(_ body: String, resolve: String = "resolve: { interval: 1s, timeout: 250ms }", workers: Int = 2) throws -> Proxy {
        try scenario.startProxy("""
        resolvers: [\(dns.address)]
        \(resolve)
        \(body)
        access_log: off
        admin:
          socket: \(socket)

        """, workers: workers)
    }

    func upstream(_ name: String, host: String, port: UInt16 = 0) throws -> AddressedUpstream {
        try AddressedUpstream(name: name, host: host, port: port, directory: directory)
    }

    /// Calls the admin API; returns (HTTP status, JSON body).
    func admin(_ method: String, _ path: String) throws -> (Int, [String: Any]) {
        let r = try curl(["--unix-socket", socket, "-X", method, "-w", "\n%{http_code}", "http://switchyard\(path)"])
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        let json = (try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8))) as? [String: Any] ?? [:]
        return (Int(lines.last ?? "") ?? 0, json)
    }

    func pool(_ name: String) throws -> [String: Any] {
        ((try admin("GET", "/v1/status").1["pools"] as? [String: Any])?[name] as? [String: Any]) ?? [:]
    }

    /// The pool's servers in status, by name.
    func servers(_ pool: String) throws -> [String: [String: Any]] {
        var out: [String: [String: Any]] = [:]
        for server in (try self.pool(pool)["servers"] as? [[String: Any]]) ?? [] {
            if let name = server["name"] as? String { out[name] = server }
        }
        return out
    }

    /// How a server given by name resolves, in status.
    func resolution(_ pool: String, _ server: String) throws -> [String: Any] {
        ((try self.pool(pool)["names"] as? [String: Any])?[server] as? [String: Any]) ?? [:]
    }

    /// A plain request through the proxy: (HTTP status, the instance that answered).
    func request(_ path: String = "/") throws -> (Int, String) {
        let r = try curl(["-s", "-D", "-", "-o", "/dev/null", proxy.url + path])
        let status = Int(r.output.split(separator: " ").dropFirst().first ?? "") ?? 0
        let servedBy = r.output.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-served-by:") }
            .map { $0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) } ?? ""
        return (status, servedBy)
    }
}

/// Polls `condition` until it holds; fails with `what` after `timeout` seconds (generous: a
/// busy machine makes the test slower, never weaker).
func eventually(_ what: String, timeout: Double = 30, _ condition: () throws -> Bool) throws {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if try condition() { return }
        usleep(100_000)
    }
    throw HarnessError("timed out waiting until \(what)")
}

@Suite("DNS names", .serialized)
struct DNSTests {
    /// The acceptance test: a name whose answer goes from one address to two and back, three
    /// times, under wrk load: zero failed requests, each new address takes traffic, and one
    /// that leaves the answer drains (its slow requests in flight finish) before it goes.
    @Test func answerChangesUnderLoadWithoutAFailedRequest() throws {
        let s = try DNSScenario(names: ["app.test": ["127.0.0.2"]])
        let first = try s.upstream("first", host: "127.0.0.2")
        let second = try AddressedUpstream(name: "second", host: "127.0.0.3", port: first.port, directory: s.directory,
                                           extraArguments: ["--delay", "400ms"])
        let name = "app.test:\(first.port)"
        try s.startProxy("""
        pools:
          app:
            servers: [{ address: \(name) }]
        services: { web: { active: app } }
        """)
        #expect(try s.request().0 == 200)
        let out = "\(s.directory)/wrk.out"
        let load = try spawn("/usr/bin/wrk", ["-t1", "-c20", "-d300s", s.proxy.url + "/"], stdout: out, stderr: out + ".err")
        var loadRunning = true
        defer {
            if loadRunning {
                kill(load, SIGKILL)
                var status: Int32 = 0
                waitpid(load, &status, 0)
            }
        }
        usleep(500_000)
        var secondRequests = 0
        var sawDrainingWithRequests = false
        for cycle in 0..<3 {
            try s.dns.answer(["app.test": ["127.0.0.2", "127.0.0.3"]])
            try eventually("the second address takes traffic (cycle \(cycle))") {
                guard let server = try s.servers("app")["\(name)@127.0.0.3"], server["state"] as? String == "ready",
                      let requests = server["requests"] as? Int, requests > secondRequests else { return false }
                #expect(server["weight"] as? Int == 50, "the weight is shared: \(server)")
                #expect(server["resolved_from"] as? String == name && server["in_answer"] as? Bool == true)
                secondRequests = requests
                return true
            }
            try s.dns.answer(["app.test": ["127.0.0.2"]])
            try eventually("the second address drains and leaves the pool (cycle \(cycle))") {
                guard let server = try s.servers("app")["\(name)@127.0.0.3"] else { return true }
                if server["in_answer"] as? Bool == false {
                    #expect(server["state"] as? String == "drain" && server["effective_weight"] as? Int == 0, "\(server)")
                    if (server["active_requests"] as? Int ?? 0) > 0 { sawDrainingWithRequests = true }
                }
                return false
            }
            #expect(try s.servers("app")["\(name)@127.0.0.2"]?["weight"] as? Int == 100)
        }
        usleep(300_000)
        kill(load, SIGINT)
        var status: Int32 = 0
        waitpid(load, &status, 0)
        loadRunning = false
        let report = WrkReport(try String(contentsOfFile: out, encoding: .utf8))
        #expect(report.requests > 0, "\(report.text)")
        #expect(report.non2xx == 0 && report.failedRequests == 0, "failed requests while the answer changed: \(report.text)")
        #expect(!report.text.contains("Socket errors"), "socket errors while the answer changed: \(report.text)")
        #expect(secondRequests > 0)
        #expect(sawDrainingWithRequests, "the leaving address was never seen draining with requests in flight")
        _ = second
        let log = s.proxy.process.stderr
        #expect(log.contains("dns: app/\(name) (app.test) is 127.0.0.2, 127.0.0.3 (added 127.0.0.3)"), "\(log)")
        #expect(log.contains("127.0.0.3 has drained and leaves the pool"), "\(log)")
    }

    /// A resolver that stops answering, then fails, then says the name is gone: the last good
    /// answer keeps serving, and status, metrics and ctl say what is wrong.
    @Test func failingResolverKeepsTheLastGoodAnswer() throws {
        let s = try DNSScenario(names: ["app.test": ["127.0.0.2"]])
        let app = try s.upstream("app", host: "127.0.0.2")
        let name = "app.test:\(app.port)"
        try s.startProxy("""
        pools:
          app:
            servers: [{ address: \(name) }]
        services: { web: { active: app } }
        """)
        #expect(try s.request() == (200, "app"))
        var resolution = try s.resolution("app", name)
        #expect(resolution["addresses"] as? [String] == ["127.0.0.2:\(app.port)"])
        #expect(resolution["stale"] as? Bool == false && resolution["last_error"] is NSNull)
        #expect(resolution["resolver"] as? String == s.dns.address && resolution["host"] as? String == "app.test")

        for (mode, expected) in [("drop", "no answer within 250ms"), ("servfail", "SERVFAIL"), ("nxdomain", "NXDOMAIN")] {
            if mode == "nxdomain" { try s.dns.answer([:]) } else { try s.dns.fail(mode) }
            try eventually("status reports \(mode)") {
                resolution = try s.resolution("app", name)
                return (resolution["last_error"] as? String)?.contains(expected) == true
            }
            #expect(resolution["stale"] as? Bool == true)
            #expect(resolution["addresses"] as? [String] == ["127.0.0.2:\(app.port)"], "the last good answer stays: \(resolution)")
            #expect((resolution["consecutive_failures"] as? Int ?? 0) >= 1)
            for _ in 0..<5 { #expect(try s.request() == (200, "app")) }
        }
        let metrics = try curl(["--unix-socket", s.socket, "http://switchyard/metrics"]).output
        #expect(metrics.contains("switchyard_dns_stale{pool=\"app\",server=\"\(name)\"} 1"), "\(metrics)")
        #expect(metrics.contains("switchyard_dns_addresses{pool=\"app\",server=\"\(name)\"} 1"))
        #expect(metrics.contains("switchyard_dns_resolutions_total{pool=\"app\",server=\"\(name)\",result=\"failure\"}"))
        let ctl = try run(switchyardBinary, ["ctl", "status", "--admin", s.socket])
        #expect(ctl.output.contains("app/\(name)") && ctl.output.contains("FAILED: NXDOMAIN"), "\(ctl.output)\(ctl.error)")
        #expect(s.proxy.process.stderr.contains("dns: cannot resolve app/\(name) (app.test)"))

        try s.dns.answer(["app.test": ["127.0.0.2"]])
        try eventually("the name resolves again") { try s.resolution("app", name)["stale"] as? Bool == false }
        #expect(s.proxy.process.stderr.contains("resolves again"))
    }

    /// A name that does not resolve yet (a service not up) starts with no server and is added
    /// as soon as it resolves; a reload resolves the names it adds before it returns.
    @Test func namesResolveWhenTheyAppearAndAtReload() throws {
        let s = try DNSScenario(names: [:])
        let app = try s.upstream("app", host: "127.0.0.2")
        let api = try s.upstream("api", host: "127.0.0.3", port: app.port)
        let body = """
        pools:
          app:
            servers: [{ address: app.test:\(app.port) }]
        services: { web: { active: app } }
        """
        try s.startProxy(body)
        #expect(try s.request().0 >= 500) // nothing to send it to yet
        #expect((try s.resolution("app", "app.test:\(app.port)")["last_error"] as? String)?.contains("NXDOMAIN") == true)
        try s.dns.answer(["app.test": ["127.0.0.2"], "api.test": ["127.0.0.3"]])
        try eventually("the name resolves and serves") { try s.request() == (200, "app") }

        // The file gains a server given by another name.
        let text = try String(contentsOfFile: s.proxy.configPath, encoding: .utf8)
        try text.replacingOccurrences(of: "servers: [{ address: app.test:\(app.port) }]",
                                      with: "servers: [{ address: app.test:\(app.port) }, { name: api, address: api.test:\(app.port) }]")
            .write(toFile: s.proxy.configPath, atomically: true, encoding: .utf8)
        #expect(try s.admin("POST", "/v1/reload").0 == 200)
        #expect(try s.servers("app")["api@127.0.0.3"]?["state"] as? String == "ready", "resolved before the reload returned")
        var seen = Set<String>()
        for _ in 0..<20 { seen.insert(try s.request().1) }
        #expect(seen == ["app", "api"])
        _ = api
    }

    /// Each address is a server of its own for active health checks and outlier detection:
    /// one dead address of a name is taken out while the other serves every request.
    @Test func everyAddressIsCheckedAndEjectedOnItsOwn() throws {
        let s = try DNSScenario(names: ["checked.test": ["127.0.0.2", "127.0.0.4"], "passive.test": ["127.0.0.2", "127.0.0.4"]])
        let app = try s.upstream("app", host: "127.0.0.2") // nothing listens on 127.0.0.4
        try s.startProxy("""
        pools:
          checked:
            health: { path: /health, interval: 200ms, timeout: 200ms, fall: 1, rise: 1 }
            servers: [{ name: c, address: checked.test:\(app.port) }]
          passive:
            retries: 1
            outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s }
            servers: [{ name: p, address: passive.test:\(app.port) }]
        services:
          checked: { match: { path_prefix: /checked }, active: checked }
          passive: { active: passive }
        """, workers: 1)
        try eventually("health checks find the dead address down") {
            let servers = try s.servers("checked")
            return (servers["c@127.0.0.4"]?["health"] as? [String: Any])?["status"] as? String == "down"
                && (servers["c@127.0.0.2"]?["health"] as? [String: Any])?["status"] as? String == "up"
        }
        for _ in 0..<10 { #expect(try s.request("/checked") == (200, "app")) }
        // Without health checks, connection failures eject the dead address; retries hide them.
        for _ in 0..<10 { #expect(try s.request("/passive") == (200, "app")) }
        let dead = try #require(try s.servers("passive")["p@127.0.0.4"])
        #expect((dead["ejections"] as? Int ?? 0) >= 1, "\(dead)")
        #expect((try s.servers("passive")["p@127.0.0.2"]?["ejections"] as? Int) == 0)
    }

    /// An address that appears ramps up when the pool has slow start.
    @Test func newAddressesRampUp() throws {
        let s = try DNSScenario(names: ["app.test": ["127.0.0.2"]])
        let app = try s.upstream("app", host: "127.0.0.2")
        try s.startProxy("""
        pools:
          app:
            slow_start: 60s
            servers: [{ name: a, address: app.test:\(app.port), weight: 200 }]
        services: { web: { active: app } }
        """)
        #expect(try s.servers("app")["a@127.0.0.2"]?["effective_weight"] as? Int == 200) // at start: in full
        try s.dns.answer(["app.test": ["127.0.0.2", "127.0.0.3"]])
        try eventually("the new address is in the pool") { try s.servers("app")["a@127.0.0.3"] != nil }
        let added = try #require(try s.servers("app")["a@127.0.0.3"])
        #expect(added["weight"] as? Int == 100)
        #expect((added["effective_weight"] as? Int ?? 100) < 50, "a new address starts low: \(added)")
    }

    /// Answers too large for a UDP datagram are asked for again over TCP.
    @Test func largeAnswersComeOverTCP() throws {
        let many = (1...40).map { "127.0.1.\($0)" }
        let s = try DNSScenario(names: ["many.test": many])
        try s.startProxy("""
        pools:
          app:
            servers: [{ name: m, address: many.test:9 }]
        services: { web: { active: app } }
        """)
        let resolution = try s.resolution("app", "m")
        #expect((resolution["addresses"] as? [String])?.count == 40, "\(resolution)")
        #expect(s.dns.questions.contains("udp many.test A truncated") && s.dns.questions.contains("tcp many.test A 40"))
        #expect(try s.servers("app").count == 40)
    }

    /// Without `resolvers`, names go to the system's resolver (here: a name /etc/hosts maps
    /// to 127.0.0.1).
    @Test(.enabled(if: hostsFileName != nil, "/etc/hosts maps no name but localhost to 127.0.0.1"))
    func systemResolverReadsTheHostsFile() throws {
        let name = try #require(hostsFileName)
        let s = Scenario()
        let app = try s.upstream("app")
        let socket = "\(s.directory)/admin.sock"
        let proxy = try s.startProxy("""
        pools: { app: { servers: [{ name: h, address: "\(name):\(app.port)" }] } }
        services: { web: { active: app } }
        access_log: off
        admin: { socket: \(socket) }
        """)
        let r = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", proxy.url + "/"])
        #expect(r.output == "200")
        let text = try curl(["--unix-socket", socket, "http://switchyard/v1/status"]).output
        let status = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        let pool = (status?["pools"] as? [String: Any])?["app"] as? [String: Any]
        #expect(((pool?["names"] as? [String: Any])?["h"] as? [String: Any])?["resolver"] as? String == "system", "\(text)")
        #expect(((pool?["servers"] as? [[String: Any]]) ?? []).contains { $0["name"] as? String == "h@127.0.0.1" }, "\(text)")
    }

    /// `switchyard check` takes names, and reports malformed ones with their file and line.
    @Test func checkAcceptsNamesAndReportsMalformedOnes() throws {
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = "\(directory)/good.yaml", bad = "\(directory)/bad.yaml"
        try """
        listeners: [{ bind: 127.0.0.1:8080 }]
        resolvers: [127.0.0.1:5353]
        resolve: { interval: 5s }
        pools:
          app:
            servers:
              - address: app.internal:8080
              - { name: api, address: api.internal:9000, weight: 50 }
              - address: 10.0.0.1:8080
        services: { web: { active: app } }
        """.write(toFile: good, atomically: true, encoding: .utf8)
        let ok = try run(switchyardBinary, ["check", "--config", good])
        #expect(ok.status == 0, "\(ok.error)")
        #expect(ok.output.contains("3 server(s)"), "\(ok.output)")

        try """
        listeners: [{ bind: 127.0.0.1:8080 }]
        resolve: { interval: 100ms }
        pools:
          app:
            servers:
              - address: app..internal:8080
              - address: app.internal:80800
        services: { web: { active: app } }
        """.write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try run(switchyardBinary, ["check", "--config", bad])
        #expect(refused.status == 1)
        #expect(refused.error.contains("\(bad):2:"), "\(refused.error)")
        #expect(refused.error.contains("\(bad):6:") && refused.error.contains("pools.app.servers[0].address: \"app..internal:8080\" is not a valid address"))
        #expect(refused.error.contains("\(bad):7:") && refused.error.contains("port must be a number"))
        #expect(refused.error.contains("configuration is invalid (3 problem(s))"))
    }
}

/// A name /etc/hosts maps to 127.0.0.1, other than localhost (which needs no resolving).
let hostsFileName: String? = {
    guard let text = try? String(contentsOfFile: "/etc/hosts", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.first == "127.0.0.1" else { continue }
        if let name = fields.dropFirst().first(where: { $0 != "localhost" && !$0.hasPrefix("#") && !$0.contains(".localdomain") }) {
            return String(name)
        }
    }
    return nil
}()
