import Foundation
import Glibc
import Testing

@Suite("Reload and resilience", .serialized)
struct ResilienceTests {
    @Test func reloadAppliesTheFileAndKeepsRuntimeChanges() throws {
        let s = try SwitchingScenario()
        let teal = try s.scenario.upstream("teal")
        // A tunnel and a keep-alive connection opened before the reload.
        let tunnel = try RawClient(port: s.proxy.port)
        tunnel.send("GET /upgrade HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        #expect(try tunnel.readResponse().status == 101)
        let kept = try RawClient(port: s.proxy.port)
        #expect(try s.servedBy(kept) == "blue")
        try s.admin("POST", "/v1/services/web/flip")           // runtime change: green active

        // The file gains a pool and a rule that uses it.
        let path = s.proxy.configPath
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "services:\n", with: "  teal: { servers: [{ name: t1, address: \(teal.address) }] }\nservices:\n")
        text = text.replacingOccurrences(of: "    standby: green\n", with: "    standby: green\n    rules: [{ header: X-Teal, value: yes, pool: teal }]\n")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let (status, body) = try s.admin("POST", "/v1/reload")
        #expect(status == 200, "\(body)")
        #expect(try s.servedBy(kept) == "green")                           // the flip survived the reload
        #expect(try s.servedBy(kept, headers: "X-Teal: yes\r\n") == "teal") // the file's new rule applies
        tunnel.send("after reload")
        while tunnel.buffer.count < 12 { guard tunnel.fill() else { break } }
        #expect(String(decoding: tunnel.buffer, as: UTF8.self) == "after reload")  // the tunnel is untouched

        // An invalid file is refused with its problems; the running configuration keeps serving.
        try (text + "bogus_key: 1\n").write(toFile: path, atomically: true, encoding: .utf8)
        let (refused, error) = try s.admin("POST", "/v1/reload")
        #expect(refused == 400)
        #expect((error["detail"] as? String)?.contains("bogus_key: unknown key") == true)
        #expect(try s.servedBy(kept, headers: "X-Teal: yes\r\n") == "teal")

        // SIGHUP reloads too; reset=true returns to the file's routing (blue active).
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        s.proxy.process.signal(SIGHUP)
        usleep(300_000)
        #expect(s.proxy.process.stderr.contains("SIGHUP: configuration reloaded"))
        #expect(try s.servedBy(kept) == "green")
        #expect(try s.admin("POST", "/v1/reload?reset=true").0 == 200)
        #expect(try s.servedBy(kept) == "blue")
    }

    @Test func healthChecksTakeServersOutAndBringThemBack() throws {
        let s = Scenario()
        let a = try s.upstream("a"), b = try s.upstream("b")
        let socket = "\(s.directory)/admin.sock"
        let proxy = try s.startProxy("""
            pools:
              app:
                health: { path: /healthz, interval: 200ms, timeout: 150ms, rise: 2, fall: 2, expect: 200-399 }
                servers: [{ name: a, address: \(a.address) }, { name: b, address: \(b.address) }]
            services: { web: { active: app } }
            access_log: off
            admin: { socket: \(socket) }

            """)
        func health(_ name: String) throws -> String {
            let text = try curl(["--unix-socket", socket, "http://x/v1/status"]).output
            let status = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            let servers = ((status?["pools"] as? [String: Any])?["app"] as? [String: Any])?["servers"] as? [[String: Any]] ?? []
            return (servers.first { $0["name"] as? String == name }?["health"] as? [String: Any])?["status"] as? String ?? "?"
        }
        func waitFor(_ name: String, _ wanted: String) throws -> Bool {
            let end = Date().addingTimeInterval(5)
            while Date() < end { if try health(name) == wanted { return true }; usleep(50_000) }
            return false
        }
        #expect(try waitFor("a", "up") && waitFor("b", "up"))
        b.stop()
        #expect(try waitFor("b", "down"))
        #expect(proxy.process.stderr.contains("health: app/b is DOWN after 2 failed check(s)"))
        let c = try RawClient(port: proxy.port)
        for _ in 0..<6 {
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try c.readResponse().header("X-Served-By") == "a")
        }
        // Back on the same port: in rotation again after `rise` passing checks.
        _ = try s.upstream("b", port: b.port)
        #expect(try waitFor("b", "up"))
        #expect(proxy.process.stderr.contains("health: app/b is UP after 2 passing check(s)"))
        var seen = Set<String>()
        for _ in 0..<6 {
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            seen.insert(try c.readResponse().header("X-Served-By") ?? "?")
        }
        #expect(seen == ["a", "b"])

