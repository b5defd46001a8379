/// Appends bytes into a fixed-capacity buffer that the caller owns. Running out of
/// room is reported, never grown: every buffer on the data path has a fixed size.
public struct ByteWriter {
    public let base: UnsafeMutablePointer<UInt8>
    public let capacity: Int
    public private(set) var count: Int = 0
    public private(set) var overflowed = false

    public init(base: UnsafeMutablePointer<UInt8>, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    @inline(__always)
    public mutating func append(_ p: UnsafePointer<UInt8>, _ n: Int) {
        guard n > 0 else { return }
        guard count + n <= capacity else { overflowed = true; return }
        UnsafeMutableRawPointer(base + count).copyMemory(from: p, byteCount: n)
        count += n
    }

    @inline(__always)
    public mutating func append(_ s: StaticString) {
        append(s.utf8Start, s.utf8CodeUnitCount)
    }

    @inline(__always)
    public mutating func append(byte: UInt8) {
        guard count < capacity else { overflowed = true; return }
        base[count] = byte
        count += 1
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { if let b = $0.baseAddress { append(b, $0.count) } }
    }

    /// Named apart from `append(_: StaticString)` on purpose: with two unlabelled overloads a
    /// literal binds to `String`, and every literal on the request path paid for a bridge.
    public mutating func append(string s: String) {
        var s = s
        s.withUTF8 { if let b = $0.baseAddress { append(b, $0.count) } }
    }

    public mutating func append(decimal value: Int) {
        var v = value
        if v < 0 { append(byte: UInt8(ascii: "-")); v = -v }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0) // 24 bytes of scratch
        withUnsafeMutableBytes(of: &digits) { raw in
            let d = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var n = 0
            repeat { d[23 - n] = UInt8(48 + v % 10); v /= 10; n += 1 } while v > 0
            append(UnsafePointer(d + 24 - n), n)
        }
    }

    public mutating func append(hex value: UInt64, width: Int) {
        guard count + width <= capacity else { overflowed = true; return }
        var shift = (width - 1) * 4
        while shift >= 0 {
            let d = UInt8(truncatingIfNeeded: (value >> UInt64(shift)) & 0xF)
            base[count] = d < 10 ? 48 + d : 87 + d
            count += 1
            shift -= 4
        }
    }
}

/// What the proxy adds to a request it forwards.
public struct ForwardingInfo {
    /// The client's address as text (bytes), for `X-Forwarded-For`.
    public var clientAddress: UnsafeBufferPointer<UInt8>
    /// `http` or `https`.
    public var scheme: StaticString
    /// The request id to send (the client's own, or one generated).
    public var requestID: UnsafeBufferPointer<UInt8>
    /// Whether the request id was generated (and so must be added as a header).
    public var requestIDGenerated: Bool
    /// `Host` to send when the client did not send one (HTTP/1.0).
    public var fallbackHost: UnsafeBufferPointer<UInt8>

    public init(clientAddress: UnsafeBufferPointer<UInt8>, scheme: StaticString,
                requestID: UnsafeBufferPointer<UInt8>, requestIDGenerated: Bool,
                fallbackHost: UnsafeBufferPointer<UInt8>) {
        self.clientAddress = clientAddress
        self.scheme = scheme
        self.requestID = requestID
        self.requestIDGenerated = requestIDGenerated
        self.fallbackHost = fallbackHost
    }
}

