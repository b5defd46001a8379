import SwitchyardConfig
import SwitchyardHTTP

/// The cookie that keeps a client's canary assignment. `RoutingSnapshot.choosePool` decides
/// whether a response sets it; this type makes its value and writes its `Set-Cookie` line.
public enum StickyCookie {
    /// Values are 16 hex digits.
    public static let valueLength = 16

    /// 30 days, whole site, not visible to scripts, sent on top-level navigations
    /// (documented in docs/switching.md).
    static let attributes: StaticString = "; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax\r\n"

    /// Room for the longest line: `Set-Cookie: `, a name of the longest allowed length, `=`, the value and the attributes.
    public static let maxLineLength = "Set-Cookie: ".utf8.count + FieldRules.maxFieldNameBytes + 1 + valueLength + attributes.utf8CodeUnitCount

    /// Writes a fresh value (`valueLength` bytes) made from `random`.
    public static func writeValue(_ random: UInt64, into out: UnsafeMutablePointer<UInt8>) {
        var w = ByteWriter(base: out, capacity: valueLength)
        w.append(hex: random, width: valueLength)
    }

    /// Writes `Set-Cookie: NAME=VALUE; attributes CRLF`; returns its length (0 if it does not fit).
    public static func writeSetCookieLine(name: [UInt8], value: UnsafeBufferPointer<UInt8>,
                                          into out: UnsafeMutablePointer<UInt8>, capacity: Int) -> Int {
        var w = ByteWriter(base: out, capacity: capacity)
        w.append("Set-Cookie: ")
        w.append(name)
        w.append(byte: UInt8(ascii: "="))
        if let p = value.baseAddress { w.append(p, value.count) }
        w.append(attributes)
        return w.overflowed ? 0 : w.count
    }
}
