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

    /// The state a configuration describes, before any runtime change.
    public init(config: SwitchyardConfig, generation: UInt64 = 1) {
        self.generation = generation
        services = [:]
        for s in config.services {
            services[s.name] = Service(active: s.active, standby: s.standby, canary: s.canary, rules: s.rules)
        }
        servers = [:]
        for p in config.pools {
            var entries: [String: Server] = [:]
            for server in p.servers { entries[server.name] = Server(weight: server.weight, state: .ready) }
            servers[p.name] = entries
        }
    }

    /// Applies a saved state onto this one (built from the current configuration): runtime
    /// changes are kept where the services, pools and servers they name still exist. Returns
    /// a line for everything that had to be dropped.
    public mutating func restore(from saved: RuntimeState) -> [String] {
        var dropped: [String] = []
        let pools = Set(servers.keys)
        generation = max(generation, saved.generation)
        for (name, service) in saved.services {
            guard services[name] != nil else { dropped.append("service \(name) is no longer configured"); continue }
            let named = [service.active] + (service.standby.map { [$0] } ?? []) + (service.canary.map { [$0.pool] } ?? []) + service.rules.map(\.pool)
            if let missing = named.first(where: { !pools.contains($0) }) {
                dropped.append("service \(name): pool \(missing) is no longer configured; its runtime routing was reset to the file's")
                continue
            }
            services[name] = service
        }
        for (pool, entries) in saved.servers {
            guard servers[pool] != nil else { continue }
            for (server, value) in entries {
                if servers[pool]![server] != nil || value.address != nil { servers[pool]![server] = value }
                else { dropped.append("server \(pool)/\(server) is no longer configured") }
            }
        }
        return dropped
    }
}