/// Builds the heads the proxy sends: requests to upstreams and responses to clients.
public enum HeadWriter {
    /// Writes the request head to send upstream: always HTTP/1.1, hop-by-hop fields
    /// removed (but `Upgrade` kept for upgrades), `X-Forwarded-*` and `X-Request-Id` set.
    public static func writeUpstreamRequest(_ head: HTTPHead, source: UnsafePointer<UInt8>,
                                            info: ForwardingInfo, into w: inout ByteWriter) {
        w.append(source + Int(head.methodStart), Int(head.methodLength))
        w.append(byte: sp)
        writeOriginFormTarget(head, source: source, into: &w)
        w.append(" HTTP/1.1\r\n")
        let upgrade = head.isUpgradeRequest
        var forwardedForCount = 0
        var run = FieldRun(head: head, source: source)
        for k in 0..<head.fieldCount {
            let f = head.fields[k]
            var keep = !f.namedByConnection
            switch f.kind {
            case .upgrade:
                keep = keep && upgrade
            case .connection, .keepAlive, .te, .trailer, .proxyConnection,
                 .xForwardedProto, .xForwardedHost, .xForwardedLookalike:
                keep = false
            case .xForwardedFor:
                forwardedForCount += 1
                keep = false
            default:
                break
            }
            run.field(k, kept: keep, into: &w)
        }
        run.flush(into: &w)
        if head.hostIndex < 0 {
            w.append("Host: ")
            append(info.fallbackHost, into: &w)
            w.append("\r\n")
        }
        // X-Forwarded-For: earlier hops first, then this client.
        w.append("X-Forwarded-For: ")
        if forwardedForCount > 0 {
            for k in 0..<head.fieldCount where head.fields[k].kind == .xForwardedFor {
                let f = head.fields[k]
                w.append(source + Int(f.valueStart), Int(f.valueLength))
                w.append(", ")
            }
        }
        append(info.clientAddress, into: &w)
        w.append("\r\nX-Forwarded-Proto: ")
        w.append(info.scheme)
        if head.hostIndex >= 0 {
            let host = head.fields[head.hostIndex]
            w.append("\r\nX-Forwarded-Host: ")
            w.append(source + Int(host.valueStart), Int(host.valueLength))
        }
        if info.requestIDGenerated {
            w.append("\r\nX-Request-Id: ")
            append(info.requestID, into: &w)
        }
        if upgrade { w.append("\r\nConnection: upgrade") }
        w.append("\r\n\r\n")
    }

    /// Writes the response head to send to the client.
    /// - Parameters:
    ///   - extraLines: complete header lines the proxy adds (e.g. `Set-Cookie`), CRLF-terminated.
    ///   - keepAlive: whether the client connection stays open after this response.
    ///   - dechunk: the body will be sent without chunked framing (HTTP/1.0 client).
    ///   - tunnel: a 101 response whose `Upgrade` must be kept.
    public static func writeClientResponse(_ head: HTTPHead, source: UnsafePointer<UInt8>,
                                           clientVersion: HTTPVersion, keepAlive: Bool,
                                           dechunk: Bool, tunnel: Bool,
                                           requestID: UnsafeBufferPointer<UInt8>,
                                           extraLines: UnsafeBufferPointer<UInt8> = UnsafeBufferPointer(start: nil, count: 0),
                                           into w: inout ByteWriter) {
        // Always 1.1: a server answers with the highest minor version it supports (RFC 9110 section 6.2).
        w.append("HTTP/1.1 ")
        w.append(decimal: head.statusCode)
        w.append(byte: sp)
        w.append(source + Int(head.reasonStart), Int(head.reasonLength))
        w.append("\r\n")
        var run = FieldRun(head: head, source: source)
        for k in 0..<head.fieldCount {
            let f = head.fields[k]
            var keep = !f.namedByConnection
            switch f.kind {
            case .upgrade:
                keep = keep && tunnel
            case .connection, .keepAlive, .te, .trailer, .proxyConnection:
                keep = false
            case .transferEncoding:
                keep = keep && !dechunk
            default:
                break
            }
            run.field(k, kept: keep, into: &w)
        }
        run.flush(into: &w)
        if head.statusCode >= 200 || tunnel {
            if head.requestIDIndex < 0, requestID.count > 0 {
                w.append("X-Request-Id: ")
                append(requestID, into: &w)
                w.append("\r\n")
            }
        }
        if head.statusCode >= 200 { append(extraLines, into: &w) }
        if tunnel {
            w.append("Connection: upgrade\r\n")
        } else if head.statusCode >= 200 {
            if !keepAlive { w.append("Connection: close\r\n") }
            else if clientVersion == .http10 { w.append("Connection: keep-alive\r\n") }
        }
        w.append("\r\n")
    }

