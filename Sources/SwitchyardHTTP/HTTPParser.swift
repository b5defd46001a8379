#if canImport(Glibc)
import Glibc
#endif

/// Size limits applied while parsing a head.
public struct HTTPLimits: Sendable {
    /// Longest request line; longer gets 414.
    public var maxRequestLine: Int
    /// Largest head (request line plus fields); larger gets 431.
    public var maxHeaderBytes: Int
    /// Most header fields; more gets 431.
    public var maxHeaders: Int

    public init(maxRequestLine: Int = 8192, maxHeaderBytes: Int = 16384, maxHeaders: Int = 100) {
        self.maxRequestLine = maxRequestLine
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaders = maxHeaders
    }
}

/// Why a message was refused. `status` is the answer a client gets; for upstream
/// responses every failure becomes a 502.
public struct HTTPParseError: Error, Equatable, Sendable {
    public let status: Int
    public let reason: StaticString

    public init(_ status: Int, _ reason: StaticString) {
        self.status = status
        self.reason = reason
    }

    public var reasonText: String { reason.description }

    public static func == (lhs: HTTPParseError, rhs: HTTPParseError) -> Bool {
        lhs.status == rhs.status && lhs.reason.description == rhs.reason.description
    }
}

public enum HeadParseResult: Equatable, Sendable {
    /// More bytes are needed; nothing is wrong so far.
    case incomplete
    /// A whole head was parsed; its length is `HTTPHead.headLength`.
    case complete
    case failure(HTTPParseError)
}

/// How far an incomplete head has been checked, so that the next attempt with more bytes looks
/// only at what arrived since: a head that trickles in a byte at a time then costs time in
/// proportion to its length, not to its length squared. Use a fresh value for each head; the
/// parser resets it when a head is complete or refused.
public struct HeadScan: Sendable {
    /// Bytes from the start of the buffer known to hold no end of head, no bare LF and no NUL.
    var checked = 0
    /// Where the head started (after skipped empty lines) when `checked` was recorded.
    var start = 0
    /// The LF that ends the start line, once seen.
    var firstLineEnd = -1

    public init() {}
}

/// Strict HTTP/1.1 head parser (RFC 9112). Line endings must be CRLF: a bare LF is
/// refused rather than tolerated, because tolerant and strict parsers disagreeing
/// about where a line ends is how requests are smuggled.
public enum HTTPParser {
    /// Parses a request head at the start of `buffer`.
    public static func parseRequest(_ buffer: UnsafeRawBufferPointer, into head: HTTPHead,
                                    limits: HTTPLimits) -> HeadParseResult {
        var scan = HeadScan()
        return parse(buffer, into: head, limits: limits, isRequest: true, scan: &scan)
    }

    /// Parses a request head at the start of `buffer`, which holds the bytes of earlier
    /// attempts on the same head (as they were) followed by new ones; `scan` carries what
    /// those attempts already checked.
    public static func parseRequest(_ buffer: UnsafeRawBufferPointer, into head: HTTPHead,
                                    limits: HTTPLimits, scan: inout HeadScan) -> HeadParseResult {
        parse(buffer, into: head, limits: limits, isRequest: true, scan: &scan)
    }

    /// Parses a response head at the start of `buffer`.
    public static func parseResponse(_ buffer: UnsafeRawBufferPointer, into head: HTTPHead,
                                     limits: HTTPLimits) -> HeadParseResult {
        var scan = HeadScan()
        return parse(buffer, into: head, limits: limits, isRequest: false, scan: &scan)
    }

    /// Number of CRLF pairs allowed before a request line (RFC 9112 section 2.2).
    static let maxLeadingEmptyLines = 4

