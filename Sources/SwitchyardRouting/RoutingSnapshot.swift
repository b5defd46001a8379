import SwitchyardConfig
import SwitchyardHTTP

/// One upstream server as the data plane sees it.
public struct ServerSnapshot: Sendable, Equatable {
    /// Stable across snapshots for the same pool, name and address: workers key their
    /// connection pools and counters by it.
    public let id: Int
    public let name: String
    public let address: SocketAddress
    /// The weight balancing uses: 0 unless the server is ready.
    public let weight: Int
    /// The weight an operator set, kept while the server drains.
    public let configuredWeight: Int
    public let state: ServerState
    /// False while active health checks find it down (or it has not passed them yet).
    public let healthy: Bool

    /// Percent of the configured weight in effect (slow start, reported load); 100 normally.
    public let weightPercent: Int

    public init(id: Int, name: String, address: SocketAddress, weight: Int, state: ServerState = .ready, healthy: Bool = true,
                weightPercent: Int = 100) {
        self.id = id
        self.name = name
        self.address = address
        self.configuredWeight = weight
        self.state = state
        self.healthy = healthy
        self.weightPercent = weightPercent
        // A positive weight never rounds down to 0: a ramping server still gets some traffic.
        let scaled = weight * weightPercent / 100
        self.weight = state == .ready && healthy ? (weight > 0 ? max(1, scaled) : 0) : 0
    }
}

public struct PoolSnapshot: Sendable, Equatable {
    public let name: String
    public let balance: BalanceAlgorithm
    public let servers: [ServerSnapshot]
    public var outlierDetection: OutlierDetectionConfig?
    public var retries: Int
    /// The version the pool's servers run, when labelled (for the access log).
    public var version: String?

    public init(name: String, balance: BalanceAlgorithm, servers: [ServerSnapshot],
                outlierDetection: OutlierDetectionConfig? = nil, retries: Int = 2, version: String? = nil) {
        self.name = name
        self.balance = balance
        self.servers = servers
        self.outlierDetection = outlierDetection
        self.retries = retries
        self.version = version
    }
}

/// How one service chooses a pool, in the form the data plane reads fastest.
public struct ServiceRoute: Sendable, Equatable {
    public let name: String
    /// Stable across snapshots and reloads for the same name: workers key counters by it.
    public let statsID: Int
    /// Lowercased host names; a leading `*.` matches any subdomain. Empty matches any host.
    let exactHosts: [[UInt8]]
    let wildcardSuffixes: [[UInt8]] // ".example.com"
    let pathPrefix: [UInt8]
    public let isDefault: Bool
    /// Indexes into `RoutingSnapshot.pools`.
    public let activePool: Int
    public let standbyPool: Int?
    public let canaryPool: Int?
    /// Canary share in basis points (0-10000).
    public let canaryWeight: Int
    public let sticky: Sticky
    public let rules: [Rule]
    /// Lowercased preview header name and the token it must carry.
    public let previewHeader: [UInt8]?
    public let previewToken: [UInt8]
    /// No preview, no rules, no canary: every request goes to the active pool. Lets the
    /// request path skip the decision (and copying this struct's arrays) entirely.
    public let isPlain: Bool
    /// The service sticks by cookie, so a request may need a fresh cookie value.
    public let sticksByCookie: Bool

    public enum Sticky: Sendable, Equatable {
        case none
        case cookie([UInt8])
        /// Lowercased header name.
        case header([UInt8])
        case clientIP
    }

    public struct Rule: Sendable, Equatable {
        public let isCookie: Bool
        /// Lowercased for headers; as written for cookies.
        public let name: [UInt8]
        public let value: [UInt8]
        public let pool: Int
    }

    /// The cookie to set on responses when a request has no sticky key yet.
    public var stickyCookieName: [UInt8]? { if case .cookie(let n) = sticky { return n } else { return nil } }
}