    /// Writes a complete short plain-text response generated by the proxy itself.
    public static func writeErrorResponse(status: Int, detail: String, requestID: UnsafeBufferPointer<UInt8>,
                                          close: Bool, into w: inout ByteWriter) {
        let reason = reasonPhrase(status)
        var body = ByteWriter(base: .allocate(capacity: 512), capacity: 512)
        defer { body.base.deallocate() }
        body.append(decimal: status)
        body.append(byte: sp)
        body.append(string: reason)
        body.append(": ")
        body.append(string: detail)
        body.append(" (request id ")
        append(requestID, into: &body)
        body.append(")\n")

        w.append("HTTP/1.1 ")
        w.append(decimal: status)
        w.append(byte: sp)
        w.append(string: reason)
        w.append("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
        w.append(decimal: body.count)
        w.append("\r\nX-Request-Id: ")
        append(requestID, into: &w)
        w.append(close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n")
        w.append(UnsafePointer(body.base), body.count)
    }

    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 417: return "Expectation Failed"
        case 431: return "Request Header Fields Too Large"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Error"
        }
    }

    @inline(__always)
    static func writeField(_ f: HeaderField, source: UnsafePointer<UInt8>, into w: inout ByteWriter) {
        w.append(source + Int(f.nameStart), Int(f.nameLength))
        w.append(": ")
        w.append(source + Int(f.valueStart), Int(f.valueLength))
        w.append("\r\n")
    }

    @inline(__always)
    static func append(_ b: UnsafeBufferPointer<UInt8>, into w: inout ByteWriter) {
        if let p = b.baseAddress { w.append(p, b.count) }
    }

    /// Absolute-form targets (`http://host/path`) are sent upstream in origin form.
    static func writeOriginFormTarget(_ head: HTTPHead, source: UnsafePointer<UInt8>, into w: inout ByteWriter) {
        let t = source + Int(head.targetStart)
        let n = Int(head.targetLength)
        if t[0] == slash || t[0] == asterisk { w.append(t, n); return }
        let k = HTTPHead.pathStart(t, n) // skips "scheme://authority"
        if k >= n { w.append(byte: slash); return }
        if t[k] == UInt8(ascii: "?") { w.append(byte: slash) }
        w.append(t + k, n - k)
    }
}

/// Copies consecutive kept header lines with one append: lines are contiguous in the
/// parsed buffer, so a run of them is one range (original spelling and spacing kept).
struct FieldRun {
    let head: HTTPHead
    let source: UnsafePointer<UInt8>
    var runStart = -1

    init(head: HTTPHead, source: UnsafePointer<UInt8>) {
        self.head = head
        self.source = source
    }

    /// Start offset of field `k`'s line, or for `k == fieldCount` the final CRLF.
    @inline(__always) func lineStart(_ k: Int) -> Int {
        k < head.fieldCount ? Int(head.fields[k].nameStart) : head.headLength - 2
    }

    @inline(__always) mutating func field(_ k: Int, kept: Bool, into w: inout ByteWriter) {
        if kept {
            if runStart < 0 { runStart = k }
        } else if runStart >= 0 {
            let from = lineStart(runStart)
            w.append(source + from, lineStart(k) - from)
            runStart = -1
        }
    }

    @inline(__always) mutating func flush(into w: inout ByteWriter) {
        field(head.fieldCount, kept: false, into: &w)
    }
}

extension HTTPHead {
    /// The request path (target without the query), as offsets into the parsed buffer: the
    /// same bytes `writeOriginFormTarget` forwards. An absolute-form target without a path
    /// (`http://h?q`) has an empty range here; it is forwarded, and routed, as `/`.
    public func pathRange(source: UnsafePointer<UInt8>) -> (start: Int, length: Int) {
        let t = source + Int(targetStart)
        let n = Int(targetLength)
        let s = Self.pathStart(t, n)
        var e = s
        while e < n, t[e] != UInt8(ascii: "?") { e += 1 }
        return (Int(targetStart) + s, e - s)
    }

    /// Where the path starts in a target: 0 in origin form, after `scheme://authority` in
    /// absolute form (the authority ends at the first `/` or `?`).
    static func pathStart(_ t: UnsafePointer<UInt8>, _ n: Int) -> Int {
        guard n > 0, t[0] != slash, t[0] != asterisk else { return 0 }
        var s = 0
        while s < n, t[s] != colon { s += 1 }
        s += 3
        while s < n, t[s] != slash, t[s] != UInt8(ascii: "?") { s += 1 }
        return min(s, n)
    }
}
