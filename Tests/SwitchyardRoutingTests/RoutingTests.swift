import Testing
@testable import SwitchyardConfig
@testable import SwitchyardRouting

func address(_ s: String) -> SocketAddress { SocketAddress(parsing: s)! }

func pool(_ weights: [Int], balance: BalanceAlgorithm = .roundRobin) -> PoolSnapshot {
    PoolSnapshot(name: "p", balance: balance, servers: weights.enumerated().map {
        ServerSnapshot(id: $0.offset, name: "s\($0.offset)", address: address("127.0.0.1:\(9000 + $0.offset)"), weight: $0.element)
    })
}

@Suite("Balancing")
struct BalancerTests {
    @Test func smoothWeightedRoundRobinMatchesNginx() {
        let b = PoolBalancer(pool: pool([5, 1, 1]), seed: 1)
        let picks = (0..<7).map { _ in b.pick()! }
        #expect(picks == [0, 0, 1, 0, 2, 0, 0]) // nginx's a a b a c a a
    }

    @Test func weightsHoldOverManyPicks() {
        let b = PoolBalancer(pool: pool([300, 100, 0]), seed: 1)
        var counts = [0, 0, 0]
        for _ in 0..<4000 { counts[b.pick()!] += 1 }
        #expect(counts == [3000, 1000, 0])
    }

    @Test func allZeroMeansNoServer() {
        #expect(PoolBalancer(pool: pool([0, 0]), seed: 1).pick() == nil)
        #expect(PoolBalancer(pool: pool([]), seed: 1).pick() == nil)
    }

