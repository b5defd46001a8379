import Foundation
import Glibc
import Testing

/// The console's API on its own: access, sessions, the report protocol, leases and the feed.
/// Rollouts with real proxies and runners are in ConsoleRolloutTests.
@Suite(.serialized) struct ConsoleAPITests {
    static func report(run: String, outcome: String = "running", steps: String = "[]", controlResults: String = "[]", controlsAfter: Int = 0,
                       events: String = "[]") -> String {
        """
        {"run":"\(run)","service":"shop","version":"OPS-1-api-20261130000000","actor":"github:alice","host":"ci-7","pid":4242,
         "plan_path":"deploy/shop.yaml","environments":["stage","prod"],
         "change":{"commit":"abc123","commit_time":"2026-11-30T00:00:00Z","ticket":"OPS-1"},
         "rollout":{"started_at":"2026-11-30T01:00:00.000Z","outcome":"\(outcome)","environment":"stage","progress":"canary at 10%",
                    "heartbeat_at":"2026-11-30T01:00:01.000Z"},
         "deployments":[{"local_id":1,"environment":"stage","version":"OPS-1-api-20261130000000","strategy":"canary","actor":"github:alice",
                         "started_at":"2026-11-30T01:00:00.500Z","outcome":"\(outcome == "running" ? "running" : outcome)","pool":"green",
                         "previous_pool":"blue","previous_version":"OPS-0-api-20261129000000"}],
         "steps":\(steps),"hooks":[],"events":\(events),"control_results":\(controlResults),
         "locks":[{"environment":"stage","token":"lock-secret-token-xyz","released":false}],"controls_after":\(controlsAfter)}
        """
    }

