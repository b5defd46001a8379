import Testing
@testable import SwitchyardHTTP

/// Parses `text` as a request head and returns the result with the head.
func parseRequest(_ text: String, limits: HTTPLimits = HTTPLimits()) -> (HeadParseResult, HTTPHead) {
    let head = HTTPHead(maxHeaders: limits.maxHeaders)
    let bytes = Array(text.utf8)
    let result = bytes.withUnsafeBytes { HTTPParser.parseRequest($0, into: head, limits: limits) }
    return (result, head)
}

func parseResponse(_ text: String) -> (HeadParseResult, HTTPHead) {
    let head = HTTPHead(maxHeaders: 100)
    let bytes = Array(text.utf8)
    let result = bytes.withUnsafeBytes { HTTPParser.parseResponse($0, into: head, limits: HTTPLimits()) }
    return (result, head)
}

func status(of result: HeadParseResult) -> Int? {
    if case .failure(let e) = result { return e.status }
    return nil
}

@Suite("Request parsing")
struct RequestParsingTests {
    @Test func simpleGet() {
        let (r, head) = parseRequest("GET /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nX-Thing:  v  \r\n\r\n")
        #expect(r == .complete)
        #expect(head.method == .get)
        #expect(head.version == .http11)
        #expect(head.fieldCount == 2)
        #expect(head.hostIndex == 0)
        #expect(head.fields[1].valueLength == 1) // surrounding whitespace trimmed
        #expect(head.requestFraming == .none)
        #expect(head.wantsKeepAlive)
    }

    @Test func incompleteHeadWaits() {
        #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\n").0 == .incomplete)
        #expect(parseRequest("GET / HTT").0 == .incomplete)
    }

    @Test func keepAliveRules() {
        #expect(!parseRequest("GET / HTTP/1.0\r\n\r\n").1.wantsKeepAlive)
        #expect(parseRequest("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").1.wantsKeepAlive)
        #expect(!parseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").1.wantsKeepAlive)
        #expect(!parseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n").1.wantsKeepAlive)
    }

    @Test func framing() {
        #expect(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").1.requestFraming == .contentLength(12))
        #expect(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n").1.requestFraming == .contentLength(5))
        #expect(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").1.requestFraming == .chunked)
    }

    @Test func connectionNamesHopByHopFields() {
        let (r, head) = parseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret, upgrade\r\nX-Secret: 1\r\nUpgrade: websocket\r\n\r\n")
        #expect(r == .complete)
        #expect(head.fields[2].namedByConnection)
        #expect(head.isUpgradeRequest)
    }

    // Each malformed input and the status it must get.
    static let rejected: [(String, Int)] = [
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nBad[Name]: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\u{1}b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n", 400),
        ("GET / HTTP/1.1\nHost: a\n\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
        ("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /\u{7f} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET nothing HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
        ("GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417),
        ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ]

    @Test(arguments: 0..<rejected.count)
    func malformedRequestIsRejected(_ index: Int) {
        let (input, expected) = Self.rejected[index]
        #expect(status(of: parseRequest(input).0) == expected, "input: \(input.debugDescription)")
    }

    @Test func limits() {
        let limits = HTTPLimits(maxRequestLine: 100, maxHeaderBytes: 1024, maxHeaders: 10)
        let longLine = "GET /" + String(repeating: "a", count: 200) + " HTTP/1.1\r\nHost: a\r\n\r\n"
        #expect(status(of: parseRequest(longLine, limits: limits).0) == 414)
        // Line not yet complete but already too long: refuse without waiting.
        #expect(status(of: parseRequest("GET /" + String(repeating: "a", count: 200), limits: limits).0) == 414)
        let manyHeaders = "GET / HTTP/1.1\r\nHost: a\r\n" + (0..<20).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        #expect(status(of: parseRequest(manyHeaders, limits: limits).0) == 431)
        let bigHeader = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 2000) + "\r\n\r\n"
        #expect(status(of: parseRequest(bigHeader, limits: limits).0) == 431)
        let bigIncomplete = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 2000)
        #expect(status(of: parseRequest(bigIncomplete, limits: limits).0) == 431)
    }

    @Test func leadingEmptyLinesAreIgnored() {
        #expect(parseRequest("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").0 == .complete)
    }

    @Test func absoluteFormTargetIsRewritten() {
        let text = "GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
        let (r, head) = parseRequest(text)
        #expect(r == .complete)
        let bytes = Array(text.utf8)
        let path = bytes.withUnsafeBufferPointer { head.pathRange(source: $0.baseAddress!) }
        #expect(String(decoding: bytes[path.start..<path.start + path.length], as: UTF8.self) == "/x")
    }
}

@Suite("Response parsing")
struct ResponseParsingTests {
    @Test func framingRules() {
        let (r, head) = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        #expect(r == .complete)
        #expect(head.responseFraming(requestMethod: .get) == .contentLength(10))
        #expect(head.responseFraming(requestMethod: .head) == .none)
        #expect(parseResponse("HTTP/1.1 204 No Content\r\n\r\n").1.responseFraming(requestMethod: .get) == .none)
        #expect(parseResponse("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n").1.responseFraming(requestMethod: .get) == .none)
        #expect(parseResponse("HTTP/1.1 200 OK\r\n\r\n").1.responseFraming(requestMethod: .get) == .untilClose)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").1.responseFraming(requestMethod: .get) == .chunked)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").1.responseFraming(requestMethod: .get) == .untilClose)
        #expect(parseResponse("HTTP/1.1 200\r\n\r\n").0 == .complete) // empty reason phrase
    }

