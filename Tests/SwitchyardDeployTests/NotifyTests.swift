import Foundation
import SwitchyardAdminClient
import SwitchyardConfig
import SwitchyardConsoleAPI
import Testing
@testable import SwitchyardDeploy

@Suite struct NotifyTemplateTests {
    @Test func readsPlaceholdersWithOrWithoutSpaces() throws {
        let t = try NotifyTemplate("{{service}} {{ version }} {{outcome}} in {{environment}}!")
        #expect(t.used == ["service", "version", "outcome", "environment"])
        #expect(t.render(["service": "web", "version": "v2", "outcome": "promoted", "environment": "prod"], escaping: .none) == "web v2 promoted in prod!")
        #expect(t.render([:], escaping: .none) == "   in !", "a value not known is empty")
    }

    @Test func everyDocumentedPlaceholderIsKnownAndEveryKnownOneDocumented() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let docs = try String(contentsOf: root.appendingPathComponent("docs/deploy.md"), encoding: .utf8)
        for (name, _) in NotifyTemplate.placeholders {
            #expect(docs.contains("| `{{\(name)}}` |"), "docs/deploy.md documents {{\(name)}}")
            _ = try NotifyTemplate("{{\(name)}}")
        }
    }

    @Test func refusesAnUnknownPlaceholderNamingItAndItsLine() {
        do {
            _ = try NotifyTemplate("{\n  \"text\": \"{{service}}\",\n  \"who\": \"{{user}}\"\n}")
            Issue.record("an unknown placeholder is refused")
        } catch {
            #expect(error.line == 3)
            #expect(error.message.contains("unknown placeholder {{user}}") && error.message.contains("actor"), "\(error.message)")
        }
        do {
            _ = try NotifyTemplate("{{version} done")
            Issue.record("an unclosed placeholder is refused")
        } catch {
            #expect(error.message.contains("without its \"}}\""))
        }
    }

    @Test func jsonEscapingKeepsTheBodyValidJSONWhateverTheValues() throws {
        let t = try NotifyTemplate(#"{"text": "{{message}}", "reason": "{{reason}}"}"#)
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} sep \u{2028} é 🚀"
        let body = t.render(["message": nasty, "reason": "</script>"], escaping: .json)
        let parsed = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String]
        #expect(parsed?["text"] == nasty)
        #expect(parsed?["reason"] == "</script>")
        // The same value unescaped breaks the JSON: the escaping is what keeps it valid.
        #expect((try? JSONSerialization.jsonObject(with: Data(t.render(["message": nasty], escaping: .none).utf8))) == nil)
    }

    @Test func escapingFollowsTheContentType() throws {
        #expect(NotifyTemplate.Escaping(contentType: "application/json") == .json)
        #expect(NotifyTemplate.Escaping(contentType: "Application/JSON; charset=utf-8") == .json)
        #expect(NotifyTemplate.Escaping(contentType: "application/vnd.teams+json") == .json)
        #expect(NotifyTemplate.Escaping(contentType: "application/x-www-form-urlencoded") == .form)
        #expect(NotifyTemplate.Escaping(contentType: "text/plain") == .none)
        let form = try NotifyTemplate("text={{message}}")
        #expect(form.render(["message": "a b&c=d/é"], escaping: .form) == "text=a%20b%26c%3Dd%2F%C3%A9")
    }

    @Test func aJSONTemplateThatCannotBeJSONIsFound() throws {
        #expect(try NotifyTemplate(#"{"text": "{{message}}"}"#).jsonProblem() == nil)
        #expect(try NotifyTemplate(#"{"text": {{message}}}"#).jsonProblem() != nil, "a value outside quotes")
        #expect(try NotifyTemplate(#"{"text": "{{message}}""#).jsonProblem() != nil, "unbalanced")
    }
}

@Suite struct NotifyPlanTests {
    static let head = "service: web\nenvironments:\n  - { name: prod, admin: 'unix:///a', strategy: bluegreen, watch: 0s }\n"

    func problems(_ notify: String) -> [String] {
        do { _ = try PlanLoader.parse(yaml: Self.head + "notify:\n" + notify, file: "p.yaml"); return [] }
        catch { return error.problems.map(\.description) }
    }

