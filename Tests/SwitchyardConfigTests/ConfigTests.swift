import Testing
@testable import SwitchyardConfig

func problems(_ yaml: String) -> [ConfigProblem] {
    do { _ = try ConfigLoader.parse(yaml: yaml, file: "t.yaml"); return [] } catch { return error.problems }
}

let validConfig = """
workers: 2
listeners:
  - bind: 127.0.0.1:8080
pools:
  blue:
    balance: least_request
    servers:
      - address: 127.0.0.1:9001
        weight: 100
      - { name: b2, address: "[::1]:9002", weight: 0 }
services:
  web:
    match: { hosts: [Example.com, "*.example.org"], path_prefix: /api }
    active: blue
  fallback:
    active: blue
access_log: off
limits: { max_header_bytes: 8192, max_headers: 50, max_connections: 100 }
timeouts: { client_header: 500ms, upstream_response: 1m }
"""

@Suite("Configuration")
struct ConfigTests {
    @Test func validConfigurationLoads() throws {
        let c = try ConfigLoader.parse(yaml: validConfig, file: "t.yaml")
        #expect(c.workers == 2)
        #expect(c.pools[0].balance == .leastRequest)
        #expect(c.pools[0].servers[1].address.family == .ipv6)
        #expect(c.pools[0].servers[0].name == "127.0.0.1:9001")
        #expect(c.services[0].match?.hosts == ["example.com", "*.example.org"])
        #expect(c.accessLog == .off)
        #expect(c.limits.maxHeaders == 50)
        #expect(c.timeouts.clientHeader == .milliseconds(500))
        #expect(c.timeouts.upstreamResponse == .seconds(60))
        #expect(c.timeouts.upstreamIdle == .seconds(60)) // default kept
    }

    @Test func unknownKeyNamesKeyAndLine() {
        let p = problems(validConfig.replacingOccurrences(of: "        weight: 100", with: "        wieght: 100"))
        #expect(p.count == 1)
        #expect(p[0].keyPath == "pools.blue.servers[0].wieght")
        #expect(p[0].line == 9)
        #expect(p[0].message.contains("unknown key"))
        #expect(p[0].description.hasPrefix("t.yaml:9:"))
    }

    @Test func weightOutOfRange() {
        let p = problems(validConfig.replacingOccurrences(of: "weight: 100", with: "weight: 1500"))
        #expect(p.map(\.keyPath) == ["pools.blue.servers[0].weight"])
        #expect(p[0].message.contains("0 to 1000"))
    }

    @Test func badAddress() {
        let p = problems(validConfig.replacingOccurrences(of: "127.0.0.1:9001", with: "127.0.0.300:9001"))
        #expect(p.map(\.keyPath) == ["pools.blue.servers[0].address"])
        #expect(problems(validConfig.replacingOccurrences(of: "127.0.0.1:9001", with: "127.0.0.1:70000")).count == 1)
        #expect(problems(validConfig.replacingOccurrences(of: "127.0.0.1:9001", with: "app..internal:80")).count == 1)
    }

    @Test func serviceNamingMissingPool() {
        let p = problems(validConfig.replacingOccurrences(of: "  fallback:\n    active: blue", with: "  fallback:\n    active: green"))
        #expect(p.map(\.keyPath) == ["services.fallback.active"])
        #expect(p[0].message.contains("green"))
        #expect(p[0].line == 16)
    }

    @Test func everyProblemIsReported() {
        let yaml = """
        listeners: [{ bind: nowhere }]
        pools: { p: { balance: fastest, servers: [{ address: 1.2.3.4:80, weight: -1 }] } }
        services: { s: { active: q } }
        timeouts: { client_idle: forever }
        """
        let paths = Set(problems(yaml).map(\.keyPath))
        #expect(paths == ["listeners[0].bind", "pools.p.balance", "pools.p.servers[0].weight", "services.s.active", "timeouts.client_idle"])
    }

    @Test func missingSectionsAndYAMLErrors() {
        #expect(Set(problems("workers: 1").map(\.keyPath)) == ["listeners", "pools", "services"])
        let p = problems("pools: [unclosed")
        #expect(p.count == 1 && p[0].message.hasPrefix("invalid YAML"))
        #expect(problems("").count == 1)
    }

