// Fuzz target: admin API request bodies. Arbitrary bytes go through the same JSON decoding as
// the admin server, then through every validator a body field reaches; the raw text also
// goes straight to the duration, percentage and address parsers.
import Foundation
import SwitchyardConfig
import SwitchyardRouting
@testable import SwitchyardProxy

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    let text = String(decoding: bytes, as: UTF8.self)
    _ = DurationText.parse(text)?.milliseconds
    _ = BasisPoints.parse(text)
    _ = SocketAddress(parsing: text)
    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)), let body = object as? [String: Any] else { return 0 }
    // PUT /v1/services/NAME/canary
    _ = try? AdminServer.weight(body["weight"])
    _ = try? AdminServer.sticky(body)
    _ = try? AdminServer.guardrail(body)
    // PUT /v1/services/NAME/rules
    _ = try? AdminServer.rules(body["rules"])
    // POST and PUT /v1/pools/NAME/servers
    if let state = body["state"] as? String { _ = ServerState(rawValue: state) }
    if let address = body["address"] as? String { _ = SocketAddress(parsing: address) }
    // POST /v1/lock
    if let ttl = body["ttl"] as? String { _ = DurationText.parse(ttl)?.milliseconds }
    for value in body.values {
        if let string = value as? String {
            _ = DurationText.parse(string)?.milliseconds
            _ = BasisPoints.parse(string)
        }
    }
    return 0
}