    @Test func readsEmailAndTemplatedSignedWebhooks() throws {
        let plan = try PlanLoader.parse(yaml: Self.head + """
            notify:
              - kind: email
                to: [ ops@example.com, dev@example.com ]
                from: deploy@example.com
                host: smtp.example.com
                username_env: SMTP_USER
                password_env: SMTP_PASSWORD
                subject: "{{service}} {{version}}: {{outcome}}"
              - { kind: email, to: ops@example.com, from: deploy@example.com, host: mail.example.com, tls: implicit, events: [finished] }
              - kind: webhook
                url_env: TEAMS_URL
                template: '{"text": "{{service}} {{version}} {{outcome}} in {{environment}}"}'
                headers: { X-Team: ops }
                secret_env: HOOK_SECRET
            """, file: "p.yaml")
        let mail = try #require(plan.notify.first?.email)
        #expect(mail.to == ["ops@example.com", "dev@example.com"] && mail.port == 587 && mail.security == .starttls)
        #expect(mail.usernameEnv == "SMTP_USER" && mail.passwordEnv == "SMTP_PASSWORD")
        #expect(plan.notify[1].email?.port == 465 && plan.notify[1].email?.to == ["ops@example.com"])
        #expect(plan.notify[1].wants("finished") && !plan.notify[1].wants("step"))
        #expect(plan.notify[0].wants("finished") && !plan.notify[0].wants("step"), "email's default: no step-by-step mail")
        let hook = plan.notify[2]
        #expect(hook.template?.used == ["service", "version", "outcome", "environment"] && hook.secretEnv == "HOOK_SECRET")
        #expect(hook.headers.map(\.name) == ["X-Team"] && hook.wants("step"))
    }

    @Test func anUnknownPlaceholderIsAPlanErrorWithFileLineAndKey() {
        let found = problems("  - { kind: webhook, url_env: U, template: '{\"text\": \"{{servce}} done\"}' }\n")
        #expect(found.contains { $0.hasPrefix("p.yaml:5:") && $0.contains("notify[0].template") && $0.contains("unknown placeholder {{servce}}") }, "\(found)")
        let subject = problems("  - { kind: email, to: a@x.org, from: b@x.org, host: smtp.x.org, subject: '{{versoin}}' }\n")
        #expect(subject.contains { $0.contains("notify[0].subject") && $0.contains("{{versoin}}") }, "\(subject)")
    }

    @Test func aTemplateThatIsNotJSONIsRefusedUnlessItsContentTypeSaysSo() {
        #expect(problems("  - { kind: webhook, url_env: U, template: 'deployed {{version}}' }\n")
            .contains { $0.contains("notify[0].template") && $0.contains("not valid JSON") })
        #expect(problems("  - { kind: webhook, url_env: U, template: 'deployed {{version}}', content_type: text/plain }\n").isEmpty)
    }

    @Test func emailNeedsItsServerAddressesAndASafeLogin() {
        let missing = problems("  - { kind: email, to: [] }\n")
        #expect(missing.contains { $0.contains("notify[0].host: missing") })
        #expect(missing.contains { $0.contains("notify[0].from: missing") })
        #expect(missing.contains { $0.contains("notify[0].to: missing") })
        #expect(problems("  - { kind: email, to: 'not an address', from: b@x.org, host: h.x.org }\n").contains { $0.contains("notify[0].to") && $0.contains("not a mail address") })
        #expect(problems("  - { kind: email, to: a@x.org, from: b@x.org, host: h.x.org, tls: none, username_env: U, password_env: P }\n")
            .contains { $0.contains("notify[0].tls") && $0.contains("in clear") })
        #expect(problems("  - { kind: email, to: a@x.org, from: b@x.org, host: h.x.org, username_env: U }\n")
            .contains { $0.contains("needs both username_env and password_env") })
        #expect(problems("  - { kind: email, to: a@x.org, from: b@x.org, host: h.x.org, tls: yes }\n").contains { $0.contains("notify[0].tls") })
        #expect(problems("  - { kind: email, to: a@x.org, from: b@x.org, host: h.x.org, url: http://x }\n").contains { $0.contains("notify[0].url") })
    }

    @Test func keysOfOneKindAreRefusedOnAnother() {
        #expect(problems("  - { kind: webhook, url_env: U, host: smtp.x.org }\n").contains { $0.contains("notify[0].host") && $0.contains("only for kind: email") })
        #expect(problems("  - { kind: email, to: a@x.org, from: b@x.org, host: h.x.org, secret_env: S }\n")
            .contains { $0.contains("notify[0].secret_env") && $0.contains("only for kind: webhook") })
        #expect(problems("  - { kind: webhook, url_env: U, secret_env: S, secret_file: /f }\n").contains { $0.contains("secret_env or secret_file") })
        #expect(problems("  - { kind: webhook, url_env: U, headers: { Content-Length: '5' } }\n").contains { $0.contains("headers.Content-Length") })
        #expect(problems("  - { kind: webhook, url_env: U, events: [ started, deployed ] }\n").contains { $0.contains("events[1]") && $0.contains("\"deployed\"") })
    }
}

@Suite struct NotifyMessageTests {
    static let event = DeployEvent(kind: .finished, service: "web", version: "OPS-7-web-1", environment: nil, text: "promoted web OPS-7-web-1 in stage, prod",
                                   fields: ["outcome": "promoted", "rollout": 3])
    static func context(console: Int?) -> NotificationContext {
        NotificationContext(actor: "alice", run: "run-1", rollout: 3, environments: ["stage", "prod"],
                            change: ChangeInfo(commit: "abc123def456", ticket: "OPS-7", link: "https://git.example.com/c/abc123"),
                            console: NotifyConsole(url: "https://console.example.com/") { console })
    }

