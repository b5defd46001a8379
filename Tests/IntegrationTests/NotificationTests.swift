import Foundation
import Glibc
import Testing

/// Notifications of real rollouts to real receivers: mail to an SMTP server (aiosmtpd) that
/// requires STARTTLS and a login, and templated, signed webhooks to a Python receiver whose
/// signatures are checked with Python's hmac module. Serialized: each runs rollouts.
@Suite(.serialized) struct NotificationTests {
    typealias Output = (status: Int32, output: String, error: String)

    /// `switchyard ARGS` with `variables` (NAME=value) in its environment.
    static func switchyard(_ arguments: [String], variables: [String]) throws -> Output {
        try run("/usr/bin/env", variables + [switchyardBinary] + arguments)
    }

    static func mailServer(_ lab: DeployLab, mechanisms: [String] = ["PLAIN", "LOGIN"], tls: MailServer.TLSMode = .starttls) throws -> (MailServer, TestPKI) {
        let pkiDirectory = "\(lab.directory)/pki"
        try FileManager.default.createDirectory(atPath: pkiDirectory, withIntermediateDirectories: true)
        let pki = try TestPKI(directory: pkiDirectory, names: ["smtp"], loopback: ["smtp"])
        let server = try MailServer(directory: lab.directory, certificate: pki.cert("smtp"), key: pki.key("smtp"), user: "deployer",
                                    password: "correct horse", mechanisms: mechanisms, tls: tls)
        return (server, pki)
    }

