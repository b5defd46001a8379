import Testing
@testable import SwitchyardConfig

/// `address: app.internal:8080`, `resolvers` and `resolve`.
@Suite("Server names")
struct ServerNameTests {
    func config(_ servers: String, pool: String = "", top: String = "") -> String {
        """
        listeners: [{ bind: 127.0.0.1:8080 }]
        \(top)
        pools:
          app:
        \(pool)
            servers:
        \(servers)
        services: { web: { active: app } }
        """
    }

    @Test func namesAreServersOfTheirOwn() throws {
        let c = try ConfigLoader.parse(yaml: config("""
              - address: App.Internal:8080
              - { name: api, address: "api.internal.:9000", weight: 40 }
              - address: 10.0.0.1:8080
              - address: localhost:8081
              - address: my_service:80
        """), file: "t.yaml")
        let pool = try #require(c.pools.first)
        #expect(pool.servers.map(\.name) == ["10.0.0.1:8080", "127.0.0.1:8081"]) // localhost is an address, as before
        #expect(pool.namedServers == [
            NamedServerConfig(name: "app.internal:8080", target: HostAndPort(host: "app.internal", port: 8080), weight: 100),
            NamedServerConfig(name: "api", target: HostAndPort(host: "api.internal", port: 9000), weight: 40),
            NamedServerConfig(name: "my_service:80", target: HostAndPort(host: "my_service", port: 80), weight: 100),
        ])
        #expect(pool.hasServer(named: "api") && pool.hasServer(named: "10.0.0.1:8080") && !pool.hasServer(named: "web"))
        #expect(c.resolver == ResolverSettings()) // the system's resolver
        #expect(pool.resolve == ResolvePolicy())
        #expect(pool.resolve.interval == .seconds(10) && pool.resolve.family == .ipv4)
    }

    @Test func malformedNamesAreReportedWithTheirLine() {
        let p = problems(config("""
              - address: app..internal:8080
              - address: -app.internal:8080
              - address: app.internal:99999
              - address: 10.0.0.256:80
              - address: app.internal
              - address: fd00::1:80
              - address: "app internal:80"
              - address: app.123:80
              - address: \(String(repeating: "a", count: 64)).test:80
        """))
        #expect(p.map(\.keyPath) == (0..<9).map { "pools.app.servers[\($0)].address" })
        #expect(p.map(\.line) == Array(7...15))
        #expect(p[0].message.contains("host.name:port") && p[0].message.contains("labels"))
        #expect(p[2].message.contains("port must be a number from 1 to 65535"))
        #expect(p[3].message.contains("10.0.0.256 is not an IPv4 address"))
        #expect(p[4].message.contains("port is missing"))
        #expect(p[5].message.contains("IPv6 address in brackets"))
        #expect(p[0].description.hasPrefix("t.yaml:7:"))
    }

    @Test func aNameAndAnAddressCannotShareAServerName() {
        let p = problems(config("""
              - { name: a, address: app.internal:80 }
              - { name: a, address: 10.0.0.1:80 }
        """))
        #expect(p.count == 1 && p[0].message.contains("appears twice"))
    }

    @Test func resolversAndResolveSettingsAreRead() throws {
        let c = try ConfigLoader.parse(yaml: config("      - address: app.internal:80", pool: "    resolve: { interval: 2s, family: any }",
                                                    top: "resolvers: [127.0.0.1:5353, 10.0.0.53, \"[::1]:53\"]\nresolve: { interval: 30s, timeout: 250ms, family: ipv6 }"),
                                       file: "t.yaml")
        #expect(c.resolver.servers.map(\.description) == ["127.0.0.1:5353", "10.0.0.53:53", "[::1]:53"])
        #expect(c.resolver.timeout == .milliseconds(250))
        #expect(c.resolve.interval == .seconds(30) && c.resolve.family == .ipv6)
        #expect(c.pools[0].resolve.interval == .seconds(2) && c.pools[0].resolve.family == .any)
        // A pool without its own `resolve` takes the file's; one with some keys keeps the others.
        let inherited = try ConfigLoader.parse(yaml: config("      - address: app.internal:80", pool: "    resolve: { interval: 5s }",
                                                            top: "resolve: { family: any }"), file: "t.yaml")
        #expect(inherited.pools[0].resolve.interval == .seconds(5) && inherited.pools[0].resolve.family == .any)
    }

    @Test func resolveSettingsHaveLimits() {
        let p = problems(config("      - address: app.internal:80", pool: "    resolve: { interval: 500ms, timeout: 1s }",
                                top: "resolvers: [nowhere, 127.0.0.1:53, 127.0.0.1:53]\nresolve: { timeout: 50ms, family: ipv5 }"))
        #expect(p.map(\.keyPath).sorted() == ["pools.app.resolve.interval", "pools.app.resolve.timeout", "resolve.family",
                                              "resolve.timeout", "resolvers[0]", "resolvers[2]"])
        #expect(p.first { $0.keyPath == "pools.app.resolve.interval" }?.message.contains("at least 1s") == true)
        #expect(p.first { $0.keyPath == "pools.app.resolve.timeout" }?.message.contains("unknown key") == true)
        #expect(p.first { $0.keyPath == "resolvers[2]" }?.message.contains("twice") == true)
        #expect(problems(config("      - address: app.internal:80", top: "resolvers: []")).map(\.keyPath) == ["resolvers"])
    }

    @Test func hostNamesFollowTheRules() {
        for good in ["a", "app", "app.internal", "my_service", "a-b.c-d.example", "x1.y2", "xn--bcher-kva.example"] {
            #expect(HostAndPort.isHostName(Substring(good)), "\(good)")
        }
        for bad in ["", ".", "a.", ".a", "a..b", "-a", "a-", "a.-b", "1.2.3.4", "app.123", "a b", "a/b", "ä.test",
                    String(repeating: "a", count: 64), String(repeating: "a.", count: 127) + "ab"] {
            #expect(!HostAndPort.isHostName(Substring(bad)), "\(bad)")
        }
        #expect(HostAndPort(parsing: "App.Test.:80") == HostAndPort(host: "app.test", port: 80))
        #expect(HostAndPort(parsing: "app.test:0") == nil)
        #expect(HostAndPort(parsing: "app.test:+80") == nil)
        #expect(HostAndPort(parsing: "app.test:") == nil)
        #expect(HostAndPort(parsing: "app.test") == nil)
    }
}
