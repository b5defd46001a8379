import Foundation

/// Something that happened in a rollout: printed (a line for people, or JSON for
/// pipelines), stored in history where it is a step, and notified where it matters.
public struct DeployEvent: @unchecked Sendable {
    public enum Kind: String, Sendable {
        case started, environment, hook, health, step, analysis, paused, resumed, approvalNeeded = "approval_needed",
             approved, flipped, guardTripped = "guard_tripped", promoted, rollingBack = "rolling_back", rolledBack = "rolled_back",
             failed, refused, finished, notice
    }

    public var kind: Kind
    public var service: String
    public var version: String
    public var environment: String?
    public var text: String
    /// Figures for pipelines: weight, error_rate, p99_ms, progress, step, verdict...
    public var fields: [String: Any] = [:]
    public var time = Date()

    /// Kinds that go to notification receivers.
    public var isNotified: Bool {
        switch kind {
        case .started, .step, .paused, .approvalNeeded, .promoted, .guardTripped, .rolledBack, .failed, .finished: return true
        default: return false
        }
    }

    public var json: [String: Any] {
        var out = fields
        out["event"] = kind.rawValue
        out["service"] = service
        out["version"] = version
        out["environment"] = environment ?? NSNull()
        out["message"] = text
        out["time"] = History.now()
        return out
    }

    public var jsonData: Data { (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])) ?? Data() }

    /// The figures alone, as a JSON object (what the history's `events` table keeps).
    public var fieldsJSON: String {
        guard JSONSerialization.isValidJSONObject(fields), let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Prints events: one JSON object per line (`--json`), or lines for people with a live
/// status line (environment, step, weight, error rate, p99, a progress bar) when the
/// output is a terminal.
public final class ProgressPrinter: @unchecked Sendable {
    let json: Bool
    let isTerminal: Bool
    var statusLine = ""
    let lock = NSLock()

    public init(json: Bool) {
        self.json = json
        isTerminal = isatty(1) == 1
    }

    public func print(_ event: DeployEvent) {
        lock.lock()
        defer { lock.unlock() }
        if json {
            FileHandle.standardOutput.write(event.jsonData + Data("\n".utf8))
            return
        }
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        let env = (event.environment ?? "-").padding(toLength: 6, withPad: " ", startingAt: 0)
        var line = "\(f.string(from: event.time)) \(env) \(event.text)"
        if isTerminal { line = "\r\u{1B}[K" + line }
        FileHandle.standardOutput.write(Data((line + "\n" + (isTerminal ? statusLine : "")).utf8))
    }

    /// A warning from a helper thread (lock renewal, notifications), as a `notice` event.
    public func warn(_ message: String) { notice("warning: \(message)") }

    /// A line from a helper thread, as a `notice` event.
    public func notice(_ message: String) {
        print(DeployEvent(kind: .notice, service: "", version: "", environment: nil, text: message))
    }

    /// The live line (terminals only): redrawn in place.
    public func status(environment: String, phase: String, progress: Double, weight: String?, errorRate: Double?, p99: Double?, remaining: Double?) {
        guard !json, isTerminal else { return }
        lock.lock()
        defer { lock.unlock() }
        let width = 20
        let share = progress.isFinite ? max(0, min(1, progress)) : 0
        let filled = Int(share * Double(width))
        var parts = ["[\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))]", environment, phase]
        if let weight { parts.append("weight \(weight)") }
        if let errorRate { parts.append(String(format: "errors %.2f%%", errorRate * 100)) }
        if let p99 { parts.append(String(format: "p99 %.0fms", p99 * 1000)) }
        if let remaining, remaining > 0 { parts.append(String(format: "%.0fs left", remaining)) }
        statusLine = parts.joined(separator: "  ")
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + statusLine).utf8))
    }

    public func end() {
        guard !json, isTerminal else { return }
        lock.lock()
        statusLine = ""
        FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
        lock.unlock()
    }
}