    static let rejected = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 5\n\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "HTTP/1.1 099 Odd\r\n\r\n",
    ]

    @Test(arguments: 0..<rejected.count)
    func malformedResponseIs502(_ index: Int) {
        #expect(status(of: parseResponse(Self.rejected[index]).0) == 502, "input: \(Self.rejected[index].debugDescription)")
    }
}

@Suite("Chunked bodies")
struct ChunkedTests {
    func scan(_ text: String, split: Int? = nil) -> (consumed: Int, ended: Bool, error: String?) {
        var scanner = ChunkedScanner()
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { p in
            guard let split else {
                let r = scanner.scan(p.baseAddress!, count: p.count)
                return (r.consumed, r.ended, r.error?.description)
            }
            let a = scanner.scan(p.baseAddress!, count: split)
            if let e = a.error { return (a.consumed, false, e.description) }
            let b = scanner.scan(p.baseAddress! + split, count: p.count - split)
            return (a.consumed + b.consumed, b.ended, b.error?.description)
        }
    }

    @Test func wholeBodyWithTrailers() {
        let body = "5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n"
        let r = scan(body + "GET / HTTP/1.1\r\n")
        #expect(r.error == nil)
        #expect(r.ended)
        #expect(r.consumed == body.utf8.count) // stops exactly at the end of the body
    }

    @Test func splitAnywhere() {
        let body = "5\r\nhello\r\n0\r\n\r\n"
        for split in 1..<body.utf8.count {
            let r = scan(body, split: split)
            #expect(r.ended && r.error == nil && r.consumed == body.utf8.count, "split at \(split)")
        }
    }

    @Test(arguments: ["zz\r\n", "5\r\nhelloXX", "5\nhello\r\n", "fffffffffffffffff\r\n", "\r\n", "5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",
                      "-1\r\n", "5\r\nhello\r\n0\r\n\n"])
    func invalidFramingIsRefused(_ input: String) {
        #expect(scan(input).error != nil)
    }

    /// RFC 9112 7.1: the size is hex digits only; whitespace may stand before `;` alone; an
    /// extension is a token, optionally `=` a token or a quoted string.
    @Test(arguments: ["5 5\r\n", "5\t5\r\n", "5 \r\n", "5;\r\n", "5;a b\r\n", "5;=x\r\n", "5;a=\r\n", "5;a=\"x\r\n",
                      "5;a=b c\r\n", "5;a=\"x\" y\r\n", "0x5\r\n", "+5\r\n", "5;a=\"\u{1}\"\r\n", "5;a=b \r\n", "5;a@b\r\n"])
    func chunkSizeLinesOutsideTheGrammarAreRefused(_ line: String) {
        #expect(scan(line + "hello\r\n0\r\n\r\n").error != nil, "\(line.debugDescription)")
    }

    @Test(arguments: ["5\r\n", "5;a\r\n", "5;a=b\r\n", "5 ;a\r\n", "5\t; a = b ; c\r\n", "5;a=\"q\\\"x y\"\r\n", "5;a=\"x\" ;b\r\n",
                      "005;a=b;c=d\r\n", "5;a=\"\"\r\n"])
    func chunkSizeLinesInTheGrammarAreAccepted(_ line: String) {
        let body = line + "hello\r\n0\r\n\r\n"
        for split in 1..<body.utf8.count {
            let r = scan(body, split: split)
            #expect(r.error == nil && r.ended && r.consumed == body.utf8.count, "\(line.debugDescription) split at \(split): \(r.error ?? "")")
        }
    }