    @Test func valuesCarryTheRolloutsContextAndConsoleLink() {
        let v = Notifier.values(Self.event, Self.context(console: 41))
        #expect(v["environment"] == "stage, prod" && v["outcome"] == "promoted" && v["actor"] == "alice")
        #expect(v["console_url"] == "https://console.example.com/#/rollouts/41")
        #expect(v["commit"] == "abc123def456" && v["ticket"] == "OPS-7" && v["change_link"] == "https://git.example.com/c/abc123")
        #expect(Notifier.values(Self.event, Self.context(console: nil))["console_url"] == "https://console.example.com/", "the console, before it numbered the rollout")
    }

    @Test func signsTheTimestampAndTheExactBody() throws {
        // RFC 4231, test case 2.
        #expect(MessageSignature.hex(MessageSignature.hmacSHA256(key: Data("Jefe".utf8), message: Data("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        var target = DeployPlan.NotifyTarget(kind: .webhook, url: "http://x/", urlEnv: nil, ca: nil)
        target.template = try NotifyTemplate(#"{"text": "{{version}}"}"#)
        let secret = Data("s3cret".utf8)
        let context = Self.context(console: 41)
        let request = Notifier.webhookRequest(target, event: Self.event, values: Notifier.values(Self.event, context), context: context, secret: secret,
                                              now: Date(timeIntervalSince1970: 1_800_000_000))
        #expect(String(decoding: request.body, as: UTF8.self) == #"{"text": "OPS-7-web-1"}"#)
        let headers = Dictionary(request.headers, uniquingKeysWith: { a, _ in a })
        #expect(headers["X-Switchyard-Timestamp"] == "1800000000")
        let expected = MessageSignature.hex(MessageSignature.hmacSHA256(key: secret, message: Data("1800000000.".utf8) + request.body))
        #expect(headers["X-Switchyard-Signature"] == "sha256=" + expected)
        #expect(Notifier.signature(secret: secret, timestamp: "1800000001", body: request.body) != expected, "the timestamp is signed")
    }

    @Test func theDefaultWebhookBodyIsTheEventWithItsContext() throws {
        let target = DeployPlan.NotifyTarget(kind: .webhook, url: "http://x/", urlEnv: nil, ca: nil)
        let context = Self.context(console: 41)
        let request = Notifier.webhookRequest(target, event: Self.event, values: Notifier.values(Self.event, context), context: context, secret: nil, now: Date())
        let json = try #require(try JSONSerialization.jsonObject(with: request.body) as? [String: Any])
        #expect(json["event"] as? String == "finished" && json["actor"] as? String == "alice" && json["ticket"] as? String == "OPS-7")
        #expect(json["console_url"] as? String == "https://console.example.com/#/rollouts/41")
        #expect(!request.headers.contains { $0.0 == "X-Switchyard-Signature" }, "unsigned without a secret")
    }

    @Test func mailHasItsHeadersAndAPlainTextBody() throws {
        var email = DeployPlan.NotifyTarget.Email()
        email.to = ["ops@example.com"]
        email.from = "deploy@example.com"
        let message = String(decoding: Notifier.mailMessage(email, event: Self.event, values: Notifier.values(Self.event, Self.context(console: 41)),
                                                            date: Date(timeIntervalSince1970: 1_800_000_000)), as: UTF8.self)
        #expect(message.hasPrefix("Date: Fri, 15 Jan 2027 08:00:00 +0000\r\n"), "\(message)")
        #expect(message.contains("\r\nSubject: [switchyard] web OPS-7-web-1: promoted in stage, prod\r\n"))
        #expect(message.contains("Message-ID: <") && message.contains("@example.com>\r\n"))
        #expect(message.contains("Content-Type: text/plain; charset=utf-8\r\n"))
        #expect(message.contains("\r\n\r\npromoted web OPS-7-web-1 in stage, prod\r\n"))
        #expect(message.contains("Actor: alice\r\n") && message.contains("Console: https://console.example.com/#/rollouts/41\r\n"))
        #expect(Notifier.headerText("déployé ✓").hasPrefix("=?utf-8?B?"))
        #expect(Notifier.headerText("plain") == "plain")
    }

    @Test func dataDoublesADotAtTheStartOfALineAndEndsLinesWithCRLF() {
        let stuffed = SMTPClient.dotStuffed(Data(".hidden\n..two\nmid.dle\r\n.\nend".utf8))
        #expect(String(decoding: stuffed, as: UTF8.self) == "..hidden\r\n...two\r\nmid.dle\r\n..\r\nend\r\n")
    }
}
