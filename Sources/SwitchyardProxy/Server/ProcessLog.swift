import Foundation
import Glibc
import Synchronization
import SwitchyardConfig

/// The proxy's own messages on standard error. As text (the default), a message is written as
/// it is: `switchyard: ...`. With `log_format: json`, each is one JSON object on one line:
/// `{"time":"2026-11-30T06:00:00.123Z","level":"info","message":"...", ...fields}`, the
/// `switchyard: ` prefix left out of `message`. Lines are written with one `write`, so lines of
/// several threads never interleave.
public enum ProcessLog {
    public enum Level: String, Sendable {
        case info, warning, error
    }

    private static let json = Atomic<Bool>(false)

    /// Chooses the format for every message from here on (set once at start).
    public static func use(_ format: LogFormat) {
        json.store(format == .json, ordering: .releasing)
    }

    public static var format: LogFormat { json.load(ordering: .acquiring) ? .json : .text }

    /// Writes one message. `fields` are added to a JSON line (a text line is `text` alone).
    public static func write(_ text: String, level: Level = .info, fields: [String: String] = [:]) {
        var line = json.load(ordering: .acquiring) ? jsonLine(text, level: level, fields: fields) : text + "\n"
        line.withUTF8 { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(STDERR_FILENO, base + offset, buffer.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }

    /// One JSON line: time, level, message (without the `switchyard: ` prefix), then the fields in name order.
    static func jsonLine(_ text: String, level: Level, fields: [String: String], now: Date = Date()) -> String {
        var message = Substring(text)
        if message.hasPrefix("switchyard: ") { message = message.dropFirst("switchyard: ".count) }
        while message.hasSuffix("\n") { message = message.dropLast() }
        var out = "{\"time\":\"\(timestamp(now))\",\"level\":\"\(level.rawValue)\",\"message\":\(quoted(message))"
        for key in fields.keys.sorted() where !["time", "level", "message"].contains(key) {
            out += ",\(quoted(Substring(key))):\(quoted(Substring(fields[key] ?? "")))"
        }
        return out + "}\n"
    }

    /// RFC 3339 in UTC with milliseconds, like the access log's `time`.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// A JSON string: quotes, backslashes and control characters escaped; other characters as they are (UTF-8).
    static func quoted(_ text: Substring) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