    @Test func dechunkReportsDataSpans() {
        var scanner = ChunkedScanner()
        let bytes = Array("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".utf8)
        var data = [UInt8]()
        bytes.withUnsafeBufferPointer { p in
            var offset = 0
            loop: while offset < p.count {
                switch scanner.next(p.baseAddress! + offset, count: p.count - offset) {
                case .framing(let c): offset += c
                case .data(let c): data += p[offset..<offset + c]; offset += c
                case .end: break loop
                case .failure: Issue.record("unexpected failure"); break loop
                }
            }
        }
        #expect(String(decoding: data, as: UTF8.self) == "abcde")
    }
}

@Suite("Head writing")
struct HeadWriterTests {
    @Test func upstreamRequestDropsHopByHopAndAddsForwarding() {
        let text = "GET /p HTTP/1.1\r\nHost: site\r\nConnection: keep-alive, x-drop\r\nKeep-Alive: 5\r\nX-Drop: 1\r\nTE: trailers\r\nProxy-Connection: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Keep: yes\r\n\r\n"
        let (r, head) = parseRequest(text)
        #expect(r == .complete)
        let out = UnsafeMutablePointer<UInt8>.allocate(capacity: 4096)
        defer { out.deallocate() }
        var w = ByteWriter(base: out, capacity: 4096)
        let bytes = Array(text.utf8)
        let ip = Array("192.0.2.7".utf8), id = Array("abc".utf8)
        bytes.withUnsafeBufferPointer { src in
            ip.withUnsafeBufferPointer { ipp in
                id.withUnsafeBufferPointer { idp in
                    let info = ForwardingInfo(clientAddress: ipp, scheme: "http", requestID: idp, requestIDGenerated: true,
                                              fallbackHost: UnsafeBufferPointer(start: nil, count: 0))
                    HeadWriter.writeUpstreamRequest(head, source: src.baseAddress!, info: info, into: &w)
                }
            }
        }
        let result = String(decoding: UnsafeBufferPointer(start: out, count: w.count), as: UTF8.self)
        #expect(result == "GET /p HTTP/1.1\r\nHost: site\r\nX-Keep: yes\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: site\r\nX-Request-Id: abc\r\n\r\n")
    }
}

/// Heads that arrive a few bytes at a time are parsed with a `HeadScan` that remembers what
/// was checked; every step must give exactly what parsing the same bytes from scratch gives.
@Suite("Heads arriving in pieces")
struct IncrementalParsingTests {
    static let limits = HTTPLimits(maxRequestLine: 100, maxHeaderBytes: 400, maxHeaders: 10)

    static let inputs: [String] = RequestParsingTests.rejected.map(\.0) + [
        "GET /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nX-Thing:  v  \r\n\r\n",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\n",
        "\r\n\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \u{0}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: late NUL here" + String(repeating: "v", count: 50) + "\u{0}",
        "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 300) + "\nY: 1\r\n\r\n",
        "GET /" + String(repeating: "a", count: 150) + " HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 500) + "\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n" + (0..<12).map { "X-\($0): v\r\n" }.joined() + "\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: b\r\n\r\n",
    ]

    struct Outcome: Equatable {
        var result: HeadParseResult
        var headLength = 0, fieldCount = 0, hostIndex = -1, targetStart: Int32 = 0, targetLength: Int32 = 0
        init(_ result: HeadParseResult, _ head: HTTPHead) {
            self.result = result
            if result == .complete {
                headLength = head.headLength; fieldCount = head.fieldCount; hostIndex = head.hostIndex
                targetStart = head.targetStart; targetLength = head.targetLength
            }
        }
    }

    /// Feeds `bytes` in pieces of the given sizes (cycled); after each piece compares the
    /// incremental result with a fresh parse of the same bytes. Consumes complete heads, as a
    /// connection does with pipelined requests.
    static func check(_ bytes: [UInt8], pieces: [Int]) -> Bool {
        let head = HTTPHead(maxHeaders: limits.maxHeaders), fresh = HTTPHead(maxHeaders: limits.maxHeaders)
        var scan = HeadScan()
        var start = 0, end = 0, piece = 0
        while end < bytes.count {
            end = min(bytes.count, end + pieces[piece % pieces.count])
            piece += 1
            while start < end {
                let window = Array(bytes[start..<end])
                let incremental = window.withUnsafeBytes {
                    Outcome(HTTPParser.parseRequest($0, into: head, limits: limits, scan: &scan), head)
                }
                let expected = window.withUnsafeBytes {
                    Outcome(HTTPParser.parseRequest($0, into: fresh, limits: limits), fresh)
                }
                if incremental != expected { return false }
                guard incremental.result == .complete else {
                    if incremental.result != .incomplete { return true } // refused: the connection ends here
                    break
                }
                start += incremental.headLength
            }
        }
        return true
    }

