/// What a name or value may be, for every field that both the configuration file and the
/// admin API accept. One rule per field, so that a value the loader refuses is refused at
/// runtime too: a name written into a response head (a sticky cookie) must never carry
/// a CR, LF, space or separator.
public enum FieldRules {
    /// Pool and server names: letters, digits, `-`, `_`, `.` and `:` (addresses as names).
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 128
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." || $0 == ":") }
    }

    public static let nameRule = "letters, digits, '-', '_', '.' and ':' (at most 128)"

    /// Cookie and header names that select a canary or a rule: an RFC 9110 token restricted to
    /// letters, digits, `-`, `_` and `.` (what cookie and header names are in practice).
    public static let maxFieldNameBytes = 128

    public static func isValidFieldName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= maxFieldNameBytes
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    public static let fieldNameRule = "letters, digits, '-', '_' and '.' (at most 128)"

    /// Values a rule compares with a header or cookie: visible ASCII and spaces inside, no
    /// control characters (a header value cannot hold them anyway).
    public static func isValidFieldValue(_ value: String) -> Bool {
        value.utf8.count <= 4096 && value.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F }
    }

    public static let fieldValueRule = "printable characters only (at most 4096 bytes)"

    /// Version labels (of pools, of rollouts): letters, digits, `-`, `_`, `.` and `+`, at
    /// most 128, not starting with `-`. Safe in a JSON string, a Prometheus label value, a
    /// file name and a command line.
    public static func isValidVersion(_ version: String) -> Bool {
        !version.isEmpty && version.utf8.count <= 128 && version.first != "-"
            && version.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.+".contains($0)) }
    }

    public static let versionRule = "letters, digits, '-', '_', '.' and '+' (at most 128, not starting with '-')"
}
