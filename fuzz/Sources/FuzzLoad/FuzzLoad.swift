// Fuzz target: the `X-Switchyard-Load` header parser (`ReportedLoad`) on arbitrary text.
// The header comes from upstream instances, so besides never trapping, what it yields must
// stay in the documented ranges: anything else is ignored, never clamped into effect.
import SwitchyardConfig

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    let load = ReportedLoad.parse(text)
    if let cpu = load.cpu { precondition((0...1).contains(cpu), "cpu \(cpu) from \(text.debugDescription)") }
    if let memory = load.memory { precondition((0...1).contains(memory), "memory \(memory) from \(text.debugDescription)") }
    if let weight = load.weightPercent { precondition((0...100).contains(weight), "weight \(weight) from \(text.debugDescription)") }
    return 0
}