    @Test func accessNeedsATokenAndRolesLimitWhatItMayDo() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir)
        defer { console.stop() }
        #expect(try console.call("GET", "/api/v1/health", token: nil).status == 200)
        #expect(try console.call("GET", "/api/v1/rollouts", token: nil).status == 401)
        #expect(try console.call("GET", "/api/v1/rollouts", token: "not-a-token").status == 401)

        let created = try console.call("POST", "/api/v1/tokens", body: #"{"name":"watcher","role":"viewer"}"#)
        #expect(created.status == 201)
        let viewer = try #require(created.json["token"] as? String)
        let deployer = try #require(try console.call("POST", "/api/v1/tokens", body: #"{"name":"ci","role":"deployer"}"#).json["token"] as? String)
        #expect(try console.call("POST", "/api/v1/tokens", body: #"{"name":"ci","role":"admin"}"#).status == 409)
        let badRole = try console.call("POST", "/api/v1/tokens", body: #"{"name":"x","role":"god"}"#)
        #expect(badRole.status == 400 && badRole.json["field"] as? String == "role")

        #expect(try console.call("GET", "/api/v1/rollouts", token: viewer).status == 200)
        // A viewer reads, never acts.
        let run = UUID().uuidString.lowercased()
        #expect(try console.call("POST", "/api/v1/reports", body: Self.report(run: run), token: viewer).status == 403)
        let reported = try console.call("POST", "/api/v1/reports", body: Self.report(run: run), token: deployer)
        #expect(reported.status == 200)
        let id = try #require(reported.json["rollout"] as? Int)
        let refused = try console.call("POST", "/api/v1/rollouts/\(id)/approve", body: #"{"wait":0}"#, token: viewer)
        #expect(refused.status == 403)
        #expect((refused.json["error"] as? String)?.contains("viewer") == true)
        // A deployer pauses but does not approve.
        #expect(try console.call("POST", "/api/v1/rollouts/\(id)/approve", body: #"{"wait":0}"#, token: deployer).status == 403)
        #expect(try console.call("POST", "/api/v1/rollouts/\(id)/pause", body: #"{"wait":0}"#, token: deployer).status == 202)
        #expect(try console.call("GET", "/api/v1/tokens", token: deployer).status == 403)

        // No secret leaves the console: not the tokens, not the proxies' lock tokens.
        let everything = try [console.call("GET", "/api/v1/tokens").text, console.call("GET", "/api/v1/rollouts/\(id)").text,
                              console.call("GET", "/api/v1/audit").text, console.call("GET", "/api/v1/rollouts").text].joined()
        #expect(!everything.contains(viewer) && !everything.contains(deployer) && !everything.contains("lock-secret-token-xyz"))
        #expect(!console.process.stdout.contains(deployer) && !console.process.stderr.contains(deployer))
        #expect(!console.process.stderr.contains("lock-secret-token-xyz"))

        #expect(try console.call("DELETE", "/api/v1/tokens/ci").status == 204)
        #expect(try console.call("GET", "/api/v1/rollouts", token: deployer).status == 401)
        let audit = try console.call("GET", "/api/v1/audit").json["audit"] as? [[String: Any]] ?? []
        #expect(audit.contains { $0["action"] as? String == "pause" && $0["actor"] as? String == "ci" })
        #expect(audit.contains { $0["action"] as? String == "revoke token" && $0["actor"] as? String == "admin" })
    }

    @Test func browserSessionsUseAStrictHttpOnlyCookieAndACSRFToken() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir)
        defer { console.stop() }
        let jar = "\(dir)/cookies"
        let login = try curl(["-s", "-D", "-", "-c", jar, "-H", "Content-Type: application/json", "--data-binary", "{\"token\":\"\(consoleAdminToken)\"}",
                              console.url + "/api/v1/session"])
        let cookieLine = try #require(login.output.split(separator: "\r\n").first { $0.lowercased().hasPrefix("set-cookie:") })
        #expect(cookieLine.contains("HttpOnly") && cookieLine.contains("SameSite=Strict"))
        let body = try #require(login.output.components(separatedBy: "\r\n\r\n").last)
        let csrf = try #require((try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["csrf_token"] as? String)
        #expect(!body.contains(consoleAdminToken))

        func withCookie(_ method: String, _ path: String, _ extra: [String] = []) throws -> Int {
            let r = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-b", jar, "-X", method] + extra + [console.url + path])
            return Int(r.output) ?? 0
        }
        #expect(try withCookie("GET", "/api/v1/rollouts") == 200)
        // An unsafe request riding on the cookie alone (what a cross-site form would send) is refused.
        #expect(try withCookie("POST", "/api/v1/tokens", ["-H", "Content-Type: application/json", "--data-binary", #"{"name":"a","role":"viewer"}"#]) == 403)
        #expect(try withCookie("POST", "/api/v1/tokens", ["-H", "Content-Type: application/json", "-H", "X-CSRF-Token: \(csrf)",
                                                          "--data-binary", #"{"name":"a","role":"viewer"}"#]) == 201)
        #expect(try withCookie("DELETE", "/api/v1/session", ["-H", "X-CSRF-Token: \(csrf)"]) == 204)
        #expect(try withCookie("GET", "/api/v1/rollouts") == 401)
    }

    @Test func reportsAreIdempotentCarryControlsAndSurviveARestart() throws {
        let dir = makeTemporaryDirectory()
        var console = try ConsoleProcess(directory: dir)
        defer { console.stop() }
        let run = UUID().uuidString.lowercased()
        let step = #"[{"local_id":1,"deployment":1,"time":"2026-11-30T01:00:02.000Z","kind":"weight","detail":"canary at 10%","weight":"10%"}]"#
        let event = #"[{"local_id":1,"time":"2026-11-30T01:00:00.000Z","kind":"started","message":"rollout started","fields":"{}"}]"#
        let first = try console.call("POST", "/api/v1/reports", body: Self.report(run: run, steps: step, events: event))
        #expect(first.status == 200)
        let id = try #require(first.json["rollout"] as? Int)
        #expect((first.json["acknowledged"] as? [String: Any])?["steps"] as? Int == 1)
        // The same report again changes nothing.
        #expect(try console.call("POST", "/api/v1/reports", body: Self.report(run: run, steps: step, events: event)).json["rollout"] as? Int == id)
        let detail = try console.call("GET", "/api/v1/rollouts/\(id)").json
        let deployments = detail["deployments"] as? [[String: Any]] ?? []
        #expect(deployments.count == 1)
        #expect((deployments.first?["steps"] as? [Any])?.count == 1)
        #expect((detail["events"] as? [Any])?.count == 1)
        #expect((detail["rollout"] as? [String: Any])?["state"] as? String == "running")
        #expect(((detail["rollout"] as? [String: Any])?["change"] as? [String: Any])?["commit"] as? String == "abc123")

        // A control waits for the runner's next report, which carries it; its answer comes back in the one after.
        let pause = try console.call("POST", "/api/v1/rollouts/\(id)/pause", body: #"{"wait":0}"#)
        #expect(pause.status == 202)
        let control = try #require(pause.json["control"] as? Int)
        let delivered = try console.call("POST", "/api/v1/reports", body: Self.report(run: run))
        let orders = delivered.json["controls"] as? [[String: Any]] ?? []
        #expect(orders.map { $0["command"] as? String } == ["pause"])
        #expect(orders.first?["actor"] as? String == "admin")
        // Already received: not sent again.
        #expect((try console.call("POST", "/api/v1/reports", body: Self.report(run: run, controlsAfter: control)).json["controls"] as? [Any])?.isEmpty == true)
        _ = try console.call("POST", "/api/v1/reports", body: Self.report(run: run, controlResults: #"[{"id":\#(control),"result":"paused","handled_at":"2026-11-30T01:00:03.000Z"}]"#))
        let controls = try console.call("GET", "/api/v1/rollouts/\(id)").json["controls"] as? [[String: Any]] ?? []
        #expect(controls.first?["result"] as? String == "paused")

        // Bad reports name the field and store nothing.
        let bad = try console.call("POST", "/api/v1/reports", body: Self.report(run: "no spaces allowed"))
        #expect(bad.status == 400 && bad.json["field"] as? String == "run")
        let badOutcome = try console.call("POST", "/api/v1/reports", body: Self.report(run: run, outcome: "exploded"))
        #expect(badOutcome.status == 400 && badOutcome.json["field"] as? String == "rollout.outcome")
        let missing = try console.call("POST", "/api/v1/reports", body: #"{"run":"x"}"#)
        #expect(missing.status == 400 && missing.json["field"] != nil)

        // Everything survives a restart.
        console.stop()
        console = try ConsoleProcess(directory: dir)
        let again = try console.call("GET", "/api/v1/rollouts/\(id)").json
        #expect(((again["deployments"] as? [[String: Any]])?.first?["steps"] as? [Any])?.count == 1)
        #expect((again["controls"] as? [[String: Any]])?.first?["result"] as? String == "paused")
        _ = try console.call("POST", "/api/v1/reports", body: Self.report(run: run, outcome: "promoted"))
        let list = try console.call("GET", "/api/v1/rollouts?service=shop").json["rollouts"] as? [[String: Any]] ?? []
        #expect(list.count == 1 && list.first?["state"] as? String == "promoted")
    }

    @Test func aSilentRunnerIsMarkedCrashedAndComesBackWhenItReports() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir, config: "lease: 2s\n")
        defer { console.stop() }
        // The console waits one lease after starting before it judges runners.
        sleep(2)
        let run = UUID().uuidString.lowercased()
        let id = try #require(try console.call("POST", "/api/v1/reports", body: Self.report(run: run)).json["rollout"] as? Int)
        try console.waitFor("/api/v1/rollouts/\(id)", timeout: 20, what: "the rollout marked crashed") {
            ($0["rollout"] as? [String: Any])?["state"] as? String == "crashed"
        }
        let crashed = try console.rollout(id)
        #expect((crashed["reason"] as? String)?.contains("ci-7") == true)
        let feed = try console.call("GET", "/api/v1/events?after=0&rollout=\(id)").json["events"] as? [[String: Any]] ?? []
        #expect(feed.contains { $0["kind"] as? String == "crashed" })
        _ = try console.call("POST", "/api/v1/reports", body: Self.report(run: run))
        #expect(try console.rollout(id)["state"] as? String == "running")
    }

    @Test func theFeedStreamsAsServerSentEvents() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir)
        defer { console.stop() }
        let start = try #require(try console.call("GET", "/api/v1/events").json["last"] as? Int)
        let out = "\(dir)/sse.out"
        let pid = try spawn("/usr/bin/curl", ["-s", "-N", "--max-time", "8", "-H", "Authorization: Bearer \(consoleAdminToken)",
                                              console.url + "/api/v1/events/stream"], stdout: out, stderr: "\(dir)/sse.err")
        usleep(800_000)
        let run = UUID().uuidString.lowercased()
        _ = try console.call("POST", "/api/v1/reports", body: Self.report(run: run))
        let longPoll = try console.call("GET", "/api/v1/events?after=\(start)&wait=5").json["events"] as? [[String: Any]] ?? []
        #expect(longPoll.contains { $0["topic"] as? String == "rollout" })
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let stream = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(stream.contains("event: rollout"))
        #expect(stream.contains("\"service\":\"shop\""))
        #expect(stream.contains("id: "))
    }
}

