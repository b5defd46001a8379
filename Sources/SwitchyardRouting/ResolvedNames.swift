import SwitchyardConfig

/// The addresses one server given by a DNS name stands for in a routing snapshot.
public struct ResolvedAddresses: Sendable, Equatable {
    /// The last good answer, in a stable order: each takes new requests.
    public var current: [SocketAddress]
    /// Addresses an earlier answer had and the last one has not: they take no new request
    /// and leave the pool once their requests in flight have finished.
    public var draining: [SocketAddress]

    public init(current: [SocketAddress], draining: [SocketAddress] = []) {
        self.current = current
        self.draining = draining
    }

    /// A name's weight shared by its `count` addresses: as evenly as whole numbers allow
    /// (the first ones take the remainder), and never 0 for a positive weight.
    public static func shares(of weight: Int, count: Int) -> [Int] {
        guard count > 0 else { return [] }
        guard weight > 0 else { return [Int](repeating: 0, count: count) }
        let base = weight / count, remainder = weight % count
        return (0..<count).map { max(1, base + ($0 < remainder ? 1 : 0)) }
    }
}

/// What the proxy knows about every server given by a DNS name: the last good answer,
/// addresses still draining, when it last asked and what went wrong. Owned by the control
/// thread; the resolving itself happens elsewhere and is reported here.
///
/// A failed resolution (timeout, NXDOMAIN, SERVFAIL, an answer without addresses) never
/// changes the addresses in use: only a good answer does.
public struct ResolvedNames: Sendable {
    public struct Entry: Sendable, Equatable {
        public let pool: String
        /// The server's name in the file.
        public let server: String
        public let target: HostAndPort
        public internal(set) var policy: ResolvePolicy
        /// The last good answer, sorted.
        public internal(set) var addresses: [SocketAddress] = []
        /// Addresses that left the answer, with when they started draining (monotonic ms).
        public internal(set) var draining: [SocketAddress: Int64] = [:]
        /// Wall-clock seconds since 1970 of the last answer or failure, and of the last good answer.
        public internal(set) var lastAttempt: Double?
        public internal(set) var lastSuccess: Double?
        /// Why the last resolution failed; nil once one succeeds.
        public internal(set) var lastError: String?
        public internal(set) var consecutiveFailures = 0
        /// Resolutions finished since start (good or not), and those that failed.
        public internal(set) var resolutions = 0
        public internal(set) var failures = 0
        /// A resolution is under way; `ticket` names it, so that a late answer for a name the
        /// configuration has changed meanwhile is recognised and dropped.
        public internal(set) var inFlight = false
        public internal(set) var ticket: UInt64 = 0
        /// When the next resolution is due (monotonic ms).
        public internal(set) var due: Int64 = 0

        public var key: String { ResolvedNames.key(pool: pool, server: server) }
        /// The addresses in use are not a fresh answer: the last resolution failed, or none has succeeded yet.
        public var isStale: Bool { lastError != nil || lastSuccess == nil }
    }

    /// By `key(pool:server:)`.
    public private(set) var entries: [String: Entry] = [:]
    private var nextTicket: UInt64 = 0

    public init() {}

    public static func key(pool: String, server: String) -> String { "\(pool)/\(server)" }

    /// The name of the server an address of a named server becomes: `NAME@ADDRESS`
    /// (`app.internal:8080@10.0.0.5`). Names in the file cannot hold `@`, so these never clash.
    public static func serverName(_ server: String, address: SocketAddress) -> String { "\(server)@\(address.host)" }

    /// The file's server behind a resolved server's name; nil for other servers.
    public static func configuredName(of name: String) -> String? {
        name.firstIndex(of: "@").map { String(name[..<$0]) }
    }

    /// A resolution to run: the name, and the ticket its answer must come back with.
    public struct Job: Sendable, Equatable {
        public let key: String
        public let target: HostAndPort
        public let family: ResolveFamily
        public let ticket: UInt64
    }

    /// What a good answer changed.
    public struct Change: Sendable, Equatable {
        public var added: [SocketAddress]
        public var removed: [SocketAddress]
        /// The name resolved after failing.
        public var recovered: Bool
        public var isEmpty: Bool { added.isEmpty && removed.isEmpty }
    }

    /// Matches the entries to `config`: a server whose name and family are unchanged keeps
    /// its answer (and is asked again at once: a reload resolves every name); other entries
    /// start empty; entries of servers the file no longer has are dropped.
    public mutating func sync(with config: SwitchyardConfig, now: Int64) {
        var wanted: [String: Entry] = [:]
        for pool in config.pools {
            for named in pool.namedServers {
                let key = Self.key(pool: pool.name, server: named.name)
                if var entry = entries[key], entry.target == named.target, entry.policy.family == pool.resolve.family {
                    entry.policy = pool.resolve
                    entry.due = now
                    wanted[key] = entry
                } else {
                    wanted[key] = Entry(pool: pool.name, server: named.name, target: named.target, policy: pool.resolve, due: now)
                }
            }
        }
        entries = wanted
    }

    /// The resolutions due at `now`, marked in flight.
    public mutating func takeDue(now: Int64) -> [Job] {
        var jobs: [Job] = []
        for key in entries.keys.sorted() {
            guard var entry = entries[key], !entry.inFlight, entry.due <= now else { continue }
            nextTicket += 1
            entry.inFlight = true
            entry.ticket = nextTicket
            entries[key] = entry
            jobs.append(Job(key: key, target: entry.target, family: entry.policy.family, ticket: nextTicket))
        }
        return jobs
    }