/// Why a request went to the pool it went to (for the access log and tests).
public enum RouteReason: UInt8, Sendable {
    /// The service's active pool: no preview, rule or canary applied.
    case active
    /// The preview header with the right token: the standby pool.
    case preview
    /// A header or cookie rule.
    case rule
    /// The per-request random split of a canary sent it to the canary pool.
    case canary
    /// The client's sticky key (cookie, header or client IP) placed it on the canary or
    /// the active pool, as it will every request with the same key.
    case sticky

    /// The access log's word for it.
    public var name: StaticString {
        switch self {
        case .active: return "active"
        case .preview: return "preview"
        case .rule: return "rule"
        case .canary: return "canary"
        case .sticky: return "sticky"
        }
    }
}

public struct PoolChoice: Sendable {
    public var pool: Int
    public var reason: RouteReason
    /// The request had no sticky cookie: the proxy must set `freshCookieValue` under this name.
    public var setsStickyCookie: Bool
}

/// Everything a worker needs to route a request. Immutable: the control plane builds a
/// new one for every change and publishes it; workers never see a half-applied change.
public final class RoutingSnapshot: Sendable {
    public let generation: UInt64
    public let services: [ServiceRoute]
    public let pools: [PoolSnapshot]
    /// One more than the largest server id, so workers can size arrays indexed by id.
    public let serverIDLimit: Int
    /// One more than the largest service `statsID`.
    public let serviceIDLimit: Int

    /// Services by the hash of each exact host they match (see `hostHash`), in index order;
    /// with `hostAgnostic`, the only services routing must look at when there are many.
    let servicesByHost: [UInt64: [Int]]
    /// Services that are not the default and match by wildcard or any host, in index order.
    let hostAgnostic: [Int]
    /// The first service without a `match` (every request no other service takes).
    let defaultService: Int?
    /// Up to this many services, routing scans them all (faster than hashing the host).
    static let linearScanLimit = 8

    public init(generation: UInt64, services: [ServiceRoute], pools: [PoolSnapshot]) {
        self.generation = generation
        self.services = services
        self.pools = pools
        var limit = -1
        for pool in pools { for server in pool.servers where server.id > limit { limit = server.id } }
        self.serverIDLimit = limit + 1
        self.serviceIDLimit = (services.map(\.statsID).max() ?? -1) + 1
        var byHost: [UInt64: [Int]] = [:]
        var agnostic: [Int] = []
        for (index, service) in services.enumerated() where !service.isDefault {
            for host in service.exactHosts {
                let hash = host.withUnsafeBufferPointer { Self.hostHash($0, length: $0.count) }
                if byHost[hash]?.last != index { byHost[hash, default: []].append(index) }
            }
            if !service.wildcardSuffixes.isEmpty || service.exactHosts.isEmpty { agnostic.append(index) }
        }
        servicesByHost = byHost
        hostAgnostic = agnostic
        defaultService = services.firstIndex { $0.isDefault }
    }