    @Test func exclusionSkipsTriedServers() {
        let b = PoolBalancer(pool: pool([1, 1, 1]), seed: 1)
        for _ in 0..<10 { #expect(b.pick(excluding: 0b011) == 2) }
        #expect(b.pick(excluding: 0b111) == nil)
        let lr = PoolBalancer(pool: pool([1, 1, 1], balance: .leastRequest), seed: 1)
        for _ in 0..<10 { #expect(lr.pick(excluding: 0b101) == 1) }
    }

    @Test func leastRequestPrefersIdleServers() {
        let b = PoolBalancer(pool: pool([1, 1], balance: .leastRequest), seed: 7)
        for _ in 0..<5 { b.requestStarted(serverID: 0, hint: 0) }
        for _ in 0..<50 { #expect(b.pick() == 1) }
        // Weighted: 4 active on a weight-4 server is as loaded as 1 on weight 1.
        let w = PoolBalancer(pool: pool([4, 1], balance: .leastRequest), seed: 7)
        for _ in 0..<3 { w.requestStarted(serverID: 0, hint: 0) }
        w.requestStarted(serverID: 1, hint: 1)
        for _ in 0..<20 { #expect(w.pick() == 0) }
    }

    @Test func updateKeepsStateOfRemainingServers() {
        let b = PoolBalancer(pool: pool([1, 1]), seed: 1)
        b.requestStarted(serverID: 1, hint: 1)
        b.update(to: PoolSnapshot(name: "p", balance: .roundRobin, servers: [pool([1, 1]).servers[1]]))
        #expect(b.active == [1])
    }

    /// An exchange picked server 1 at position 1; the pool then lost server 0 and gained
    /// server 7 in front: the finish must land on server 1, wherever it is.
    @Test func requestsFinishOnTheServerTheyStartedOnWhenPositionsMove() {
        let servers = pool([1, 1]).servers
        let b = PoolBalancer(pool: pool([1, 1], balance: .leastRequest), seed: 1)
        b.requestStarted(serverID: 1, hint: 1)
        b.update(to: PoolSnapshot(name: "p", balance: .leastRequest, servers: [servers[1]]))
        b.requestFinished(serverID: 1, hint: 1) // position 1 no longer exists
        #expect(b.active == [0])
        b.requestStarted(serverID: 1, hint: 0)
        let added = ServerSnapshot(id: 7, name: "a0", address: address("127.0.0.1:9007"), weight: 1)
        b.update(to: PoolSnapshot(name: "p", balance: .leastRequest, servers: [added, servers[1]]))
        b.requestFinished(serverID: 1, hint: 0) // position 0 is now another server
        #expect(b.active == [0, 0])
        // A server the pool no longer has is ignored.
        b.requestFinished(serverID: 99, hint: 0)
        b.requestStarted(serverID: 99, hint: 5)
        #expect(b.active == [0, 0])
        #expect(b.server(withID: 7, hint: 3)?.name == "a0")
        #expect(b.server(withID: 0, hint: 0) == nil)
    }
}

@Suite("Service routing")
struct RouteTests {
    let snapshot: RoutingSnapshot = {
        let yaml = """
        listeners: [{ bind: 127.0.0.1:1 }]
        pools: { a: { servers: [{ address: 127.0.0.1:2 }] }, b: { servers: [{ address: 127.0.0.1:3 }] } }
        services:
          api: { match: { hosts: [api.example.com], path_prefix: /v1 }, active: a }
          apiroot: { match: { hosts: [api.example.com] }, active: b }
          wild: { match: { hosts: ["*.example.com"] }, active: b }
          anyhost: { match: { path_prefix: /static }, active: a }
          fallback: { active: b }
        """
        let config = try! ConfigLoader.parse(yaml: yaml, file: "t")
        return RoutingSnapshot(config: config, registry: ServerRegistry())
    }()

    func route(_ host: String, _ path: String) -> String? {
        let h = Array(host.utf8), p = Array(path.utf8)
        return h.withUnsafeBufferPointer { hp in p.withUnsafeBufferPointer { pp in
            snapshot.route(host: hp, path: pp).map { snapshot.services[$0].name }
        } }
    }

    @Test func matching() {
        #expect(route("api.example.com", "/v1/users") == "api")
        #expect(route("API.Example.com:8080", "/v1") == "api")
        #expect(route("api.example.com", "/v2") == "apiroot")
        #expect(route("www.example.com", "/v1") == "wild")
        #expect(route("example.com", "/static/x") == "anyhost")
        #expect(route("other.org", "/") == "fallback")
        #expect(route("", "/") == "fallback")
    }

    /// With many services routing looks up the host in a table; it must pick exactly what
    /// scoring every service picks, for exact, wildcard, path-only and default services.
    @Test func theHostTableRoutesAsTheFullScan() {
        var random = SplitMix64(seed: 42)
        func pick<T>(_ items: [T]) -> T { items[Int(random.next() % UInt64(items.count))] }
        let hosts = ["a.example.com", "b.example.com", "A.Example.com", "api.example.com", "x.org", "*.example.com", "*.org", "c.example.com"]
        let prefixes = ["/", "/v1", "/v1/users", "/static", "/api"]
        var checked = 0
        for round in 0..<20 {
            var yaml = "listeners: [{ bind: 127.0.0.1:1 }]\npools: { a: { servers: [{ address: 127.0.0.1:2 }] } }\nservices:\n"
            for k in 0..<(9 + round) {
                switch random.next() % 5 {
                case 0: yaml += "  s\(k): { match: { path_prefix: \(pick(prefixes)) }, active: a }\n"
                case 1 where round % 3 == 0: yaml += "  s\(k): { active: a }\n"
                default:
                    let some = (0..<(1 + Int(random.next() % 2))).map { _ in "\"\(pick(hosts))\"" }
                    yaml += "  s\(k): { match: { hosts: [\(some.joined(separator: ", "))], path_prefix: \(pick(prefixes)) }, active: a }\n"
                }
            }
            guard let config = try? ConfigLoader.parse(yaml: yaml, file: "t") else { continue }
            checked += 1
            let snapshot = RoutingSnapshot(config: config, registry: ServerRegistry())
            #expect(snapshot.services.count > RoutingSnapshot.linearScanLimit)
            for host in ["a.example.com", "A.EXAMPLE.COM:8080", "b.example.com.", "www.example.com", "x.org", "y.org", "nowhere", "", "[::1]:80"] {
                for path in ["/", "/v1/users/7", "/static/x", "/api", "/other"] {
                    let h = Array(host.utf8), p = Array(path.utf8)
                    let (table, scan) = h.withUnsafeBufferPointer { hp in p.withUnsafeBufferPointer { pp in
                        (snapshot.route(host: hp, path: pp),
                         snapshot.routeByScan(host: hp, length: RoutingSnapshot.hostNameLength(hp), path: pp))
                    } }
                    #expect(table == scan, "\(host)\(path) in\n\(yaml)")
                }
            }
        }
        #expect(checked >= 10, "most generated configurations must be valid: \(checked) of 20")
    }

    @Test func noDefaultMeans404() {
        let yaml = """
        listeners: [{ bind: 127.0.0.1:1 }]
        pools: { a: { servers: [{ address: 127.0.0.1:2 }] } }
        services: { only: { match: { hosts: [x.com] }, active: a } }
        """
        let s = RoutingSnapshot(config: try! ConfigLoader.parse(yaml: yaml, file: "t"), registry: ServerRegistry())
        let h = Array("y.com".utf8), p = Array("/".utf8)
        #expect(h.withUnsafeBufferPointer { hp in p.withUnsafeBufferPointer { s.route(host: hp, path: $0) } } == nil)
    }

    @Test func serverIDsAreStable() {
        let registry = ServerRegistry()
        let a = registry.id(pool: "p", server: "s", address: address("127.0.0.1:1"))
        _ = registry.id(pool: "p", server: "t", address: address("127.0.0.1:2"))
        #expect(registry.id(pool: "p", server: "s", address: address("127.0.0.1:1")) == a)
    }
}

@Suite("Canary buckets")
struct CanaryBucketTests {
    func bucket(_ text: String) -> Int {
        Array(text.utf8).withUnsafeBufferPointer { RoutingSnapshot.bucket($0) }
    }

    @Test func stickyShareIsAccurateOver100000Keys() {
        // 5%: over 100,000 distinct users the canary share is within 0.5 points.
        let canary = (0..<100_000).filter { bucket("user-\($0)") < 500 }.count
        #expect(abs(Double(canary) / 1000 - 5) < 0.5, "share \(Double(canary) / 1000)%")
    }

    @Test func perRequestShareIsAccurateOver100000Requests() {
        var random = SplitMix64(seed: 42)
        let canary = (0..<100_000).filter { _ in random.next() % 10_000 < 500 }.count
        #expect(abs(Double(canary) / 1000 - 5) < 0.5)
    }

    @Test func assignmentIsMonotoneInTheWeight() {
        // A user is canary at weight w exactly when its bucket is below w: so the set of canary
        // users only grows as the weight rises.
        for user in 0..<2000 {
            let b = bucket("u\(user)")
            var previous = false
            for weight in stride(from: 0, through: 10_000, by: 250) {
                let now = b < weight
                #expect(!previous || now)
                previous = now
            }
        }
    }
}

@Suite("Reconciling runtime state with the file")
struct MergeTests {
    func state(_ yaml: String) -> RuntimeState {
        RuntimeState(config: try! ConfigLoader.parse(yaml: yaml, file: "t"))
    }

    static let head = """
    listeners: [{ bind: 127.0.0.1:1 }]
    pools:
      blue: { servers: [{ name: b1, address: 127.0.0.1:2, weight: 100 }] }
      green: { servers: [{ name: g1, address: 127.0.0.1:3, weight: 100 }] }

    """

    @Test func runtimeChangesWinOnlyWhereAnOperatorMadeThem() {
        let oldFile = state(Self.head + "services: { web: { active: blue, standby: green } }")
        var runtime = oldFile
        runtime.services["web"]!.active = "green"          // an operator flipped
        runtime.services["web"]!.standby = "blue"
        runtime.servers["blue"]!["b1"]!.state = .drain     // and drained b1
        let newFileYAML = Self.head.replacingOccurrences(of: "weight: 100 }] }\n  green", with: "weight: 40 }] }\n  green")
            + "services: { web: { active: blue, standby: green, rules: [{ header: X, value: y, pool: green }] } }"
        var merged = state(newFileYAML)
        let notes = merged.merge(runtime: runtime, base: oldFile)
        #expect(notes.isEmpty)
        #expect(merged.services["web"]!.active == "green")          // kept: changed at runtime
        #expect(merged.services["web"]!.rules.count == 1)           // taken: changed in the file only
        #expect(merged.servers["blue"]!["b1"]!.state == .drain)     // kept
        #expect(merged.servers["blue"]!["b1"]!.weight == 40)        // taken from the file
    }

    @Test func keptValuesNamingRemovedPoolsFallBackToTheFile() {
        let oldFile = state(Self.head + "services: { web: { active: blue, standby: green } }")
        var runtime = oldFile
        runtime.services["web"]!.active = "green"
        let onlyBlue = """
        listeners: [{ bind: 127.0.0.1:1 }]
        pools: { blue: { servers: [{ name: b1, address: 127.0.0.1:2 }] } }
        services: { web: { active: blue } }
        """
        var merged = state(onlyBlue)
        let notes = merged.merge(runtime: runtime, base: oldFile)
        #expect(merged.services["web"]!.active == "blue")
        #expect(notes.contains { $0.contains("active pool green is no longer in the file") })
    }
}

@Suite("Canary guard window")
struct CanaryGuardWindowTests {
    let rule = CanaryGuard(maxErrorRate: 5000, minRequests: 10, windowMilliseconds: 1000)

    @Test func tripsOnlyWithEnoughRequestsAndErrorsInTheWindow() {
        var w = CanaryGuardWindow(pool: "green", rule: rule)
        #expect(w.add(GuardSample(time: 0, requests: 100, errors: 50)) == nil) // the start: nothing since
        #expect(w.add(GuardSample(time: 100, requests: 105, errors: 55)) == nil) // 5 requests: too few
        let trip = w.add(GuardSample(time: 200, requests: 112, errors: 57))
        #expect(trip == CanaryGuardWindow.Trip(finished: 12, failed: 7, seconds: 0.2))
    }

    @Test func oldSamplesLeaveTheWindow() {
        var w = CanaryGuardWindow(pool: "green", rule: rule)
        _ = w.add(GuardSample(time: 0, requests: 0, errors: 0))
        _ = w.add(GuardSample(time: 500, requests: 100, errors: 100)) // a bad burst
        _ = w.add(GuardSample(time: 1500, requests: 100, errors: 100))
        // A second later only good requests arrive; the burst is outside the window.
        #expect(w.add(GuardSample(time: 2600, requests: 200, errors: 100)) == nil)
    }

    @Test func hugeOrWrappedCountersNeverTrap() {
        var w = CanaryGuardWindow(pool: "green", rule: rule)
        _ = w.add(GuardSample(time: 0, requests: .min, errors: .max))
        _ = w.add(GuardSample(time: 100, requests: .max, errors: .min))
        _ = w.add(GuardSample(time: 200, requests: .max, errors: .max))
        #expect(CanaryGuardWindow(pool: "a", rule: rule).key != CanaryGuardWindow(pool: "b", rule: rule).key)
    }
}