    static func parse(_ buffer: UnsafeRawBufferPointer, into head: HTTPHead,
                      limits: HTTPLimits, isRequest: Bool, scan: inout HeadScan) -> HeadParseResult {
        guard let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return .incomplete }
        let count = buffer.count
        let result = parse(base, count: count, into: head, limits: limits, isRequest: isRequest, scan: &scan)
        if result != .incomplete { scan = HeadScan() }
        return result
    }

    static func parse(_ base: UnsafePointer<UInt8>, count: Int, into head: HTTPHead,
                      limits: HTTPLimits, isRequest: Bool, scan: inout HeadScan) -> HeadParseResult {

        // Pass 1: find the end of the head, checking every LF is preceded by CR.
        var start = 0
        if isRequest {
            var skipped = 0
            while start + 1 < count, base[start] == cr, base[start + 1] == lf, skipped < maxLeadingEmptyLines {
                start += 2; skipped += 1
            }
            if start < count, base[start] == lf { return .failure(.init(400, "bare LF line ending")) }
        }
        var end = -1
        var firstLineEnd = -1
        var i = start
        // Bytes an earlier attempt checked are not looked at again (the checks below look back
        // at most three bytes from a LF, and those bytes are still in the buffer).
        if scan.start == start, scan.checked > start, scan.checked <= count {
            i = scan.checked
            firstLineEnd = scan.firstLineEnd
        }
        let resumedAt = i
        let failStatus = isRequest ? 400 : 502
        // Jump from LF to LF with memchr; each LF must follow a CR, and two CRLFs in a row end the head.
        while i < count {
            guard let found = memchr(base + i, Int32(lf), count - i) else { break }
            let at = UnsafePointer<UInt8>(found.assumingMemoryBound(to: UInt8.self)) - base
            if at == 0 || base[at - 1] != cr { return .failure(.init(failStatus, "bare LF line ending")) }
            if firstLineEnd < 0 { firstLineEnd = at }
            if at >= start + 3, base[at - 2] == lf, base[at - 3] == cr { end = at + 1; break }
            i = at + 1
        }
        // NUL is refused anywhere in the head.
        let scanned = end >= 0 ? end : count
        if scanned > resumedAt, memchr(base + resumedAt, 0, scanned - resumedAt) != nil {
            return .failure(.init(failStatus, "NUL byte in head"))
        }
        if firstLineEnd < 0 && count - start > limits.maxRequestLine {
            return .failure(isRequest ? .init(414, "request line too long") : .init(502, "status line too long"))
        }
        if end < 0 {
            if count > limits.maxHeaderBytes {
                return .failure(.init(isRequest ? 431 : 502, "header section too large"))
            }
            scan.checked = count
            scan.start = start
            scan.firstLineEnd = firstLineEnd
            return .incomplete
        }
        if end > limits.maxHeaderBytes {
            if firstLineEnd - start > limits.maxRequestLine, isRequest { return .failure(.init(414, "request line too long")) }
            return .failure(.init(isRequest ? 431 : 502, "header section too large"))
        }
        if isRequest, firstLineEnd - start > limits.maxRequestLine { return .failure(.init(414, "request line too long")) }

        head.reset()
        head.headLength = end
        let lineEnd = firstLineEnd - 1 // position of CR
        let firstError = isRequest
            ? parseRequestLine(base, from: start, to: lineEnd, head: head)
            : parseStatusLine(base, from: start, to: lineEnd, head: head)
        if let firstError { return .failure(firstError) }

        // Pass 2: field lines.
        var lineStart = firstLineEnd + 1
        while lineStart < end - 2 {
            let first = base[lineStart]
            if first == sp || first == htab { return .failure(.init(failStatus, "obsolete line folding")) }
            // Field name.
            var p = lineStart
            while p < end, isTokenChar(base[p]) { p += 1 }
            if p == lineStart { return .failure(.init(failStatus, "invalid character in header name")) }
            if base[p] != colon {
                if base[p] == sp || base[p] == htab {
                    return .failure(.init(failStatus, "whitespace between header name and colon"))
                }
                return .failure(.init(failStatus, "invalid character in header name"))
            }
            let nameEnd = p
            p += 1
            while base[p] == sp || base[p] == htab { p += 1 }
            let valueStart = p
            // The line ends at the first CR, which must be followed by LF; every byte before it
            // must be visible, obs-text, space or tab. Eight bytes at a time: a word without a
            // control character or DEL is skipped whole, else the look jumps to the first one.
            var lineEnd = -1
            while true {
                if p + 8 <= end {
                    let mask = Self.controlByteMask(UInt64(littleEndian: UnsafeRawPointer(base + p).loadUnaligned(as: UInt64.self)))
                    if mask == 0 { p += 8; continue }
                    p += mask.trailingZeroBitCount >> 3
                } else if p >= end {
                    break
                }
                let b = base[p]
                if b == cr { lineEnd = p; break }
                if b < 0x20 || b == 0x7F, b != htab {
                    return .failure(.init(failStatus, "invalid character in header value"))
                }
                p += 1
            }
            guard lineEnd >= 0 else { return .failure(.init(failStatus, "bare LF line ending")) }
            if base[lineEnd + 1] != lf { return .failure(.init(failStatus, "bare CR in header value")) }
            var valueEnd = lineEnd
            while valueEnd > valueStart, base[valueEnd - 1] == sp || base[valueEnd - 1] == htab { valueEnd -= 1 }
            if head.fieldCount >= head.capacity {
                return .failure(isRequest ? .init(431, "too many header fields") : .init(502, "too many header fields"))
            }
            var field = HeaderField()
            field.nameStart = Int32(lineStart)
            field.nameLength = Int32(nameEnd - lineStart)
            field.valueStart = Int32(valueStart)
            field.valueLength = Int32(valueEnd - valueStart)
            field.kind = classify(base + lineStart, nameEnd - lineStart)
            let index = head.fieldCount
            head.fields[index] = field
            head.fieldCount += 1
            if let error = applySemantics(base, field: field, index: index, head: head, isRequest: isRequest) {
                return .failure(error)
            }
            lineStart = p + 2
        }

        return finish(base, head: head, isRequest: isRequest)
    }

    /// The bytes of `word` (in memory order, least significant first) that are below 0x20 or
    /// are 0x7F, each marked by its high bit: zero when there are none. The lowest mark is
    /// exact (marks above it may be wrong: a borrow carries into the next byte), which is all
    /// the caller uses; bytes from 0x80 up (obs-text) are never marked.
    @inline(__always)
    static func controlByteMask(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let below = (word &- ones &* 0x20) & ~word & highs
        let delete = word ^ (ones &* 0x7F)
        return below | ((delete &- ones) & ~delete & highs)
    }

    // MARK: Start lines

    static func parseRequestLine(_ base: UnsafePointer<UInt8>, from start: Int, to lineEnd: Int,
                                 head: HTTPHead) -> HTTPParseError? {
        var p = start
        while p < lineEnd, isTokenChar(base[p]) { p += 1 }
        if p == start || p >= lineEnd || base[p] != sp { return .init(400, "invalid method") }
        head.methodStart = Int32(start)
        head.methodLength = Int32(p - start)
        head.method = classifyMethod(base + start, p - start)
        p += 1
        let targetStart = p
        while p < lineEnd, base[p] > 0x20, base[p] < 0x7F { p += 1 }
        if p == targetStart || p >= lineEnd || base[p] != sp { return .init(400, "invalid request target") }
        head.targetStart = Int32(targetStart)
        head.targetLength = Int32(p - targetStart)
        p += 1
        guard let version = parseVersion(base, from: p, to: lineEnd) else {
            return .init(400, "invalid HTTP version")
        }
        switch version {
        case .supported(let v): head.version = v
        case .unsupported: return .init(505, "HTTP version not supported")
        }
        let first = base[targetStart]
        if head.method == .connect { return .init(501, "CONNECT is not supported") }
        if first == asterisk, head.targetLength == 1, head.method == .options { return nil }
        guard first == slash || (head.targetLength > 7 && isAbsoluteHTTP(base + targetStart, Int(head.targetLength))) else {
            return .init(400, "invalid request target")
        }
        // Routing matches path prefixes on the bytes as sent; a "." or ".." segment would let
        // "/public/../admin" match "/public" and reach "/admin" on a server that resolves it.
        if hasDotSegment(base + targetStart, Int(head.targetLength)) {
            return .init(400, "dot segments (/./ or /../) are not accepted in the request path")
        }
        return nil
    }

    static func parseStatusLine(_ base: UnsafePointer<UInt8>, from start: Int, to lineEnd: Int,
                                head: HTTPHead) -> HTTPParseError? {
        guard lineEnd - start >= 12 else { return .init(502, "invalid status line") }
        guard let version = parseVersion(base, from: start, to: start + 8),
              case .supported(let v) = version else { return .init(502, "invalid status line version") }
        head.version = v
        var p = start + 8
        guard base[p] == sp else { return .init(502, "invalid status line") }
        p += 1
        var code = 0
        for _ in 0..<3 {
            let d = base[p]
            guard d >= digit0, d <= digit9 else { return .init(502, "invalid status code") }
            code = code * 10 + Int(d - digit0)
            p += 1
        }
        guard code >= 100 else { return .init(502, "invalid status code") }
        head.statusCode = code
        if p == lineEnd { head.reasonStart = Int32(p); head.reasonLength = 0; return nil }
        guard base[p] == sp else { return .init(502, "invalid status line") }
        p += 1
        let reasonStart = p
        while p < lineEnd {
            let b = base[p]
            if (b < 0x20 && b != htab) || b == 0x7F { return .init(502, "invalid character in reason phrase") }
            p += 1
        }
        head.reasonStart = Int32(reasonStart)
        head.reasonLength = Int32(lineEnd - reasonStart)
        return nil
    }

    enum ParsedVersion { case supported(HTTPVersion), unsupported }

    static func parseVersion(_ base: UnsafePointer<UInt8>, from p: Int, to end: Int) -> ParsedVersion? {
        guard end - p == 8, base[p] == 0x48, base[p + 1] == 0x54, base[p + 2] == 0x54, base[p + 3] == 0x50,
              base[p + 4] == slash, base[p + 6] == 0x2E else { return nil }
        let major = base[p + 5], minor = base[p + 7]
        guard major >= digit0, major <= digit9, minor >= digit0, minor <= digit9 else { return nil }
        if major == digit1 && minor == digit1 { return .supported(.http11) }
        if major == digit1 && minor == digit0 { return .supported(.http10) }
        return .unsupported
    }

    static func isAbsoluteHTTP(_ p: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        let http: [UInt8] = Array("http://".utf8), https: [UInt8] = Array("https://".utf8)
        func matches(_ prefix: [UInt8]) -> Bool {
            guard n > prefix.count else { return false }
            for (k, c) in prefix.enumerated() where lower(p[k]) != c { return false }
            return true
        }
        return matches(http) || matches(https)
    }

    // MARK: Field semantics

    static func applySemantics(_ base: UnsafePointer<UInt8>, field: HeaderField, index: Int,
                               head: HTTPHead, isRequest: Bool) -> HTTPParseError? {
        let failStatus = isRequest ? 400 : 502
        let v = base + Int(field.valueStart)
        let n = Int(field.valueLength)
        switch field.kind {
        case .contentLength:
            // A list ("5, 5") or repeated fields are accepted only when every value is the same.
            var k = 0
            while k <= n {
                while k < n, v[k] == sp || v[k] == htab { k += 1 }
                var value: Int64 = 0
                var digits = 0
                while k < n, v[k] >= digit0, v[k] <= digit9 {
                    if digits >= 18 { return .init(failStatus, "Content-Length too large") }
                    value = value * 10 + Int64(v[k] - digit0)
                    digits += 1; k += 1
                }
                while k < n, v[k] == sp || v[k] == htab { k += 1 }
                if digits == 0 || (k < n && v[k] != comma) { return .init(failStatus, "invalid Content-Length") }
                if let existing = head.contentLength, existing != value {
                    return .init(failStatus, "conflicting Content-Length values")
                }
                head.contentLength = value
                k += 1
            }
        case .transferEncoding:
            if isRequest, head.version == .http10 {
                return .init(400, "Transfer-Encoding in an HTTP/1.0 request")
            }
            var sawAny = false
            var unsupported = false
            var result: HTTPParseError? = nil
            forEachToken(v, n) { tp, tn in
                sawAny = true
                if head.isChunked {
                    // Anything after chunked means chunked was not the final coding.
                    result = result ?? .init(failStatus, isRequest ? "chunked is not the final transfer coding"
                                                                   : "coding after chunked")
                    return
                }
                if equalsLowercase(tp, tn, "chunked") {
                    head.isChunked = true
                } else if isRequest {
                    unsupported = true
                } else {
                    head.hasNonChunkedTransferEncoding = true
                }
            }
            if let result { return result }
            if !sawAny { return .init(failStatus, "empty Transfer-Encoding") }
            if !head.isChunked, isRequest { return .init(400, "chunked is not the final transfer coding") }
            // RFC 9112 section 6.1: a coding the server does not understand gets 501.
            if unsupported { return .init(501, "unsupported transfer coding") }
            if head.isChunked { head.hasNonChunkedTransferEncoding = false }
        case .connection:
            forEachToken(v, n) { tp, tn in
                if equalsLowercase(tp, tn, "close") { head.connectionClose = true }
                else if equalsLowercase(tp, tn, "keep-alive") { head.connectionKeepAlive = true }
                else if equalsLowercase(tp, tn, "upgrade") { head.connectionUpgrade = true }
            }
        case .upgrade:
            head.hasUpgradeHeader = n > 0
        case .host:
            if isRequest {
                if head.hostIndex >= 0 { return .init(400, "more than one Host header") }
                for k in 0..<n where !isHostChar(v[k]) { return .init(400, "invalid Host header") }
            }
            head.hostIndex = index
        case .expect:
            if isRequest {
                if equalsLowercase(v, n, "100-continue") { head.expectsContinue = true }
                else { return .init(417, "unsupported expectation") }
            }
        case .xRequestID:
            if head.requestIDIndex < 0, n > 0, n <= 200 { head.requestIDIndex = index }
        default:
            break
        }
        return nil
    }

    static func finish(_ base: UnsafePointer<UInt8>, head: HTTPHead, isRequest: Bool) -> HeadParseResult {
        if head.isChunked, head.contentLength != nil {
            return .failure(.init(isRequest ? 400 : 502, "both Content-Length and Transfer-Encoding"))
        }
        if !head.isChunked, head.hasNonChunkedTransferEncoding, head.contentLength != nil {
            return .failure(.init(502, "both Content-Length and Transfer-Encoding"))
        }
        if isRequest, head.version == .http11, head.hostIndex < 0 {
            return .failure(.init(400, "missing Host header"))
        }
        // Mark fields named by Connection as hop-by-hop.
        for c in 0..<head.fieldCount where head.fields[c].kind == .connection {
            let cf = head.fields[c]
            forEachToken(base + Int(cf.valueStart), Int(cf.valueLength)) { tp, tn in
                for f in 0..<head.fieldCount where head.fields[f].kind == .other {
                    let field = head.fields[f]
                    if Int(field.nameLength) == tn, equalsIgnoringCase(base + Int(field.nameStart), tp, tn) {
                        head.fields[f].namedByConnection = true
                    }
                }
            }
        }
        return .complete
    }

    // MARK: Helpers

    /// Calls `body` with each comma-separated token of a list value, whitespace trimmed.
    @inline(__always)
    static func forEachToken(_ v: UnsafePointer<UInt8>, _ n: Int, _ body: (UnsafePointer<UInt8>, Int) -> Void) {
        var k = 0
        while k < n {
            while k < n, v[k] == sp || v[k] == htab || v[k] == comma { k += 1 }
            let s = k
            while k < n, v[k] != comma { k += 1 }
            var e = k
            while e > s, v[e - 1] == sp || v[e - 1] == htab { e -= 1 }
            if e > s { body(v + s, e - s) }
        }
    }
}

