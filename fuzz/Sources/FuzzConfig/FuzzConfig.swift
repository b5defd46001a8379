// Fuzz target: the proxy's configuration loader on arbitrary text, then the routing snapshot
// the proxy builds from every configuration it accepts.
import SwitchyardConfig
import SwitchyardRouting

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    guard let config = try? ConfigLoader.parse(yaml: text, file: "fuzz.yaml") else { return 0 }
    let snapshot = RoutingSnapshot(config: config, registry: ServerRegistry())
    let host: [UInt8] = Array("a.example.com".utf8), path: [UInt8] = Array("/api/x".utf8)
    host.withUnsafeBufferPointer { h in path.withUnsafeBufferPointer { p in _ = snapshot.route(host: h, path: p) } }
    return 0
}
