// libFuzzer target for scripts/fuzz: compiled together with Sources/SwitchyardHTTP (not a SwiftPM target).
// Fuzz target: the request and response parsers and the chunked scanner on arbitrary bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    let head = fuzzHead
    let limits = HTTPLimits(maxRequestLine: 512, maxHeaderBytes: 2048, maxHeaders: 16)
    if case .complete = HTTPParser.parseRequest(bytes, into: head, limits: limits) {
        // Everything the proxy derives from a parsed head must be safe to compute.
        _ = head.requestFraming
        _ = head.pathRange(source: start)
        let out = UnsafeMutablePointer<UInt8>.allocate(capacity: 8192)
        var w = ByteWriter(base: out, capacity: 8192)
        let empty = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
        HeadWriter.writeUpstreamRequest(head, source: start, info: ForwardingInfo(clientAddress: empty, scheme: "http",
            requestID: empty, requestIDGenerated: false, fallbackHost: empty), into: &w)
        out.deallocate()
        let rest = count - head.headLength
        if rest > 0, head.isChunked {
            var scanner = ChunkedScanner()
            _ = scanner.scan(start + head.headLength, count: rest)
        }
    }
    if case .complete = HTTPParser.parseResponse(bytes, into: head, limits: limits) {
        _ = head.responseFraming(requestMethod: .get)
        let out = UnsafeMutablePointer<UInt8>.allocate(capacity: 8192)
        var w = ByteWriter(base: out, capacity: 8192)
        HeadWriter.writeClientResponse(head, source: UnsafeMutablePointer(mutating: start), clientVersion: .http10, keepAlive: true,
            dechunk: true, tunnel: false, requestID: UnsafeBufferPointer(start: nil, count: 0), into: &w)
        out.deallocate()
    }
    var scanner = ChunkedScanner()
    var offset = 0
    while offset < count {
        switch scanner.next(start + offset, count: count - offset) {
        case .framing(let c), .data(let c): precondition(c > 0 && c <= count - offset); offset += c
        case .end(let c): precondition(c <= count - offset); offset = count
        case .failure: offset = count
        }
    }
    return 0
}

nonisolated(unsafe) let fuzzHead = HTTPHead(maxHeaders: 16)
