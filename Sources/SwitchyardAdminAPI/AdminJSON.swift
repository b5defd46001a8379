import Foundation
import SwitchyardRouting

/// The JSON of the admin API's answers: what `JSONSerialization` writes with sorted keys and
/// pretty printing (two spaces, `"key" : value`), written directly into bytes. The status of a
/// proxy with thousands of servers is megabytes, and `JSONSerialization` spent nearly all of
/// its time sorting keys through `NSString` and casting each value.
///
/// Values are what the proxy builds: dictionaries keyed by strings, arrays, strings, `Int`,
/// `Int64`, `UInt64`, `Double`, `Bool` and `NSNull`. Anything else (numbers read back from a
/// JSON file, which may be booleans or numbers) is written by `JSONSerialization` itself.
public enum AdminJSON {
    /// A value that writes its own JSON, in the same format: for objects repeated thousands of
    /// times (a status's servers), where building a dictionary for each costs more than
    /// writing its text.
    public struct Fragment {
        /// Appends the value; `indent` is the level of the line the value starts on.
        let write: (_ indent: Int, _ out: inout [UInt8]) -> Void
        public init(_ write: @escaping (_ indent: Int, _ out: inout [UInt8]) -> Void) { self.write = write }
    }

    /// Writes the members of an object in the order given, which must be the sorted order of
    /// their keys (as `write` sorts a dictionary's): `{`, each `"key" : value`, `}`.
    public struct ObjectWriter {
        private let indent: Int
        private var first = true

        /// Starts the object (`{`) at `indent`.
        public init(indent: Int, out: inout [UInt8]) {
            self.indent = indent
            out.append(UInt8(ascii: "{"))
        }

        /// The next member's key; its value follows.
        public mutating func key(_ key: StaticString, to out: inout [UInt8]) {
            if !first { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\n"))
            first = false
            AdminJSON.appendIndent(indent + 1, to: &out)
            out.append(UInt8(ascii: "\""))
            key.withUTF8Buffer { out.append(contentsOf: $0) }
            AdminJSON.appendLiteral("\" : ", to: &out)
        }

        public mutating func member(_ key: StaticString, _ value: Int, to out: inout [UInt8]) {
            self.key(key, to: &out)
            JSONBytes.appendInteger(value, to: &out)
        }

        public mutating func member(_ key: StaticString, _ value: String, to out: inout [UInt8]) {
            self.key(key, to: &out)
            JSONBytes.appendString(value, to: &out)
        }

        public mutating func member(_ key: StaticString, _ value: Bool, to out: inout [UInt8]) {
            self.key(key, to: &out)
            AdminJSON.appendLiteral(value ? "true" : "false", to: &out)
        }

        /// Any value `write` takes, one level deeper.
        public mutating func member(_ key: StaticString, any value: Any, to out: inout [UInt8]) {
            self.key(key, to: &out)
            AdminJSON.write(value, indent: indent + 1, to: &out)
        }

        /// Ends the object (`}`); an empty one is `{}`.
        public func end(to out: inout [UInt8]) {
            if first { out.append(UInt8(ascii: "}")); return }
            out.append(UInt8(ascii: "\n"))
            AdminJSON.appendIndent(indent, to: &out)
            out.append(UInt8(ascii: "}"))
        }
    }

    public static func data(_ object: Any) -> Data {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        write(object, indent: 0, to: &out)
        out.append(UInt8(ascii: "\n"))
        return Data(out)
    }

    static func write(_ value: Any, indent: Int, to out: inout [UInt8]) {
        // Exact types first: a number read from JSON (NSNumber) also casts to Bool and Int.
        switch ObjectIdentifier(type(of: value)) {
        case ObjectIdentifier(Int.self): if let v = value as? Int { JSONBytes.appendInteger(v, to: &out) }; return
        case ObjectIdentifier(Int64.self): if let v = value as? Int64 { JSONBytes.appendInteger(v, to: &out) }; return
        case ObjectIdentifier(UInt64.self): if let v = value as? UInt64 { JSONBytes.appendInteger(v, to: &out) }; return
        case ObjectIdentifier(Bool.self): if let v = value as? Bool { out.append(contentsOf: (v ? "true" : "false").utf8) }; return
        case ObjectIdentifier(Double.self): if let v = value as? Double { appendDouble(v, to: &out) }; return
        case ObjectIdentifier(NSNull.self): out.append(contentsOf: "null".utf8); return
        case ObjectIdentifier(Fragment.self): if let fragment = value as? Fragment { fragment.write(indent, &out) }; return
        default: break
        }
        if let text = value as? String {
            JSONBytes.appendString(text, to: &out)
        } else if let dictionary = value as? [String: Any] {
            guard !dictionary.isEmpty else { out.append(contentsOf: "{}".utf8); return }
            out.append(contentsOf: "{\n".utf8)
            var first = true
            for key in dictionary.keys.sorted() {
                guard let element = dictionary[key] else { continue }
                if !first { out.append(contentsOf: ",\n".utf8) }
                first = false
                appendIndent(indent + 1, to: &out)
                JSONBytes.appendString(key, to: &out)
                out.append(contentsOf: " : ".utf8)
                write(element, indent: indent + 1, to: &out)
            }
            out.append(UInt8(ascii: "\n"))
            appendIndent(indent, to: &out)
            out.append(UInt8(ascii: "}"))
        } else if let array = value as? [Any] {
            guard !array.isEmpty else { out.append(contentsOf: "[]".utf8); return }
            out.append(contentsOf: "[\n".utf8)
            for (i, element) in array.enumerated() {
                if i > 0 { out.append(contentsOf: ",\n".utf8) }
                appendIndent(indent + 1, to: &out)
                write(element, indent: indent + 1, to: &out)
            }
            out.append(UInt8(ascii: "\n"))
            appendIndent(indent, to: &out)
            out.append(UInt8(ascii: "]"))
        } else if let fragment = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed]) {
            out.append(contentsOf: fragment)
        } else {
            out.append(contentsOf: "null".utf8)
        }
    }

    static func appendIndent(_ level: Int, to out: inout [UInt8]) {
        out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * max(0, level)))
    }

    /// Appends a literal's bytes (a `String`'s UTF-8 view is appended byte by byte).
    @inline(__always) static func appendLiteral(_ literal: StaticString, to out: inout [UInt8]) {
        literal.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    /// A whole number as JSONSerialization writes it, else the shortest text that reads back
    /// as the same double; not-a-number and infinities (which JSON lacks) as null.
    static func appendDouble(_ value: Double, to out: inout [UInt8]) {
        guard value.isFinite else { out.append(contentsOf: "null".utf8); return }
        if value == value.rounded(), abs(value) < 1e15, let whole = Int64(exactly: value) {
            JSONBytes.appendInteger(whole, to: &out)
        } else {
            out.append(contentsOf: "\(value)".utf8)
        }
    }
}
