import CLibevent
import Glibc
import Synchronization
import SwitchyardConfig
import SwitchyardHTTP
import SwitchyardRouting

/// Passive outlier detection as this worker sees it (rules in `OutlierDetector`).
extension Worker {
    // MARK: Passive outlier detection

    /// Reports how an attempt on a server ended: a 5xx or a connection failure counts
    /// against it; enough in a row eject it from this worker's balancing for a while.
    func recordOutcome(serverID: Int, failed: Bool) {
        // The pool is not copied unless the server is ejected: this runs for every exchange.
        guard serverID < serverLocation.count, let location = serverLocation[serverID],
              let od = balancers[location.pool].pool.outlierDetection else { return }
        let balancer = balancers[location.pool]
        guard let ms = outliers.record(serverID: serverID, failed: failed, config: od,
                                       poolServerIDs: balancer.pool.servers.lazy.map(\.id), now: { monotonicMilliseconds() }) else { return }
        let pool = balancer.pool
        count(serverID, ServerStats.ejections)
        count(serverID, ServerStats.ejectedNow)
        let name = location.index < pool.servers.count ? pool.servers[location.index].name : "server \(serverID)"
        logToStandardError("switchyard: worker \(index): ejected \(pool.name)/\(name) for \(Double(ms) / 1000)s after \(pool.outlierDetection?.consecutiveFailures ?? 0) consecutive failures")
        refreshEjectionMasks(pools: [location.pool])
    }

    /// - Parameter pools: the balancers to refresh (the pools a publication changed); nil for all.
    func refreshEjectionMasks(pools: [Int]? = nil) {
        func refresh(_ balancer: PoolBalancer) {
            var mask: UInt64 = 0
            for (i, server) in balancer.pool.servers.enumerated() where i < 64 && outliers.isEjected(server.id) {
                mask |= 1 << UInt64(i)
            }
            balancer.ejected = mask
        }
        if let pools {
            for index in pools where index < balancers.count { refresh(balancers[index]) }
        } else {
            for balancer in balancers { refresh(balancer) }
        }
        ejectionCheck.set(outliers.anyEjected, everyMilliseconds: 250)
    }

    /// Returns ejected servers whose time is up.
    func returnEjectedServers() {
        let now = monotonicMilliseconds()
        let returned = outliers.returnDue(now: now)
        var pools: [Int] = []
        for id in returned {
            count(id, ServerStats.ejectedNow, -1)
            if id < serverLocation.count, let location = serverLocation[id], location.index < balancers[location.pool].pool.servers.count {
                let pool = balancers[location.pool].pool
                logToStandardError("switchyard: worker \(index): \(pool.name)/\(pool.servers[location.index].name) returns from ejection")
                pools.append(location.pool)
            }
        }
        // A server without a place has no balancer whose mask could name it.
        if !returned.isEmpty { refreshEjectionMasks(pools: pools) }
    }
}