        // Readiness: a server added while nothing answers yet stays pending and gets no traffic.
        let port = freePort()
        #expect(try curl(["--unix-socket", socket, "-X", "POST", "-d", #"{"name": "n", "address": "127.0.0.1:\#(port)"}"#,
                          "-o", "/dev/null", "-w", "%{http_code}", "http://x/v1/pools/app/servers"]).output == "200")
        #expect(try health("n") == "pending")
        for _ in 0..<6 {
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try c.readResponse().status == 200)
        }
        _ = try s.upstream("n", port: port)
        #expect(try waitFor("n", "up"))
        seen = []
        for _ in 0..<9 {
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            seen.insert(try c.readResponse().header("X-Served-By") ?? "?")
        }
        #expect(seen.contains("n"))
    }

    @Test func outlierDetectionEjectsAFailingServerAndReturnsIt() throws {
        let s = Scenario()
        let good = try s.upstream("good")
        let bad = try s.upstream("bad", ["--always-status", "500"])
        let socket = "\(s.directory)/admin.sock"
        let proxy = try s.startProxy("""
            pools:
              app:
                outlier_detection: { consecutive_failures: 3, base_ejection_time: 1s, max_ejection_percent: 50 }
                servers: [{ name: good, address: \(good.address) }, { name: bad, address: \(bad.address) }]
            services: { web: { active: app } }
            access_log: off
            admin: { socket: \(socket) }

            """, workers: 1)
        let c = try RawClient(port: proxy.port)
        var served: [String] = []
        for _ in 0..<20 {
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            served.append(try c.readResponse().header("X-Served-By") ?? "?")
        }
        #expect(served.filter { $0 == "bad" }.count == 3)           // three failures, then ejected
        #expect(served.suffix(12).allSatisfy { $0 == "good" })
        #expect(proxy.process.stderr.contains("ejected app/bad for 1.0s after 3 consecutive failures"))
        let metrics = try curl(["--unix-socket", socket, "http://x/metrics"]).output
        #expect(metrics.contains(#"switchyard_upstream_ejections_total{pool="app",server="bad"} 1"#))
        // After the ejection time it is tried again (and, still failing, ejected for longer).
        usleep(1_300_000)
        #expect(proxy.process.stderr.contains("app/bad returns from ejection"))
        for _ in 0..<8 {
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try c.readResponse()
        }
        #expect(proxy.process.stderr.contains("ejected app/bad for 2.0s after 3 consecutive failures"))
    }

    @Test func idempotentRequestsAreRetriedOnAnotherServerAfterAReset() throws {
        let s = Scenario()
        // "drop" reads each request and closes without answering; "ok" answers.
        let drop = try s.upstream("drop", ["--drop-after", "0"])
        let ok = try s.upstream("ok")
        let proxy = try s.startProxy(simpleConfig([(drop.address, 100), (ok.address, 100)],
                                                  extra: "").replacingOccurrences(of: "balance: round_robin", with: "balance: round_robin\n    outlier_detection: off"),
                                     workers: 1)
        for _ in 0..<6 {
            let r = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(proxy.url)/"])
            #expect(r.output == "200")                              // GET: retried on the other server
        }
        var failedPosts = 0
        for _ in 0..<6 {
            let r = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-d", "x", "\(proxy.url)/"])
            if r.output == "502" { failedPosts += 1 }
        }
        #expect(failedPosts == 3)                                   // POST is not replayed after the server read it
    }

    @Test func reportedLoadAndSlowStartScaleTheWeight() throws {
        let s = Scenario()
        let busy = try s.upstream("busy", ["--load", "cpu=97%, memory=40%, weight=25%"])
        let calm = try s.upstream("calm")
        let socket = "\(s.directory)/admin.sock"
        let proxy = try s.startProxy("""
            pools:
              app:
                health: { interval: 100ms, timeout: 80ms, rise: 1, fall: 2, adapt_weight: true }
                servers: [{ name: busy, address: \(busy.address) }, { name: calm, address: \(calm.address) }]
              ramp:
                slow_start: 2s
                servers: [{ name: r1, address: \(calm.address) }]
            services: { web: { active: app } }
            access_log: off
            admin: { socket: \(socket) }

            """, workers: 1)
        func server(_ pool: String, _ name: String) throws -> [String: Any] {
            let text = try curl(["--unix-socket", socket, "http://x/v1/status"]).output
            let status = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            let servers = ((status?["pools"] as? [String: Any])?[pool] as? [String: Any])?["servers"] as? [[String: Any]] ?? []
            return servers.first { $0["name"] as? String == name } ?? [:]
        }
        // The busy instance reports weight=25%: once checked, it gets a quarter of its weight.
        let end = Date().addingTimeInterval(3)
        while Date() < end, try server("app", "busy")["effective_weight"] as? Int != 25 { usleep(50_000) }
        #expect(try server("app", "busy")["effective_weight"] as? Int == 25)
        let load = (try server("app", "busy")["health"] as? [String: Any])?["reported_load"] as? [String: Any]
        #expect(load?["cpu"] as? Double == 0.97)
        let c = try RawClient(port: proxy.port)
        var counts: [String: Int] = [:]
        for _ in 0..<125 {
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            counts[try c.readResponse().header("X-Served-By") ?? "?", default: 0] += 1
        }
        #expect(counts["busy"] == 25 && counts["calm"] == 100, "\(counts)")

        // Slow start: undrained, r1 starts at 10% of its weight and reaches 100% after 2 s.
        #expect(try curl(["--unix-socket", socket, "-X", "PUT", "-d", #"{"state": "drain"}"#, "-o", "/dev/null", "-w", "%{http_code}",
                          "http://x/v1/pools/ramp/servers/r1"]).output == "200")
        _ = try curl(["--unix-socket", socket, "-X", "PUT", "-d", #"{"state": "ready"}"#, "http://x/v1/pools/ramp/servers/r1"])
        let early = try server("ramp", "r1")["effective_weight"] as? Int ?? -1
        #expect(early >= 10 && early < 40, "effective weight right after undrain: \(early)")
        usleep(2_600_000)
        #expect(try server("ramp", "r1")["effective_weight"] as? Int == 100)
    }
}