    @Test func durations() {
        #expect(NodeReader.parseDuration("250ms") == .milliseconds(250))
        #expect(NodeReader.parseDuration("1.5s") == .milliseconds(1500))
        #expect(NodeReader.parseDuration("2m") == .seconds(120))
        #expect(NodeReader.parseDuration("1h") == .seconds(3600))
        #expect(NodeReader.parseDuration("7") == .seconds(7))
        #expect(NodeReader.parseDuration("soon") == nil)
    }
}

@Suite("Switching configuration")
struct SwitchingConfigTests {
    @Test func basisPoints() {
        #expect(BasisPoints.parse("2.5%") == 250)
        #expect(BasisPoints.parse("0.01%") == 1)
        #expect(BasisPoints.parse("100%") == 10000)
        #expect(BasisPoints.parse("0%") == 0)
        #expect(BasisPoints.parse("5") == nil)
        #expect(BasisPoints.parse("100.01%") == nil)
        #expect(BasisPoints.parse("0.001%") == nil)
        #expect(BasisPoints.parse("-1%") == nil)
        #expect(BasisPoints.format(250) == "2.5%")
        #expect(BasisPoints.format(1) == "0.01%")
        #expect(BasisPoints.format(500) == "5%")
    }

    @Test func servicesWithCanaryRulesAndPreview() throws {
        let yaml = """
        listeners: [{ bind: 127.0.0.1:1 }]
        pools: { blue: { servers: [{ address: 127.0.0.1:2 }] }, green: { servers: [{ address: 127.0.0.1:3 }] } }
        services:
          web:
            active: blue
            standby: green
            canary: { pool: green, weight: 2.5%, sticky: { header: X-User-Id } }
            rules:
              - { header: X-Canary, value: always, pool: green }
              - { cookie: canary, value: never, pool: blue }
        admin: { socket: /tmp/x.sock }
        state_file: /tmp/state.json
        """
        let c = try ConfigLoader.parse(yaml: yaml, file: "t")
        #expect(c.services[0].canary == CanaryConfig(pool: "green", weight: 250, sticky: .header("X-User-Id")))
        #expect(c.services[0].rules.count == 2)
        #expect(c.services[0].rules[1].kind == .cookie)
        #expect(c.admin?.socket == "/tmp/x.sock")
        #expect(c.stateFile == "/tmp/state.json")
    }

    @Test func switchingProblemsAreReported() {
        let yaml = """
        listeners: [{ bind: 127.0.0.1:1 }]
        pools: { blue: { servers: [{ address: 127.0.0.1:2 }] } }
        services:
          web:
            active: blue
            standby: teal
            preview: { header: X-P, value_file: /nonexistent/token }
            canary: { pool: blue, weight: 12, sticky: { cookie: a, header: b } }
            rules: [{ header: X, cookie: Y, value: v, pool: blue }]
        """
        let paths = Set(problems(yaml).map(\.keyPath))
        #expect(paths == ["services.web.standby", "services.web.preview.value_file", "services.web.canary.weight",
                          "services.web.canary.sticky", "services.web.rules[0]"])
    }

    @Test func canaryGuardIsReadWithDefaultsAndChecked() throws {
        func yaml(_ guardText: String) -> String {
            """
            listeners: [{ bind: 127.0.0.1:1 }]
            pools: { blue: { servers: [{ address: 127.0.0.1:2 }] }, green: { servers: [{ address: 127.0.0.1:3 }] } }
            services:
              web:
                active: blue
                canary: { pool: green, weight: 5%, guard: \(guardText) }
            """
        }
        let c = try ConfigLoader.parse(yaml: yaml("{ max_error_rate: 20% }"), file: "t")
        #expect(c.services[0].canary?.guardrail == CanaryGuard(maxErrorRate: 2000, minRequests: 20, windowMilliseconds: 10_000))
        let full = try ConfigLoader.parse(yaml: yaml("{ max_error_rate: 50%, min_requests: 5, window: 3s }"), file: "t")
        #expect(full.services[0].canary?.guardrail == CanaryGuard(maxErrorRate: 5000, minRequests: 5, windowMilliseconds: 3000))
        #expect(Set(problems(yaml("{ min_requests: 0, window: 10ms, typo: 1 }")).map(\.keyPath)) ==
                ["services.web.canary.guard.min_requests", "services.web.canary.guard.window", "services.web.canary.guard.typo",
                 "services.web.canary.guard.max_error_rate"])
    }
}
