import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// The routing changes the admin API makes: flips, canaries, rules, rollback, servers.
extension ControlPlane {
    public func flip(service name: String, to target: String?, actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        let current = try service(name)
        let to: String
        if let target {
            try pool(target)
            to = target
        } else {
            guard let standby = current.standby else {
                throw AdminError(409, "nothing to flip to", "service \(name) has no standby pool; name one with {\"to\": POOL}")
            }
            to = standby
        }
        if to == current.active {
            throw AdminError(409, "already active", "pool \(to) already takes service \(name)'s traffic")
        }
        return try mutate(actor: actor, action: "flip", target: "service \(name)", scope: .service(name), ifMatch: ifMatch, lockToken: lockToken,
                          before: Self.json(current)) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            var s = current
            s.standby = current.active
            s.active = to
            if s.canary?.pool == to { s.canary = nil } // the canary became the whole service
            state.services[name] = s
            pushHistory(name, current)
            return Self.json(s)
        }
    }

    public func setCanary(service name: String, pool canaryPool: String, weight: Int, sticky: StickyKey??,
                          guardrail: CanaryGuard?? = nil,
                          actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        let current = try service(name)
        if weight > 0 {
            try pool(canaryPool)
            if canaryPool == current.active {
                throw AdminError(409, "canary is the active pool", "pool \(canaryPool) already takes all of service \(name)'s traffic")
            }
        }
        // After the checks of what the change names (as in every change), before the guard's
        // window below is touched: a refused change leaves everything as it was.
        try checkLock(lockToken, scope: .service(name))
        // The sample taken before the change is the window's start: nothing the canary pool
        // served before counts, everything after does.
        let effectiveGuard: CanaryGuard?
        switch guardrail {
        case .some(let given): effectiveGuard = given
        case .none: effectiveGuard = current.canary?.guardrail
        }
        if weight > 0, let g = effectiveGuard {
            if guardWindows[name]?.key != CanaryGuardWindow.key(pool: canaryPool, rule: g),
               let sample = Self.guardSample(pool: canaryPool, stats: collectStats(), snapshot: snapshot(), time: monotonicMilliseconds()) {
                var window = CanaryGuardWindow(pool: canaryPool, rule: g)
                _ = window.add(sample)
                guardWindows[name] = window
            }
        }
        return try mutate(actor: actor, action: "canary", target: "service \(name)", scope: .service(name), ifMatch: ifMatch, lockToken: lockToken,
                          before: Self.json(current)) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            var s = current
            if weight == 0 {
                s.canary = nil
            } else {
                let keep = sticky ?? current.canary?.sticky
                let keepGuard = guardrail ?? current.canary?.guardrail
                s.canary = CanaryConfig(pool: canaryPool, weight: weight, sticky: keep ?? nil, guardrail: keepGuard ?? nil)
            }
            state.services[name] = s
            pushHistory(name, current)
            return Self.json(s)
        }
    }

    public func setRules(service name: String, rules: [RouteRule], actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        let current = try service(name)
        for rule in rules { try pool(rule.pool) }
        return try mutate(actor: actor, action: "rules", target: "service \(name)", scope: .service(name), ifMatch: ifMatch, lockToken: lockToken,
                          before: Self.json(current)) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            var s = current
            s.rules = rules
            state.services[name] = s
            pushHistory(name, current)
            return Self.json(s)
        }
    }

    public func rollback(service name: String, actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        let current = try service(name)
        guard history[name]?.isEmpty == false else {
            throw AdminError(409, "nothing to roll back", "service \(name) has no earlier routing recorded")
        }
        return try mutate(actor: actor, action: "rollback", target: "service \(name)", scope: .service(name), ifMatch: ifMatch, lockToken: lockToken,
                          before: Self.json(current)) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            guard let previous = popHistory(name) else {
                throw AdminError(409, "nothing to roll back", "service \(name) has no earlier routing recorded")
            }
            guard RuntimeState.routes(previous, onlyTo: Set(state.servers.keys)) else {
                throw AdminError(409, "earlier routing is gone", "service \(name)'s earlier routing names a pool that no longer exists")
            }
            state.services[name] = previous
            return Self.json(previous)
        }
    }

    public func setServer(pool poolName: String, server: String, weight: Int?, serverState: ServerState?,
                          actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        try pool(poolName)
        guard let current = state.servers[poolName]?[server], current.removed != true else {
            let names = (state.servers[poolName]?.keys.sorted() ?? []).joined(separator: ", ")
            throw AdminError(404, "no such server", "pool \(poolName) has no server \(server); servers: \(names)")
        }
        if let weight, !(0...ServerConfig.maxWeight).contains(weight) {
            throw AdminError(400, "weight out of range", "weight must be 0 to \(ServerConfig.maxWeight)")
        }
        let action = serverState.map { $0 == .ready ? "undrain" : $0.rawValue } ?? "weight"
        // Before the side effects below: a refused change must not leave the server pending or ramping.
        try checkLock(lockToken, scope: .pool(poolName, in: state), pool: poolName)
        if serverState == .ready && current.state != .ready {
            // Back from a drain: in a checked pool it must pass its checks first; then it ramps up.
            for name in resolvedServerNames(pool: poolName, server: server) {
                health?.markPending(pool: poolName, server: name)
                startRamp(pool: poolName, server: name)
            }
        }
        return try mutate(actor: actor, action: action, target: "server \(poolName)/\(server)",
                          scope: .pool(poolName, in: state), pool: poolName, ifMatch: ifMatch, lockToken: lockToken,
                          before: ["weight": current.weight, "state": current.state.rawValue]) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            var s = current
            if let weight { s.weight = weight }
            if let serverState { s.state = serverState }
            state.servers[poolName, default: [:]][server] = s
            return ["weight": s.weight, "state": s.state.rawValue]
        }
    }

    public func addServer(pool poolName: String, server new: AdminBody.NewServer,
                          actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        try pool(poolName)
        let name = new.name, weight = new.weight, serverState = new.state
        let address = new.address.description
        if let existing = state.servers[poolName]?[name], existing.removed != true {
            throw AdminError(409, "server exists", "pool \(poolName) already has a server \(name)")
        }
        if config.pool(named: poolName)?.namedServers.contains(where: { $0.name == name }) ?? false {
            throw AdminError(409, "server exists", "the configuration file defines \(poolName)/\(name) by DNS name; use another name")
        }
        let inFile = config.pool(named: poolName)?.servers.first { $0.name == name }
        if let inFile, inFile.address.description != address {
            throw AdminError(409, "server exists", "the configuration file defines \(poolName)/\(name) at \(inFile.address); use that address or another name")
        }
        let generation = try mutate(actor: actor, action: "add server", target: "server \(poolName)/\(name)",
                                    scope: .pool(poolName, in: state), pool: poolName, ifMatch: ifMatch,
                                    lockToken: lockToken, before: nil) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            state.servers[poolName, default: [:]][name] = RuntimeState.Server(weight: weight, state: serverState,
                                                                 address: inFile == nil ? address : nil)
            return ["address": address, "weight": weight, "state": serverState.rawValue]
        }
        health?.sync(startup: false) // a checked pool's new server waits for its checks
        startRamp(pool: poolName, server: name)
        return generation
    }

    /// Removes a server that has been drained (or put in maintenance) and has no request in flight.
    public func removeServer(pool poolName: String, name: String, actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        try pool(poolName)
        guard let current = state.servers[poolName]?[name], current.removed != true else {
            throw AdminError(404, "no such server", "pool \(poolName) has no server \(name)")
        }
        guard current.state != .ready else {
            throw AdminError(409, "server not drained", "drain \(poolName)/\(name) first (state drain), wait for its active requests to reach zero, then remove it")
        }
        let snapshot = self.snapshot()
        // A server given by name stands for every address it resolved to (draining ones too).
        let ids = snapshot.pools.first(where: { $0.name == poolName })?.servers
            .filter { $0.name == name || ResolvedNames.configuredName(of: $0.name) == name }.map(\.id) ?? []
        if !ids.isEmpty {
            let stats = collectStats().servers
            let active = ids.reduce(0) { sum, id in
                sum + (id * ServerStats.stride + ServerStats.active < stats.count ? stats[id * ServerStats.stride + ServerStats.active] : 0)
            }
            if active > 0 {
                throw AdminError(409, "requests in flight", "\(poolName)/\(name) still has \(active) active request(s); wait until it reaches zero")
            }
        }
        let inFile = config.pool(named: poolName)?.hasServer(named: name) ?? false
        return try mutate(actor: actor, action: "remove server", target: "server \(poolName)/\(name)",
                          scope: .pool(poolName, in: state), pool: poolName, ifMatch: ifMatch,
                          lockToken: lockToken, before: ["weight": current.weight, "state": current.state.rawValue]) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            if inFile {
                var removed = current
                removed.removed = true
                state.servers[poolName, default: [:]][name] = removed
            } else {
                state.servers[poolName, default: [:]][name] = nil
            }
            return nil
        }
    }

    /// Labels the version `pool`'s servers run (nil clears it). A pool change like its servers':
    /// covered by the locks of the services that route to the pool.
    public func setVersion(pool poolName: String, version: String?, actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        try pool(poolName)
        let current = state.versions[poolName]
        return try mutate(actor: actor, action: "version", target: "pool \(poolName)", scope: .pool(poolName, in: state), pool: poolName,
                          ifMatch: ifMatch, lockToken: lockToken,
                          before: ["version": current.map { $0 as Any } ?? NSNull()] as [String: Any]) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            state.versions[poolName] = version
            return ["version": version.map { $0 as Any } ?? NSNull()] as [String: Any]
        }
    }
}