    /// Builds a snapshot from a validated configuration and the runtime state (which names
    /// only pools and servers the configuration has), taking server ids from `registry`.
    /// - Parameter down: servers ("pool/server") that health checks keep out of rotation.
    ///   `weightPercent`: servers ("pool/server") whose weight is scaled (slow start, reported load).
    ///   `resolved`: the addresses of servers given by name (see `ResolvedNames`).
    ///   `cache`: the pools of the previous snapshot built with it; a pool whose inputs are
    ///   unchanged is shared (the same value, which workers compare in O(1)) instead of rebuilt.
    public convenience init(config: SwitchyardConfig, state: RuntimeState? = nil, registry: ServerRegistry,
                            down: Set<String> = [], weightPercent: [String: Int] = [:],
                            resolved: [String: ResolvedAddresses] = [:], cache: PoolSnapshotCache? = nil) {
        let runtime = state ?? RuntimeState(config: config)
        cache?.begin(down: down, weightPercent: weightPercent, resolved: resolved)
        let pools = config.pools.map { pool -> PoolSnapshot in
            let live = runtime.servers[pool.name] ?? [:]
            if let shared = cache?.pool(pool, live: live, version: runtime.versions[pool.name]) { return shared }
            // The "pool/server" keys are made only when some server is down or scaled: with
            // thousands of servers, making them for every snapshot was most of its cost.
            let checksKeys = !down.isEmpty || !weightPercent.isEmpty
            var servers: [ServerSnapshot] = pool.servers.compactMap { s in
                let server = live[s.name] ?? RuntimeState.Server(weight: s.weight, state: .ready)
                if server.removed == true { return nil }
                let key = checksKeys ? "\(pool.name)/\(s.name)" : ""
                return ServerSnapshot(id: registry.id(pool: pool.name, server: s.name, address: s.address),
                                      name: s.name, address: s.address, weight: server.weight, state: server.state,
                                      healthy: !checksKeys || !down.contains(key),
                                      weightPercent: checksKeys ? weightPercent[key] ?? 100 : 100)
            }
            servers += ResolvedAddresses.servers(of: pool, live: live, resolved: resolved, registry: registry,
                                                 down: down, weightPercent: weightPercent)
            // Servers added at runtime follow the file's, in name order.
            let configured = Set(pool.servers.map(\.name) + pool.namedServers.map(\.name))
            for (name, server) in live.sorted(by: { $0.key < $1.key }) where !configured.contains(name) && server.removed != true {
                guard let text = server.address, let address = SocketAddress(parsing: text) else { continue }
                servers.append(ServerSnapshot(id: registry.id(pool: pool.name, server: name, address: address),
                                              name: name, address: address, weight: server.weight, state: server.state,
                                              healthy: !down.contains("\(pool.name)/\(name)"),
                                              weightPercent: weightPercent["\(pool.name)/\(name)"] ?? 100))
            }
            let built = PoolSnapshot(name: pool.name, balance: pool.balance, servers: servers,
                                     outlierDetection: pool.outlierDetection, retries: pool.retries, version: runtime.versions[pool.name])
            cache?.keep(built, config: pool, live: live)
            return built
        }
        cache?.end(keeping: config.pools.count)
        var poolIndex: [String: Int] = [:]
        poolIndex.reserveCapacity(pools.count)
        for (i, pool) in pools.enumerated() where poolIndex[pool.name] == nil { poolIndex[pool.name] = i }
        func index(_ name: String?) -> Int? { name.flatMap { poolIndex[$0] } }
        func lower(_ s: String) -> [UInt8] { Array(s.lowercased().utf8) }
        let services = config.services.map { service -> ServiceRoute in
            let live = runtime.services[service.name]
            let hosts = service.match?.hosts ?? []
            // Runtime state, when present, wins even where it removed something (a canary set to 0%).
            let canary = live != nil ? live!.canary : service.canary
            var sticky = ServiceRoute.Sticky.none
            switch canary?.sticky {
            case .cookie(let name)?: sticky = .cookie(Array(name.utf8))
            case .header(let name)?: sticky = .header(lower(name))
            case .clientIP?: sticky = .clientIP
            case nil: sticky = .none
            }
            let rules = (live?.rules ?? service.rules).compactMap { r -> ServiceRoute.Rule? in
                guard let pool = index(r.pool) else { return nil }
                return ServiceRoute.Rule(isCookie: r.kind == .cookie, name: r.kind == .cookie ? Array(r.name.utf8) : lower(r.name),
                                         value: Array(r.value.utf8), pool: pool)
            }
            return ServiceRoute(
                name: service.name,
                statsID: registry.serviceID(service.name),
                exactHosts: hosts.filter { !$0.hasPrefix("*.") }.map { Array($0.utf8) },
                wildcardSuffixes: hosts.filter { $0.hasPrefix("*.") }.map { Array($0.dropFirst().utf8) },
                pathPrefix: Array((service.match?.pathPrefix ?? "/").utf8),
                isDefault: service.match == nil,
                activePool: index(live?.active ?? service.active) ?? 0,
                standbyPool: index(live.map { $0.standby } ?? service.standby),
                canaryPool: canary.flatMap { index($0.pool) },
                canaryWeight: canary?.weight ?? 0,
                sticky: sticky,
                rules: rules,
                previewHeader: service.preview.map { lower($0.header) },
                previewToken: Array((service.preview?.token ?? "").utf8),
                isPlain: service.preview == nil && rules.isEmpty && (canary == nil || canary!.weight == 0 || index(canary!.pool) == nil),
                sticksByCookie: { if case .cookie = sticky { return true } else { return false } }())
        }
        self.init(generation: runtime.generation, services: services, pools: pools)
    }

