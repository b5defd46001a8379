import Foundation
import Glibc
import Testing

@Suite("Traffic switching and the admin socket", .serialized)
struct SwitchingTests {
    @Test func flipIsAtomicAndRollbackWalksBack() throws {
        let s = try SwitchingScenario()
        let client = try RawClient(port: s.proxy.port)
        #expect(try s.servedBy(client) == "blue")
        var expected = "blue"
        for i in 0..<40 {
            let (status, body) = try s.admin("POST", "/v1/services/web/flip")
            #expect(status == 200)
            #expect(body["generation"] as? Int == i + 2)
            expected = expected == "blue" ? "green" : "blue"
            // From the acknowledgement on, no request goes where the old state sent it,
            // on a reused connection or a new one.
            #expect(try s.servedBy(client) == expected)
            #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == expected)
        }
        // Rollback restores the previous routing; repeated rollbacks walk back.
        let before = try s.servedBy(client)
        let other = before == "blue" ? "green" : "blue"
        try s.admin("POST", "/v1/services/web/flip")                       // now `other` is active
        #expect(try s.admin("PUT", "/v1/services/web/canary", body: #"{"pool": "\#(before)", "weight": "100%"}"#).0 == 200)
        #expect(try s.servedBy(client) == before)                          // all of it on the canary
        #expect(try s.admin("POST", "/v1/services/web/rollback").0 == 200) // canary removed
        #expect(try s.servedBy(client) == other)
        #expect(try s.admin("POST", "/v1/services/web/rollback").0 == 200) // flip undone
        #expect(try s.servedBy(client) == before)
    }

