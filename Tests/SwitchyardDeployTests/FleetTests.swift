import Foundation
import SwitchyardAdminAPI
import SwitchyardConfig
import Testing
@testable import SwitchyardDeploy

/// The decisions behind environments with several proxies, batches and bakes that need no
/// proxy: the new plan keys, how a change moves a proxy's routing and how it is put back,
/// what counts as drift, how counters of several proxies add up, and how batches are cut.
@Suite struct FleetPlanTests {
    func problems(_ yaml: String) -> [String] {
        do { _ = try PlanLoader.parse(yaml: yaml, file: "p.yaml"); return [] } catch { return error.problems.map(\.description) }
    }

    func plan(_ yaml: String) throws -> DeployPlan { try PlanLoader.parse(yaml: yaml, file: "p.yaml") }

    static let analysis = "analysis: { max_error_rate: 1% }\n"

    @Test func anEnvironmentListsSeveralProxiesInAddressOrder() throws {
        let p = try plan("""
            service: web
            environments:
              - { name: stage, admin: "unix:///run/stage.sock", strategy: bluegreen }
              - name: prod
                admin: [ "https://lb2.internal:9901", "unix:///run/b.sock", "unix:///run/a.sock" ]
                strategy: canary
                steps: [ {weight: 10%} ]
            \(Self.analysis)
            """)
        #expect(p.environments[0].proxies == [.unix(path: "/run/stage.sock")], "a single address still works")
        #expect(p.environments[1].proxies.map(\.description) == ["https://lb2.internal:9901", "unix:///run/a.sock", "unix:///run/b.sock"],
                "sorted by address: the order every rollout locks and changes them in")
        #expect(p.environments[1].admin == .tcp(host: "lb2.internal", port: 9901, tls: true), "the first proxy stands for the environment where one is shown")
    }

    @Test func proxyListsAreCheckedWithTheirLines() {
        let found = problems("""
            service: web
            environments:
              - { name: dev, admin: [], strategy: bluegreen, watch: 0s }
              - { name: stage, admin: [ "unix:///s.sock", "unix:///s.sock" ], strategy: bluegreen, watch: 0s }
              - { name: qa, admin: [ "unix:///q.sock", "tcp://x" ], strategy: bluegreen, watch: 0s }
              - { name: prod, admin: [ "unix:///p.sock", "unix:///q.sock" ], strategy: bluegreen, watch: 0s }
            """)
        #expect(found.contains { $0.hasPrefix("p.yaml:3:") && $0.contains("environments[0].admin") && $0.contains("empty") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("p.yaml:4:") && $0.contains("environments[1].admin[1]") && $0.contains("listed twice") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("p.yaml:5:") && $0.contains("environments[2].admin[1]") && $0.contains("not an admin address") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("p.yaml:6:") && $0.contains("environments[3].admin") && $0.contains("unix:///q.sock is also qa's proxy") }, "\(found)")
    }

    @Test func batchesAreServersOrAShareOfTheRollingPool() throws {
        let p = try plan("""
            service: web
            environments:
              - { name: dev, admin: "unix:///d.sock", strategy: rolling, batch: 2 }
              - { name: prod, admin: "unix:///p.sock", strategy: rolling, batch: 25% }
              - { name: qa, admin: "unix:///q.sock", strategy: rolling }
            \(Self.analysis)
            """)
        #expect(p.environments.map(\.batch) == [.servers(2), .share(2500), nil])
        let found = problems("""
            service: web
            environments:
              - { name: dev, admin: "unix:///d.sock", strategy: rolling, batch: 0% }
              - { name: stage, admin: "unix:///s.sock", strategy: rolling, batch: two }
              - { name: qa, admin: "unix:///q.sock", strategy: rolling, batch: 0 }
              - { name: prod, admin: "unix:///p.sock", strategy: canary, steps: [ {weight: 5%} ], batch: 2 }
            \(Self.analysis)
            """)
        #expect(found.contains { $0.hasPrefix("p.yaml:3:") && $0.contains("environments[0].batch") && $0.contains("0% updates nothing") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("p.yaml:4:") && $0.contains("environments[1].batch") && $0.contains("\"two\" is not a batch") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("p.yaml:5:") && $0.contains("environments[2].batch") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("p.yaml:6:") && $0.contains("environments[3].batch") && $0.contains("strategy: rolling") }, "\(found)")
    }

    @Test func aBatchIsAtLeastOneServerAndAShareRoundsDown() {
        #expect(DeployPlan.Batch.share(2500).size(of: 8) == 2)
        #expect(DeployPlan.Batch.share(2500).size(of: 3) == 1, "25% of 3 rounds down to 0: one at least")
        #expect(DeployPlan.Batch.share(10_000).size(of: 4) == 4)
        #expect(DeployPlan.Batch.servers(3).size(of: 2) == 3, "the last healthy server rule cuts it when batches are taken")
        #expect(DeployPlan.Batch.share(5000).size(of: Int.max) >= 1, "no overflow")
    }

    @Test func bakeAndTheHooksOfAnEnvironment() throws {
        let p = try plan("""
            service: web
            environments:
              - name: stage
                admin: "unix:///s.sock"
                strategy: bluegreen
                bake: 5m
                hooks:
                  pre_deploy: "scripts/migrate.sh {env} {version}"
                  post_promote: [ "scripts/purge-cache.sh {env}", "echo {previous_version}" ]
              - { name: prod, admin: "unix:///p.sock", strategy: bluegreen, bake: 0s }
            hooks:
              pre_deploy: [ "scripts/build-assets.sh {version}" ]
            \(Self.analysis)
            """)
        #expect(p.environments[0].bake == .seconds(300))
        #expect(p.environments[0].preDeploy == ["scripts/migrate.sh {env} {version}"])
        #expect(p.environments[0].postPromote == ["scripts/purge-cache.sh {env}", "echo {previous_version}"])
        #expect(p.environments[1].bake == nil, "0s: no bake")
        #expect(p.hooks.preDeploy == ["scripts/build-assets.sh {version}"], "the top-level pre_deploy still runs once per rollout")
        let found = problems("""
            service: web
            environments:
              - name: prod
                admin: "unix:///p.sock"
                strategy: bluegreen
                bake: soon
                hooks: { pre_deploy: "migrate {envv}", start: "x" }
            hooks:
              pre_deploy: "migrate {env}"
            \(Self.analysis)
            """)
        #expect(found.contains { $0.hasPrefix("p.yaml:6:") && $0.contains("environments[0].bake") && $0.contains("not a duration") }, "\(found)")
        #expect(found.contains { $0.contains("environments[0].hooks.pre_deploy") && $0.contains("{envv}") }, "\(found)")
        #expect(found.contains { $0.contains("environments[0].hooks.start") && $0.contains("unknown key") && $0.contains("pre_deploy, post_promote") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("p.yaml:9:") && $0.contains("hooks.pre_deploy") && $0.contains("{env} has no value there") }, "\(found)")
    }

    @Test func gitPushNeedsTheTagItPushes() throws {
        let base = "service: web\nenvironments:\n  - { name: dev, admin: 'unix:///a', strategy: bluegreen, watch: 0s }\n"
        #expect(try plan(base + "git_tag: true\ngit_push: origin\n").gitPush == "origin")
        #expect(try plan(base + "git_tag: true\n").gitPush == nil)
        #expect(problems(base + "git_push: origin\n").contains { $0.hasPrefix("p.yaml:4:") && $0.contains("git_push") && $0.contains("git_tag: true") })
        #expect(problems(base + "git_tag: true\ngit_push: --force\n").contains { $0.contains("git_push") && $0.contains("is not a git remote") })
    }
}

