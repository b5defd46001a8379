import SwitchyardConfig

/// One upstream server as the data plane sees it.
public struct ServerSnapshot: Sendable, Equatable {
    /// Stable across snapshots for the same pool, name and address: workers key their
    /// connection pools and counters by it.
    public let id: Int
    public let name: String
    public let address: SocketAddress
    public let weight: Int
}

public struct PoolSnapshot: Sendable, Equatable {
    public let name: String
    public let balance: BalanceAlgorithm
    public let servers: [ServerSnapshot]
}

public struct ServiceRoute: Sendable, Equatable {
    public let name: String
    /// Lowercased host names; a leading `*.` matches any subdomain. Empty matches any host.
    let exactHosts: [[UInt8]]
    let wildcardSuffixes: [[UInt8]] // ".example.com"
    let pathPrefix: [UInt8]
    public let isDefault: Bool
    /// Index into `RoutingSnapshot.pools`.
    public let activePool: Int
}

/// Everything a worker needs to route a request. Immutable: the control plane builds a
/// new one for every change and publishes it; workers never see a half-applied change.
public final class RoutingSnapshot: Sendable {
    public let generation: UInt64
    public let services: [ServiceRoute]
    public let pools: [PoolSnapshot]
    /// One more than the largest server id, so workers can size arrays indexed by id.
    public let serverIDLimit: Int

    public init(generation: UInt64, services: [ServiceRoute], pools: [PoolSnapshot]) {
        self.generation = generation
        self.services = services
        self.pools = pools
        self.serverIDLimit = (pools.flatMap { $0.servers.map(\.id) }.max() ?? -1) + 1
    }

    /// Builds a snapshot from a validated configuration, taking server ids from `registry`.
    public convenience init(config: SwitchyardConfig, generation: UInt64, registry: ServerRegistry) {
        let pools = config.pools.map { pool in
            PoolSnapshot(name: pool.name, balance: pool.balance, servers: pool.servers.map { s in
                ServerSnapshot(id: registry.id(pool: pool.name, server: s.name, address: s.address),
                               name: s.name, address: s.address, weight: s.weight)
            })
        }
        let services = config.services.map { service -> ServiceRoute in
            let poolIndex = pools.firstIndex { $0.name == service.active } ?? 0
            let hosts = service.match?.hosts ?? []
            return ServiceRoute(
                name: service.name,
                exactHosts: hosts.filter { !$0.hasPrefix("*.") }.map { Array($0.utf8) },
                wildcardSuffixes: hosts.filter { $0.hasPrefix("*.") }.map { Array($0.dropFirst().utf8) },
                pathPrefix: Array((service.match?.pathPrefix ?? "/").utf8),
                isDefault: service.match == nil,
                activePool: poolIndex)
        }
        self.init(generation: generation, services: services, pools: pools)
    }

    /// The service for a request, or `nil` (404). The host is matched first (exact beats
    /// wildcard, a longer wildcard beats a shorter one, a service without hosts matches any
    /// host), then the longest path prefix; a service without `match` is the fallback.
    /// - Parameters:
    ///   - host: the `Host` value as sent (any port is ignored; case-insensitive).
    ///   - path: the request path.
    public func route(host: UnsafeBufferPointer<UInt8>, path: UnsafeBufferPointer<UInt8>) -> Int? {
        let hostLength = Self.hostNameLength(host)
        var best = -1
        var bestHostScore = -1
        var bestPrefix = -1
        var fallback = -1
        // Indexes, not `for service in services`: iterating copies each route and retains its arrays.
        for index in services.indices {
            if services[index].isDefault { if fallback < 0 { fallback = index }; continue }
            let hostScore = Self.hostScore(services[index], host: host, length: hostLength)
            guard hostScore >= 0, Self.hasPrefix(path, services[index].pathPrefix) else { continue }
            let prefix = services[index].pathPrefix.count
            if hostScore > bestHostScore || (hostScore == bestHostScore && prefix > bestPrefix) {
                best = index; bestHostScore = hostScore; bestPrefix = prefix
            }
        }
        if best >= 0 { return best }
        return fallback >= 0 ? fallback : nil
    }

    /// Length of the host name without a port (and without a trailing dot).
    static func hostNameLength(_ host: UnsafeBufferPointer<UInt8>) -> Int {
        var n = host.count
        if n > 0, host[0] == UInt8(ascii: "[") {
            if let close = host.firstIndex(of: UInt8(ascii: "]")) { return close + 1 }
            return n
        }
        if let colon = host.firstIndex(of: UInt8(ascii: ":")) { n = colon }
        if n > 0, host[n - 1] == UInt8(ascii: ".") { n -= 1 }
        return n
    }

    /// -1: no match; 0: service matches any host; 1 + suffix length: wildcard; Int.max: exact.
    static func hostScore(_ service: ServiceRoute, host: UnsafeBufferPointer<UInt8>, length: Int) -> Int {
        if service.exactHosts.isEmpty && service.wildcardSuffixes.isEmpty { return 0 }
        for exact in service.exactHosts where exact.count == length && equalIgnoringCase(host, 0, exact) {
            return Int.max
        }
        var best = -1
        for suffix in service.wildcardSuffixes where length > suffix.count {
            if equalIgnoringCase(host, length - suffix.count, suffix) { best = max(best, 1 + suffix.count) }
        }
        return best
    }

    static func equalIgnoringCase(_ host: UnsafeBufferPointer<UInt8>, _ offset: Int, _ lowered: [UInt8]) -> Bool {
        for k in 0..<lowered.count {
            var b = host[offset + k]
            if b >= 0x41 && b <= 0x5A { b |= 0x20 }
            if b != lowered[k] { return false }
        }
        return true
    }

    static func hasPrefix(_ path: UnsafeBufferPointer<UInt8>, _ prefix: [UInt8]) -> Bool {
        guard path.count >= prefix.count else { return false }
        for k in 0..<prefix.count where path[k] != prefix[k] { return false }
        return true
    }
}

/// Hands out stable ids for servers. Owned by the control plane (one thread).
public final class ServerRegistry {
    struct Key: Hashable { let pool: String; let server: String; let address: SocketAddress }
    private var ids: [Key: Int] = [:]

    public init() {}

    public func id(pool: String, server: String, address: SocketAddress) -> Int {
        let key = Key(pool: pool, server: server, address: address)
        if let id = ids[key] { return id }
        let id = ids.count
        ids[key] = id
        return id
    }
}
