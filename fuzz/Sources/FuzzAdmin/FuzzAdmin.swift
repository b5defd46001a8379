// Fuzz target: admin API request bodies. Arbitrary bytes go through the admin server's own
// decoding (`AdminBody.object`) and every request type built from a body; the raw text also
// goes straight to the duration, percentage and address parsers. Whatever is accepted must
// be within the documented ranges.
import SwitchyardAdminAPI
import SwitchyardConfig

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    let text = String(decoding: bytes, as: UTF8.self)
    checkText(text)
    guard let body = try? AdminBody.object(from: Array(bytes)) else { return 0 }
    // PUT /v1/services/NAME/canary
    if let change = try? AdminBody.CanaryChange(body) {
        precondition((0...BasisPoints.whole).contains(change.weight), "canary weight \(change.weight)")
        if case .some(.some(let g)) = change.guardrail {
            precondition((1...BasisPoints.whole).contains(g.maxErrorRate), "guard max_error_rate \(g.maxErrorRate)")
            precondition((1...1_000_000).contains(g.minRequests), "guard min_requests \(g.minRequests)")
            precondition((100...DurationText.maximumMilliseconds).contains(g.windowMilliseconds), "guard window \(g.windowMilliseconds)")
        }
    }
    // PUT /v1/services/NAME/rules, POST /v1/services/NAME/flip
    _ = try? AdminBody.rules(body)
    _ = try? AdminBody.flipTarget(body)
    // PUT /v1/pools/NAME/servers/NAME
    if let change = try? AdminBody.ServerChange(body) {
        precondition(change.weight != nil || change.state != nil, "a server change that changes nothing")
        if let w = change.weight { precondition((0...ServerConfig.maxWeight).contains(w), "server weight \(w)") }
    }
    // POST /v1/pools/NAME/servers
    if let server = try? AdminBody.NewServer(body) {
        precondition((0...ServerConfig.maxWeight).contains(server.weight), "new server weight \(server.weight)")
    }
    // POST /v1/lock
    if let lock = try? AdminBody.LockRequest(body) {
        precondition(!lock.owner.isEmpty, "lock without owner")
        precondition((1...DurationText.maximumMilliseconds).contains(lock.ttl.milliseconds), "lock ttl \(lock.ttl)")
    }
    // Every string and number anywhere in the body through the field parsers.
    for value in body.values {
        if let string = value as? String { checkText(string) }
        _ = try? AdminBody.weight(value)
        _ = AdminBody.wholeNumber(value, 0...ServerConfig.maxWeight)
    }
    return 0
}

func checkText(_ text: String) {
    if let d = DurationText.parse(text) {
        precondition((0...DurationText.maximumMilliseconds).contains(d.milliseconds), "duration \(d) from \(text.debugDescription)")
    }
    precondition(!(DurationText.isTooLong(text) && DurationText.parse(text) != nil), "too long but accepted: \(text.debugDescription)")
    if let bp = BasisPoints.parse(text) {
        precondition((0...BasisPoints.whole).contains(bp), "basis points \(bp) from \(text.debugDescription)")
        precondition(BasisPoints.parse(BasisPoints.format(bp)) == bp, "\(bp) does not survive format and parse")
    }
    if let address = SocketAddress(parsing: text) {
        precondition(SocketAddress(parsing: address.description) == address, "\(text.debugDescription) does not survive description and parse")
    }
}
