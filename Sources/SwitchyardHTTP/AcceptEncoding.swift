/// The `Accept-Encoding` request field (RFC 9110, section 12.5.3): which content codings a
/// client takes, each with an optional weight (`gzip;q=0.5`); a weight of 0 refuses one.
public enum AcceptEncoding {
    /// Whether a response may be sent gzip-coded to a client that sent `value`: `gzip` (or
    /// `x-gzip`) is listed with a weight above 0, or it is not listed and `*` is. Without
    /// the field the answer is no (identity always works); a member with a malformed weight
    /// counts as not listed.
    public static func allowsGzip(_ value: String?) -> Bool {
        guard let value else { return false }
        var gzip: Bool? = nil
        var any: Bool? = nil
        for member in value.split(separator: ",") {
            let parts = member.split(separator: ";")
            guard let coding = parts.first.map(trimmed)?.lowercased(), !coding.isEmpty else { continue }
            var weight: Bool? = true
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(trimmed)
                guard pair.first?.lowercased() == "q" else { continue }
                weight = pair.count == 2 ? isAboveZero(qvalue: pair[1]) : nil
            }
            guard let accepted = weight else { continue }
            switch coding {
            case "gzip", "x-gzip": gzip = accepted
            case "*": any = accepted
            default: break
            }
        }
        return gzip ?? any ?? false
    }

    /// `0`, `0.`, `0.0` to `0.000` are zero; `0.001` to `1.000` are above; anything else is
    /// malformed (nil).
    static func isAboveZero(qvalue text: Substring) -> Bool? {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, first == UInt8(ascii: "0") || first == UInt8(ascii: "1") else { return nil }
        guard bytes.count > 1 else { return first == UInt8(ascii: "1") }
        guard bytes[1] == UInt8(ascii: "."), bytes.count <= 5 else { return nil }
        let decimals = bytes.dropFirst(2)
        guard decimals.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        if first == UInt8(ascii: "1") { return decimals.allSatisfy { $0 == UInt8(ascii: "0") } ? true : nil }
        return decimals.contains { $0 != UInt8(ascii: "0") }
    }

    private static func trimmed(_ text: Substring) -> Substring {
        var text = text
        while let c = text.first, c == " " || c == "\t" { text.removeFirst() }
        while let c = text.last, c == " " || c == "\t" { text.removeLast() }
        return text
    }
}
