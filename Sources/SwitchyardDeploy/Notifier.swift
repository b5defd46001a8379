import Foundation
import SwitchyardAdminClient
import SwitchyardConsoleAPI

/// What a notification says besides the event: who deploys, the run, the change, and where
/// the console shows the rollout.
public struct NotificationContext: Sendable {
    public var actor: String
    public var run: String
    public var rollout: Int
    public var environments: [String]
    public var change: ChangeInfo?
    public var console: NotifyConsole?
    public init(actor: String, run: String, rollout: Int, environments: [String], change: ChangeInfo?, console: NotifyConsole?) {
        self.actor = actor; self.run = run; self.rollout = rollout; self.environments = environments; self.change = change; self.console = console
    }
}

/// The console a run reports to: its address, and its number for the rollout once it has
/// answered (asked at each delivery, so later messages link to the rollout itself).
public struct NotifyConsole: Sendable {
    public var url: String
    public var rollout: @Sendable () -> Int?
    public init(url: String, rollout: @escaping @Sendable () -> Int?) { self.url = url; self.rollout = rollout }

    /// The rollout's page in the console's web UI, else the console.
    public var link: String {
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        guard let id = rollout() else { return base + "/" }
        return "\(base)/#/rollouts/\(id)"
    }
}

/// Sends notifications from a background thread with retries and exponential backoff.
/// A failing receiver never blocks or fails a rollout, and URLs never appear in any
/// message: a receiver is named by its position and kind (`notify[1] (webhook)`).
public final class Notifier: @unchecked Sendable {
    struct Target {
        enum Destination { case http(HTTPURL, ca: String?), mail(SMTPClient.Server, login: SMTPClient.Login?) }
        let index: Int
        let plan: DeployPlan.NotifyTarget
        let destination: Destination
        /// The webhook's signing key.
        let secret: Data?
        var label: String { "notify[\(index)] (\(plan.kind.rawValue))" }
    }
    struct Delivery { let target: Target; let event: DeployEvent; var attempt: Int; var notBefore: Date }

    private let targets: [Target]
    private let context: NotificationContext
    private let service: String
    private let condition = NSCondition()
    private var queue: [Delivery] = []
    private var inFlight = 0
    /// What the delivery thread is sending now.
    private var sending: Delivery?
    private var stopping = false
    private var failed = 0
    private let log: @Sendable (String) -> Void
    /// Attempts per notification, and the first delay (doubling each time).
    public var attempts = 5
    public var firstBackoff = 0.5

