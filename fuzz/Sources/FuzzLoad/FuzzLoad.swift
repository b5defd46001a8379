// Fuzz target: the `X-Switchyard-Load` header parser of the health checker, on arbitrary text.
import SwitchyardConfig
@testable import SwitchyardProxy

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    HealthChecker.parseLoad(text, into: entry)
    return 0
}

nonisolated(unsafe) let entry = HealthChecker.ServerHealth(pool: "p", server: "s",
    address: SocketAddress(parsing: "127.0.0.1:8000") ?? SocketAddress(parsing: "[::1]:8000")!, healthy: true)
