import SwitchyardConfig

/// Whether a server takes new requests.
public enum ServerState: String, Codable, Sendable, CaseIterable {
    /// In rotation.
    case ready
    /// No new requests; in-flight requests finish; idle connections close.
    case drain
    /// Out of rotation entirely (maintenance).
    case maint
}

/// Everything an operator can change at runtime. The configuration file gives the starting
/// point; the admin API changes it; the state file keeps it across restarts.
public struct RuntimeState: Codable, Equatable, Sendable {
    public struct Service: Codable, Equatable, Sendable {
        public var active: String
        public var standby: String?
        public var canary: CanaryConfig?
        public var rules: [RouteRule]
    }

    public struct Server: Codable, Equatable, Sendable {
        public var weight: Int
        public var state: ServerState
        /// Set for servers added at runtime (configuration servers take the file's address).
        public var address: String?
        /// A configuration server removed at runtime (kept removed until the file changes).
        public var removed: Bool?

        public init(weight: Int, state: ServerState, address: String? = nil, removed: Bool? = nil) {
            self.weight = weight
            self.state = state
            self.address = address
            self.removed = removed
        }
    }

    /// Increases with every change; a mutation may require the generation it was based on.
    public var generation: UInt64
    public var services: [String: Service]
    /// Pool name, then server name.
    public var servers: [String: [String: Server]]
    /// The version label of each pool that has one (set at runtime only; the file has none).
    public var versions: [String: String]

    enum CodingKeys: String, CodingKey { case generation, services, servers, versions }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        generation = try container.decode(UInt64.self, forKey: .generation)
        services = try container.decode([String: Service].self, forKey: .services)
        servers = try container.decode([String: [String: Server]].self, forKey: .servers)
        // Absent in state files written before pools had versions.
        versions = try container.decodeIfPresent([String: String].self, forKey: .versions) ?? [:]
    }

    /// The state a configuration describes, before any runtime change.
    public init(config: SwitchyardConfig, generation: UInt64 = 1) {
        self.generation = generation
        services = [:]
        for s in config.services {
            services[s.name] = Service(active: s.active, standby: s.standby, canary: s.canary, rules: s.rules)
        }
        servers = [:]
        versions = [:]
        for p in config.pools {
            var entries: [String: Server] = [:]
            for server in p.servers { entries[server.name] = Server(weight: server.weight, state: .ready) }
            // A server given by name has one entry, whatever its name resolves to.
            for server in p.namedServers { entries[server.name] = Server(weight: server.weight, state: .ready) }
            servers[p.name] = entries
        }
    }

    /// Whether everything `service` routes to is among `pools`.
    public static func routes(_ service: Service, onlyTo pools: Set<String>) -> Bool {
        pools.contains(service.active) && (service.standby.map(pools.contains) ?? true)
            && (service.canary.map { pools.contains($0.pool) } ?? true) && service.rules.allSatisfy { pools.contains($0.pool) }
    }

    /// The services whose routing names `pool`: as active, standby or canary pool, or in a rule.
    public func services(routingTo pool: String) -> Set<String> {
        var names = Set<String>()
        for (name, s) in services where s.active == pool || s.standby == pool || s.canary?.pool == pool || s.rules.contains(where: { $0.pool == pool }) {
            names.insert(name)
        }
        return names
    }

    /// Merges runtime changes into this state (built from the current configuration file).
    ///
    /// `base` is the state the previous file described. Each field (a service's active,
    /// standby, canary and rules; a server's weight, state, address) keeps its runtime value
    /// where an operator changed it (it differs from `base`) and takes the new file's value
    /// otherwise. A kept value that names a pool the file no longer has falls back to the file.
    /// Returns a line for everything that could not be kept.
    public mutating func merge(runtime: RuntimeState, base: RuntimeState) -> [String] {
        var notes: [String] = []
        let pools = Set(servers.keys)
        generation = max(generation, runtime.generation)
        for (name, live) in runtime.services {
            guard var fresh = services[name] else {
                if base.services[name] != live { notes.append("service \(name) is no longer in the file; its runtime changes were dropped") }
                continue
            }
            let old = base.services[name]
            func changed<T: Equatable>(_ value: (Service) -> T) -> Bool { old.map { value($0) != value(live) } ?? true }
            if changed({ $0.active }) {
                if pools.contains(live.active) { fresh.active = live.active }
                else { notes.append("service \(name): active pool \(live.active) is no longer in the file") }
            }
            if changed({ $0.standby }) {
                if live.standby.map(pools.contains) ?? true { fresh.standby = live.standby }
                else { notes.append("service \(name): standby pool \(live.standby!) is no longer in the file") }
            }
            if changed({ $0.canary }) {
                if live.canary.map({ pools.contains($0.pool) }) ?? true { fresh.canary = live.canary }
                else { notes.append("service \(name): canary pool \(live.canary!.pool) is no longer in the file") }
            }
            if changed({ $0.rules }) {
                if live.rules.allSatisfy({ pools.contains($0.pool) }) { fresh.rules = live.rules }
                else { notes.append("service \(name): runtime rules name a pool that is no longer in the file") }
            }
            if fresh.canary?.pool == fresh.active { fresh.canary = nil }
            // A kept standby may now equal an active pool that fell back to the file's: a flip
            // would then have nowhere to go, so the file's standby (if different) takes its place.
            if let standby = fresh.standby, standby == fresh.active {
                let fileStandby = services[name]?.standby
                fresh.standby = fileStandby == fresh.active ? nil : fileStandby
                notes.append("service \(name): standby pool \(standby) is also its active pool now; the standby is \(fresh.standby ?? "none")")
            }
            services[name] = fresh
        }
        for (pool, entries) in runtime.servers {
            guard servers[pool] != nil else {
                if base.servers[pool] != entries { notes.append("pool \(pool) is no longer in the file; its runtime changes were dropped") }
                continue
            }
            for (server, live) in entries {
                let old = base.servers[pool]?[server]
                if let fresh = servers[pool]?[server] {
                    // In the new file: runtime changes to it win.
                    if old != live { servers[pool, default: [:]][server] = RuntimeState.Server(weight: old?.weight != live.weight ? live.weight : fresh.weight,
                                                                                   state: old?.state != live.state ? live.state : fresh.state,
                                                                                   address: nil, removed: live.removed) }
                } else if live.address != nil {
                    servers[pool, default: [:]][server] = live // added at runtime
                } else if old == nil || old != live {
                    notes.append("server \(pool)/\(server) is no longer in the file")
                }
            }
        }
        // Versions describe what the servers run, which no file says: kept while the pool is.
        for (pool, version) in runtime.versions {
            if servers[pool] != nil { versions[pool] = version }
            else { notes.append("pool \(pool) is no longer in the file; its version label \(version) was dropped") }
        }
        return notes
    }
}
