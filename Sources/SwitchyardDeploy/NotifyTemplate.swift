import Foundation

/// A notification body or subject with `{{placeholder}}`s: read once when the plan loads
/// (an unknown placeholder is a plan error), filled for each event.
public struct NotifyTemplate: Sendable, Equatable {
    /// Every placeholder, with what it holds (docs/deploy.md lists the same).
    public static let placeholders: [(name: String, meaning: String)] = [
        ("service", "the plan's service"),
        ("version", "the version being rolled out"),
        ("environment", "the event's environment; for events of the whole rollout, its environments joined by \", \""),
        ("environments", "every environment of the rollout, joined by \", \""),
        ("event", "the event: started, step, paused, approval_needed, guard_tripped, rolled_back, promoted, finished or failed"),
        ("outcome", "promoted, rolled_back or failed at the end; otherwise the event"),
        ("message", "the event's line, as the terminal prints it"),
        ("actor", "who deploys"),
        ("reason", "why it rolled back, failed or paused (empty otherwise)"),
        ("rollout", "the rollout's number in the runner's history"),
        ("run", "the run's identity (a UUID)"),
        ("console_url", "the rollout in the console's web UI, or the console when its number is not known yet (empty without a console)"),
        ("commit", "the commit deployed (empty when not known)"),
        ("ticket", "the change's ticket (empty when not known)"),
        ("change_link", "the link to the change: the commit or the build (empty when not known)"),
        ("time", "when the event happened, ISO 8601 in UTC"),
    ]
    public static let names = Set(placeholders.map(\.name))

    /// How values are written into the text.
    public enum Escaping: Sendable, Equatable {
        /// As they are (plain text).
        case none
        /// Escaped for the inside of a JSON string: the template writes the quotes.
        case json
        /// Percent-encoded, for application/x-www-form-urlencoded bodies.
        case form

        /// The escaping a Content-Type calls for.
        public init(contentType: String) {
            let type = (contentType.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
            if type == "application/json" || type.hasSuffix("+json") { self = .json }
            else if type == "application/x-www-form-urlencoded" { self = .form }
            else { self = .none }
        }
    }

    enum Part: Sendable, Equatable { case text(String), value(String) }
    let parts: [Part]

    /// What is wrong with a template, and where in it (the placeholder's line within the template, from 1).
    public struct Problem: Error, Equatable, CustomStringConvertible, Sendable {
        public var line: Int
        public var message: String
        public var description: String { message }
    }

    /// Reads `{{name}}` (spaces inside the braces are allowed) between plain text.
    /// - Throws: an unknown placeholder, or `{{` without its `}}`.
    public init(_ text: String) throws(Problem) {
        var parts: [Part] = []
        var rest = Substring(text)
        var line = 1
        while let open = rest.range(of: "{{") {
            let before = rest[..<open.lowerBound]
            if !before.isEmpty { parts.append(.text(String(before))) }
            line += before.filter { $0 == "\n" }.count
            let inside = rest[open.upperBound...]
            guard let close = inside.range(of: "}}") else {
                throw Problem(line: line, message: "\"{{\" without its \"}}\"; write placeholders as {{version}}")
            }
            let name = inside[..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard Self.names.contains(name) else {
                let shown = name.count > 40 ? String(name.prefix(40)) + "…" : name
                throw Problem(line: line, message: "unknown placeholder {{\(shown)}}; known: \(Self.placeholders.map(\.name).joined(separator: ", "))")
            }
            parts.append(.value(name))
            rest = inside[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        self.parts = parts
    }

    /// The placeholders used, in order of appearance.
    public var used: [String] { parts.compactMap { if case .value(let n) = $0 { return n } else { return nil } } }

    /// The text with each placeholder replaced by its value (empty when `values` has none), escaped.
    public func render(_ values: [String: String], escaping: Escaping) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .text(let t): out += t
            case .value(let name): out += Self.escape(values[name] ?? "", escaping)
            }
        }
        return out
    }

    static func escape(_ value: String, _ escaping: Escaping) -> String {
        switch escaping {
        case .none: return value
        case .form:
            let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
            return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
        case .json:
            var out = ""
            for scalar in value.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                // Line and paragraph separators are valid JSON but break JavaScript readers.
                case "\u{2028}": out += "\\u2028"
                case "\u{2029}": out += "\\u2029"
                default:
                    if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
                }
            }
            return out
        }
    }

    /// For JSON bodies: the template filled with values that hold every character needing an
    /// escape must parse as JSON. Nil when it does; else why not.
    public func jsonProblem() -> String? {
        let probe = "a\"b\\c\nd\u{1}e"
        let values = Dictionary(uniqueKeysWithValues: Self.names.map { ($0, probe) })
        let body = Data(render(values, escaping: .json).utf8)
        do {
            _ = try JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed])
            return nil
        } catch {
            return "the template is not valid JSON once filled in (placeholders go inside quotes, e.g. \"text\": \"{{message}}\"); "
                + "write a JSON template or set content_type to what it is"
        }
    }
}