// MARK: - Byte classes

@usableFromInline let cr: UInt8 = 13
@usableFromInline let lf: UInt8 = 10
@usableFromInline let sp: UInt8 = 32
@usableFromInline let htab: UInt8 = 9
let colon: UInt8 = 58
let comma: UInt8 = 44
let slash: UInt8 = 47
let asterisk: UInt8 = 42
let digit0: UInt8 = 48
let digit1: UInt8 = 49
let digit9: UInt8 = 57

/// `tchar` from RFC 9110 section 5.6.2 as two 64-bit masks (bytes 0-63 and 64-127).
/// Constants rather than a global table: a global costs a lazy-initialisation check and a
/// retain on every byte, which made header parsing several times slower (measured).
@inline(__always) func isTokenChar(_ b: UInt8) -> Bool {
    if b < 64 { return (0x03ff_6cfa_0000_0000 as UInt64) >> UInt64(b) & 1 != 0 }
    if b < 128 { return (0x57ff_ffff_c7ff_fffe as UInt64) >> UInt64(b &- 64) & 1 != 0 }
    return false
}

@inline(__always) func isHostChar(_ b: UInt8) -> Bool {
    // reg-name, IPv4, IP-literal and port: unreserved, sub-delims, ":", "[", "]", "%".
    if b >= 0x61 && b <= 0x7A { return true }
    if b >= 0x41 && b <= 0x5A { return true }
    if b >= 0x30 && b <= 0x3A { return true }
    switch b {
    case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "["),
         UInt8(ascii: "]"), UInt8(ascii: "%"), UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"),
         UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"),
         UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
        return true
    default:
        return false
    }
}

