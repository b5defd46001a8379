import Foundation
import Glibc
import Testing

@Suite("Hardening: no input crashes, stalls or fools the proxy", .serialized)
struct HardeningTests {
    // MARK: Per-exchange state and the balancer

    /// Servers are removed and added under requests in flight on other servers of the same pool;
    /// each exchange must account to the server it used, whatever moved in the pool meanwhile.
    @Test func removingAndAddingServersUnderInFlightRequestsKeepsAccountsRight() throws {
        for balance in ["round_robin", "least_request"] {
            let s = Scenario()
            let a1 = try s.upstream("a1")
            let b2 = try s.upstream("b2")
            let a0 = try s.upstream("a0")
            let socket = "\(s.directory)/admin.sock"
            // One worker, so that every request meets the same balancer.
            let proxy = try s.startProxy("""
                pools:
                  blue:
                    balance: \(balance)
                    servers: [{ name: a1, address: \(a1.address), weight: 0 }, { name: b2, address: \(b2.address) }]
                services:
                  web: { active: blue }
                access_log: off
                admin: { socket: \(socket) }
                """, workers: 1)
            func admin(_ method: String, _ path: String, _ body: String? = nil) throws -> Int32 {
                var args = ["--unix-socket", socket, "-X", method, "-o", "/dev/null", "-w", "%{http_code}"]
                if let body { args += ["-H", "Content-Type: application/json", "-d", body] }
                return Int32(try curl(args + ["http://switchyard\(path)"]).output) ?? 0
            }
            /// Starts `count` slow requests (all on b2: a1 has weight 0) and returns a wait for their codes.
            func slowRequests(_ count: Int) -> () -> [String] {
                let url = proxy.url
                let group = DispatchGroup()
                let codes = Shared<[String]>([])
                for _ in 0..<count {
                    group.enter()
                    Thread.detachNewThread {
                        let r = try? curl(["-o", "/dev/null", "-w", "%{http_code}", "\(url)/sleep/1500"])
                        codes.mutate { $0.append(r?.output ?? "none") }
                        group.leave()
                    }
                }
                usleep(400_000)
                return { _ = group.wait(timeout: .now() + 20); return codes.value }
            }
            // b2 sits second in the pool while its requests are in flight; a1 goes away before they end.
            let first = slowRequests(3)
            #expect(try admin("PUT", "/v1/pools/blue/servers/a1", #"{"state": "drain"}"#) == 200)
            #expect(try admin("DELETE", "/v1/pools/blue/servers/a1") == 200)
            #expect(first() == ["200", "200", "200"], "\(balance)")
            #expect(proxy.process.isRunning, "\(balance): \(proxy.process.stderr)")
            guard proxy.process.isRunning else { continue }
            // Now b2 is first; a runtime server that sorts before it moves it while requests are in flight.
            let second = slowRequests(3)
            #expect(try admin("POST", "/v1/pools/blue/servers", #"{"name": "a0", "address": "\#(a0.address)", "weight": 100}"#) == 200)
            #expect(second() == ["200", "200", "200"], "\(balance)")
            #expect(proxy.process.isRunning, "\(balance): \(proxy.process.stderr)")
            // Nothing is left in flight, so both servers take new requests (least_request would
            // shun one that still counted a finished request as active).
            var seen = Set<String>()
            for _ in 0..<20 {
                let r = try curl(["-s", "-D", "-", "-o", "/dev/null", "\(proxy.url)/"]).output
                if let line = r.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("x-served-by:") }) {
                    seen.insert(line.split(separator: " ").last.map(String.init) ?? "")
                }
            }
            #expect(seen == ["a0", "b2"], "\(balance): served by \(seen)")
            let status = try curl(["--unix-socket", socket, "http://switchyard/v1/status"]).output
            let json = try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any]
            let servers = (((json?["pools"] as? [String: Any])?["blue"] as? [String: Any])?["servers"] as? [[String: Any]]) ?? []
            #expect(servers.compactMap { $0["name"] as? String }.sorted() == ["a0", "b2"])
            #expect(servers.allSatisfy { ($0["active_requests"] as? Int) == 0 }, "\(servers)")
        }
    }

    // MARK: Numbers from the admin API, configuration files and health checks

    @Test func hugeNumbersAreRefusedWithoutHarm() throws {
        let s = try SwitchingScenario()
        func code(_ method: String, _ path: String, _ body: String) throws -> (Int, String) {
            let (status, json) = try s.admin(method, path, body: body, headers: ["Content-Type: application/json"])
            return (status, json["detail"] as? String ?? "")
        }
        #expect(try code("POST", "/v1/lock", #"{"owner": "x", "ttl": "1e300s"}"#).0 == 400)
        #expect(try code("POST", "/v1/lock", #"{"owner": "x", "ttl": "99999999999999999999h"}"#).0 == 400)
        #expect(try code("PUT", "/v1/services/web/canary", #"{"pool": "green", "weight": 1e300}"#).0 == 400)
        #expect(try code("PUT", "/v1/services/web/canary", #"{"pool": "green", "weight": -1e300}"#).0 == 400)
        #expect(try code("PUT", "/v1/services/web/canary", #"{"pool": "green", "weight": "99999999999999999999%"}"#).0 == 400)
        #expect(try code("PUT", "/v1/services/web/canary",
                         #"{"pool": "green", "weight": "5%", "guard": {"max_error_rate": "50%", "window": "1e300s"}}"#).0 == 400)
        #expect(try code("PUT", "/v1/services/web/canary",
                         #"{"pool": "green", "weight": "5%", "guard": {"max_error_rate": "50%", "min_requests": 1e300}}"#).0 == 400)
        #expect(try code("PUT", "/v1/pools/blue/servers/b1", #"{"weight": 1e300}"#).0 == 400)
        #expect(try code("PUT", "/v1/pools/blue/servers/b1", #"{"weight": 99999999999999999999}"#).0 == 400)
        let (status, detail) = try code("POST", "/v1/lock", #"{"owner": "x", "ttl": "1e300s"}"#)
        #expect(status == 400 && detail.contains("ttl"), "\(detail)")
        #expect(s.proxy.process.isRunning, "\(s.proxy.process.stderr)")
        #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == "blue")
    }

    @Test func hugeDurationsInTheConfigurationAreProblemsNotCrashes() throws {
        let s = try SwitchingScenario()
        let good = s.configText
        let bad = good.replacingOccurrences(of: "access_log: off", with: "access_log: off\ntimeouts: { client_header: \"1e300s\" }")
        let path = "\(s.scenario.directory)/bad.yaml"
        try ("listeners: [{ bind: 127.0.0.1:1 }]\n" + bad).write(toFile: path, atomically: true, encoding: .utf8)
        let checked = try run(switchyardBinary, ["check", "--config", path])
        #expect(checked.status == 1, "\(checked)")
        #expect(checked.error.contains("timeouts.client_header"), "\(checked.error)")
        // A reload of such a file is refused and the proxy keeps serving.
        try ("workers: 2\nlisteners:\n  - bind: 127.0.0.1:0\n" + bad).write(toFile: s.proxy.configPath, atomically: true, encoding: .utf8)
        let (code, body) = try s.admin("POST", "/v1/reload")
        #expect(code == 400, "\(body)")
        s.proxy.process.signal(SIGHUP)
        usleep(300_000)
        #expect(s.proxy.process.isRunning, "\(s.proxy.process.stderr)")
        #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == "blue")
    }

    @Test func absurdReportedLoadIsIgnored() throws {
        let s = Scenario()
        let app = try s.upstream("blue", ["--load", "cpu=100000000000000000%, memory=99999999999999999999%"])
        let proxy = try s.startProxy("""
            pools:
              app:
                health: { path: /health, interval: 50ms, adapt_weight: true }
                servers: [{ address: \(app.address) }]
            services:
              web: { active: app }
            access_log: off
            """)
        usleep(500_000)
        #expect(proxy.process.isRunning, "\(proxy.process.stderr)")
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "\(proxy.url)/"]).output == "200")
    }

    // MARK: Interim responses

    @Test func aFloodOfInterimResponsesNeverDesynchronisesTheClient() throws {
        let upstream = ScriptedUpstream { fd, _ in
            while let head = ScriptedUpstream.readHead(fd) {
                if head.hasPrefix("GET /flood") {
                    ScriptedUpstream.write(fd, String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: 1000))
                }
                ScriptedUpstream.write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            }
        }
        defer { upstream.stop() }
        let s = Scenario()
        let proxy = try s.startProxy(simpleConfig([(upstream.address, 100)]))
        let c = try RawClient(port: proxy.port, timeout: 5)
        c.send("GET /flood HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        // Whatever arrives must be whole responses: some interim heads, then a final answer to the
        // first request (200, or 502 if the proxy refused the flood), or a closed connection.
        var interim = 0
        var finals: [Int] = []
        while finals.count < 2 {
            guard let r = try? c.readResponse(stopAtInformational: true) else { break }
            if r.status == 100 { interim += 1; continue }
            finals.append(r.status)
            if r.header("Connection")?.lowercased() == "close" { break }
        }
        #expect(interim <= 100, "\(interim) interim responses relayed")
        #expect(!finals.isEmpty)
        #expect(finals.allSatisfy { $0 == 200 || $0 == 502 }, "\(finals)")
        // The pipelined second request is answered in order, by its own response.
        if finals.count == 2 { #expect(finals[1] == 200) }
        #expect(proxy.process.isRunning)
    }

    // MARK: Request bodies

    @Test func chunkSizeLinesAreValidatedStrictly() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]))
        let head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        let refused = ["5 5\r\nhello\r\n0\r\n\r\n", "5\t5\r\nhello\r\n0\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n",
                       "5;a b\r\nhello\r\n0\r\n\r\n", "5;=x\r\nhello\r\n0\r\n\r\n", "5;a=\"x\r\nhello\r\n0\r\n\r\n",
                       "5;a=b c\r\nhello\r\n0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n", "+5\r\nhello\r\n0\r\n\r\n"]
        for body in refused {
            let c = try RawClient(port: proxy.port)
            c.send(head + body)
            let r = try c.readResponse()
            #expect(r.status == 400, "\(body.debugDescription) got \(r.status)")
            #expect(c.isClosedByPeer(), "\(body.debugDescription)")
        }
        #expect(!blue.requestsSeen.contains { $0.contains("/echo") }, "a refused body reached the upstream")
        let accepted = ["5\r\nhello\r\n0\r\n\r\n", "5;a=b\r\nhello\r\n0\r\n\r\n", "5 ; a = \"q\\\"x\" ;b\r\nhello\r\n0\r\n\r\n",
                        "005;a=b;c=d\r\nhello\r\n0\r\n\r\n"]
        for body in accepted {
            let c = try RawClient(port: proxy.port)
            c.send(head + body)
            let r = try c.readResponse()
            #expect(r.status == 200 && r.bodyText == "hello", "\(body.debugDescription) got \(r.status)")
        }
    }

    // MARK: Retries

    @Test func aPostThatWasWrittenIsNeverSentTwice() throws {
        let posts = Shared(0)
        // Serves GETs; closes without answering once it has read a POST.
        let upstream = ScriptedUpstream { fd, _ in
            while let head = ScriptedUpstream.readHead(fd) {
                if head.hasPrefix("POST") {
                    var body = [UInt8](repeating: 0, count: 4)
                    _ = recv(fd, &body, 4, Int32(MSG_WAITALL))
                    posts.mutate { $0 += 1 }
                    return
                }
                ScriptedUpstream.write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            }
        }
        defer { upstream.stop() }
        let s = Scenario()
        let proxy = try s.startProxy(simpleConfig([(upstream.address, 100)]), workers: 1)
        let c = try RawClient(port: proxy.port)
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try c.readResponse().status == 200)
        // The pooled upstream connection is reused for the POST, which the upstream reads and drops.
        c.send("POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\ndata")
        let r = try c.readResponse()
        #expect(r.status == 502, "got \(r.status)")
        usleep(200_000)
        #expect(posts.value == 1, "the upstream received the POST \(posts.value) times")
    }

    // MARK: Durable state

    @Test func aChangeThatCannotBeSavedIsRefusedAndNotApplied() throws {
        let s = try SwitchingScenario()
        // The state file's temporary path is a directory: the write fails.
        try FileManager.default.createDirectory(atPath: s.stateFile + ".tmp", withIntermediateDirectories: false)
        let (code, body) = try s.admin("POST", "/v1/services/web/flip")
        #expect(code == 500 || code == 503, "\(code) \(body)")
        let detail = body["detail"] as? String ?? ""
        #expect(detail.contains(s.stateFile), "\(detail)")
        #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == "blue", "the refused flip was applied")
        let (_, status) = try s.admin("GET", "/v1/status")
        #expect(((status["services"] as? [String: Any])?["web"] as? [String: Any])?["active"] as? String == "blue")
        try FileManager.default.removeItem(atPath: s.stateFile + ".tmp")
        // The audit trail must take the entry too.
        let audit = s.stateFile + ".audit.jsonl"
        try? FileManager.default.removeItem(atPath: audit)
        try FileManager.default.createDirectory(atPath: audit, withIntermediateDirectories: false)
        let (code2, body2) = try s.admin("POST", "/v1/services/web/flip")
        #expect(code2 == 500 || code2 == 503, "\(code2) \(body2)")
        #expect((body2["detail"] as? String ?? "").contains(audit), "\(body2)")
        #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == "blue", "the refused flip was applied")
        try FileManager.default.removeItem(atPath: audit)
        #expect(try s.admin("POST", "/v1/services/web/flip").0 == 200)
        #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == "green")
        // What was acknowledged survives a crash.
        s.proxy.process.signal(SIGKILL)
        _ = s.proxy.process.waitForExit(timeout: 5)
        s.scenario.proxy = try Proxy(directory: s.scenario.directory, config: s.configText)
        #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == "green")
    }

    // MARK: Field validation shared with the configuration

    @Test func stickyCookieAndHeaderNamesAreValidated() throws {
        let s = try SwitchingScenario()
        for name in ["a\\r\\nSet-Cookie: x=1", "a b", "", "a;b", "a=b"] {
            let (code, _) = try s.admin("PUT", "/v1/services/web/canary",
                                        body: #"{"pool": "green", "weight": "50%", "sticky": {"cookie": "\#(name)"}}"#)
            #expect(code == 400, "cookie name \(name.debugDescription) got \(code)")
        }
        #expect(try s.admin("PUT", "/v1/services/web/canary",
                            body: #"{"pool": "green", "weight": "50%", "sticky": {"header": "X\\nY"}}"#).0 == 400)
        #expect(try s.admin("PUT", "/v1/services/web/rules",
                            body: #"{"rules": [{"header": "X Y", "value": "1", "pool": "green"}]}"#).0 == 400)
        let c = try RawClient(port: s.proxy.port)
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        let r = try c.readResponse()
        #expect(r.status == 200)
        #expect(!r.head.contains("x=1"))
    }

    // MARK: Forwarding headers and routing

    @Test func underscoreForwardingHeadersAreDropped() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]))
        let c = try RawClient(port: proxy.port)
        c.send("GET /headers HTTP/1.1\r\nHost: t\r\nX_Forwarded_For: 6.6.6.6\r\nx_forwarded_proto: https\r\nX_FORWARDED_HOST: evil\r\nX-Forwarded_For: 7.7.7.7\r\n\r\n")
        let r = try c.readResponse()
        #expect(r.status == 200)
        #expect(!r.bodyText.contains("6.6.6.6") && !r.bodyText.contains("7.7.7.7"), "\(r.bodyText)")
        #expect(!r.bodyText.lowercased().contains("x_forwarded"), "\(r.bodyText)")
        #expect(!r.bodyText.contains("evil"), "\(r.bodyText)")
    }

    @Test func routingUsesExactlyThePathThatIsForwarded() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let green = try s.upstream("green")
        let proxy = try s.startProxy("""
            pools:
              pub: { servers: [{ address: \(blue.address) }] }
              adm: { servers: [{ address: \(green.address) }] }
            services:
              admin: { match: { path_prefix: /admin }, active: adm }
              public: { match: { path_prefix: /public }, active: pub }
              rest: { active: pub }
            access_log: off
            """)
        func send(_ target: String) throws -> RawResponse {
            let c = try RawClient(port: proxy.port)
            c.send("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n")
            return try c.readResponse()
        }
        // Absolute form with no path: the path is "/", the query "?/admin".
        let r = try send("http://h?/admin")
        #expect(r.header("X-Served-By") == "blue", "\(r.head)")
        #expect(blue.requestsSeen.last?.contains("GET /?/admin") == true, "\(blue.requestsSeen)")
        #expect(try send("http://h/admin/x").header("X-Served-By") == "green")
        // Dot segments never reach a prefix they escape.
        for target in ["/public/../admin", "/public/./../admin", "/public/%2e%2e/admin", "/public/.%2E/admin", "/./admin", "/public/.."] {
            let r = try send(target)
            #expect(r.status == 400, "\(target) got \(r.status) from \(r.header("X-Served-By") ?? "the proxy")")
        }
        #expect(green.requestsSeen.allSatisfy { !$0.contains("..") && !$0.lowercased().contains("%2e") }, "\(green.requestsSeen)")
        // Dots inside names are fine.
        #expect(try send("/public/a..b/.c").header("X-Served-By") == "blue")
    }

    /// Found by the model-based chaos test: rollback restored a routing that named a pool the
    /// reloaded file no longer had; status then showed it while traffic went elsewhere.
    @Test func rollbackNeverRestoresAPoolThatAReloadRemoved() throws {
        let s = try SwitchingScenario()
        #expect(try s.admin("POST", "/v1/services/web/flip").0 == 200)
        #expect(try s.admin("PUT", "/v1/services/web/rules", body: #"{"rules": []}"#).0 == 200)
        let withoutGreen = s.configText
            .replacingOccurrences(of: "  green: { servers: [{ name: g1, address: \(s.green.address) }] }\n", with: "")
            .replacingOccurrences(of: "    standby: green\n", with: "")
        try ("workers: 2\nlisteners:\n  - bind: 127.0.0.1:0\n" + withoutGreen).write(toFile: s.proxy.configPath, atomically: true, encoding: .utf8)
        let (reloaded, notes) = try s.admin("POST", "/v1/reload")
        #expect(reloaded == 200, "\(notes)")
        let (code, body) = try s.admin("POST", "/v1/services/web/rollback")
        #expect(code == 409, "\(code) \(body)")
        let (_, status) = try s.admin("GET", "/v1/status")
        let web = (status["services"] as? [String: Any])?["web"] as? [String: Any]
        #expect(web?["active"] as? String == "blue")
        #expect(web?["standby"] is NSNull, "\(String(describing: web))")
        #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == "blue")
    }

    // MARK: The TCP admin listener

    @Test func tcpAdminAuthenticatesFirstAndBoundsEverything() throws {
        let tokens = makeTemporaryDirectory() + "/tokens"
        try "pipeline 0123456789abcdef0123\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        let port = freePort()
        let s = try SwitchingScenario(adminExtra: "  tcp: 127.0.0.1:\(port)\n  tokens_file: \(tokens)")
        let url = "http://127.0.0.1:\(port)"
        let auth = ["-H", "Authorization: Bearer 0123456789abcdef0123"]
        func code(_ args: [String]) throws -> String { try curl(["-o", "/dev/null", "-w", "%{http_code}"] + args).output }
        // No credentials: refused before the body is looked at.
        #expect(try code(["-X", "PUT", "-H", "Content-Type: application/json", "-d", "{not json", "\(url)/v1/services/web/canary"]) == "401")
        // Bounded head and body.
        #expect(try code(auth + ["-H", "X-Big: " + String(repeating: "a", count: 20_000), "\(url)/v1/status"]) != "200")
        let big = "\(s.scenario.directory)/big.json"
        try ("{\"pad\": \"" + String(repeating: "a", count: 70_000) + "\"}").write(toFile: big, atomically: true, encoding: .utf8)
        #expect(try code(auth + ["-X", "PUT", "-H", "Content-Type: application/json", "--data-binary", "@\(big)", "\(url)/v1/services/web/canary"]) == "413")
        // Changes need JSON and no sign of another site.
        #expect(try code(auth + ["-X", "POST", "-d", "{}", "\(url)/v1/services/web/flip"]) == "415")
        #expect(try code(auth + ["-X", "POST", "-H", "Content-Type: application/json", "-H", "Sec-Fetch-Site: same-site", "-d", "{}", "\(url)/v1/services/web/flip"]) == "403")
        #expect(try code(auth + ["-X", "POST", "-H", "Content-Type: application/json", "-H", "Origin: http://evil.example", "-d", "{}", "\(url)/v1/services/web/flip"]) == "403")
        #expect(try code(auth + ["-X", "POST", "-H", "Content-Type: application/json; charset=utf-8", "-d", "{}", "\(url)/v1/services/web/flip"]) == "200")
        // The Unix socket is out of a browser's reach: curl -d works there as documented.
        #expect(try s.admin("POST", "/v1/services/web/flip", body: "{}").0 == 200)
        // At most 64 TCP connections with requests at once; the next is told so and closed.
        var held: [RawClient] = []
        for _ in 0..<64 {
            let c = try RawClient(port: port)
            c.send("GET /v1/status HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer 0123456789abcdef0123\r\n\r\n")
            #expect(try c.readResponse().status == 200)
            held.append(c)
        }
        let extra = try RawClient(port: port)
        extra.send("GET /v1/status HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer 0123456789abcdef0123\r\n\r\n")
        #expect(try extra.readResponse().status == 503)
        held.removeAll()
        usleep(200_000)
        #expect(try code(auth + ["\(url)/v1/status"]) == "200")
        #expect(s.proxy.process.isRunning)
    }

    @Test func ctlStatusShowsWholeHealthWords() throws {
        let s = try SwitchingScenario()
        let out = try s.ctl(["status"])
        #expect(out.status == 0, "\(out)")
        #expect(out.output.contains("not checked"), "\(out.output)")
    }
}