    /// Chooses the pool for one request of `service`: the preview header (with the right
    /// token) first, then the rules in order, then the canary weight, then the active pool.
    ///
    /// A sticky canary hashes the client's key into 10,000 buckets; buckets below the
    /// weight (in basis points) go to the canary. Raising the weight therefore never moves
    /// a canary client back, and lowering it never moves a stable client to the canary.
    /// - Parameters:
    ///   - freshCookieValue: the value to assign when the service sticks by cookie and the
    ///     request carries none (the proxy then sets it on the response).
    ///   - random: used for the per-request split when the canary is not sticky.
    public func choosePool(service index: Int, head: HTTPHead, source: UnsafePointer<UInt8>,
                           clientIP: UnsafeBufferPointer<UInt8>, freshCookieValue: UnsafeBufferPointer<UInt8>,
                           random: inout SplitMix64) -> PoolChoice {
        if services[index].isPlain {
            return PoolChoice(pool: services[index].activePool, reason: .active, setsStickyCookie: false)
        }
        let route = services[index]
        if let header = route.previewHeader, let standby = route.standbyPool,
           let value = Self.headerValue(head, source: source, lowercasedName: header),
           Self.equal(value, route.previewToken) {
            return PoolChoice(pool: standby, reason: .preview, setsStickyCookie: false)
        }
        for rule in route.rules {
            let value = rule.isCookie ? Self.cookieValue(head, source: source, name: rule.name)
                                      : Self.headerValue(head, source: source, lowercasedName: rule.name)
            if let value, Self.equal(value, rule.value) {
                return PoolChoice(pool: rule.pool, reason: .rule, setsStickyCookie: false)
            }
        }
        guard let canary = route.canaryPool, route.canaryWeight > 0 else {
            return PoolChoice(pool: route.activePool, reason: .active, setsStickyCookie: false)
        }
        var setsCookie = false
        var bySticky = true
        let bucket: Int
        switch route.sticky {
        case .none:
            bucket = Int(random.next() % UInt64(BasisPoints.whole))
            bySticky = false
        case .clientIP:
            bucket = Self.bucket(clientIP)
        case .header(let name):
            if let value = Self.headerValue(head, source: source, lowercasedName: name) { bucket = Self.bucket(value) }
            else { bucket = Int(random.next() % UInt64(BasisPoints.whole)); bySticky = false }
        case .cookie(let name):
            if let value = Self.cookieValue(head, source: source, name: name), value.count > 0 {
                bucket = Self.bucket(value)
            } else {
                // A fresh cookie: the client keeps this assignment from now on.
                bucket = Self.bucket(freshCookieValue)
                setsCookie = true
            }
        }
        let toCanary = bucket < route.canaryWeight
        return PoolChoice(pool: toCanary ? canary : route.activePool, reason: bySticky ? .sticky : toCanary ? .canary : .active,
                          setsStickyCookie: setsCookie)
    }

    /// The canary bucket (0-9999) of a sticky key: FNV-1a, 64 bits.
    public static func bucket(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return Int(hash % UInt64(BasisPoints.whole))
    }

    static func headerValue(_ head: HTTPHead, source: UnsafePointer<UInt8>, lowercasedName: [UInt8]) -> UnsafeBufferPointer<UInt8>? {
        for k in 0..<head.fieldCount {
            let f = head.fields[k]
            guard Int(f.nameLength) == lowercasedName.count else { continue }
            var same = true
            for i in 0..<lowercasedName.count {
                var b = source[Int(f.nameStart) + i]
                if b >= 0x41 && b <= 0x5A { b |= 0x20 }
                if b != lowercasedName[i] { same = false; break }
            }
            if same { return UnsafeBufferPointer(start: source + Int(f.valueStart), count: Int(f.valueLength)) }
        }
        return nil
    }

