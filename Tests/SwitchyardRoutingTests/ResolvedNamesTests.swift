import Testing
@testable import SwitchyardConfig
@testable import SwitchyardRouting

/// What the control plane does with answers, without resolving anything.
@Suite("Resolved names")
struct ResolvedNamesTests {
    let yaml = """
    listeners: [{ bind: 127.0.0.1:8080 }]
    resolve: { interval: 10s }
    pools:
      app:
        slow_start: 10s
        servers:
          - { name: fixed, address: 127.0.0.1:9000, weight: 100 }
          - { name: api, address: app.test:8080, weight: 100 }
    services: { web: { active: app } }
    """

    func load(_ text: String? = nil) throws -> SwitchyardConfig { try ConfigLoader.parse(yaml: text ?? yaml, file: "t.yaml") }
    func ip(_ text: String) -> SocketAddress { SocketAddress(parsing: text)! }

    @Test func weightIsSharedByTheAddresses() {
        #expect(ResolvedAddresses.shares(of: 100, count: 2) == [50, 50])
        #expect(ResolvedAddresses.shares(of: 100, count: 3) == [34, 33, 33])
        #expect(ResolvedAddresses.shares(of: 2, count: 3) == [1, 1, 1]) // never 0 for a positive weight
        #expect(ResolvedAddresses.shares(of: 0, count: 2) == [0, 0])
        #expect(ResolvedAddresses.shares(of: 100, count: 0) == [])
    }

    @Test func anAnswerBecomesServersOfThePool() throws {
        let config = try load()
        var names = ResolvedNames()
        names.sync(with: config, now: 0)
        let jobs = names.takeDue(now: 0)
        #expect(jobs.map(\.key) == ["app/api"] && jobs[0].target == HostAndPort(host: "app.test", port: 8080) && jobs[0].family == .ipv4)
        let again = names.takeDue(now: 0)
        #expect(again.isEmpty) // in flight
        let change = names.recordAnswer([ip("10.0.0.2:8080"), ip("10.0.0.1:8080"), ip("10.0.0.2:8080")], ticket: jobs[0].ticket,
                                        key: "app/api", now: 100, wallClock: 1000)
        #expect(change == ResolvedNames.Change(added: [ip("10.0.0.1:8080"), ip("10.0.0.2:8080")], removed: [], recovered: false))
        let entry = try #require(names.entries["app/api"])
        #expect(!entry.isStale && entry.lastSuccess == 1000 && entry.due == 10_100)

        let registry = ServerRegistry()
        let snapshot = RoutingSnapshot(config: config, registry: registry, down: ["app/api@10.0.0.2"],
                                       weightPercent: ["app/api@10.0.0.1": 10], resolved: names.snapshotAddresses)
        let servers = snapshot.pools[0].servers
        #expect(servers.map(\.name) == ["fixed", "api@10.0.0.1", "api@10.0.0.2"])
        #expect(servers.map(\.address) == [ip("127.0.0.1:9000"), ip("10.0.0.1:8080"), ip("10.0.0.2:8080")])
        #expect(servers.map(\.configuredWeight) == [100, 50, 50])
        #expect(servers.map(\.weight) == [100, 5, 0]) // slow start on one, health down on the other
        #expect(ResolvedNames.configuredName(of: servers[1].name) == "api" && ResolvedNames.configuredName(of: "fixed") == nil)

        // The runtime state has one entry for the name: draining it drains every address.
        var state = RuntimeState(config: config)
        #expect(state.servers["app"]?["api"] == RuntimeState.Server(weight: 100, state: .ready))
        state.servers["app"]?["api"]?.state = .drain
        state.servers["app"]?["api"]?.weight = 300
        let drained = RoutingSnapshot(config: config, state: state, registry: registry, resolved: names.snapshotAddresses)
        #expect(drained.pools[0].servers.dropFirst().map(\.state) == [.drain, .drain])
        #expect(drained.pools[0].servers.dropFirst().map(\.configuredWeight) == [150, 150])
        // Ids are stable: the same address keeps its id.
        #expect(drained.pools[0].servers.map(\.id) == servers.map(\.id))
    }

