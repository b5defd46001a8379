/// Incremental scanner for the chunked transfer coding (RFC 9112 section 7.1).
///
/// The proxy normally forwards chunked bodies verbatim; the scanner only has to find
/// where the body ends and refuse malformed framing. When a client cannot take chunked
/// (HTTP/1.0), the same scanner reports the data spans so they can be sent bare.
/// It keeps no copy of the bytes: memory stays constant whatever the peer sends.
public struct ChunkedScanner: Sendable {
    /// The chunk-size line is checked against RFC 9112 section 7.1 byte by byte, since it is
    /// forwarded as received: `1*HEXDIG *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) CRLF`.
    /// Anything else (a space inside the size, a bare space before CRLF, a stray byte in an
    /// extension) is refused, so every hop reads the same size.
    enum State: Sendable {
        case size
        /// Whitespace after the size: only `;` may follow.
        case sizeBWS
        /// After `;`: optional whitespace, then an extension name.
        case extensionStart
        case extensionName
        /// Whitespace after a name: `=`, `;` may follow.
        case extensionNameBWS
        /// After `=`: optional whitespace, then a token or a quoted string.
        case extensionValueStart
        case extensionToken
        case extensionQuoted, extensionQuotedEscape
        /// Right after a quoted value's closing quote.
        case extensionAfterQuoted
        /// Whitespace after a value: only `;` may follow.
        case extensionValueBWS
        case sizeLF, data, dataCR, dataLF
        case trailerLineStart, trailerName, trailerLine, trailerLF, finalLF, done
    }

    public enum Step: Sendable {
        /// `count` bytes of framing (sizes, CRLFs, trailers) were consumed.
        case framing(count: Int)
        /// `count` bytes of chunk data start at the current position.
        case data(count: Int)
        /// The body ended after `count` more bytes (the last CRLF included).
        case end(count: Int)
        case failure(StaticString)
    }

    /// Longest chunk-size line extension and trailer section accepted.
    public static let maxExtensionBytes = 4096
    public static let maxTrailerBytes = 16384

    var state: State = .size
    var remaining: Int64 = 0
    var digits = 0
    var extensionBytes = 0
    var trailerBytes = 0

    public init() {}

    public var isDone: Bool { if case .done = state { return true } else { return false } }

    /// Examines the bytes at `p` (the first unconsumed byte of the body) and reports the
    /// next step. Call again with the bytes after what the step consumed.
    public mutating func next(_ p: UnsafePointer<UInt8>, count n: Int) -> Step {
        var i = 0
        while i < n {
            let b = p[i]
            switch state {
            case .size:
                if let h = hexValue(b) {
                    if digits >= 15 { return .failure("chunk size too large") }
                    remaining = remaining << 4 | Int64(h)
                    digits += 1
                } else if digits == 0 {
                    return .failure("invalid chunk size")
                } else if b == cr {
                    state = .sizeLF
                } else if b == semicolon {
                    state = .extensionStart; extensionBytes = 0
                } else if b == sp || b == htab {
                    state = .sizeBWS; extensionBytes = 0
                } else {
                    return .failure("invalid chunk size")
                }
            case .sizeBWS, .extensionStart, .extensionName, .extensionNameBWS, .extensionValueStart,
                 .extensionToken, .extensionQuoted, .extensionQuotedEscape, .extensionAfterQuoted, .extensionValueBWS:
                extensionBytes += 1
                if extensionBytes > Self.maxExtensionBytes { return .failure("chunk extension too long") }
                if let failure = nextExtensionState(b) { return .failure(failure) }
            case .sizeLF:
                guard b == lf else { return .failure("bare CR in chunk size line") }
                digits = 0
                if remaining == 0 {
                    state = .trailerLineStart; trailerBytes = 0
                } else {
                    state = .data
                    return .framing(count: i + 1)
                }
            case .data:
                let take = Int(min(Int64(n - i), remaining))
                if i > 0 { return .framing(count: i) }
                remaining -= Int64(take)
                if remaining == 0 { state = .dataCR }
                return .data(count: take)
            case .dataCR:
                guard b == cr else { return .failure("missing CRLF after chunk data") }
                state = .dataLF
            case .dataLF:
                guard b == lf else { return .failure("missing CRLF after chunk data") }
                state = .size; remaining = 0; digits = 0
            case .trailerLineStart:
                if b == cr { state = .finalLF }
                else if isTokenChar(b) { state = .trailerName; trailerBytes += 1 }
                else { return .failure("invalid trailer field") }
            case .trailerName:
                trailerBytes += 1
                if trailerBytes > Self.maxTrailerBytes { return .failure("trailer section too large") }
                if b == colon { state = .trailerLine }
                else if !isTokenChar(b) { return .failure("invalid trailer field name") }
            case .trailerLine:
                trailerBytes += 1
                if trailerBytes > Self.maxTrailerBytes { return .failure("trailer section too large") }
                if b == cr { state = .trailerLF }
                else if (b < 0x20 && b != htab) || b == 0x7F { return .failure("invalid trailer field") }
            case .trailerLF:
                guard b == lf else { return .failure("bare CR in trailer") }
                state = .trailerLineStart
            case .finalLF:
                guard b == lf else { return .failure("bare CR after last chunk") }
                state = .done
                return .end(count: i + 1)
            case .done:
                return .end(count: 0)
            }
            i += 1
        }
        return .framing(count: n)
    }