@inline(__always) func lower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b }

/// Whether the path of a request target has a segment that is "." or ".." (each dot also
/// percent-encoded, `%2e`), which resolves differently on different hops.
func hasDotSegment(_ t: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = HTTPHead.pathStart(t, n)
    while i < n, t[i] != UInt8(ascii: "?") {
        // At a segment start (just after a "/"): count its dots until the next "/", "?" or end.
        guard t[i] == slash else { i += 1; continue }
        i += 1
        var dots = 0, other = false
        while i < n, t[i] != slash, t[i] != UInt8(ascii: "?") {
            if t[i] == UInt8(ascii: ".") { dots += 1; i += 1 }
            else if t[i] == UInt8(ascii: "%"), i + 2 < n, t[i + 1] == UInt8(ascii: "2"), lower(t[i + 2]) == UInt8(ascii: "e") { dots += 1; i += 3 }
            else { other = true; i += 1 }
        }
        if !other && (dots == 1 || dots == 2) { return true }
    }
    return false
}

/// Compares `n` bytes at `p` with a lowercase ASCII literal, ignoring the case of `p`.
@inline(__always)
public func equalsLowercase(_ p: UnsafePointer<UInt8>, _ n: Int, _ literal: StaticString) -> Bool {
    guard n == literal.utf8CodeUnitCount else { return false }
    let l = literal.utf8Start
    for k in 0..<n where lower(p[k]) != l[k] { return false }
    return true
}

