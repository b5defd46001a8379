// swift-tools-version:6.0
import PackageDescription

/// libFuzzer targets for scripts/fuzz, kept out of the main package so that `swift build` and
/// `swift test` never see them. Each executable defines `LLVMFuzzerTestOneInput`; libFuzzer's own
/// `main` comes from `--sanitize=fuzzer`, hence `-parse-as-library`.
let fuzzSettings: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "SwitchyardFuzz",
    dependencies: [.package(name: "Switchyard", path: "..")],
    targets: ["FuzzConfig", "FuzzPlan", "FuzzLoad", "FuzzAdmin", "FuzzDNS"].map { name in
        .executableTarget(name: name, dependencies: [.product(name: "SwitchyardModules", package: "Switchyard")],
                          swiftSettings: fuzzSettings)
    }
)
