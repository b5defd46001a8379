import Testing
@testable import SwitchyardConfig
@testable import SwitchyardRouting

@Suite("Snapshots share unchanged pools")
struct PoolSnapshotCacheTests {
    let config = try! ConfigLoader.parse(yaml: """
        listeners: [{ bind: 127.0.0.1:1 }]
        pools:
          blue: { servers: [{ name: b1, address: 127.0.0.1:2 }, { name: b2, address: 127.0.0.1:3 }] }
          green: { servers: [{ name: g1, address: 127.0.0.1:4 }] }
        services:
          web: { active: blue, standby: green }
        """, file: "t")

    func storage(_ pool: PoolSnapshot) -> UnsafeRawPointer? { pool.servers.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) } }

    @Test func aChangeRebuildsOnlyWhatItTouchesAndTheResultIsAsIfBuiltAfresh() {
        let registry = ServerRegistry(), cache = PoolSnapshotCache()
        var state = RuntimeState(config: config)
        let first = RoutingSnapshot(config: config, state: state, registry: registry, cache: cache)

        // A flip touches no pool: both are shared.
        state.services["web"]?.active = "green"
        let flipped = RoutingSnapshot(config: config, state: state, registry: registry, cache: cache)
        #expect(storage(flipped.pools[0]) == storage(first.pools[0]) && storage(flipped.pools[1]) == storage(first.pools[1]))
        #expect(flipped.services[0].activePool == 1)

        // A drain in blue rebuilds blue alone.
        state.servers["blue"]?["b2"]?.state = .drain
        let drained = RoutingSnapshot(config: config, state: state, registry: registry, cache: cache)
        #expect(storage(drained.pools[0]) != storage(first.pools[0]) && storage(drained.pools[1]) == storage(first.pools[1]))
        #expect(drained.pools == RoutingSnapshot(config: config, state: state, registry: registry).pools)
        #expect(drained.pools[0].servers[1].weight == 0)

        // A version label, then health: each is seen.
        state.versions["green"] = "v2"
        let labelled = RoutingSnapshot(config: config, state: state, registry: registry, cache: cache)
        #expect(labelled.pools[1].version == "v2" && storage(labelled.pools[0]) == storage(drained.pools[0]))
        let down = RoutingSnapshot(config: config, state: state, registry: registry, down: ["green/g1"], cache: cache)
        #expect(down.pools[1].servers[0].healthy == false)
        #expect(down.pools == RoutingSnapshot(config: config, state: state, registry: registry, down: ["green/g1"]).pools)
        let up = RoutingSnapshot(config: config, state: state, registry: registry, cache: cache)
        #expect(up.pools[1].servers[0].healthy)
    }
}