@inline(__always)
func equalsIgnoringCase(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    for k in 0..<n where lower(a[k]) != lower(b[k]) { return false }
    return true
}

/// Whether a name equals a lowercase dashed literal once underscores are read as dashes
/// (only called after the exact comparison failed, so it matches names with an underscore).
@inline(__always)
func equalsForwardingLookalike(_ p: UnsafePointer<UInt8>, _ n: Int, _ literal: StaticString) -> Bool {
    guard n == literal.utf8CodeUnitCount else { return false }
    let l = literal.utf8Start
    for k in 0..<n {
        let b = p[k] == UInt8(ascii: "_") ? UInt8(ascii: "-") : lower(p[k])
        if b != l[k] { return false }
    }
    return true
}

func classify(_ p: UnsafePointer<UInt8>, _ n: Int) -> KnownHeader {
    switch n {
    case 2: return equalsLowercase(p, n, "te") ? .te : .other
    case 4: return equalsLowercase(p, n, "host") ? .host : .other
    case 6: return equalsLowercase(p, n, "expect") ? .expect : .other
    case 7:
        if equalsLowercase(p, n, "upgrade") { return .upgrade }
        if equalsLowercase(p, n, "trailer") { return .trailer }
        return .other
    case 10:
        if equalsLowercase(p, n, "connection") { return .connection }
        if equalsLowercase(p, n, "keep-alive") { return .keepAlive }
        return .other
    case 12: return equalsLowercase(p, n, "x-request-id") ? .xRequestID : .other
    case 14: return equalsLowercase(p, n, "content-length") ? .contentLength : .other
    case 15:
        if equalsLowercase(p, n, "x-forwarded-for") { return .xForwardedFor }
        return equalsForwardingLookalike(p, n, "x-forwarded-for") ? .xForwardedLookalike : .other
    case 16:
        if equalsLowercase(p, n, "proxy-connection") { return .proxyConnection }
        if equalsLowercase(p, n, "x-forwarded-host") { return .xForwardedHost }
        return equalsForwardingLookalike(p, n, "x-forwarded-host") ? .xForwardedLookalike : .other
    case 17:
        if equalsLowercase(p, n, "transfer-encoding") { return .transferEncoding }
        if equalsLowercase(p, n, "x-forwarded-proto") { return .xForwardedProto }
        return equalsForwardingLookalike(p, n, "x-forwarded-proto") ? .xForwardedLookalike : .other
    default: return .other
    }
}

func classifyMethod(_ p: UnsafePointer<UInt8>, _ n: Int) -> HTTPMethod {
    // Methods are case-sensitive (RFC 9110 section 9.1).
    func eq(_ s: StaticString) -> Bool {
        guard n == s.utf8CodeUnitCount else { return false }
        let l = s.utf8Start
        for k in 0..<n where p[k] != l[k] { return false }
        return true
    }
    switch n {
    case 3: return eq("GET") ? .get : eq("PUT") ? .put : .other
    case 4: return eq("HEAD") ? .head : eq("POST") ? .post : .other
    case 5: return eq("PATCH") ? .patch : eq("TRACE") ? .trace : .other
    case 6: return eq("DELETE") ? .delete : .other
    case 7: return eq("OPTIONS") ? .options : eq("CONNECT") ? .connect : .other
    default: return .other
    }
}