@Suite struct ConsoleTLSTests {
    @Test func theListenerSpeaksHTTPSWithTheConfiguredCertificate() throws {
        let dir = makeTemporaryDirectory()
        let pki = try TestPKI(directory: dir, names: ["console"], loopback: ["console"])
        let console = try ConsoleProcess(directory: dir, config: "tls: { cert: \(pki.cert("console")), key: \(pki.key("console")) }\n")
        defer { console.stop() }
        #expect(console.url.hasPrefix("https://127.0.0.1:"))
        let verified = try curl(["-s", "--cacert", pki.ca, "-H", "Authorization: Bearer \(consoleAdminToken)", console.url + "/api/v1/rollouts"])
        #expect(verified.status == 0 && verified.output.contains("\"rollouts\""))
        // Plain HTTP on the TLS port gets nothing useful.
        let plain = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                              console.url.replacingOccurrences(of: "https://", with: "http://") + "/api/v1/health"])
        #expect(plain.output != "200")
        // The session cookie is Secure over HTTPS.
        let login = try curl(["-s", "-D", "-", "-o", "/dev/null", "--cacert", pki.ca, "-H", "Content-Type: application/json",
                              "--data-binary", "{\"token\":\"\(consoleAdminToken)\"}", console.url + "/api/v1/session"])
        #expect(login.output.lowercased().contains("set-cookie:") && login.output.contains("; Secure"))
    }

    @Test func aBadCertificateFileIsNamedAtStart() throws {
        let dir = makeTemporaryDirectory()
        #expect(throws: (any Error).self) {
            _ = try ConsoleProcess(directory: dir, config: "tls: { cert: \(dir)/missing.pem, key: \(dir)/missing.key }\n")
        }
        let r = try run(switchyardBinary, ["console", "--listen", "127.0.0.1:0", "--database", "sqlite:\(dir)/c.sqlite", "--config", "\(dir)/console.yaml"])
        #expect(r.status == 2)
        #expect(r.error.contains("missing.pem"))
    }
}