    /// Resolves every receiver's URL and secrets now; a receiver whose variable or file is
    /// missing is reported and gets nothing.
    /// - Parameter log: receives warnings (never a URL or secret).
    public init(plan: DeployPlan, environment: [String: String], context: NotificationContext, log: @escaping @Sendable (String) -> Void) {
        self.log = log
        self.context = context
        service = plan.service
        var targets: [Target] = []
        for (i, t) in plan.notify.enumerated() {
            let label = "notify[\(i)] (\(t.kind.rawValue))"
            func secret(env: String?, file: String?, what: String) -> (value: String?, problem: String?) {
                if let env {
                    guard let value = environment[env], !value.isEmpty else { return (nil, "\(env) (the \(what)) is not set") }
                    return (value, nil)
                }
                if let file {
                    guard let data = FileManager.default.contents(atPath: file) else { return (nil, "cannot read \(file) (the \(what))") }
                    guard data.count <= 65536 else { return (nil, "\(file) (the \(what)) is over 64 KiB; is it the right file?") }
                    let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
                    guard !value.isEmpty else { return (nil, "\(file) (the \(what)) is empty") }
                    return (value, nil)
                }
                return (nil, nil)
            }
            switch t.kind {
            case .slack, .webhook:
                guard let text = t.resolvedURL(environment: environment) else {
                    log("\(label): \(t.urlEnv ?? "url") is not set; this receiver gets nothing")
                    continue
                }
                guard let url = HTTPURL(text) else {
                    log("\(label): the URL in \(t.urlEnv ?? "url") is not an http:// or https:// URL; this receiver gets nothing")
                    continue
                }
                let key = secret(env: t.secretEnv, file: t.secretFile, what: "signing secret")
                if let problem = key.problem {
                    log("\(label): \(problem); this receiver gets nothing rather than unsigned messages")
                    continue
                }
                targets.append(Target(index: i, plan: t, destination: .http(url, ca: t.ca), secret: key.value.map { Data($0.utf8) }))
            case .email:
                guard let email = t.email else { continue }
                var login: SMTPClient.Login?
                if let userEnv = email.usernameEnv {
                    guard let user = environment[userEnv], !user.isEmpty else {
                        log("\(label): \(userEnv) (the mail server's user name) is not set; this receiver gets nothing")
                        continue
                    }
                    let password = secret(env: email.passwordEnv, file: email.passwordFile, what: "mail server's password")
                    guard let value = password.value else {
                        log("\(label): \(password.problem ?? "no password"); this receiver gets nothing")
                        continue
                    }
                    login = SMTPClient.Login(username: user, password: value)
                }
                let security: SMTPClient.Security = switch email.security { case .starttls: .starttls; case .implicit: .implicit; case .none: .none }
                targets.append(Target(index: i, plan: t, destination: .mail(.init(host: email.host, port: email.port, security: security, ca: t.ca), login: login),
                                      secret: nil))
            }
        }
        self.targets = targets
        if !targets.isEmpty {
            let thread = Thread { [self] in self.deliverLoop() }
            thread.name = "switchyard-notify"
            thread.start()
        }
    }

    /// Queues an event for every receiver that wants it; bodies are made at delivery.
    public func send(_ event: DeployEvent) {
        let wanting = targets.filter { $0.plan.wants(event.kind.rawValue) }
        guard !wanting.isEmpty else { return }
        condition.lock()
        for t in wanting { queue.append(Delivery(target: t, event: event, attempt: 0, notBefore: Date())) }
        condition.signal()
        condition.unlock()
    }

