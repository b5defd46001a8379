// swift-tools-version:6.1
import PackageDescription

/// The request path runs millions of times a second on one thread per worker; Swift's
/// dynamic exclusivity checks cost about 6% there (measured with perf). Debug builds keep them.
let hotPathSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Switchyard",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "switchyard", targets: ["switchyard"]),
        // For fuzz/Package.swift only (scripts/fuzz), which can link another package's products but
        // not its targets. An automatic library adds no build step to `swift build`.
        .library(name: "SwitchyardModules",
                 targets: ["SwitchyardConfig", "SwitchyardRouting", "SwitchyardAdminAPI", "SwitchyardDeploy", "SwitchyardDNS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // The console only (never linked into the data plane's code): its web service, one SQL layer
        // over SQLite and PostgreSQL, and SHA-256 for stored tokens (already pulled in by PostgresNIO).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/vapor/sql-kit", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit", from: "4.5.2"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.0"),
        .package(url: "https://github.com/vapor/postgres-kit", from: "2.17.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.30.1"),
        .package(url: "https://github.com/vapor/async-kit", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.9.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.14.0"),
    ],
    targets: [
        // Thin system-library modules: the only places that see C headers.
        .systemLibrary(name: "CLibevent", pkgConfig: "libevent_core",
                       providers: [.apt(["libevent-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        // gzip for scrapes (Prometheus asks for it).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // Process calls Swift cannot import (prctl is variadic); glibc's headers only.
        .systemLibrary(name: "CProcessControl"),

        // Pure Swift: no sockets, no libevent. Unit-tested directly.
        .target(name: "SwitchyardHTTP", swiftSettings: hotPathSettings),
        .target(name: "SwitchyardConfig", dependencies: [.product(name: "Yams", package: "Yams")]),
        // DNS messages: the queries the proxy sends and the answers it reads, for servers given
        // by name. Pure bytes in and out, so it is unit-tested byte by byte and fuzzed alone.
        .target(name: "SwitchyardDNS"),
        .target(name: "SwitchyardRouting", dependencies: ["SwitchyardConfig", "SwitchyardHTTP"], swiftSettings: hotPathSettings),
        // The admin API's contract: the endpoint table and its router, request and response
        // bodies, request validation, errors and metric names. Pure, so it is fuzzed and unit-tested alone.
        .target(name: "SwitchyardAdminAPI", dependencies: ["SwitchyardConfig", "SwitchyardRouting"]),
        // The console API's contract: the report protocol between runners and the console, and the
        // resources its API answers with. Pure Codable types, shared by the runner, the CLI and the console.
        .target(name: "SwitchyardConsoleAPI"),
        // The admin API's client: a blocking HTTP/1.1 client (Unix socket, TCP, TLS) and a typed
        // call per endpoint. Used by `switchyard ctl` and the orchestrator, never by the data plane.
        .target(name: "SwitchyardAdminClient", dependencies: ["SwitchyardAdminAPI", "SwitchyardConfig", "SwitchyardRouting", "COpenSSL"]),

        // The data plane: workers, connections, upstream pools.
        .target(name: "SwitchyardProxy",
                dependencies: ["CLibevent", "COpenSSL", "SwitchyardHTTP", "SwitchyardConfig", "SwitchyardRouting", "SwitchyardAdminAPI",
                               "SwitchyardDNS", "CZlib"],
                swiftSettings: hotPathSettings),

        // The demo/test upstream ("whoami"-style app), blocking sockets and threads on purpose.
        .target(name: "SwitchyardDemo", dependencies: ["SwitchyardHTTP"]),

        // The orchestrator: rollout plans, strategies, analysis, history and notifications.
        // It drives proxies only through their admin API, like any operator.
        .target(name: "SwitchyardDeploy", dependencies: ["SwitchyardConfig", "SwitchyardRouting", "SwitchyardAdminAPI", "SwitchyardAdminClient", "SwitchyardConsoleAPI", "CSQLite"]),

        // The deploy console: a long-running service where rollouts report and run, are controlled and
        // remembered, with its API, database, proxy watcher and web UI. Never imported by the data plane.
        .target(name: "SwitchyardConsole",
                dependencies: ["SwitchyardConsoleAPI", "SwitchyardDeploy", "SwitchyardAdminAPI", "SwitchyardAdminClient", "SwitchyardConfig",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "HummingbirdTLS", package: "hummingbird"),
                               .product(name: "HummingbirdCore", package: "hummingbird"),
                               .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "NIOPosix", package: "swift-nio"),
                               .product(name: "NIOSSL", package: "swift-nio-ssl"),
                               .product(name: "HTTPTypes", package: "swift-http-types"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "SQLKit", package: "sql-kit"),
                               .product(name: "SQLiteKit", package: "sqlite-kit"),
                               .product(name: "SQLiteNIO", package: "sqlite-nio"),
                               .product(name: "PostgresKit", package: "postgres-kit"),
                               .product(name: "PostgresNIO", package: "postgres-nio"),
                               .product(name: "AsyncKit", package: "async-kit"),
                               .product(name: "Crypto", package: "swift-crypto"),
                               .product(name: "Yams", package: "Yams")],
                resources: [.embedInCode("Web")]),

        .executableTarget(name: "switchyard",
                          dependencies: ["SwitchyardProxy", "SwitchyardConfig", "SwitchyardDemo", "SwitchyardDeploy", "SwitchyardConsole",
                                         "SwitchyardAdminAPI", "SwitchyardAdminClient", "SwitchyardConsoleAPI", "COpenSSL", "CProcessControl",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .testTarget(name: "SwitchyardHTTPTests", dependencies: ["SwitchyardHTTP"]),
        .testTarget(name: "SwitchyardConfigTests", dependencies: ["SwitchyardConfig"]),
        .testTarget(name: "SwitchyardRoutingTests", dependencies: ["SwitchyardRouting", "SwitchyardConfig", "SwitchyardHTTP"]),
        .testTarget(name: "SwitchyardDNSTests", dependencies: ["SwitchyardDNS"]),
        .testTarget(name: "SwitchyardDeployTests", dependencies: ["SwitchyardDeploy", "SwitchyardAdminAPI", "SwitchyardAdminClient", "SwitchyardConsoleAPI"]),
        .testTarget(name: "SwitchyardAdminAPITests", dependencies: ["SwitchyardAdminAPI", "SwitchyardConfig", "SwitchyardRouting",
                                                                    .product(name: "Yams", package: "Yams")]),
        .testTarget(name: "SwitchyardConsoleTests", dependencies: ["SwitchyardConsole", "SwitchyardConsoleAPI",
                                                                  .product(name: "Hummingbird", package: "hummingbird"),
                                                                  .product(name: "Yams", package: "Yams")]),
        // The command line's structure (every admin API endpoint has a ctl command) and its parsers:
        // the executable's own types, tested without starting it.
        .testTarget(name: "SwitchyardCLITests", dependencies: ["switchyard", "SwitchyardAdminAPI",
                                                               .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The DNS server the name-resolution tests start is a Python script; the monitoring
        // tests read the Prometheus rules and their unit tests with Yams.
        .testTarget(name: "IntegrationTests", dependencies: [.product(name: "Yams", package: "Yams")], exclude: ["Fixtures/dns_server.py"]),
    ]
)