    @Test(arguments: 0..<inputs.count)
    func pieceByPieceMatchesAFreshParse(_ index: Int) {
        let bytes = Array(Self.inputs[index].utf8)
        for pieces in [[1], [2], [3, 1], [7, 1, 1], [64]] {
            #expect(Self.check(bytes, pieces: pieces), "input \(Self.inputs[index].debugDescription), pieces \(pieces)")
        }
    }

    @Test func aSlowHeadIsCheckedOnce() {
        // Byte by byte, every attempt resumes where the previous one stopped.
        let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nX: vvvv\r\n".utf8)
        var scan = HeadScan()
        let head = HTTPHead(maxHeaders: 10)
        for n in 1...bytes.count {
            let r = Array(bytes[0..<n]).withUnsafeBytes { HTTPParser.parseRequest($0, into: head, limits: HTTPLimits(), scan: &scan) }
            #expect(r == .incomplete)
            #expect(scan.checked == n)
        }
        let whole = bytes + Array("\r\n".utf8)
        let r = whole.withUnsafeBytes { HTTPParser.parseRequest($0, into: head, limits: HTTPLimits(), scan: &scan) }
        #expect(r == .complete)
        #expect(head.headLength == whole.count)
        #expect(scan.checked == 0, "a complete head leaves a fresh scan for the next one")
    }
}

/// Field values are checked eight bytes at a time; these compare that with the rule read
/// byte by byte (RFC 9110 field-value: visible characters, obs-text, space and tab).
@Suite("Field value checking")
struct FieldValueCheckingTests {
    static func isControl(_ b: UInt8) -> Bool { b < 0x20 || b == 0x7F }

    @Test func everyByteValueInEveryPositionOfAWord() {
        for position in 0..<8 {
            for value in 0...255 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                bytes[position] = UInt8(value)
                let word = UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
                let mask = HTTPParser.controlByteMask(word)
                #expect((mask != 0) == Self.isControl(UInt8(value)), "byte \(value) at \(position)")
                if mask != 0 { #expect(mask.trailingZeroBitCount / 8 == position, "byte \(value) at \(position)") }
            }
        }
    }

    @Test func randomWordsAgreeWithTheByteRule() {
        var random = SystemRandomNumberGenerator()
        let interesting: [UInt8] = [0x00, 0x01, 0x09, 0x0D, 0x1F, 0x20, 0x21, 0x7E, 0x7F, 0x80, 0x81, 0xA0, 0xFF]
        for _ in 0..<50_000 {
            let bytes = (0..<8).map { _ in Bool.random(using: &random) ? interesting.randomElement(using: &random)! : UInt8.random(in: 0...255, using: &random) }
            let word = UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            let mask = HTTPParser.controlByteMask(word)
            // The lowest mark is the first control byte; none when there is none.
            let first = bytes.firstIndex(where: Self.isControl)
            #expect((mask == 0 ? nil : mask.trailingZeroBitCount / 8) == first, "bytes \(bytes)")
        }
    }

    /// Whole heads with random values: accepted exactly when every value byte is allowed.
    @Test func randomValuesAreAcceptedExactlyWhenEveryByteIsAllowed() {
        var random = SystemRandomNumberGenerator()
        // No LF: a CR followed by LF would start another line, which is not what is tested here.
        let special: [UInt8] = [0x00, 0x01, 0x09, 0x0D, 0x1F, 0x20, 0x7E, 0x7F, 0x80, 0xFF]
        let head = HTTPHead(maxHeaders: 16)
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...40, using: &random)
            let value: [UInt8] = (0..<length).map { _ in
                Int.random(in: 0..<10, using: &random) == 0 ? special.randomElement(using: &random)! : UInt8.random(in: 0x61...0x7A, using: &random)
            }
            let request = Array("GET / HTTP/1.1\r\nHost: a\r\nX: ".utf8) + value + Array("\r\nY: b\r\n\r\n".utf8)
            // Allowed: no control byte but tab; a CR is never followed by LF inside the value.
            let allowed = !value.contains { Self.isControl($0) && $0 != 0x09 }
            let result = request.withUnsafeBytes { HTTPParser.parseRequest($0, into: head, limits: HTTPLimits()) }
            #expect((result == .complete) == allowed, "value \(value)")
            if result == .complete {
                let f = head.fields[1]
                var trimmed = value[...]
                while let first = trimmed.first, first == 0x20 || first == 0x09 { trimmed = trimmed.dropFirst() }
                while let last = trimmed.last, last == 0x20 || last == 0x09 { trimmed = trimmed.dropLast() }
                #expect(Array(request[Int(f.valueStart)..<Int(f.valueStart + f.valueLength)]) == Array(trimmed), "value \(value)")
                #expect(head.fieldCount == 3)
            }
        }
    }
}