/// What a deployer's token must not be able to do through the report protocol.
@Suite struct ConsoleReportSafetyTests {
    @Test func aRunBelongsToTheTokenThatReportedItFirst() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir)
        defer { console.stop() }
        let ci = try #require(try console.call("POST", "/api/v1/tokens", body: #"{"name":"ci","role":"deployer"}"#).json["token"] as? String)
        let other = try #require(try console.call("POST", "/api/v1/tokens", body: #"{"name":"other","role":"deployer"}"#).json["token"] as? String)
        let run = UUID().uuidString.lowercased()
        let id = try #require(try console.call("POST", "/api/v1/reports", body: ConsoleAPITests.report(run: run), token: ci).json["rollout"] as? Int)
        _ = try console.call("POST", "/api/v1/rollouts/\(id)/pause", body: #"{"wait":0}"#)
        // Someone else's token can neither overwrite the run nor collect its controls.
        let hijack = try console.call("POST", "/api/v1/reports", body: ConsoleAPITests.report(run: run, outcome: "promoted"), token: other)
        #expect(hijack.status == 403 && hijack.json["field"] as? String == "run", "\(hijack.text)")
        #expect(!hijack.text.contains("pause"))
        #expect(try console.rollout(id)["state"] as? String == "running")
        // Nor can the same token file it under another service.
        let moved = try console.call("POST", "/api/v1/reports", body: ConsoleAPITests.report(run: run).replacingOccurrences(of: "\"service\":\"shop\"", with: "\"service\":\"billing\""), token: ci)
        #expect(moved.status == 409)
        // Times must be ISO 8601 in UTC: they are compared as text.
        let badTime = try console.call("POST", "/api/v1/reports", body: ConsoleAPITests.report(run: UUID().uuidString.lowercased()).replacingOccurrences(of: "2026-11-30T01:00:00.000Z", with: "yesterday"), token: ci)
        #expect(badTime.status == 400 && badTime.json["field"] as? String == "rollout.started_at", "\(badTime.text)")
    }

    @Test func aReportedPlanNeverGetsTheConsolesTokensOrRunsItsHooks() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir, config: "lease: 2s\npoll_interval: 200ms\n")
        defer { console.stop() }
        // A listener the hostile plan names as its proxy's admin API.
        let (fd, port) = loopbackListener()
        defer { close(fd) }
        let marker = "\(dir)/hook-ran"
        let plan = """
            service: shop
            environments:
              - { name: prod, admin: "http://127.0.0.1:\(port)", token_env: SWITCHYARD_CONSOLE_ADMIN_TOKEN, strategy: rolling }
            analysis: { max_error_rate: 5% }
            hooks:
              update: [ "touch \(marker)" ]
            """
        let escaped = String(decoding: try JSONSerialization.data(withJSONObject: [plan], options: [.fragmentsAllowed]), as: UTF8.self).dropFirst().dropLast()
        let run = UUID().uuidString.lowercased()
        let body = ConsoleAPITests.report(run: run).replacingOccurrences(of: "\"plan_path\":", with: "\"plan_text\":\(escaped),\"plan_path\":")
        let reported = try console.call("POST", "/api/v1/reports", body: body)
        #expect(reported.status == 200, "\(reported.text)")
        let id = try #require(reported.json["rollout"] as? Int)
        // The watcher does not connect with the console's token (without one it does not connect at all).
        var flags = fcntl(fd, F_GETFL); flags |= O_NONBLOCK; _ = fcntl(fd, F_SETFL, flags)
        var received = ""
        let end = Date().addingTimeInterval(3)
        while Date() < end {
            let client = accept(fd, nil, nil)
            if client >= 0 {
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = recv(client, &buffer, buffer.count, 0)
                if n > 0 { received += String(decoding: buffer[0..<n], as: UTF8.self) }
                close(client)
            }
            usleep(50_000)
        }
        #expect(!received.contains(consoleAdminToken))
        let services = try console.call("GET", "/api/v1/services").text
        #expect(services.contains("register the plan"), "\(services)")
        // Its lease lapses; an abort from the console would run the plan's hooks: refused.
        try console.waitFor("/api/v1/rollouts/\(id)", timeout: 20, what: "the rollout crashed") {
            ($0["rollout"] as? [String: Any])?["state"] as? String == "crashed"
        }
        let abort = try console.call("POST", "/api/v1/rollouts/\(id)/abort", body: #"{"wait":2}"#)
        #expect(abort.status == 409 && (abort.json["error"] as? String ?? "").contains("registered"), "\(abort.text)")
        usleep(500_000)
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test func revokingATokenEndsItsSessionsAndBuiltInNamesAreReserved() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir)
        defer { console.stop() }
        let token = try #require(try console.call("POST", "/api/v1/tokens", body: #"{"name":"bob","role":"viewer"}"#).json["token"] as? String)
        let jar = "\(dir)/jar"
        _ = try curl(["-s", "-c", jar, "-H", "Content-Type: application/json", "--data-binary", "{\"token\":\"\(token)\"}", console.url + "/api/v1/session"])
        func status() throws -> String { try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-b", jar, console.url + "/api/v1/rollouts"]).output }
        #expect(try status() == "200")
        #expect(try console.call("DELETE", "/api/v1/tokens/bob").status == 204)
        #expect(try status() == "401")
        for name in ["admin", "console-runner", "anonymous"] {
            #expect(try console.call("POST", "/api/v1/tokens", body: "{\"name\":\"\(name)\",\"role\":\"viewer\"}").status == 400)
        }
    }
}