    static func emailPlan(_ lab: DeployLab, _ server: MailServer, _ pki: TestPKI, tls: String = "starttls") throws -> String {
        try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {weight: 50%} ]", extra: """
            notify:
              - kind: email
                to: [ ops@example.com, oncall@example.com ]
                from: deploy@example.com
                host: 127.0.0.1
                port: \(server.port)
                tls: \(tls)
                ca: \(pki.ca)
                username_env: SMTP_USER
                password_env: SMTP_PASSWORD
            """))
    }

    @Test func mailGoesOverSTARTTLSWithALoginAndCarriesTheRolloutAndItsConsoleLink() throws {
        let lab = try ConsoleReportingTests.prodLab()
        let (server, pki) = try Self.mailServer(lab)
        defer { server.stop() }
        let console = try ConsoleProcess(directory: lab.directory)
        defer { console.stop() }
        let ci = try ConsoleRolloutTests.token(console, "ci", "deployer")
        let plan = try Self.emailPlan(lab, server, pki)
        let result = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--actor", "github:alice", "--console", console.url,
                                          "--commit", "4f9c2e1", "--ticket", "OPS-142"],
                                         variables: ["SWITCHYARD_CONSOLE_TOKEN=\(ci)", "SMTP_USER=deployer", "SMTP_PASSWORD=correct horse"])
        #expect(result.status == 0, "\(result)")
        #expect(!result.output.contains("correct horse") && !result.error.contains("correct horse"), "the password is never printed")
        #expect(!result.output.contains("notify[0]"), "no delivery problem: \(result.output)")
        let run = try ConsoleReportingTests.runIdentity(of: "\(lab.directory)/history.sqlite")
        let id = try ConsoleReportingTests.consoleRollout(console, run: run)

        // By default mail goes out at the end (and for approvals and guard trips), not for every step.
        let messages = server.waitForMessages(1)
        #expect(messages.count == 1, "\(messages)")
        let mail = try #require(messages.first)
        #expect(mail["tls"] as? Bool == true && mail["authenticated"] as? Bool == true, "STARTTLS, then the login: \(mail)")
        #expect(mail["from"] as? String == "deploy@example.com")
        #expect(mail["to"] as? [String] == ["ops@example.com", "oncall@example.com"])
        let headers = mail["headers"] as? [String: String] ?? [:]
        #expect(headers["subject"] == "[switchyard] web v2: promoted in prod", "\(headers)")
        #expect(headers["content-type"] == "text/plain; charset=\"utf-8\"" || headers["content-type"] == "text/plain; charset=utf-8", "\(headers)")
        #expect(headers["date"].map { $0.hasSuffix("+0000") } == true && headers["message-id"].map { $0.hasSuffix("@example.com>") } == true, "\(headers)")
        #expect(headers["to"] == "ops@example.com, oncall@example.com")
        let body = mail["body"] as? String ?? ""
        for line in ["Version: v2", "Environment: prod", "Outcome: promoted", "Actor: github:alice", "Commit: 4f9c2e1", "Ticket: OPS-142",
                     "Console: \(console.url)/#/rollouts/\(id)", "Run: \(run)"] {
            #expect(body.contains(line), "the mail says \(line): \(body)")
        }
    }

    @Test func aWrongMailPasswordIsReportedOnceAndTheRolloutStillPromotes() throws {
        let lab = try ConsoleReportingTests.prodLab()
        // LOGIN only: the other mechanism Switchyard speaks.
        let (server, pki) = try Self.mailServer(lab, mechanisms: ["LOGIN"])
        defer { server.stop() }
        let plan = try Self.emailPlan(lab, server, pki)
        let wrong = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--actor", "ci"],
                                        variables: ["SMTP_USER=deployer", "SMTP_PASSWORD=wrong-password-7f3a"])
        #expect(wrong.status == 0, "a notification never fails the rollout: \(wrong)")
        #expect(wrong.output.contains("promoted web v2 in prod"), "\(wrong.output)")
        let reports = wrong.output.split(separator: "\n").filter { $0.contains("notify[0] (email)") }
        #expect(reports.count == 1, "reported once, not retried (the server refused it for good): \(wrong.output)")
        #expect(reports.first.map { $0.contains("refused the login") && $0.contains("535") && $0.contains("finished not delivered") } == true, "\(reports)")
        #expect(!wrong.output.contains("wrong-password-7f3a") && !wrong.error.contains("wrong-password-7f3a"))
        #expect(server.messages.isEmpty)
        #expect(try lab.service("prod")["active"] as? String == "green")

        // The right password over the same LOGIN mechanism delivers.
        let right = try Self.switchyard(["deploy", "run", plan, "--version", "v3", "--actor", "ci"],
                                        variables: ["SMTP_USER=deployer", "SMTP_PASSWORD=correct horse"])
        #expect(right.status == 0 && !right.output.contains("notify[0]"), "\(right)")
        let mail = server.waitForMessages(1).first
        #expect((mail?["headers"] as? [String: String])?["subject"] == "[switchyard] web v3: promoted in prod", "\(String(describing: mail))")
    }

    @Test func aServerWithoutSTARTTLSGetsNothingInClear() throws {
        let lab = try ConsoleReportingTests.prodLab()
        let (server, pki) = try Self.mailServer(lab, tls: .none)
        defer { server.stop() }
        let plan = try Self.emailPlan(lab, server, pki)
        let result = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--actor", "ci"],
                                         variables: ["SMTP_USER=deployer", "SMTP_PASSWORD=correct horse"])
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("notify[0] (email): finished not delivered: SMTP 127.0.0.1:\(server.port) does not offer STARTTLS"), "\(result.output)")
        usleep(300_000)
        #expect(server.messages.isEmpty, "nothing was sent in clear")
    }

    @Test func mailGoesOverImplicitTLS() throws {
        let lab = try ConsoleReportingTests.prodLab()
        let (server, pki) = try Self.mailServer(lab, tls: .implicit)
        defer { server.stop() }
        let plan = try Self.emailPlan(lab, server, pki, tls: "implicit")
        let result = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--actor", "ci"],
                                         variables: ["SMTP_USER=deployer", "SMTP_PASSWORD=correct horse"])
        #expect(result.status == 0 && !result.output.contains("notify[0]"), "\(result)")
        let mail = server.waitForMessages(1).first
        #expect(mail?["authenticated"] as? Bool == true, "\(String(describing: mail))")
        #expect((mail?["headers"] as? [String: String])?["subject"] == "[switchyard] web v2: promoted in prod", "\(String(describing: mail))")
    }

    /// The signature as a receiver checks it: Python's hmac over "timestamp." + the body.
    static func pythonSignature(secret: String, timestamp: String, body: Data) throws -> String {
        let script = "import base64, hashlib, hmac, sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode() + b'.' + base64.b64decode(sys.argv[3]), hashlib.sha256).hexdigest())"
        let r = try run("/usr/bin/env", ["python3", "-c", script, secret, timestamp, body.base64EncodedString()])
        guard r.status == 0 else { throw HarnessError("python hmac: \(r.error)") }
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func aTemplatedWebhookIsSignedOverItsTimestampAndExactBody() throws {
        let lab = try ConsoleReportingTests.prodLab()
        let webhook = try lab.startReceiver()
        let secretFile = "\(lab.directory)/hook.secret"
        try "file-secret-9c1d\n".write(toFile: secretFile, atomically: true, encoding: .utf8)
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%}, {weight: 50%} ]", extra: """
            notify:
              - kind: webhook
                url: "\(webhook.replacingOccurrences(of: "/hooks/deploy", with: "/chat"))"
                template: '{"text": "{{service}} {{version}} {{outcome}} in {{environment}} by {{actor}}", "ticket": "{{ticket}}", "event": "{{event}}"}'
                headers: { X-Team: ops }
                secret_file: \(secretFile)
                events: [ started, finished ]
              - kind: webhook
                url: "\(webhook.replacingOccurrences(of: "/hooks/deploy", with: "/plain"))"
                template: "{{service}} {{version}}: {{message}}"
                content_type: text/plain; charset=utf-8
                secret_env: HOOK_SECRET
                events: [ finished ]
              - { kind: webhook, url: "\(webhook)", secret_env: SWITCHYARD_TEST_UNSET_SECRET }
            """))
        // A quote in the actor: JSON-escaped in the JSON body, as it is in the plain one.
        let actor = #"ci "bot""#
        let result = try Self.switchyard(["deploy", "run", plan, "--version", "v2", "--actor", actor, "--ticket", "OPS-9"],
                                         variables: ["HOOK_SECRET=env-secret-44aa"])
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("notify[2] (webhook): SWITCHYARD_TEST_UNSET_SECRET (the signing secret) is not set; this receiver gets nothing"),
                "\(result.output)")
        #expect(!result.output.contains("file-secret-9c1d") && !result.output.contains("env-secret-44aa"))
        usleep(300_000)
        let requests = lab.webhookRequests
        #expect(!requests.contains { $0.path == "/hooks/deploy" }, "the receiver without its secret gets nothing, not unsigned messages")

        let chat = requests.filter { $0.path == "/chat" }
        #expect(chat.count == 2, "started and finished only: \(chat.map { String(decoding: $0.body, as: UTF8.self) })")
        let last = try #require(chat.last)
        let json = try #require(try JSONSerialization.jsonObject(with: last.body) as? [String: String])
        #expect(json == ["text": #"web v2 promoted in prod by ci "bot""#, "ticket": "OPS-9", "event": "finished"], "\(json)")
        #expect(last.headers["content-type"] == "application/json" && last.headers["x-team"] == "ops", "\(last.headers)")
        for request in chat {
            let timestamp = try #require(request.headers["x-switchyard-timestamp"])
            let age = Date().timeIntervalSince1970 - (Double(timestamp) ?? 0)
            #expect(age >= 0 && age < 60, "a current Unix time: \(timestamp)")
            let expected = try Self.pythonSignature(secret: "file-secret-9c1d", timestamp: timestamp, body: request.body)
            #expect(request.headers["x-switchyard-signature"] == "sha256=" + expected, "\(request.headers)")
            // Replayed with another time, the same body and signature do not verify.
            #expect(try Self.pythonSignature(secret: "file-secret-9c1d", timestamp: String((Int(timestamp) ?? 0) + 300), body: request.body) != expected)
        }

        let plain = try #require(requests.first { $0.path == "/plain" })
        #expect(String(decoding: plain.body, as: UTF8.self) == "web v2: promoted web v2 in prod")
        #expect(plain.headers["content-type"] == "text/plain; charset=utf-8")
        let plainTimestamp = try #require(plain.headers["x-switchyard-timestamp"])
        #expect(plain.headers["x-switchyard-signature"] == "sha256=" + (try Self.pythonSignature(secret: "env-secret-44aa", timestamp: plainTimestamp, body: plain.body)))
    }

    @Test func aPlanWithAnUnknownPlaceholderIsRefusedBeforeAnythingMoves() throws {
        let lab = try ConsoleReportingTests.prodLab()
        let plan = try lab.writePlan(lab.prodCanaryPlan(steps: "[ {weight: 20%} ]", extra: """
            notify:
              - { kind: webhook, url_env: HOOK_URL, template: '{"text": "{{service}} {{verison}}"}' }
            """))
        let check = try lab.switchyard(["deploy", "check", plan])
        #expect(check.status != 0)
        let line = try #require((try String(contentsOfFile: plan, encoding: .utf8)).split(separator: "\n", omittingEmptySubsequences: false)
            .firstIndex { $0.contains("{{verison}}") }) + 1
        #expect(check.output.contains("\(plan):\(line):") || check.error.contains("\(plan):\(line):"), "\(check)")
        #expect((check.output + check.error).contains("notify[0].template") && (check.output + check.error).contains("unknown placeholder {{verison}}"), "\(check)")
        let run = try lab.switchyard(["deploy", "run", plan, "--version", "v2"])
        #expect(run.status == 2 && (run.output + run.error).contains("unknown placeholder {{verison}}"), "\(run)")
        #expect(try lab.service("prod")["canary"] is NSNull)
    }
}