    @Test func addressesThatLeaveTheAnswerDrainUntilTheirRequestsEnd() throws {
        let config = try load()
        var names = ResolvedNames()
        names.sync(with: config, now: 0)
        var job = names.takeDue(now: 0)[0]
        _ = names.recordAnswer([ip("10.0.0.1:8080"), ip("10.0.0.2:8080")], ticket: job.ticket, key: job.key, now: 0, wallClock: 0)
        job = try #require(names.takeDue(now: 10_000).first)
        let change = names.recordAnswer([ip("10.0.0.2:8080"), ip("10.0.0.3:8080")], ticket: job.ticket, key: job.key, now: 10_000, wallClock: 10)
        #expect(change?.added == [ip("10.0.0.3:8080")] && change?.removed == [ip("10.0.0.1:8080")])
        #expect(names.isDraining)
        let snapshot = RoutingSnapshot(config: config, registry: ServerRegistry(), resolved: names.snapshotAddresses)
        let servers = snapshot.pools[0].servers.dropFirst()
        #expect(servers.map(\.name) == ["api@10.0.0.2", "api@10.0.0.3", "api@10.0.0.1"])
        #expect(servers.map(\.state) == [.ready, .ready, .drain])
        #expect(servers.map(\.weight) == [50, 50, 0])

        // Not before the minimum drain time, not while a request is in flight.
        var active = 1
        let tooSoon = names.removeDrained(now: 10_100, minimumMs: 500) { _, _ in 0 }
        #expect(tooSoon.isEmpty)
        var asked: [String] = []
        let busy = names.removeDrained(now: 11_000, minimumMs: 500) { pool, server in
            asked.append("\(pool)/\(server)")
            return active
        }
        #expect(busy.isEmpty && asked == ["app/api@10.0.0.1"])
        active = 0
        let dropped = names.removeDrained(now: 11_000, minimumMs: 500) { _, _ in active }
        #expect(dropped.map(\.address) == [ip("10.0.0.1:8080")] && !names.isDraining)

        // An address that comes back while draining is simply in rotation again.
        job = try #require(names.takeDue(now: 20_000).first)
        _ = names.recordAnswer([ip("10.0.0.2:8080")], ticket: job.ticket, key: job.key, now: 20_000, wallClock: 20)
        job = try #require(names.takeDue(now: 30_000).first)
        let back = names.recordAnswer([ip("10.0.0.2:8080"), ip("10.0.0.3:8080")], ticket: job.ticket, key: job.key, now: 30_000, wallClock: 30)
        #expect(back?.added == [ip("10.0.0.3:8080")] && !names.isDraining)
    }

    @Test func failuresKeepTheLastGoodAnswer() throws {
        let config = try load()
        var names = ResolvedNames()
        names.sync(with: config, now: 0)
        var job = names.takeDue(now: 0)[0]
        // Never resolved: asked again a second later.
        let first = names.recordFailure("NXDOMAIN", ticket: job.ticket, key: job.key, now: 0, wallClock: 1)
        #expect(first)
        #expect(names.entries["app/api"]?.due == 1000 && names.entries["app/api"]?.isStale == true)
        job = try #require(names.takeDue(now: 1000).first)
        _ = names.recordAnswer([ip("10.0.0.1:8080")], ticket: job.ticket, key: job.key, now: 1000, wallClock: 2)
        #expect(names.entries["app/api"]?.isStale == false)
        for (i, reason) in ["no answer within 1000ms", "SERVFAIL from 127.0.0.1:53", "NXDOMAIN"].enumerated() {
            job = try #require(names.takeDue(now: 100_000 * Int64(i + 1)).first)
            // Only the first failure in a row is worth a log line.
            let isFirst = names.recordFailure(reason, ticket: job.ticket, key: job.key, now: 100_000 * Int64(i + 1), wallClock: 3)
            #expect(isFirst == (i == 0))
        }
        // An empty answer is a failure too.
        job = try #require(names.takeDue(now: 1_000_000).first)
        let empty = names.recordAnswer([], ticket: job.ticket, key: job.key, now: 1_000_000, wallClock: 4)
        #expect(empty == nil)
        let entry = try #require(names.entries["app/api"])
        #expect(entry.addresses == [ip("10.0.0.1:8080")])
        #expect(entry.isStale && entry.lastError == "the answer holds no address" && entry.consecutiveFailures == 4)
        #expect(entry.resolutions == 6 && entry.failures == 5 && entry.lastSuccess == 2)
        #expect(entry.due == 1_000_000 + 10_000) // a name with an answer waits its interval
        job = try #require(names.takeDue(now: 2_000_000).first)
        let change = names.recordAnswer([ip("10.0.0.1:8080")], ticket: job.ticket, key: job.key, now: 2_000_000, wallClock: 5)
        #expect(change == ResolvedNames.Change(added: [], removed: [], recovered: true))
    }

    @Test func reloadKeepsAnswersOfNamesThatStay() throws {
        var names = ResolvedNames()
        names.sync(with: try load(), now: 0)
        let job = names.takeDue(now: 0)[0]
        _ = names.recordAnswer([ip("10.0.0.1:8080")], ticket: job.ticket, key: job.key, now: 0, wallClock: 0)
        // Same name, new interval: the answer stays, and it is asked again at once.
        names.sync(with: try load(yaml.replacingOccurrences(of: "interval: 10s", with: "interval: 3s")), now: 500)
        #expect(names.entries["app/api"]?.addresses == [ip("10.0.0.1:8080")])
        #expect(names.entries["app/api"]?.policy.interval == .seconds(3) && names.entries["app/api"]?.due == 500)
        // Another host under the same server name: a new entry; an answer for the old one is dropped.
        let stale = try #require(names.takeDue(now: 500).first)
        names.sync(with: try load(yaml.replacingOccurrences(of: "app.test:8080", with: "other.test:8080")), now: 600)
        #expect(names.entries["app/api"]?.addresses == [] && names.entries["app/api"]?.target.host == "other.test")
        let late = names.recordAnswer([ip("10.0.0.9:8080")], ticket: stale.ticket, key: stale.key, now: 700, wallClock: 1)
        #expect(late == nil)
        #expect(names.entries["app/api"]?.addresses == [])
        // A server the file no longer has is forgotten.
        names.sync(with: try load(yaml.replacingOccurrences(of: "      - { name: api, address: app.test:8080, weight: 100 }\n", with: "")), now: 800)
        #expect(names.entries.isEmpty)
    }
}