    @Test func stickyCanaryIsMonotoneAndSetsACookie() throws {
        let s = try SwitchingScenario(serviceExtra: "    canary: { pool: green, weight: 10%, sticky: { cookie: sw_canary } }")
        let client = try RawClient(port: s.proxy.port)
        // Without the cookie, Switchyard assigns one and the client stays put with it.
        client.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        let first = try client.readResponse()
        let setCookie = try #require(first.header("Set-Cookie"))
        #expect(setCookie.hasPrefix("sw_canary="))
        #expect(setCookie.contains("Path=/") && setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Lax"))
        let cookie = String(setCookie.split(separator: ";")[0])
        for _ in 0..<10 {
            client.send("GET / HTTP/1.1\r\nHost: t\r\nCookie: \(cookie)\r\n\r\n")
            let r = try client.readResponse()
            #expect(r.header("X-Served-By") == first.header("X-Served-By"))
            #expect(r.header("Set-Cookie") == nil)
        }

        func assignments() throws -> [Bool] {
            try (0..<1500).map { try s.servedBy(client, headers: "Cookie: sw_canary=user-\($0)\r\n") == "green" }
        }
        let at10 = try assignments()
        let share10 = Double(at10.filter { $0 }.count) / Double(at10.count)
        #expect(abs(share10 - 0.10) < 0.03)
        try s.admin("PUT", "/v1/services/web/canary", body: #"{"pool": "green", "weight": "30%"}"#)
        let at30 = try assignments()
        #expect(zip(at10, at30).allSatisfy { !$0.0 || $0.1 }, "raising the weight moved a canary user back to stable")
        try s.admin("PUT", "/v1/services/web/canary", body: #"{"pool": "green", "weight": "5%"}"#)
        let at5 = try assignments()
        #expect(zip(at10, at5).allSatisfy { $0.0 || !$0.1 }, "lowering the weight moved a stable user to the canary")
        #expect(at30.filter { $0 }.count > at10.filter { $0 }.count)
    }

    @Test func perRequestSplitIsAccurate() throws {
        let s = try SwitchingScenario(serviceExtra: "    canary: { pool: green, weight: 5% }")
        // 20,000 requests, pipelined in batches, counted by the upstream that answered.
        let client = try RawClient(port: s.proxy.port, timeout: 30)
        var green = 0, total = 0
        let batch = String(repeating: "GET / HTTP/1.1\r\nHost: t\r\n\r\n", count: 200)
        for _ in 0..<100 {
            client.send(batch)
            for _ in 0..<200 {
                if try client.readResponse().header("X-Served-By") == "green" { green += 1 }
                total += 1
            }
        }
        let share = Double(green) / Double(total) * 100
        #expect(abs(share - 5) < 0.5, "canary share \(share)% of \(total)")
    }

    @Test func precedenceIsPreviewThenRulesThenCanaryThenActive() throws {
        let s0 = Scenario()
        let tokenFile = "\(s0.directory)/preview-token"
        try "s3cret\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let s = try SwitchingScenario(serviceExtra: """
                preview: { header: X-Switchyard-Preview, value_file: \(tokenFile) }
                canary: { pool: green, weight: 100% }
                rules:
                  - { header: X-Canary, value: never, pool: blue }
                  - { header: X-Canary, value: always, pool: green }
                  - { cookie: canary, value: never, pool: blue }
            """)
        let c = try RawClient(port: s.proxy.port)
        #expect(try s.servedBy(c) == "green")                                        // canary at 100%
        #expect(try s.servedBy(c, headers: "X-Canary: never\r\n") == "blue")        // rule beats canary
        #expect(try s.servedBy(c, headers: "Cookie: a=1; canary=never\r\n") == "blue")
        #expect(try s.servedBy(c, headers: "X-Canary: always\r\nCookie: canary=never\r\n") == "green") // rules in order
        try s.admin("PUT", "/v1/services/web/canary", body: #"{"weight": "0%"}"#)
        #expect(try s.servedBy(c) == "blue")                                         // active
        #expect(try s.servedBy(c, headers: "X-Switchyard-Preview: s3cret\r\nX-Canary: never\r\n") == "green") // preview first
        #expect(try s.servedBy(c, headers: "X-Switchyard-Preview: wrong\r\n") == "blue")   // only with the right token
    }

    @Test func lockRefusesOtherClientsAndExpires() throws {
        let s = try SwitchingScenario()
        let (status, lock) = try s.admin("POST", "/v1/lock", body: #"{"owner": "deploy-42", "ttl": "2s", "reason": "release 7"}"#)
        #expect(status == 200)
        let token = try #require(lock["token"] as? String)
        let (refused, error) = try s.admin("POST", "/v1/services/web/flip")
        #expect(refused == 423)
        #expect((error["detail"] as? String)?.contains("deploy-42") == true)
        #expect((error["detail"] as? String)?.contains("release 7") == true)
        #expect(try s.admin("POST", "/v1/lock", body: #"{"owner": "other"}"#).0 == 423)
        #expect(try s.admin("POST", "/v1/services/web/flip", headers: ["X-Switchyard-Lock: \(token)"]).0 == 200)
        // Through ctl: refused with exit 1 and a one-line reason; then the lock expires by itself.
        let ctlRefused = try s.ctl(["flip", "web"])
        #expect(ctlRefused.status == 1)
        #expect(ctlRefused.error.hasPrefix("switchyard ctl: locked: locked by deploy-42"))
        sleep(3)
        #expect(try s.ctl(["flip", "web"]).status == 0)
        // Audit: who did what, with generations.
        let (_, audit) = try s.admin("GET", "/v1/audit")
        let entries = audit["entries"] as? [[String: Any]] ?? []
        #expect(entries.map { $0["action"] as? String ?? "" } == ["lock", "flip", "flip"])
        #expect(entries.allSatisfy { ($0["actor"] as? String)?.isEmpty == false })
    }

    @Test func ifMatchRefusesStaleChanges() throws {
        let s = try SwitchingScenario()
        let (_, status) = try s.admin("GET", "/v1/status")
        let generation = try #require(status["generation"] as? Int)
        #expect(try s.admin("POST", "/v1/services/web/flip", headers: ["If-Match: \(generation)"]).0 == 200)
        #expect(try s.admin("POST", "/v1/services/web/flip", headers: ["If-Match: \(generation)"]).0 == 412)
        #expect(try s.admin("POST", "/v1/services/nope/flip").0 == 404)
        #expect(try s.admin("PUT", "/v1/services/web/canary", body: #"{"pool": "green", "weight": "150%"}"#).0 == 400)
        #expect(try s.admin("PUT", "/v1/pools/blue/servers/zz", body: #"{"weight": 5}"#).0 == 404)
    }

    @Test func badAdminInputIsRefusedWithoutHarm() throws {
        // Cases found by schemathesis against docs/openapi.yaml: each once stopped the process.
        let s = try SwitchingScenario()
        #expect(try s.admin("GET", "/v1/audit?limit=-1").0 == 400)
        #expect(try s.admin("GET", "/v1/audit?limit=99999999999").0 == 400)
        #expect(try s.admin("GET", "/v1/status?=&&=x&a").0 == 200)
        let (status, body) = try s.admin("TRACE", "/v1/status")
        #expect(status == 405)
        #expect(body["error"] as? String == "method not allowed")
        #expect(try s.admin("GET", "/v1/services/web/flip").0 == 405)
        #expect(try s.admin("POST", "/v1/services/web/flip", body: "null").0 == 400)
        #expect(try s.admin("PUT", "/v1/services/web/canary", body: #"{"weight": "5%", "sticky": {"cookie": 7}}"#).0 == 400)
        #expect(try s.admin("PUT", "/v1/pools/blue/servers/b1", body: "{}").0 == 400)
        #expect(s.proxy.process.isRunning)
        #expect(try s.servedBy(try RawClient(port: s.proxy.port)) == "blue")
    }

    @Test func canaryGuardIsSetCheckedAndKeptAcrossRestarts() throws {
        let s = try SwitchingScenario()
        for bad in [#"{"max_error_rate": "0%"}"#, #"{"max_error_rate": "50%", "colour": 1}"#, #"{"max_error_rate": "50%", "window": "1ms"}"#,
                    #"{"max_error_rate": "50%", "min_requests": 0}"#, #""50%""#] {
            let (status, body) = try s.admin("PUT", "/v1/services/web/canary", body: #"{"pool": "green", "weight": "5%", "guard": \#(bad)}"#)
            #expect(status == 400 && body["error"] as? String == "invalid guard", "\(bad): \(body)")
        }
        let set = try s.ctl(["canary", "web", "--pool", "green", "--weight", "50%", "--guard-error-rate", "40%",
                             "--guard-min-requests", "10", "--guard-window", "5s"])
        #expect(set.status == 0, "\(set)")
        func guardOfWeb() throws -> [String: Any]? {
            let (_, status) = try s.admin("GET", "/v1/status")
            return (((status["services"] as? [String: Any])?["web"] as? [String: Any])?["canary"] as? [String: Any])?["guard"] as? [String: Any]
        }
        #expect(try guardOfWeb()?["max_error_rate"] as? String == "40%")
        #expect(try guardOfWeb()?["min_requests"] as? Int == 10)
        // A weight change keeps the guard; the state file keeps it across kill -9.
        try s.admin("PUT", "/v1/services/web/canary", body: #"{"weight": "60%"}"#)
        s.proxy.process.signal(SIGKILL)
        _ = s.proxy.process.waitForExit(timeout: 5)
        s.scenario.proxy = try Proxy(directory: s.scenario.directory, config: s.configText)
        #expect(try guardOfWeb()?["window"] as? String == "5.0s")
        // A healthy canary is left alone by its guard.
        for _ in 0..<40 { _ = try curl([s.proxy.url + "/"]) }
        usleep(300_000)
        let (_, status) = try s.admin("GET", "/v1/status")
        #expect((((status["services"] as? [String: Any])?["web"] as? [String: Any])?["canary"] as? [String: Any])?["weight"] as? String == "60%")
        #expect(try s.ctl(["canary", "web", "--weight", "60%", "--no-guard"]).status == 0)
        #expect(try guardOfWeb() == nil)
    }

    @Test func stateSurvivesKillAndRestart() throws {
        let s = try SwitchingScenario()
        try s.admin("POST", "/v1/services/web/flip")
        try s.admin("PUT", "/v1/services/web/canary", body: #"{"pool": "blue", "weight": "2.5%"}"#)
        try s.admin("PUT", "/v1/pools/blue/servers/b1", body: #"{"state": "drain", "weight": 7}"#)
        s.proxy.process.signal(SIGKILL)
        _ = s.proxy.process.waitForExit(timeout: 5)
        // The socket file stays behind after a crash; a new process replaces it.
        let config = s.configText
        let restarted = try Proxy(directory: s.scenario.directory, config: config)
        s.scenario.proxy = restarted
        let (_, status) = try s.admin("GET", "/v1/status")
        let web = (status["services"] as? [String: Any])?["web"] as? [String: Any]
        #expect(web?["active"] as? String == "green")
        #expect((web?["canary"] as? [String: Any])?["weight"] as? String == "2.5%")
        let b1 = (((status["pools"] as? [String: Any])?["blue"] as? [String: Any])?["servers"] as? [[String: Any]])?.first
        #expect(b1?["state"] as? String == "drain")
        #expect(b1?["weight"] as? Int == 7)
        #expect(status["generation"] as? Int == 4)
        // 2.5% of requests go to the canary pool blue, whose only server drains (503): most go to green.
        let client = try RawClient(port: restarted.port)
        let served = try (0..<20).map { _ in try s.servedBy(client) }
        #expect(served.filter { $0 == "green" }.count >= 16, "\(served)")
    }

    @Test func metricsCountPerServicePoolAndServer() throws {
        let s = try SwitchingScenario()
        let c = try RawClient(port: s.proxy.port)
        for _ in 0..<5 { _ = try s.servedBy(c) }
        c.send("GET /status/503 HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try c.readResponse().status == 503)
        let text = try curl(["--unix-socket", s.socket, "http://x/metrics"]).output
        for line in [
            #"switchyard_service_responses_total{service="web",class="2xx"} 5"#,
            #"switchyard_service_responses_total{service="web",class="5xx"} 1"#,
            #"switchyard_pool_responses_total{pool="blue",class="2xx"} 5"#,
            #"switchyard_upstream_responses_total{pool="blue",server="b1",class="5xx"} 1"#,
            #"switchyard_service_request_duration_seconds_count{service="web"} 6"#,
            #"switchyard_upstream_open_connections{pool="blue",server="b1"} 1"#,
            #"switchyard_server_ready{pool="green",server="g1"} 1"#,
            #"switchyard_canary_guard_trips_total{service="web"} 0"#,
            "# TYPE switchyard_pool_request_duration_seconds histogram",
        ] {
            #expect(text.contains(line + "\n"), "missing: \(line)")
        }
        // Latency histograms per server are opt-in (metrics.server_histograms): 16 series a server.
        #expect(!text.contains("switchyard_upstream_request_duration_seconds"), "per-server histograms are off by default")
        // Each family's samples form one group after its TYPE line.
        var seen = Set<String>()
        var current = ""
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let name = String(line.prefix { $0 != "{" && $0 != " " })
                .replacingOccurrences(of: "_bucket", with: "").replacingOccurrences(of: "_sum", with: "").replacingOccurrences(of: "_count", with: "")
            if name != current {
                #expect(!seen.contains(name), "family \(name) is split")
                seen.insert(name)
                current = name
            }
        }
    }

    @Test func serverHistogramsAreReportedWhenAskedFor() throws {
        let s = try SwitchingScenario(adminExtra: "metrics: { server_histograms: true }")
        let c = try RawClient(port: s.proxy.port)
        for _ in 0..<3 { _ = try s.servedBy(c) }
        let text = try curl(["--unix-socket", s.socket, "http://x/metrics"]).output
        #expect(text.contains("# TYPE switchyard_upstream_request_duration_seconds histogram\n"))
        #expect(text.contains(#"switchyard_upstream_request_duration_seconds_count{pool="blue",server="b1"} 3"# + "\n"), "\(text)")
        #expect(text.contains(#"switchyard_upstream_request_duration_seconds_bucket{pool="blue",server="b1",le="+Inf"} 3"# + "\n"))
    }

    @Test func metricsWithoutServersLeaveOutEveryPerServerSeries() throws {
        let s = try SwitchingScenario()
        let c = try RawClient(port: s.proxy.port)
        for _ in 0..<3 { _ = try s.servedBy(c) }
        let all = try curl(["--unix-socket", s.socket, "http://x/metrics"]).output
        #expect(all.contains(#"server="b1""#), "the full scrape has per-server series: \(all)")
        let lean = try curl(["--unix-socket", s.socket, "http://x/metrics?servers=off"]).output
        #expect(!lean.contains("server=\""), "servers=off still has per-server series: \(lean)")
        #expect(!lean.contains("switchyard_server_healthy"), "no per-server family headers either: \(lean)")
        #expect(lean.contains(#"switchyard_pool_responses_total{pool="blue",class="2xx"} 3"#), "pools are still there: \(lean)")
        #expect(lean.contains(#"switchyard_service_responses_total{service="web",class="2xx"} 3"#), "\(lean)")
        #expect(lean.count < all.count)
        let bad = try curl(["--unix-socket", s.socket, "-w", "\n%{http_code}", "http://x/metrics?servers=some"]).output
        #expect(bad.hasSuffix("400") && bad.contains("servers is on or off"), "\(bad)")
    }

    @Test func statusHasAViewPerServiceAndASummary() throws {
        let s = try SwitchingScenario(serviceExtra: "  api: { match: { path_prefix: /api }, active: green }")
        let c = try RawClient(port: s.proxy.port)
        for _ in 0..<4 { _ = try s.servedBy(c) }

        let (status, one) = try s.admin("GET", "/v1/status?service=api")
        #expect(status == 200)
        #expect((one["services"] as? [String: Any]).map { Array($0.keys) } == ["api"], "\(one)")
        #expect((one["pools"] as? [String: Any]).map { Array($0.keys) } == ["green"], "only the pools api routes to: \(one)")
        let green = (one["pools"] as? [String: Any])?["green"] as? [String: Any]
        #expect((green?["servers"] as? [[String: Any]])?.first?["name"] as? String == "g1")
        #expect(one["generation"] as? Int == 1 && one["locks"] is [Any], "the rest of the status is there: \(one)")
        let (_, web) = try s.admin("GET", "/v1/status?service=web")
        #expect((web["pools"] as? [String: Any]).map { Set($0.keys) } == ["blue", "green"], "active and standby: \(web)")

        let (summaryStatus, summary) = try s.admin("GET", "/v1/status?view=summary")
        #expect(summaryStatus == 200)
        #expect((summary["services"] as? [String: Any]).map { Set($0.keys) } == ["web", "api"])
        let blue = (summary["pools"] as? [String: Any])?["blue"] as? [String: Any]
        #expect(blue?["servers"] == nil, "no server lists in the summary: \(summary)")
        #expect(blue?["servers_total"] as? Int == 1 && blue?["servers_ready"] as? Int == 1 && blue?["requests"] as? Int == 4, "\(summary)")

        #expect(try s.admin("GET", "/v1/status?service=nope").0 == 404)
        let (bad, error) = try s.admin("GET", "/v1/status?view=everything")
        #expect(bad == 400 && "\(error)".contains("view=summary"), "\(error)")
    }

    @Test func adminSocketIsOwnerOnly() throws {
        let s = try SwitchingScenario()
        var info = stat()
        #expect(stat(s.socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect((info.st_mode & S_IFMT) == S_IFSOCK)
    }

    @Test func tcpAdminRequiresABearerToken() throws {
        let dir = makeTemporaryDirectory()
        let tokens = "\(dir)/tokens"
        try "# name token\npipeline 0123456789abcdef0123\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        let port = freePort()
        let s = try SwitchingScenario(adminExtra: "  tcp: 127.0.0.1:\(port)\n  tokens_file: \(tokens)")
        let url = "http://127.0.0.1:\(port)"
        func code(_ args: [String]) throws -> String { try curl(["-o", "/dev/null", "-w", "%{http_code}"] + args).output }
        #expect(try code(["\(url)/v1/status"]) == "401")
        #expect(try code(["-H", "Authorization: Bearer wrong-token-wrong-token", "\(url)/v1/status"]) == "401")
        #expect(try code(["-X", "POST", "\(url)/v1/services/web/flip"]) == "401")
        #expect(try code(["-H", "Authorization: Bearer 0123456789abcdef0123", "\(url)/v1/status"]) == "200")
        #expect(try code(["-X", "POST", "-H", "Authorization: Bearer 0123456789abcdef0123", "-H", "X-Switchyard-Actor: run 17",
                          "\(url)/v1/services/web/flip"]) == "200")
        let (_, audit) = try s.admin("GET", "/v1/audit")
        let last = (audit["entries"] as? [[String: Any]])?.last
        #expect(last?["actor"] as? String == "token:pipeline")
        #expect(last?["actor_label"] as? String == "run 17")
        // Not loopback: refused by check.
        let bad = "\(dir)/bad.yaml"
        try s.configText.replacingOccurrences(of: "127.0.0.1:\(port)", with: "0.0.0.0:\(port)")
            .replacingOccurrences(of: "pools:", with: "listeners: [{ bind: 127.0.0.1:1 }]\npools:")
            .write(toFile: bad, atomically: true, encoding: .utf8)
        let checked = try run(switchyardBinary, ["check", "--config", bad])
        #expect(checked.status == 1)
        #expect(checked.error.contains("admin.tcp: 0.0.0.0:\(port) is not a loopback address"))
    }

    @Test func drainStopsNewRequestsAndLetsInFlightFinish() throws {
        let s = try SwitchingScenario(secondBlue: true)
        let slow = try RawClient(port: s.proxy.port)
        slow.send("GET /sleep/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        usleep(200_000)
        let (_, status) = try s.admin("GET", "/v1/status")
        let servers = ((status["pools"] as? [String: Any])?["blue"] as? [String: Any])?["servers"] as? [[String: Any]] ?? []
        let busy = try #require(servers.first { $0["active_requests"] as? Int == 1 }?["name"] as? String)
        let other = busy == "b1" ? "blue2" : "blue"
        let started = Date()
        let drained = try s.ctl(["drain", "blue/\(busy)", "--wait", "--timeout", "10"])
        #expect(drained.status == 0)
        #expect(drained.output.contains("blue/\(busy) drained"))
        #expect(Date().timeIntervalSince(started) > 0.8) // it waited for the in-flight request
        #expect(try slow.readResponse().status == 200)  // which completed where it started
        let c = try RawClient(port: s.proxy.port)
        for _ in 0..<10 { #expect(try s.servedBy(c) == other) }
        #expect(try s.ctl(["undrain", "blue/\(busy)"]).status == 0)
        var seen = Set<String>()
        for _ in 0..<6 { seen.insert(try s.servedBy(c)) }
        #expect(seen == ["blue", "blue2"])
    }

    @Test func serversAreAddedAndRemovedAtRuntime() throws {
        let s = try SwitchingScenario()
        let extra = try s.scenario.upstream("blue3")
        #expect(try s.admin("POST", "/v1/pools/blue/servers", body: #"{"name": "b3", "address": "\#(extra.address)", "weight": 100}"#).0 == 200)
        #expect(try s.admin("POST", "/v1/pools/blue/servers", body: #"{"name": "b3", "address": "\#(extra.address)"}"#).0 == 409)
        let c = try RawClient(port: s.proxy.port)
        var seen = Set<String>()
        for _ in 0..<6 { seen.insert(try s.servedBy(c)) }
        #expect(seen == ["blue", "blue3"])
        // Added servers survive a crash.
        s.proxy.process.signal(SIGKILL)
        _ = s.proxy.process.waitForExit(timeout: 5)
        s.scenario.proxy = try Proxy(directory: s.scenario.directory, config: s.configText)
        let c2 = try RawClient(port: s.proxy.port)
        seen = []
        for _ in 0..<6 { seen.insert(try s.servedBy(c2)) }
        #expect(seen == ["blue", "blue3"])
        // Removal needs a drain first.
        let (refused, error) = try s.admin("DELETE", "/v1/pools/blue/servers/b3")
        #expect(refused == 409)
        #expect((error["detail"] as? String)?.contains("drain") == true)
        #expect(try s.admin("PUT", "/v1/pools/blue/servers/b3", body: #"{"state": "drain"}"#).0 == 200)
        #expect(try s.admin("DELETE", "/v1/pools/blue/servers/b3").0 == 200)
        for _ in 0..<4 { #expect(try s.servedBy(c2) == "blue") }
        let (_, status) = try s.admin("GET", "/v1/status")
        let names = ((((status["pools"] as? [String: Any])?["blue"] as? [String: Any])?["servers"]) as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(names == ["b1"])
    }

    @Test func drainKeepsTunnelsUntilTheDrainDeadline() throws {
        let s = try SwitchingScenario(serviceExtra: "timeouts: { tunnel_drain: 1500ms }")
        let tunnel = try RawClient(port: s.proxy.port)
        tunnel.send("GET /upgrade HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        #expect(try tunnel.readResponse().status == 101)
        #expect(try s.admin("PUT", "/v1/pools/blue/servers/b1", body: #"{"state": "drain"}"#).0 == 200)
        let drainedAt = Date()
        // Still open and working while the server drains...
        tunnel.send("still here")
        while tunnel.buffer.count < 10 { guard tunnel.fill() else { break } }
        #expect(String(decoding: tunnel.buffer, as: UTF8.self) == "still here")
        // ...and closed once tunnel_drain has passed.
        #expect(tunnel.isClosedByPeer(timeout: 5))
        let after = Date().timeIntervalSince(drainedAt)
        #expect(after >= 1.4 && after < 3.5, "closed after \(after) s")
    }

    @Test func zeroFailedRequestsUnderLoadWhileSwitching() throws {
        let s = try SwitchingScenario(workers: 2, secondBlue: true)
        let out = "\(s.scenario.directory)/wrk.out"
        // wrk runs until the 1,000 changes are done (SIGINT makes it print its report), so a
        // busy machine makes the test slower, never weaker.
        let load = try spawn("/usr/bin/wrk", ["-t1", "-c20", "-d120s", s.proxy.url + "/"], stdout: out, stderr: out + ".err")
        usleep(500_000)
        var changes = 0, refused = 0
        while changes < 1000 {
            let status: Int
            switch changes % 5 {
            case 0: status = s.quickAdmin("POST", "/v1/services/web/flip")
            case 1:
                // Each cycle's flip alternates the active pool; the canary goes to the standby.
                let standby = (changes / 5) % 2 == 0 ? "blue" : "green"
                status = s.quickAdmin("PUT", "/v1/services/web/canary", body: #"{"pool": "\#(standby)", "weight": "\#(changes % 100)%"}"#)
            case 2: status = s.quickAdmin("POST", "/v1/services/web/rollback")
            case 3: status = s.quickAdmin("PUT", "/v1/pools/blue/servers/b1", body: #"{"state": "drain"}"#)
            default: status = s.quickAdmin("PUT", "/v1/pools/blue/servers/b1", body: #"{"state": "ready"}"#)
            }
            if status != 200 { refused += 1 }
            changes += 1
        }
        usleep(300_000)
        kill(load, SIGINT)
        var status: Int32 = 0
        waitpid(load, &status, 0)
        let report = try String(contentsOfFile: out, encoding: .utf8)
        #expect(refused == 0)
        #expect(report.contains("requests in"))
        #expect(!report.contains("Non-2xx"), "failed requests under switching: \(report)")
        #expect(!report.contains("Socket errors"), "socket errors under switching: \(report)")
    }
}
