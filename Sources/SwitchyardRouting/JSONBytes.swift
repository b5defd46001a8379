/// Pieces of JSON text appended to a byte buffer, for the writers that build large documents
/// directly (the state file, the admin API's answers).
public enum JSONBytes {
    /// A JSON string: quotes, backslashes and control characters escaped.
    public static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most names need no escaping: then the bytes go in at once.
        let whole: Bool? = text.utf8.withContiguousStorageIfAvailable { bytes in
            guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if whole == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hexDigit(byte >> 4))
                out.append(hexDigit(byte & 0xF))
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A whole number in decimal.
    public static func appendInteger<T: BinaryInteger>(_ value: T, to out: inout [UInt8]) {
        withDecimal(value) { out.append(contentsOf: $0) }
    }

    /// The decimal text of `value` (a `-` first when negative), handed to `body` from a buffer
    /// on the stack: no string is made for it.
    @inlinable @inline(__always)
    public static func withDecimal<T: BinaryInteger, R>(_ value: T, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        guard let magnitude = UInt64(exactly: value.magnitude) else {
            var text = String(value)
            return text.withUTF8(body)
        }
        // Written from the last digit back: at most 20 digits and the sign.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 21) { buffer in
            var start = buffer.count
            var rest = magnitude
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            } while rest > 0
            if value < 0 {
                start -= 1
                buffer[start] = UInt8(ascii: "-")
            }
            return body(UnsafeBufferPointer(rebasing: buffer[start...]))
        }
    }

    static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }
}