@Suite struct FleetChangeTests {
    let before = ServiceRouting(active: "blue", standby: "green", canary: .init(pool: "green", weight: 1000))

    @Test func aChangeMovesTheRoutingAsTheProxyDoes() {
        #expect(TrafficChange.canary(pool: "green", weight: 5000, guardrail: nil).applied(to: before).canary == .init(pool: "green", weight: 5000))
        #expect(TrafficChange.canary(pool: "green", weight: 0, guardrail: nil).applied(to: before).canary == nil)
        let flipped = TrafficChange.flip(to: "green").applied(to: before)
        #expect(flipped == ServiceRouting(active: "green", standby: "blue", canary: nil), "the canary became the whole service")
        let drained = TrafficChange.server(pool: "app", name: "a1", state: .drain).applied(to: ServiceRouting(active: "app", servers: ["app/a1": "ready"]))
        #expect(drained.servers == ["app/a1": "drain"])
    }

    @Test func aProxyIsPutBackToItsRoutingBeforeTheStep() {
        // A canary raised on one proxy while the other refused goes back to its weight.
        #expect(TrafficChange.canary(pool: "green", weight: 5000, guardrail: nil).undo(to: before) == [.canary(pool: "green", weight: 1000, guardrail: nil)])
        // A promotion flip comes back as a flip and the canary it cleared.
        let undo = TrafficChange.flip(to: "green").undo(to: before)
        #expect(undo == [.flip(to: "blue"), .canary(pool: "green", weight: 1000, guardrail: nil)])
        var routing = TrafficChange.flip(to: "green").applied(to: before)
        for change in undo { routing = change.applied(to: routing) }
        #expect(routing == before)
        let first = ServiceRouting(active: "blue", standby: "green")
        #expect(TrafficChange.canary(pool: "green", weight: 1000, guardrail: nil).undo(to: first) == [.canary(pool: "green", weight: 0, guardrail: nil)])
        #expect(TrafficChange.server(pool: "app", name: "a1", state: .ready).undo(to: ServiceRouting(active: "app", servers: ["app/a1": "drain"]))
                == [.server(pool: "app", name: "a1", state: .drain)])
    }

    @Test func aRollbackNeverRaisesACanaryAndSkipsProxiesAlreadyBack() {
        let halve = TrafficChange.canary(pool: "green", weight: 500, guardrail: nil)
        #expect(!halve.isSatisfied(by: before), "10% comes down to 5%")
        #expect(halve.isSatisfied(by: ServiceRouting(active: "blue", canary: .init(pool: "green", weight: 250))), "already lower: never raised")
        #expect(halve.isSatisfied(by: ServiceRouting(active: "blue")), "the guard took it out: stays out")
        #expect(TrafficChange.canary(pool: "green", weight: 0, guardrail: nil).isSatisfied(by: ServiceRouting(active: "blue")))
        #expect(!TrafficChange.canary(pool: "green", weight: 0, guardrail: nil).isSatisfied(by: before))
        #expect(TrafficChange.flip(to: "blue").isSatisfied(by: before) && !TrafficChange.flip(to: "green").isSatisfied(by: before))
    }

    @Test func routingIsReadFromAStatusAndDifferencesAreNamed() throws {
        let status = try JSONDecoder().decode(AdminStatus.self, from: Data("""
            {"generation": 4, "services": {"web": {"active": "app", "canary": {"pool": "x", "weight": "0%"}}},
             "pools": {"app": {"servers": [{"name": "a1", "address": "10.0.0.1:80", "weight": 100, "state": "drain", "active_requests": 0}]}}}
            """.utf8))
        let routing = try #require(ServiceRouting(status: status, service: "web", pools: ["app"]))
        #expect(routing == ServiceRouting(active: "app", servers: ["app/a1": "drain"]), "a 0% canary is no canary")
        #expect(ServiceRouting(status: status, service: "api", pools: []) == nil)
        #expect(routing.description == "active app, no canary, app/a1 drain")
        let hand = ServiceRouting(active: "blue", standby: "green", canary: .init(pool: "green", weight: 5000))
        #expect(hand.differences(from: before) == "canary green at 50% (expected: canary green at 10%)")
        #expect(before.differences(from: before) == "the same")
    }

    @Test func countersOfSeveralProxiesAddUp() {
        let a = MetricsSample(text: """
            switchyard_pool_responses_total{pool="green",class="2xx"} 90
            switchyard_pool_responses_total{pool="green",class="5xx"} 10
            switchyard_pool_request_duration_seconds_bucket{pool="green",le="0.1"} 100
            switchyard_pool_request_duration_seconds_bucket{pool="green",le="+Inf"} 100
            switchyard_upstream_responses_total{pool="green",server="g1",class="2xx"} 90
            """)
        let b = MetricsSample(text: """
            switchyard_pool_responses_total{pool="green",class="2xx"} 100
            switchyard_pool_failures_total{pool="green"} 5
            switchyard_pool_request_duration_seconds_bucket{pool="green",le="0.1"} 50
            switchyard_pool_request_duration_seconds_bucket{pool="green",le="+Inf"} 105
            switchyard_pool_responses_total{pool="blue",class="2xx"} 7
            """)
        let sum = MetricsSample.sum([a, b])
        #expect(sum.pools["green"]?.requests == 205 && sum.pools["green"]?.errors == 15)
        #expect(sum.pools["green"]?.buckets.map(\.count) == [150, 205])
        #expect(sum.pools["blue"]?.requests == 7, "a pool only one proxy served")
        #expect(sum.servers["green/g1"]?.requests == 90)
        // Histograms with other buckets (another proxy version) add at the union of bounds.
        let mixed = PoolCounters.sum([PoolCounters(requests: 10, errors: 0, buckets: [(0.1, 5), (.infinity, 10)]),
                                      PoolCounters(requests: 4, errors: 1, buckets: [(0.25, 4), (.infinity, 4)])])
        #expect(mixed.buckets.map(\.bound) == [0.1, 0.25, .infinity] && mixed.buckets.map(\.count) == [5, 9, 14])
    }

    @Test func lockKeysNameTheProxyOnlyWhenThereAreSeveral() {
        #expect(History.lockKey(environment: "prod", proxy: nil) == "prod")
        #expect(History.lockKey(environment: "prod", proxy: "unix:///a.sock") == "prod@unix:///a.sock")
        #expect(History.parseLockKey("prod@https://lb:9901").environment == "prod" && History.parseLockKey("prod@https://lb:9901").proxy == "https://lb:9901")
        #expect(History.parseLockKey("prod").proxy == nil)
    }

    @Test func aPushRemoteIsShownWithoutItsCredentials() {
        #expect(Rollout.remoteForMessages("origin") == "origin")
        #expect(Rollout.remoteForMessages("https://ci:s3cret@git.example.com/app.git") == "https://git.example.com/app.git")
        #expect(Rollout.remoteForMessages("https://git.example.com/a@b.git") == "https://git.example.com/a@b.git")
    }
}