    /// The value of cookie `name` in any `Cookie` header ("a=1; b=2").
    static func cookieValue(_ head: HTTPHead, source: UnsafePointer<UInt8>, name: [UInt8]) -> UnsafeBufferPointer<UInt8>? {
        let cookie: [UInt8] = Array("cookie".utf8)
        for k in 0..<head.fieldCount {
            let f = head.fields[k]
            guard Int(f.nameLength) == 6 else { continue }
            var isCookie = true
            for i in 0..<6 {
                var b = source[Int(f.nameStart) + i]
                if b >= 0x41 && b <= 0x5A { b |= 0x20 }
                if b != cookie[i] { isCookie = false; break }
            }
            guard isCookie else { continue }
            let v = source + Int(f.valueStart)
            let n = Int(f.valueLength)
            var i = 0
            while i < n {
                while i < n, v[i] == 0x20 || v[i] == 0x3B { i += 1 }
                let nameStart = i
                while i < n, v[i] != 0x3D, v[i] != 0x3B { i += 1 }
                let nameEnd = i
                guard i < n, v[i] == 0x3D else { continue }
                i += 1
                let valueStart = i
                while i < n, v[i] != 0x3B { i += 1 }
                var valueEnd = i
                while valueEnd > valueStart, v[valueEnd - 1] == 0x20 { valueEnd -= 1 }
                if nameEnd - nameStart == name.count {
                    var same = true
                    for j in 0..<name.count where v[nameStart + j] != name[j] { same = false; break }
                    if same { return UnsafeBufferPointer(start: v + valueStart, count: valueEnd - valueStart) }
                }
            }
        }
        return nil
    }

    static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<b.count where a[i] != b[i] { return false }
        return true
    }

    /// The service for a request, or `nil` (404). The host is matched first (exact beats
    /// wildcard, a longer wildcard beats a shorter one, a service without hosts matches any
    /// host), then the longest path prefix; a service without `match` is the fallback.
    /// - Parameters:
    ///   - host: the `Host` value as sent (any port is ignored; case-insensitive).
    ///   - path: the request path.
    public func route(host: UnsafeBufferPointer<UInt8>, path: UnsafeBufferPointer<UInt8>) -> Int? {
        let hostLength = Self.hostNameLength(host)
        if services.count > Self.linearScanLimit { return routeByHost(host: host, length: hostLength, path: path) }
        return routeByScan(host: host, length: hostLength, path: path)
    }

    /// `route` for a few services: scores every one.
    func routeByScan(host: UnsafeBufferPointer<UInt8>, length: Int, path: UnsafeBufferPointer<UInt8>) -> Int? {
        var choice = RouteChoice()
        // Indexes, not `for service in services`: iterating copies each route and retains its arrays.
        for index in services.indices where !services[index].isDefault {
            choice.consider(index, in: self, host: host, length: length, path: path)
        }
        return choice.best ?? defaultService
    }

    /// `route` for many services: only the services with an exact host of the same hash and
    /// the host-agnostic ones are scored, with the same result as scoring them all.
    func routeByHost(host: UnsafeBufferPointer<UInt8>, length: Int, path: UnsafeBufferPointer<UInt8>) -> Int? {
        var choice = RouteChoice()
        if let candidates = servicesByHost[Self.hostHash(host, length: length)] {
            for index in candidates { choice.consider(index, in: self, host: host, length: length, path: path) }
        }
        for index in hostAgnostic { choice.consider(index, in: self, host: host, length: length, path: path) }
        return choice.best ?? defaultService
    }

    /// The best service so far: the highest host score, then the longest path prefix, then the
    /// service listed first, whatever order the services are considered in.
    struct RouteChoice {
        private var index = -1
        private var hostScore = -1
        private var prefix = -1

        var best: Int? { index >= 0 ? index : nil }

        mutating func consider(_ candidate: Int, in snapshot: RoutingSnapshot, host: UnsafeBufferPointer<UInt8>, length: Int,
                               path: UnsafeBufferPointer<UInt8>) {
            let score = RoutingSnapshot.hostScore(snapshot.services[candidate], host: host, length: length)
            guard score >= 0, RoutingSnapshot.hasPrefix(path, snapshot.services[candidate].pathPrefix) else { return }
            let length = snapshot.services[candidate].pathPrefix.count
            if score > hostScore || (score == hostScore && (length > prefix || (length == prefix && candidate < index))) {
                index = candidate; hostScore = score; prefix = length
            }
        }
    }

    /// FNV-1a over the first `length` bytes of a host name, lowercased.
    @inline(__always)
    static func hostHash(_ host: UnsafeBufferPointer<UInt8>, length: Int) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for k in 0..<min(length, host.count) {
            var b = host[k]
            if b >= 0x41 && b <= 0x5A { b |= 0x20 }
            hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3
        }
        return hash
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

