import CLibevent
import Glibc
import Synchronization
import SwitchyardConfig
import SwitchyardHTTP
import SwitchyardRouting

/// Taking a new routing snapshot: balancers, addresses, drains and the tunnels a drain ends.
extension Worker {
    func applySnapshot(_ publication: Publication) {
        let newSnapshot = publication.snapshot
        let previous = snapshot
        snapshot = newSnapshot
        if addresses.count < newSnapshot.serverIDLimit {
            let grow = newSnapshot.serverIDLimit - addresses.count
            addresses += [Sockets.Address?](repeating: nil, count: grow)
            idle += [[UpstreamConnection]](repeating: [], count: grow)
            serverReady += [Bool](repeating: true, count: grow)
            drainingSince += [Int64](repeating: .max, count: grow)
            outliers.grow(to: newSnapshot.serverIDLimit)
            serverLocation += [(pool: Int, index: Int)?](repeating: nil, count: grow)
            stats += [Int](repeating: 0, count: grow * ServerStats.stride)
        }
        // Built from the snapshot this worker has: only the pools that changed need anything
        // (a flip changes none). Thousands of untouched pools are not even read.
        if let changed = publication.changedPools, publication.previous === previous, balancers.count == newSnapshot.pools.count {
            for index in changed where index < balancers.count {
                let pool = newSnapshot.pools[index]
                applyServers(of: pool)
                update(balancers[index], to: pool)
                locate(pool, at: index)
            }
            refreshEjectionMasks(pools: changed)
        } else {
            applyEveryPool(of: newSnapshot)
            refreshEjectionMasks()
        }
        // A reload may add services.
        let needed = newSnapshot.serviceIDLimit * ServerStats.stride
        if serviceStats.count < needed { serviceStats += [Int](repeating: 0, count: needed - serviceStats.count) }
        updateDrainCheck()
    }

    /// Every pool of `newSnapshot` against the balancer this worker has for it (after a reload,
    /// or the first time).
    private func applyEveryPool(of newSnapshot: RoutingSnapshot) {
        var newBalancers: [PoolBalancer] = []
        newBalancers.reserveCapacity(newSnapshot.pools.count)
        // Pools keep their places across changes; a reload that adds or removes pools moves
        // them, and then a table by name finds each one (never a search per pool: thousands
        // of pools made that quadratic).
        var byName: [String: PoolBalancer]?
        var moved = balancers.count != newSnapshot.pools.count
        for (index, pool) in newSnapshot.pools.enumerated() {
            var existing: PoolBalancer?
            if index < balancers.count, balancers[index].pool.name == pool.name {
                existing = balancers[index]
            } else {
                moved = true
                if byName == nil { byName = Dictionary(balancers.map { ($0.pool.name, $0) }, uniquingKeysWith: { first, _ in first }) }
                existing = byName?[pool.name]
            }
            // A pool the control plane did not rebuild is the same value: compared in O(1) (its
            // server array is the same storage), and nothing of it needs doing.
            if let existing, existing.pool == pool {
                newBalancers.append(existing)
                continue
            }
            applyServers(of: pool)
            if let existing {
                update(existing, to: pool)
                newBalancers.append(existing)
            } else {
                newBalancers.append(PoolBalancer(pool: pool, seed: random.next()))
            }
            if !moved { locate(pool, at: index) }
        }
        balancers = newBalancers
        if moved {
            for i in 0..<serverLocation.count { serverLocation[i] = nil }
            for (p, balancer) in balancers.enumerated() { locate(balancer.pool, at: p) }
        }
    }

    /// A balancer takes its pool's new snapshot. Its servers' places may change: the old ones
    /// are forgotten before the new are set.
    private func update(_ balancer: PoolBalancer, to pool: PoolSnapshot) {
        for old in balancer.pool.servers where old.id < serverLocation.count { serverLocation[old.id] = nil }
        balancer.update(to: pool)
    }

    /// Where each server of the pool at `index` sits, for passive outlier detection.
    private func locate(_ pool: PoolSnapshot, at index: Int) {
        for (i, server) in pool.servers.enumerated() { serverLocation[server.id] = (index, i) }
    }

    /// A rebuilt pool's servers: whether each takes new requests, since when it drains (its
    /// idle connections close), and its address.
    private func applyServers(of pool: PoolSnapshot) {
        for server in pool.servers {
            serverReady[server.id] = server.state == .ready
            if server.state == .ready {
                drainingSince[server.id] = .max
            } else if drainingSince[server.id] == .max {
                drainingSince[server.id] = monotonicMilliseconds()
            }
            if server.state != .ready {
                // Draining: no new requests, so its idle connections have no further use.
                for connection in idle[server.id] { connection.close() }
                idle[server.id].removeAll()
            }
            if addresses[server.id] == nil { addresses[server.id] = Sockets.Address(server.address) }
        }
    }

    /// A 250 ms check runs only while some server drains.
    func updateDrainCheck() {
        drainCheck.set(drainingSince.contains { $0 != .max }, everyMilliseconds: 250)
    }

    /// Closes tunnels to servers that have drained for longer than `tunnel_drain`.
    func closeDrainedTunnels() {
        let now = monotonicMilliseconds()
        var c = clients
        while let client = c {
            c = client.next
            if let id = client.tunnelServerID, drainingSince[id] != .max, now - drainingSince[id] >= settings.tunnelDrainMs {
                client.abort()
            }
        }
    }
}
