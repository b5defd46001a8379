import Foundation
import SwitchyardAdminClient

/// Sends notifications from a background thread with retries and exponential backoff.
/// A failing receiver never blocks or fails a rollout, and URLs never appear in any
/// message: a receiver is named by its position and kind (`notify[1] (webhook)`).
public final class Notifier: @unchecked Sendable {
    struct Target { let index: Int; let kind: DeployPlan.NotifyTarget.Kind; let url: HTTPURL; let ca: String? }
    struct Delivery { let target: Target; let body: Data; var attempt: Int; var notBefore: Date }

    private let targets: [Target]
    private let condition = NSCondition()
    private var queue: [Delivery] = []
    private var inFlight = 0
    private var stopping = false
    private let log: @Sendable (String) -> Void
    /// Attempts per notification, and the first delay (doubling each time).
    public var attempts = 5
    public var firstBackoff = 0.5

    /// - Parameter log: receives warnings (never a URL).
    public init(plan: DeployPlan, environment: [String: String], log: @escaping @Sendable (String) -> Void) {
        self.log = log
        var targets: [Target] = []
        for (i, t) in plan.notify.enumerated() {
            guard let text = t.resolvedURL(environment: environment) else {
                log("notify[\(i)] (\(t.kind.rawValue)): \(t.urlEnv ?? "url") is not set; this receiver gets nothing")
                continue
            }
            guard let url = HTTPURL(text) else {
                log("notify[\(i)] (\(t.kind.rawValue)): the URL in \(t.urlEnv ?? "url") is not an http:// or https:// URL; this receiver gets nothing")
                continue
            }
            targets.append(Target(index: i, kind: t.kind, url: url, ca: t.ca))
        }
        self.targets = targets
        if !targets.isEmpty {
            let thread = Thread { [self] in self.deliverLoop() }
            thread.name = "switchyard-notify"
            thread.start()
        }
    }

    /// Queues an event for every receiver: the event's JSON for webhooks, `{"text": ...}` for Slack.
    public func send(_ event: DeployEvent) {
        guard !targets.isEmpty else { return }
        let json = event.jsonData
        let slack = (try? JSONSerialization.data(withJSONObject: ["text": event.text], options: [.sortedKeys])) ?? Data()
        condition.lock()
        for t in targets {
            queue.append(Delivery(target: t, body: t.kind == .slack ? slack : json, attempt: 0, notBefore: Date()))
        }
        condition.signal()
        condition.unlock()
    }

    /// Waits up to `timeout` seconds for queued notifications (the final ones matter most),
    /// then stops; what is left is reported, not retried forever.
    public func finish(timeout: Double) {
        guard !targets.isEmpty else { return }
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        while (!queue.isEmpty || inFlight > 0) && Date() < deadline { _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.1))) }
        let left = queue.count
        stopping = true
        condition.broadcast()
        condition.unlock()
        if left > 0 { log("\(left) notification(s) not delivered before exit") }
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
            condition.unlock()
            let error = post(d)
            condition.lock()
            inFlight -= 1
            if let error {
                d.attempt += 1
                if d.attempt < attempts {
                    let delay = firstBackoff * pow(2, Double(d.attempt - 1))
                    log("notify[\(d.target.index)] (\(d.target.kind.rawValue)): \(error); retry \(d.attempt) of \(attempts - 1) in \(delay)s")
                    d.notBefore = Date().addingTimeInterval(delay)
                    queue.append(d)
                } else {
                    log("notify[\(d.target.index)] (\(d.target.kind.rawValue)): \(error); gave up after \(attempts) attempts")
                }
            }
            condition.broadcast()
            condition.unlock()
        }
    }

    /// One attempt; the error text names the failure, never the URL.
    private func post(_ d: Delivery) -> String? {
        let u = d.target.url
        do {
            let response = try HTTPClient.send(to: .tcp(host: u.host, port: u.port, tls: u.tls, ca: d.target.ca), method: "POST", path: u.path,
                                               headers: [("Content-Type", "application/json")], body: d.body, timeout: 5)
            return (200..<300).contains(response.status) ? nil : "HTTP \(response.status)"
        } catch {
            // Client errors name host and port at most; keep only the reason after the last colon.
            let reason = error.description.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "failed"
            return "delivery failed (\(reason))"
        }
    }
}
