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

    /// What a worker is told to look at: the pools that differ, or nil when pools moved.
    @Test func changedPoolsNameWhatDiffersAndNothingElse() throws {
        let registry = ServerRegistry(), cache = PoolSnapshotCache()
        var state = RuntimeState(config: config)
        let first = RoutingSnapshot(config: config, state: state, registry: registry, cache: cache)
        #expect(RoutingSnapshot.changedPools(from: first, to: first) == [])

        state.services["web"]?.active = "green"
        let flipped = RoutingSnapshot(config: config, state: state, registry: registry, cache: cache)
        #expect(RoutingSnapshot.changedPools(from: first, to: flipped) == [], "a flip changes no pool")

        state.servers["blue"]?["b2"]?.state = .drain
        let drained = RoutingSnapshot(config: config, state: state, registry: registry, cache: cache)
        #expect(RoutingSnapshot.changedPools(from: flipped, to: drained) == [0])
        // Built afresh (no shared storage), equal pools still count as unchanged.
        let afresh = RoutingSnapshot(config: config, state: state, registry: registry)
        #expect(RoutingSnapshot.changedPools(from: drained, to: afresh) == [])
        let down = RoutingSnapshot(config: config, state: state, registry: registry, down: ["green/g1"], cache: cache)
        #expect(RoutingSnapshot.changedPools(from: drained, to: down) == [1], "health changes the pool it is in")
        state.versions["blue"] = "v2"
        let both = RoutingSnapshot(config: config, state: state, registry: registry, down: [], cache: cache)
        #expect(RoutingSnapshot.changedPools(from: down, to: both) == [0, 1])

        // A reload that adds a pool, or puts them in another order: every pool is looked at.
        let reloaded = try ConfigLoader.parse(yaml: """
            listeners: [{ bind: 127.0.0.1:1 }]
            pools:
              blue: { servers: [{ name: b1, address: 127.0.0.1:2 }, { name: b2, address: 127.0.0.1:3 }] }
              green: { servers: [{ name: g1, address: 127.0.0.1:4 }] }
              canary: { servers: [{ name: c1, address: 127.0.0.1:5 }] }
            services:
              web: { active: blue, standby: green }
            """, file: "t")
        let added = RoutingSnapshot(config: reloaded, state: RuntimeState(config: reloaded), registry: registry)
        #expect(RoutingSnapshot.changedPools(from: first, to: added) == nil)
        let swapped = try ConfigLoader.parse(yaml: """
            listeners: [{ bind: 127.0.0.1:1 }]
            pools:
              green: { servers: [{ name: g1, address: 127.0.0.1:4 }] }
              blue: { servers: [{ name: b1, address: 127.0.0.1:2 }, { name: b2, address: 127.0.0.1:3 }] }
            services:
              web: { active: blue, standby: green }
            """, file: "t")
        let moved = RoutingSnapshot(config: swapped, state: RuntimeState(config: swapped), registry: registry)
        #expect(moved.pools.map(\.name) != first.pools.map(\.name), "the loader keeps the file's order")
        #expect(RoutingSnapshot.changedPools(from: first, to: moved) == nil)
    }
}
