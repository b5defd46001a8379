// Fuzz target: the rollout plan loader on arbitrary text.
import SwitchyardDeploy

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    guard let plan = try? PlanLoader.parse(yaml: text, file: "fuzz.yaml") else { return 0 }
    // What `deploy check` prints about an accepted plan.
    for environment in plan.environments { _ = environment.admin.description }
    for target in plan.notify { _ = target.resolvedURL(environment: [:]) }
    return 0
}