    /// Records a good answer. An empty answer counts as a failure (the addresses in use
    /// stay). Returns what changed, or nil when the answer is for a resolution that no
    /// longer matters (the entry went or changed meanwhile).
    public mutating func recordAnswer(_ addresses: [SocketAddress], ticket: UInt64, key: String,
                                      now: Int64, wallClock: Double) -> Change? {
        guard addresses.count > 0 else {
            recordFailure("the answer holds no address", ticket: ticket, key: key, now: now, wallClock: wallClock)
            return nil
        }
        guard var entry = entries[key], entry.inFlight, entry.ticket == ticket else { return nil }
        let fresh = Array(Set(addresses)).sorted { $0.description < $1.description }
        let old = Set(entry.addresses), new = Set(fresh)
        let change = Change(added: fresh.filter { !old.contains($0) },
                            removed: entry.addresses.filter { !new.contains($0) },
                            recovered: entry.lastError != nil)
        for address in change.removed { entry.draining[address] = now }
        for address in fresh { entry.draining[address] = nil }
        entry.addresses = fresh
        entry.inFlight = false
        entry.due = now + entry.policy.interval.milliseconds
        entry.lastAttempt = wallClock
        entry.lastSuccess = wallClock
        entry.lastError = nil
        entry.consecutiveFailures = 0
        entry.resolutions += 1
        entries[key] = entry
        return change
    }

    /// Records a failed resolution; the addresses in use stay. A name that never resolved is
    /// asked again a second later (a service may simply not be up yet), others after their
    /// interval. Returns whether this is the first failure in a row (worth a log line).
    @discardableResult
    public mutating func recordFailure(_ reason: String, ticket: UInt64, key: String, now: Int64, wallClock: Double) -> Bool {
        guard var entry = entries[key], entry.inFlight, entry.ticket == ticket else { return false }
        entry.inFlight = false
        entry.lastAttempt = wallClock
        entry.lastError = reason
        entry.consecutiveFailures += 1
        entry.resolutions += 1
        entry.failures += 1
        let retry = entry.addresses.isEmpty ? min(entry.policy.interval, ResolvePolicy.minimumInterval) : entry.policy.interval
        entry.due = now + retry.milliseconds
        entries[key] = entry
        return entry.consecutiveFailures == 1
    }

    /// The addresses each named server stands for, by `key(pool:server:)`, for a snapshot.
    public var snapshotAddresses: [String: ResolvedAddresses] {
        entries.mapValues { entry in
            ResolvedAddresses(current: entry.addresses,
                              draining: entry.draining.keys.sorted { $0.description < $1.description })
        }
    }

    /// Whether some address is draining.
    public var isDraining: Bool { entries.values.contains { !$0.draining.isEmpty } }

    /// Drops draining addresses that have drained for at least `minimumMs` and have no
    /// request in flight (`activeRequests(pool, serverName)`, with the resolved server's name).
    /// Returns the keys and addresses dropped.
    public mutating func removeDrained(now: Int64, minimumMs: Int64,
                                       activeRequests: (String, String) -> Int) -> [(key: String, address: SocketAddress)] {
        var dropped: [(key: String, address: SocketAddress)] = []
        for key in entries.keys.sorted() {
            guard var entry = entries[key], !entry.draining.isEmpty else { continue }
            for (address, since) in entry.draining.sorted(by: { $0.key.description < $1.key.description })
            where now - since >= minimumMs && activeRequests(entry.pool, Self.serverName(entry.server, address: address)) == 0 {
                entry.draining[address] = nil
                dropped.append((key, address))
            }
            entries[key] = entry
        }
        return dropped
    }
}

extension ResolvedAddresses {
    /// The servers a pool's named servers stand for in a snapshot, in the file's order: one
    /// per address of the last good answer, sharing the server's weight and taking its state,
    /// then the addresses still draining (no new requests).
    /// - Parameters:
    ///   - live: the pool's runtime state (weights and states by the file's server name).
    ///   - resolved: by `ResolvedNames.key(pool:server:)`.
    static func servers(of pool: PoolConfig, live: [String: RuntimeState.Server], resolved: [String: ResolvedAddresses],
                        registry: ServerRegistry, down: Set<String>, weightPercent: [String: Int]) -> [ServerSnapshot] {
        var servers: [ServerSnapshot] = []
        for named in pool.namedServers {
            let server = live[named.name] ?? RuntimeState.Server(weight: named.weight, state: .ready)
            if server.removed == true { continue }
            let addresses = resolved[ResolvedNames.key(pool: pool.name, server: named.name)] ?? ResolvedAddresses(current: [])
            let shares = shares(of: server.weight, count: addresses.current.count)
            for (address, share) in zip(addresses.current, shares) {
                let name = ResolvedNames.serverName(named.name, address: address)
                let key = "\(pool.name)/\(name)"
                servers.append(ServerSnapshot(id: registry.id(pool: pool.name, server: name, address: address),
                                              name: name, address: address, weight: share, state: server.state,
                                              healthy: !down.contains(key), weightPercent: weightPercent[key] ?? 100))
            }
            for address in addresses.draining {
                let name = ResolvedNames.serverName(named.name, address: address)
                servers.append(ServerSnapshot(id: registry.id(pool: pool.name, server: name, address: address),
                                              name: name, address: address, weight: 0, state: .drain,
                                              healthy: !down.contains("\(pool.name)/\(name)")))
            }
        }
        return servers
    }
}