@Suite struct ConsoleApprovalRuleTests {
    @Test func separateApproverRefusesTheStarterAndAcceptsSomeoneElse() throws {
        let dir = makeTemporaryDirectory()
        let console = try ConsoleProcess(directory: dir, config: "separate_approver: [stage]\n")
        defer { console.stop() }
        func token(_ name: String, _ role: String) throws -> String {
            try #require(try console.call("POST", "/api/v1/tokens", body: "{\"name\":\"\(name)\",\"role\":\"\(role)\"}").json["token"] as? String)
        }
        let ci = try token("ci", "deployer"), alice = try token("alice", "approver"), bob = try token("bob", "approver")
        // The pipeline runs as github:alice (the report's actor) with the token ci; it is in stage.
        let run = UUID().uuidString.lowercased()
        let id = try #require(try console.call("POST", "/api/v1/reports", body: ConsoleAPITests.report(run: run), token: ci).json["rollout"] as? Int)
        let own = try console.call("POST", "/api/v1/rollouts/\(id)/approve", body: #"{"wait":0}"#, token: alice)
        #expect(own.status == 403 && (own.json["error"] as? String ?? "").contains("someone other"), "\(own.text)")
        #expect(try console.call("POST", "/api/v1/rollouts/\(id)/approve", body: #"{"wait":0}"#, token: bob).status == 202)
        // An environment without the rule takes the starter's approval.
        #expect(try console.call("POST", "/api/v1/rollouts/\(id)/approve", body: #"{"wait":0,"argument":"prod"}"#, token: alice).status == 202)
        let audit = try console.call("GET", "/api/v1/audit?target=rollout/\(id)").json["audit"] as? [[String: Any]] ?? []
        #expect(audit.contains { $0["actor"] as? String == "alice" && $0["outcome"] as? String == "refused: starter" })
    }
}