/// The pools of the last snapshot and what each was built from: its configuration, its
/// runtime servers and version, and the health, weight scaling and DNS answers of the whole
/// proxy. A change to one service or pool then builds that pool alone; every other pool is
/// the previous value, shared. Owned by the control plane (one thread).
extension RoutingSnapshot {
    /// The indexes of the pools of `next` that differ from those of `previous`, when both
    /// have the same pools in the same places; nil when pools were added, removed or moved
    /// (a reload). A pool the control plane did not rebuild is the same value, compared in
    /// O(1) (its server array is the same storage).
    public static func changedPools(from previous: RoutingSnapshot, to next: RoutingSnapshot) -> [Int]? {
        guard previous.pools.count == next.pools.count else { return nil }
        var changed: [Int] = []
        for (index, pool) in next.pools.enumerated() {
            let before = previous.pools[index]
            guard before.name == pool.name else { return nil }
            if before != pool { changed.append(index) }
        }
        return changed
    }
}

public final class PoolSnapshotCache {
    struct Entry {
        let config: PoolConfig
        let live: [String: RuntimeState.Server]
        let snapshot: PoolSnapshot
    }
    private var entries: [String: Entry] = [:]
    private var down: Set<String> = []
    private var weightPercent: [String: Int] = [:]
    private var resolved: [String: ResolvedAddresses] = [:]

    public init() {}

    /// Starts a snapshot: inputs that concern every pool and changed make every pool new.
    func begin(down: Set<String>, weightPercent: [String: Int], resolved: [String: ResolvedAddresses]) {
        guard down != self.down || weightPercent != self.weightPercent || resolved != self.resolved else { return }
        entries.removeAll(keepingCapacity: true)
        self.down = down
        self.weightPercent = weightPercent
        self.resolved = resolved
    }

    /// The previous snapshot of `config`'s pool when nothing it was built from changed.
    func pool(_ config: PoolConfig, live: [String: RuntimeState.Server], version: String?) -> PoolSnapshot? {
        guard let entry = entries[config.name], entry.snapshot.version == version, entry.live == live, entry.config == config else { return nil }
        return entry.snapshot
    }

    func keep(_ snapshot: PoolSnapshot, config: PoolConfig, live: [String: RuntimeState.Server]) {
        entries[config.name] = Entry(config: config, live: live, snapshot: snapshot)
    }

    /// Ends a snapshot of `count` pools. Entries of pools a reload removed stay until they are
    /// as many as the pools; then all are dropped, and the next snapshot builds every pool.
    func end(keeping count: Int) {
        if entries.count > count * 2 { entries.removeAll(keepingCapacity: true) }
    }
}

/// Hands out stable ids for servers. Owned by the control plane (one thread).
public final class ServerRegistry {
    struct Key: Hashable { let pool: String; let server: String; let address: SocketAddress }
    private var ids: [Key: Int] = [:]

    public init() {}

    private var serviceIDs: [String: Int] = [:]

    /// A stable id for a service name.
    public func serviceID(_ name: String) -> Int {
        if let id = serviceIDs[name] { return id }
        let id = serviceIDs.count
        serviceIDs[name] = id
        return id
    }

    public func id(pool: String, server: String, address: SocketAddress) -> Int {
        let key = Key(pool: pool, server: server, address: address)
        if let id = ids[key] { return id }
        let id = ids.count
        ids[key] = id
        return id
    }
}