    /// Waits up to `timeout` seconds for queued notifications (the final ones matter most),
    /// then stops; what is left is reported, not retried forever.
    /// - Returns: how many notifications were not delivered (given up on, or left).
    @discardableResult
    public func finish(timeout: Double) -> Int {
        guard !targets.isEmpty else { return 0 }
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        while (!queue.isEmpty || inFlight > 0) && Date() < deadline { _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.1))) }
        let left = (sending.map { [($0, "still being sent")] } ?? []) + queue.map { ($0, "waiting to be sent") }
        let given = failed
        stopping = true
        condition.broadcast()
        condition.unlock()
        for (d, state) in left {
            log("\(d.target.label): \(d.event.kind.rawValue) not delivered before exit (\(state) after \(Int(timeout))s)")
        }
        return left.count + given
    }

    private func deliverLoop() {
        while true {
            condition.lock()
            var next: Delivery?
            while next == nil {
                if stopping { condition.unlock(); return }
                let now = Date()
                if let i = queue.firstIndex(where: { $0.notBefore <= now }) {
                    next = queue.remove(at: i)
                } else {
                    let wake = queue.map(\.notBefore).min() ?? now.addingTimeInterval(1)
                    _ = condition.wait(until: wake)
                }
            }
            guard var d = next else { condition.unlock(); continue }
            inFlight += 1
            sending = d
            condition.unlock()
            let error = deliver(d)
            condition.lock()
            inFlight -= 1
            sending = nil
            if let error {
                d.attempt += 1
                if d.attempt < attempts && !error.permanent {
                    let delay = firstBackoff * pow(2, Double(d.attempt - 1))
                    log("\(d.target.label): \(error.text); retry \(d.attempt) of \(attempts - 1) in \(delay)s")
                    d.notBefore = Date().addingTimeInterval(delay)
                    queue.append(d)
                } else {
                    failed += 1
                    log("\(d.target.label): \(d.event.kind.rawValue) not delivered: \(error.text); "
                        + (error.permanent ? "not retried (the receiver refused it)" : "gave up after \(attempts) attempts") + "; the rollout carries on")
                }
            }
            condition.broadcast()
            condition.unlock()
        }
    }

    struct DeliveryError { var text: String; var permanent: Bool }

    /// One attempt; the error text names the failure, never a URL or secret.
    private func deliver(_ d: Delivery) -> DeliveryError? {
        let values = Self.values(d.event, context)
        switch d.target.destination {
        case .http(let url, let ca):
            let request = Self.webhookRequest(d.target.plan, event: d.event, values: values, context: context, secret: d.target.secret, now: Date())
            do {
                let response = try HTTPClient.send(to: .tcp(host: url.host, port: url.port, tls: url.tls, ca: ca), method: "POST", path: url.path,
                                                   headers: request.headers, body: request.body, timeout: 5)
                return (200..<300).contains(response.status) ? nil : DeliveryError(text: "HTTP \(response.status)", permanent: false)
            } catch {
                // Client errors name host and port at most; keep only the reason after the last colon.
                let reason = error.description.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "failed"
                return DeliveryError(text: "delivery failed (\(reason))", permanent: false)
            }
        case .mail(let server, let login):
            guard let email = d.target.plan.email else { return nil }
            let message = Self.mailMessage(email, event: d.event, values: values, date: Date())
            do {
                try SMTPClient.send(server: server, login: login, from: email.from, to: email.to, message: message, helo: History.hostName)
                return nil
            } catch {
                return DeliveryError(text: error.description, permanent: error.permanent)
            }
        }
    }

    // MARK: Messages

    /// The placeholders' values for `event` (NotifyTemplate.placeholders).
    static func values(_ event: DeployEvent, _ context: NotificationContext) -> [String: String] {
        var v: [String: String] = [
            "service": event.service, "version": event.version,
            "environment": event.environment ?? context.environments.joined(separator: ", "),
            "environments": context.environments.joined(separator: ", "),
            "event": event.kind.rawValue,
            "outcome": (event.fields["outcome"] as? String) ?? (event.kind == .failed ? "failed" : event.kind.rawValue),
            "message": event.text, "actor": context.actor,
            "reason": (event.fields["reason"] as? String) ?? "",
            "rollout": "\(context.rollout)", "run": context.run,
            "console_url": context.console?.link ?? "",
            "commit": context.change?.commit ?? "", "ticket": context.change?.ticket ?? "", "change_link": context.change?.link ?? "",
        ]
        v["time"] = ISO8601DateFormatter().string(from: event.time)
        return v
    }

    /// A webhook's request: the body (the template filled in; `{"text": ...}` for Slack; the
    /// event's JSON with the rollout's context otherwise), its headers, and the signature.
    static func webhookRequest(_ t: DeployPlan.NotifyTarget, event: DeployEvent, values: [String: String], context: NotificationContext,
                               secret: Data?, now: Date) -> (headers: [(String, String)], body: Data) {
        let body: Data
        var contentType = "application/json"
        if let template = t.template {
            contentType = t.contentType
            body = Data(template.render(values, escaping: NotifyTemplate.Escaping(contentType: t.contentType)).utf8)
        } else if t.kind == .slack {
            body = (try? JSONSerialization.data(withJSONObject: ["text": slackText(event, values: values)], options: [.sortedKeys])) ?? Data()
        } else {
            var json = event.json
            for key in ["actor", "run", "rollout", "console_url", "commit", "ticket", "change_link"] where json[key] == nil {
                if let value = values[key], !value.isEmpty { json[key] = key == "rollout" ? context.rollout as Any : value }
            }
            body = (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])) ?? Data()
        }
        var headers: [(String, String)] = [("Content-Type", contentType)] + t.headers.map { ($0.name, $0.value) }
        if let secret {
            let timestamp = String(Int(now.timeIntervalSince1970))
            headers.append(("X-Switchyard-Timestamp", timestamp))
            headers.append(("X-Switchyard-Signature", "sha256=" + signature(secret: secret, timestamp: timestamp, body: body)))
        }
        return (headers, body)
    }

    /// HMAC-SHA256 of `timestamp` "." body, in hex: the timestamp is signed with the body,
    /// so a captured request cannot be replayed later with a new one.
    public static func signature(secret: Data, timestamp: String, body: Data) -> String {
        MessageSignature.hex(MessageSignature.hmacSHA256(key: secret, message: Data((timestamp + ".").utf8) + body))
    }

    static func slackText(_ event: DeployEvent, values: [String: String]) -> String {
        var facts = ["\(event.service) \(event.version) by \(values["actor"] ?? "")"]
        if let commit = values["commit"], !commit.isEmpty { facts.append("commit \(commit.prefix(12))") }
        if let ticket = values["ticket"], !ticket.isEmpty { facts.append(ticket) }
        if let link = values["console_url"], !link.isEmpty { facts.append(link) }
        return event.text + "\n" + facts.joined(separator: " · ")
    }

    /// The mail: headers (Date, Message-ID, Subject...) and a plain-text body, CRLF line ends.
    static func mailMessage(_ email: DeployPlan.NotifyTarget.Email, event: DeployEvent, values: [String: String], date: Date) -> Data {
        let defaultSubject = (try? NotifyTemplate("[switchyard] {{service}} {{version}}: {{outcome}} in {{environment}}"))
        let subject = (email.subject ?? defaultSubject)?.render(values, escaping: .none) ?? "[switchyard] \(event.service) \(event.version)"
        var lines: [String] = [event.text, ""]
        func fact(_ label: String, _ key: String) {
            if let value = values[key], !value.isEmpty { lines.append("\(label): \(value)") }
        }
        fact("Service", "service"); fact("Version", "version"); fact("Environment", "environment"); fact("Outcome", "outcome")
        fact("Actor", "actor"); fact("Reason", "reason"); fact("Commit", "commit"); fact("Ticket", "ticket"); fact("Change", "change_link")
        fact("Console", "console_url"); fact("Rollout", "rollout"); fact("Run", "run"); fact("Time", "time")
        let body = lines.joined(separator: "\r\n") + "\r\n"
        let domain = email.from.split(separator: "@").last.map(String.init) ?? "switchyard"
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let ascii = body.unicodeScalars.allSatisfy { $0.isASCII } && !body.split(separator: "\r\n").contains { $0.utf8.count > 900 }
        var headers = [
            "Date: \(formatter.string(from: date))",
            "From: \(email.from)",
            "To: \(email.to.joined(separator: ", "))",
            "Subject: \(headerText(subject))",
            "Message-ID: <\(UUID().uuidString.lowercased())@\(domain)>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: \(ascii ? "7bit" : "base64")",
            "Auto-Submitted: auto-generated",
            "X-Switchyard-Event: \(event.kind.rawValue)",
        ]
        if !values["run", default: ""].isEmpty { headers.append("X-Switchyard-Run: \(values["run", default: ""])") }
        var text = headers.joined(separator: "\r\n") + "\r\n\r\n"
        if ascii {
            text += body
        } else {
            let encoded = Data(body.utf8).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
            text += encoded + "\r\n"
        }
        return Data(text.utf8)
    }

    /// A header's text: as it is when it is plain ASCII on one line, else an RFC 2047 encoded word.
    static func headerText(_ text: String) -> String {
        let line = text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        if line.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 32 }) && line.utf8.count <= 900 { return line }
        // Encoded words of at most 75 characters (RFC 2047): 45 bytes of UTF-8 each, whole characters.
        var words: [String] = []
        var chunk = ""
        for character in line {
            if chunk.utf8.count + character.utf8.count > 45 && !chunk.isEmpty {
                words.append("=?utf-8?B?\(Data(chunk.utf8).base64EncodedString())?=")
                chunk = ""
            }
            chunk.append(character)
        }
        if !chunk.isEmpty { words.append("=?utf-8?B?\(Data(chunk.utf8).base64EncodedString())?=") }
        return words.joined(separator: "\r\n ")
    }
}
