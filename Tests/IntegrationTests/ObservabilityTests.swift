import Foundation
import Glibc
import Testing

/// The observability listener (`/metrics`, `/ready`, `/live`), the process's own metrics,
/// reload counters and JSON process logs, with the real binary.
@Suite("Observability", .serialized)
struct ObservabilityTests {
    /// The value of one sample (`name{labels}` exactly as written, or a bare name), if present.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            if line[..<space] == series { return Double(line[line.index(after: space)...]) }
        }
        return nil
    }

    /// GET (or another method) on the observability listener: status and body.
    static func get(_ port: UInt16, _ path: String, method: String = "GET") throws -> (status: Int, body: String) {
        let r = try curl(["-X", method, "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"])
        guard r.status == 0 else { throw HarnessError("curl \(method) \(path) failed: \(r.error)") }
        guard let newline = r.output.lastIndex(of: "\n"), let status = Int(r.output[r.output.index(after: newline)...]) else {
            throw HarnessError("curl \(method) \(path) failed: \(r.error)")
        }
        return (status, String(r.output[..<newline]))
    }

    static var release: String {
        get throws {
            // "switchyard 0.2.0"
            String(try run(switchyardBinary, ["version"]).output.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst("switchyard ".count))
        }
    }

    static func waitUntil(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    /// What pages people about certificates and locks: each served certificate's expiry (the
    /// test CA signs for 30 days) and each deploy lock held, gone once it is released.
    @Test func certificateExpiriesAndHeldLocksAreExported() throws {
        let s = Scenario()
        let pki = try TestPKI(directory: s.directory, names: ["site"])
        let app = try s.upstream("app")
        let port = freePort(), tlsPort = freePort()
        let admin = "\(s.directory)/admin.sock"
        _ = try s.startProxy(pki.tlsListener(port: tlsPort, ["site"]) + """
            pools: { app: { servers: [{ address: \(app.address) }] } }
            services: { web: { active: app } }
            access_log: off
            observability: { bind: 127.0.0.1:\(port) }
            admin: { socket: \(admin) }

            """)
        let now = Date().timeIntervalSince1970
        var text = try Self.get(port, "/metrics").body
        let expiry = try #require(Self.sample(text, "switchyard_tls_certificate_expiry_timestamp_seconds{listener=\"listeners 127.0.0.1:\(tlsPort)\",file=\"\(pki.cert("site"))\"}"), "\(text)")
        #expect(abs(expiry - (now + 30 * 86_400)) < 2 * 86_400, "about 30 days ahead: \(expiry - now) s")
        #expect(!text.contains("switchyard_lock_since_timestamp_seconds{"), "no lock, no series")

        let ctl = { (arguments: [String]) throws in try run(switchyardBinary, ["ctl", "--admin", admin] + arguments) }
        #expect(try ctl(["lock", "--owner", "ci", "--service", "web", "--ttl", "10m"]).status == 0)
        text = try Self.get(port, "/metrics").body
        let since = try #require(Self.sample(text, "switchyard_lock_since_timestamp_seconds{service=\"web\",owner=\"ci\"}"), "\(text)")
        let expires = try #require(Self.sample(text, "switchyard_lock_expiry_timestamp_seconds{service=\"web\",owner=\"ci\"}"))
        #expect(abs(since - now) < 60 && abs(expires - since - 600) < 2, "since \(since), expires \(expires)")
        #expect(try ctl(["unlock", "--force", "--service", "web"]).status == 0)
        text = try Self.get(port, "/metrics").body
        #expect(!text.contains("switchyard_lock_since_timestamp_seconds{") && !text.contains("switchyard_lock_expiry_timestamp_seconds{"))
    }

    /// Prometheus asks for gzip (`Accept-Encoding: gzip`); both listeners' `/metrics` answer
    /// gzip-coded then, and as plain text otherwise.
    @Test func scrapesAreGzipCodedForClientsThatAskForIt() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let port = freePort()
        let admin = "\(s.directory)/admin.sock"
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: """
            observability: { bind: 127.0.0.1:\(port) }
            admin: { socket: \(admin) }
            """))
        #expect(try curl([proxy.url + "/"]).status == 0)
        for target in [["http://127.0.0.1:\(port)/metrics"], ["--unix-socket", admin, "http://x/metrics"]] {
            let headers = "\(s.directory)/headers"
            let raw = "\(s.directory)/raw"
            #expect(try curl(["-D", headers, "-o", raw, "-H", "Accept-Encoding: deflate, gzip;q=0.5"] + target).status == 0)
            let head = try String(contentsOfFile: headers, encoding: .utf8).lowercased()
            #expect(head.contains("content-encoding: gzip\r\n") && head.contains("vary: accept-encoding\r\n"), "\(head)")
            let coded = try Data(contentsOf: URL(fileURLWithPath: raw))
            #expect(coded.starts(with: [0x1f, 0x8b]), "a gzip member starts with 1f 8b: \(coded.prefix(16).map { $0 })")
            let unzipped = try run("/bin/sh", ["-c", "gzip -dc < \(raw)"])
            #expect(unzipped.status == 0, "\(unzipped.error)")
            #expect(Self.sample(unzipped.output, "switchyard_service_responses_total{service=\"web\",class=\"2xx\"}") == 1, "\(unzipped.output.prefix(500))")
            #expect(coded.count * 3 < unzipped.output.utf8.count, "\(coded.count) bytes coded for \(unzipped.output.utf8.count)")

            // Without the field, or with gzip refused, the text goes as it is.
            for extra in [[], ["-H", "Accept-Encoding: gzip;q=0, identity"]] {
                #expect(try curl(["-D", headers, "-o", raw] + extra + target).status == 0)
                let plainHead = try String(contentsOfFile: headers, encoding: .utf8).lowercased()
                #expect(!plainHead.contains("content-encoding") && plainHead.contains("vary: accept-encoding\r\n"), "\(plainHead)")
                let text = try String(contentsOfFile: raw, encoding: .utf8)
                #expect(Self.sample(text, "switchyard_service_responses_total{service=\"web\",class=\"2xx\"}") == 1, "\(text.prefix(300))")
            }
        }
    }

    @Test func theListenerServesMetricsReadinessAndLivenessAndNothingElse() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let port = freePort()
        let admin = "\(s.directory)/admin.sock"
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: """
            observability: { bind: 127.0.0.1:\(port) }
            admin: { socket: \(admin) }
            """))

        // A client connection stays open while metrics are read.
        let client = try RawClient(port: proxy.port)
        client.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try client.readResponse().status == 200)

        let metrics = try Self.get(port, "/metrics")
        #expect(metrics.status == 200)
        let text = metrics.body
        let version = try Self.release
        #expect(!version.isEmpty)
        #expect(Self.sample(text, "switchyard_build_info{version=\"\(version)\"}") == 1, "\(text)")
        #expect((Self.sample(text, "process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((Self.sample(text, "process_open_fds") ?? 0) > 3)
        #expect((Self.sample(text, "process_max_fds") ?? 0) >= (Self.sample(text, "process_open_fds") ?? .infinity))
        #expect((Self.sample(text, "process_cpu_seconds_total") ?? -1) >= 0)
        let started = Self.sample(text, "process_start_time_seconds") ?? 0
        #expect(abs(started - Date().timeIntervalSince1970) < 120, "start time \(started)")
        #expect(Self.sample(text, "switchyard_ready") == 1)
        let open = (Self.sample(text, "switchyard_client_connections{worker=\"0\"}") ?? -1) + (Self.sample(text, "switchyard_client_connections{worker=\"1\"}") ?? -1)
        #expect(open == 1, "\(text)")
        #expect(Self.sample(text, "switchyard_reloads_total{outcome=\"success\"}") == 0)
        #expect(Self.sample(text, "switchyard_access_log_dropped_lines_total") == 0)
        // The admin API's metrics are here too, and its /metrics has the new ones.
        #expect(Self.sample(text, "switchyard_service_responses_total{service=\"web\",class=\"2xx\"}") == 1, "\(text)")
        let viaAdmin = try curl(["--unix-socket", admin, "http://localhost/metrics"]).output
        #expect(viaAdmin.contains("switchyard_build_info{version=\"\(version)\"} 1"))
        #expect(viaAdmin.contains("# TYPE process_resident_memory_bytes gauge"))

        shutdown(client.fd, Int32(SHUT_RDWR))
        #expect(try Self.waitUntil {
            let now = try Self.get(port, "/metrics").body
            return (Self.sample(now, "switchyard_client_connections{worker=\"0\"}") ?? -1) + (Self.sample(now, "switchyard_client_connections{worker=\"1\"}") ?? -1) == 0
        })

        #expect(try Self.get(port, "/ready") == (200, "ready\n"))
        #expect(try Self.get(port, "/live") == (200, "live\n"))
        #expect(try Self.get(port, "/metrics?x=1").status == 200)
        let lean = try Self.get(port, "/metrics?servers=off")
        #expect(lean.status == 200 && !lean.body.contains("server=\"") && lean.body.contains("switchyard_pool_"), "\(lean.body)")
        #expect(try Self.get(port, "/metrics?servers=maybe").status == 400)
        // Parameters are percent-decoded, as Prometheus' `params` may send them.
        let encoded = try Self.get(port, "/metrics?servers=of%66")
        #expect(encoded.status == 200 && !encoded.body.contains("server=\""), "\(encoded.status) \(encoded.body.prefix(200))")
        // Read-only: no method but GET, no admin route, no token needed or taken.
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            #expect(try Self.get(port, "/metrics", method: method).status == 405)
            #expect(try Self.get(port, "/ready", method: method).status == 405)
        }
        let allow = try curl(["-i", "-X", "POST", "http://127.0.0.1:\(port)/ready"]).output
        #expect(allow.contains("Allow: GET, HEAD"))
        for path in ["/v1/status", "/v1/reload", "/v1/services/web/flip", "/", "/metricsx"] {
            #expect(try Self.get(port, path).status == 404, "\(path)")
            #expect(try Self.get(port, path, method: "POST").status == 404, "\(path)")
        }
        let withToken = try curl(["-w", "\n%{http_code}", "-X", "POST", "-H", "Authorization: Bearer whatever-token-0123456789",
                                  "-H", "Content-Type: application/json", "--data", "{}", "http://127.0.0.1:\(port)/v1/reload"]).output
        #expect(withToken.hasSuffix("404"))
        #expect(proxy.process.isRunning)
    }

    @Test func readyIsUnavailableWhileAGracefulStopDrains() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let port = freePort()
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: "shutdown_timeout: 20s\nobservability: { bind: 127.0.0.1:\(port) }\n"))
        #expect(try Self.get(port, "/ready").status == 200)
        let busy = try RawClient(port: proxy.port)
        busy.send("GET /sleep/3000 HTTP/1.1\r\nHost: t\r\n\r\n")
        usleep(300_000)
        proxy.process.signal(SIGTERM)
        usleep(300_000)
        // Still draining the slow request: not ready, but alive, and metrics say so.
        #expect(proxy.process.isRunning)
        #expect(try Self.get(port, "/ready") == (503, "draining\n"))
        #expect(try Self.get(port, "/live").status == 200)
        let metrics = try Self.get(port, "/metrics")
        #expect(metrics.status == 200)
        #expect(Self.sample(metrics.body, "switchyard_ready") == 0)
        #expect(Self.sample(metrics.body, "switchyard_service_active_requests{service=\"web\"}") == 1, "\(metrics.body)")
        let r = try busy.readResponse()
        #expect(r.status == 200)
        #expect(proxy.process.waitForExit(timeout: 10) == 0)
        #expect(throws: (any Error).self) { try Self.get(port, "/live") }
    }

    @Test func reloadsAreCountedBySuccessAndFailure() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let port = freePort()
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: "observability: { bind: 127.0.0.1:\(port) }\n"))
        func value(_ series: String) throws -> Double? { Self.sample(try Self.get(port, "/metrics").body, series) }
        #expect(try value("switchyard_reloads_total{outcome=\"success\"}") == 0)
        #expect(try value("switchyard_last_reload_timestamp_seconds") == 0)

        let before = Date().timeIntervalSince1970
        proxy.process.signal(SIGHUP)
        #expect(try Self.waitUntil { try value("switchyard_reloads_total{outcome=\"success\"}") == 1 })
        #expect(try value("switchyard_reloads_total{outcome=\"failure\"}") == 0)
        #expect(try value("switchyard_last_reload_success") == 1)
        let at = try value("switchyard_last_reload_success_timestamp_seconds") ?? 0
        #expect(at >= before - 1 && at <= Date().timeIntervalSince1970 + 1)

        let good = try String(contentsOfFile: proxy.configPath, encoding: .utf8)
        try (good + "colour: blue\n").write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
        proxy.process.signal(SIGHUP)
        #expect(try Self.waitUntil { try value("switchyard_reloads_total{outcome=\"failure\"}") == 1 })
        #expect(try value("switchyard_reloads_total{outcome=\"success\"}") == 1)
        #expect(try value("switchyard_last_reload_success") == 0)
        #expect(try value("switchyard_last_reload_success_timestamp_seconds") == at)
        #expect(proxy.process.isRunning)
    }

    @Test func processMessagesAreJSONLinesWhenAskedAndTextOtherwise() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: "log_format: json\n"))
        // A failed reload is an error line.
        let good = try String(contentsOfFile: proxy.configPath, encoding: .utf8)
        try (good + "colour: blue\n").write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
        proxy.process.signal(SIGHUP)
        #expect(Self.waitUntil { proxy.process.stderr.contains("SIGHUP") })
        proxy.process.signal(SIGTERM)
        #expect(proxy.process.waitForExit(timeout: 10) == 0)

        let lines = proxy.process.stderr.split(separator: "\n")
        #expect(lines.count >= 3, "\(proxy.process.stderr)")
        var objects: [[String: Any]] = []
        for line in lines {
            let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            let object = try #require(parsed, "not a JSON object: \(line)")
            #expect(["info", "warning", "error"].contains(object["level"] as? String ?? ""), "\(line)")
            let time = try #require(object["time"] as? String)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            #expect(formatter.date(from: time) != nil, "\(time)")
            objects.append(object)
        }
        let messages = objects.compactMap { $0["message"] as? String }
        #expect(messages.contains { $0.hasPrefix("listening on 127.0.0.1:\(proxy.port)") }, "\(messages)")
        let failure = try #require(objects.first { ($0["message"] as? String ?? "").hasPrefix("SIGHUP: invalid configuration") })
        #expect(failure["level"] as? String == "error")
        #expect((failure["message"] as? String ?? "").contains("colour: unknown key"))
        #expect(messages.contains("stopped"))

        // Without log_format, the lines are text as before.
        let t = Scenario()
        let other = try t.upstream("blue")
        let plain = try t.startProxy(simpleConfig([(other.address, 100)]))
        plain.process.signal(SIGTERM)
        #expect(plain.process.waitForExit(timeout: 10) == 0)
        #expect(plain.process.stderr.hasPrefix("switchyard: listening on 127.0.0.1:\(plain.port)"), "\(plain.process.stderr)")
        #expect(plain.process.stderr.contains("\nswitchyard: stopped\n"))
    }

    @Test func accessLogWriteFailuresAreCounted() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let port = freePort()
        // /dev/full takes the file open and refuses every write.
        let config = simpleConfig([(blue.address, 100)], extra: "observability: { bind: 127.0.0.1:\(port) }\n")
            .replacingOccurrences(of: "access_log: off", with: "access_log: /dev/full")
        let proxy = try s.startProxy(config)
        for _ in 0..<3 { _ = try curl(["\(proxy.url)/"]) }
        #expect(try Self.waitUntil {
            (Self.sample(try Self.get(port, "/metrics").body, "switchyard_access_log_write_errors_total") ?? 0) >= 1
        })
    }

    @Test func nameResolutionsAreCountedByOutcome() throws {
        let s = try DNSScenario(names: ["app.test": ["127.0.0.1"]])
        let app = try s.scenario.upstream("app")
        let port = freePort()
        try s.startProxy("""
        observability: { bind: 127.0.0.1:\(port) }
        pools:
          app:
            servers: [{ address: app.test:\(app.port) }]
        services: { web: { active: app } }
        """)
        #expect(try s.request().0 == 200)
        func value(_ outcome: String) throws -> Double {
            Self.sample(try Self.get(port, "/metrics").body, "switchyard_dns_resolution_outcomes_total{outcome=\"\(outcome)\"}") ?? -1
        }
        #expect(try value("success") >= 1)
        #expect(try value("failure") == 0)
        // Every second the name is asked again: answers count as successes, SERVFAIL as failures.
        #expect(try Self.waitUntil { try value("success") >= 2 })
        try s.dns.fail("servfail")
        #expect(try Self.waitUntil { try value("failure") >= 1 })
        #expect(try s.request().0 == 200) // the last good answer stays in use
    }

    @Test func checkRefusesABadObservabilitySectionOrLogFormat() throws {
        let s = Scenario()
        let path = "\(s.directory)/bad.yaml"
        try """
            listeners: [ { bind: 127.0.0.1:8080 } ]
            pools: { app: { servers: [ { address: 127.0.0.1:9001 } ] } }
            services: { web: { active: app } }
            observability: { bind: 127.0.0.1:8080 }
            log_format: xml
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let checked = try run(switchyardBinary, ["check", "--config", path])
        #expect(checked.status == 1)
        #expect(checked.error.contains("bad.yaml:4:"), "\(checked.error)")
        #expect(checked.error.contains("observability.bind: 127.0.0.1:8080 is also a listener's address"), "\(checked.error)")
        #expect(checked.error.contains("log_format: \"xml\" is not a log format; use text or json"), "\(checked.error)")

        try """
            listeners: [ { bind: 127.0.0.1:8080 } ]
            pools: { app: { servers: [ { address: 127.0.0.1:9001 } ] } }
            services: { web: { active: app } }
            observability: { bind: nowhere }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let address = try run(switchyardBinary, ["check", "--config", path])
        #expect(address.status == 1)
        #expect(address.error.contains("observability.bind: \"nowhere\" is not a valid address"), "\(address.error)")
    }
}