@Suite struct BatchTests {
    static func status(_ servers: [(String, String, String)]) throws -> AdminStatus {
        let list = servers.map { name, state, health in
            #"{"name": "\#(name)", "address": "10.0.0.1:80", "weight": 100, "state": "\#(state)", "active_requests": 0, "health": {"status": "\#(health)"}}"#
        }.joined(separator: ", ")
        return try JSONDecoder().decode(AdminStatus.self, from: Data(#"{"generation": 1, "services": {}, "pools": {"app": {"servers": [\#(list)]}}}"#.utf8))
    }

    let servers = ["a1", "a2", "a3", "a4"].map { RollingStrategy.Server(name: $0, address: "10.0.0.1:80") }

    @Test func aBatchTakesUpToItsSizeInOrder() throws {
        let healthy = try Self.status([("a1", "ready", "up"), ("a2", "ready", "up"), ("a3", "ready", "up"), ("a4", "ready", "up")])
        #expect(RollingStrategy.nextBatch(servers, size: 2, statuses: [healthy], pool: "app").map(\.name) == ["a1", "a2"])
        #expect(RollingStrategy.nextBatch(Array(servers.suffix(1)), size: 2, statuses: [healthy], pool: "app").map(\.name) == ["a4"])
    }

    @Test func aBatchNeverTakesTheLastHealthyServerOut() throws {
        let healthy = try Self.status([("a1", "ready", "up"), ("a2", "ready", "up"), ("a3", "ready", "up"), ("a4", "ready", "up")])
        #expect(RollingStrategy.nextBatch(servers, size: 4, statuses: [healthy], pool: "app").map(\.name) == ["a1", "a2", "a3"], "a4 stays in")
        // a3 and a4 are down: only one of a1 and a2 may go.
        let half = try Self.status([("a1", "ready", "up"), ("a2", "ready", "up"), ("a3", "ready", "down"), ("a4", "drain", "up")])
        #expect(RollingStrategy.nextBatch(servers, size: 4, statuses: [half], pool: "app").map(\.name) == ["a1"])
        // Each proxy judges by its own health checks: the second sees only a1 healthy.
        let second = try Self.status([("a1", "ready", "up"), ("a2", "ready", "down"), ("a3", "ready", "down"), ("a4", "ready", "down")])
        #expect(RollingStrategy.nextBatch(servers, size: 2, statuses: [healthy, second], pool: "app").isEmpty, "a1 is the second proxy's last healthy server")
        let single = try Self.status([("a1", "ready", "up")])
        #expect(RollingStrategy.nextBatch(Array(servers.prefix(1)), size: 1, statuses: [single], pool: "app").isEmpty, "a pool of one is never emptied")
    }
}