    /// One byte of the extension part of a chunk-size line; a reason when it is invalid.
    private mutating func nextExtensionState(_ b: UInt8) -> StaticString? {
        let whitespace = b == sp || b == htab
        switch state {
        case .sizeBWS:
            if whitespace { return nil }
            if b == semicolon { state = .extensionStart; return nil }
            return "invalid chunk size"
        case .extensionStart:
            if whitespace { return nil }
            if isTokenChar(b) { state = .extensionName; return nil }
            return "invalid chunk extension"
        case .extensionName:
            if isTokenChar(b) { return nil }
            if whitespace { state = .extensionNameBWS; return nil }
            if b == equals { state = .extensionValueStart; return nil }
            if b == semicolon { state = .extensionStart; return nil }
            if b == cr { state = .sizeLF; return nil }
            return "invalid chunk extension"
        case .extensionNameBWS:
            if whitespace { return nil }
            if b == equals { state = .extensionValueStart; return nil }
            if b == semicolon { state = .extensionStart; return nil }
            return "invalid chunk extension"
        case .extensionValueStart:
            if whitespace { return nil }
            if b == quote { state = .extensionQuoted; return nil }
            if isTokenChar(b) { state = .extensionToken; return nil }
            return "invalid chunk extension value"
        case .extensionToken:
            if isTokenChar(b) { return nil }
            if whitespace { state = .extensionValueBWS; return nil }
            if b == semicolon { state = .extensionStart; return nil }
            if b == cr { state = .sizeLF; return nil }
            return "invalid chunk extension value"
        case .extensionQuoted:
            if b == quote { state = .extensionAfterQuoted; return nil }
            if b == backslash { state = .extensionQuotedEscape; return nil }
            if b == htab || b == sp || (b >= 0x21 && b != 0x7F) { return nil } // qdtext and obs-text
            return "invalid quoted chunk extension value"
        case .extensionQuotedEscape:
            if b == htab || b == sp || (b >= 0x21 && b != 0x7F) { state = .extensionQuoted; return nil }
            return "invalid quoted chunk extension value"
        case .extensionAfterQuoted:
            if whitespace { state = .extensionValueBWS; return nil }
            if b == semicolon { state = .extensionStart; return nil }
            if b == cr { state = .sizeLF; return nil }
            return "invalid chunk extension"
        case .extensionValueBWS:
            if whitespace { return nil }
            if b == semicolon { state = .extensionStart; return nil }
            return "invalid chunk extension"
        default:
            return "invalid chunk extension"
        }
    }

    /// Skips over as much of `p` as belongs to the body. Returns how many bytes belong
    /// to the body and whether it ended there, or the reason the framing is invalid.
    public mutating func scan(_ p: UnsafePointer<UInt8>, count n: Int) -> (consumed: Int, ended: Bool, error: StaticString?) {
        var offset = 0
        while offset < n {
            switch next(p + offset, count: n - offset) {
            case .framing(let c), .data(let c): offset += c
            case .end(let c): return (offset + c, true, nil)
            case .failure(let why): return (offset, false, why)
            }
        }
        return (offset, isDone, nil)
    }
}

private let semicolon = UInt8(ascii: ";")
private let equals = UInt8(ascii: "=")
private let quote = UInt8(ascii: "\"")
private let backslash = UInt8(ascii: "\\")

@inline(__always) func hexValue(_ b: UInt8) -> UInt8? {
    switch b {
    case 0x30...0x39: return b - 0x30
    case 0x41...0x46: return b - 0x41 + 10
    case 0x61...0x66: return b - 0x61 + 10
    default: return nil
    }
}
