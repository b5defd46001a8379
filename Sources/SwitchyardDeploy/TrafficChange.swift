import Foundation
import SwitchyardAdminAPI
import SwitchyardAdminClient
import SwitchyardConfig
import SwitchyardRouting

/// What one proxy does with a service's traffic, as far as a rollout changes it. The proxies
/// of an environment are compared by it: before every change each must be where the rollout
/// left it, or it has drifted.
public struct ServiceRouting: Equatable, Sendable, CustomStringConvertible {
    public struct Share: Equatable, Sendable {
        public var pool: String
        /// Basis points, above 0 (a canary of 0% is no canary).
        public var weight: Int
    }

    public var active: String
    public var standby: String?
    public var canary: Share?
    /// The state ("ready", "drain", "maint") of each server of the pools a rolling update
    /// changes, by "pool/server"; empty for the other strategies.
    public var servers: [String: String]

    public init(active: String, standby: String? = nil, canary: Share? = nil, servers: [String: String] = [:]) {
        self.active = active
        self.standby = standby
        self.canary = canary
        self.servers = servers
    }

    /// The routing of `service` in `status`, with the server states of `pools`; nil when the
    /// proxy has no such service.
    public init?(status: AdminStatus, service: String, pools: [String]) {
        guard let s = status.services[service] else { return nil }
        active = s.active
        standby = s.standby
        if let c = s.canary, let weight = BasisPoints.parse(c.weight), weight > 0 {
            canary = Share(pool: c.pool, weight: weight)
        }
        servers = [:]
        for pool in pools {
            for server in status.servers(pool) { servers["\(pool)/\(server.name)"] = server.state }
        }
    }

    public var description: String {
        var parts = ["active \(active)"]
        parts.append(canary.map { "canary \($0.pool) at \(BasisPoints.format($0.weight))" } ?? "no canary")
        if let standby { parts.append("standby \(standby)") }
        let out = servers.filter { $0.value != "ready" }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        if !out.isEmpty { parts.append(out.joined(separator: ", ")) }
        return parts.joined(separator: ", ")
    }

    /// How this routing differs from `other`, field by field, e.g. "canary green at 50%
    /// (expected: canary green at 10%)".
    public func differences(from other: ServiceRouting) -> String {
        var parts: [String] = []
        func share(_ s: Share?) -> String { s.map { "canary \($0.pool) at \(BasisPoints.format($0.weight))" } ?? "no canary" }
        if active != other.active { parts.append("active \(active) (expected: \(other.active))") }
        if canary != other.canary { parts.append("\(share(canary)) (expected: \(share(other.canary)))") }
        if standby != other.standby { parts.append("standby \(standby ?? "none") (expected: \(other.standby ?? "none"))") }
        for key in Set(servers.keys).union(other.servers.keys).sorted() where servers[key] != other.servers[key] {
            parts.append("\(key) \(servers[key] ?? "absent") (expected: \(other.servers[key] ?? "absent"))")
        }
        return parts.isEmpty ? "the same" : parts.joined(separator: ", ")
    }
}

/// One change of a service's traffic, as a rollout applies it to every proxy of an
/// environment: what it does to a proxy's routing, how it is put back, and the admin call.
public enum TrafficChange: Equatable, Sendable, CustomStringConvertible {
    /// The canary `pool` at `weight` basis points (0 removes the canary), with the guard
    /// armed when given (nil keeps the proxy's).
    case canary(pool: String, weight: Int, guardrail: CanaryGuard?)
    /// Makes `to` the active pool; the previous active pool becomes standby.
    case flip(to: String)
    /// A server's state: in rotation, drained or in maintenance.
    case server(pool: String, name: String, state: ServerState)

    public var description: String {
        switch self {
        case .canary(let pool, let weight, _): return weight == 0 ? "canary weight 0%" : "canary \(pool) at \(BasisPoints.format(weight))"
        case .flip(let to): return "flip to \(to)"
        case .server(let pool, let name, let state): return "\(pool)/\(name) \(state.rawValue)"
        }
    }

    /// The routing a proxy has after this change, as the proxy makes it.
    public func applied(to routing: ServiceRouting) -> ServiceRouting {
        var r = routing
        switch self {
        case .canary(let pool, let weight, _):
            r.canary = weight > 0 ? .init(pool: pool, weight: weight) : nil
        case .flip(let to):
            guard to != routing.active else { return r }
            r.standby = routing.active
            r.active = to
            // The canary became the whole service.
            if r.canary?.pool == to { r.canary = nil }
        case .server(let pool, let name, let state):
            r.servers["\(pool)/\(name)"] = state.rawValue
        }
        return r
    }

    /// Whether a rollback step has nothing to do on a proxy with `routing`: it is already
    /// there. A canary at or below the weight asked for (or gone) counts: a rollback never
    /// raises a canary the guard or an operator took out.
    public func isSatisfied(by routing: ServiceRouting) -> Bool {
        switch self {
        case .canary(let pool, let weight, _):
            guard let canary = routing.canary else { return true }
            return weight > 0 && canary.pool == pool && canary.weight <= weight
        case .flip(let to):
            return routing.active == to
        case .server(let pool, let name, let state):
            return routing.servers["\(pool)/\(name)"] == state.rawValue
        }
    }

    /// The changes that put a proxy which took this change back to `previous`.
    public func undo(to previous: ServiceRouting) -> [TrafficChange] {
        switch self {
        case .canary(let pool, _, _):
            return [.canary(pool: previous.canary?.pool ?? pool, weight: previous.canary?.weight ?? 0, guardrail: nil)]
        case .flip:
            var changes: [TrafficChange] = [.flip(to: previous.active)]
            if let canary = previous.canary { changes.append(.canary(pool: canary.pool, weight: canary.weight, guardrail: nil)) }
            return changes
        case .server(let pool, let name, _):
            let state = previous.servers["\(pool)/\(name)"].flatMap(ServerState.init(rawValue:)) ?? .ready
            return [.server(pool: pool, name: name, state: state)]
        }
    }

    /// The admin endpoint the change goes to, for messages.
    public func endpoint(service: String) -> String {
        let e: AdminEndpoint
        var parameters: [String]
        switch self {
        case .canary: e = AdminAPI.endpoint(.setCanary); parameters = [service]
        case .flip: e = AdminAPI.endpoint(.flip); parameters = [service]
        case .server(let pool, let name, _): e = AdminAPI.endpoint(.setServer); parameters = [pool, name]
        }
        return "\(e.method) \(e.path(parameters))"
    }

    /// Sends the change to one proxy.
    func send(_ api: AdminAPIClient, service: String) throws(AdminFailure) -> AdminChange {
        switch self {
        case .canary(let pool, let weight, let guardrail):
            if weight == 0 { return try api.setCanary(service: service, weight: "0%") }
            return try api.setCanary(service: service, pool: pool, weight: BasisPoints.format(weight),
                                     guardrail: CanaryStrategy.guardSetting(guardrail))
        case .flip(let to):
            return try api.flip(service: service, to: to)
        case .server(let pool, let name, let state):
            return try api.setServer(pool: pool, server: name, state: state)
        }
    }
}

extension PoolCounters {
    /// The counters of several proxies together: their requests, errors and histograms
    /// added. Histograms with different buckets are added at the union of their bounds, each
    /// counting what it had at or below the bound.
    public static func sum(_ parts: [PoolCounters]) -> PoolCounters {
        func add(_ a: Int, _ b: Int) -> Int { let (r, o) = a.addingReportingOverflow(b); return o ? .max : r }
        var total = PoolCounters()
        for p in parts {
            total.requests = add(total.requests, p.requests)
            total.errors = add(total.errors, p.errors)
        }
        let withBuckets = parts.filter { !$0.buckets.isEmpty }
        guard let first = withBuckets.first else { return total }
        if withBuckets.allSatisfy({ $0.buckets.map(\.bound) == first.buckets.map(\.bound) }) {
            total.buckets = first.buckets.map { ($0.bound, 0) }
            for p in withBuckets {
                for i in total.buckets.indices { total.buckets[i].count = add(total.buckets[i].count, p.buckets[i].count) }
            }
            return total
        }
        let bounds = Set(withBuckets.flatMap { $0.buckets.map(\.bound) }).sorted()
        total.buckets = bounds.map { bound in
            (bound, withBuckets.reduce(0) { sum, p in add(sum, p.buckets.last { $0.bound <= bound }?.count ?? 0) })
        }
        return total
    }
}

extension MetricsSample {
    /// The scrapes of an environment's proxies as one: each pool's and server's counters added.
    public static func sum(_ samples: [MetricsSample]) -> MetricsSample {
        guard samples.count > 1 else { return samples.first ?? MetricsSample(text: "") }
        var total = MetricsSample(text: "")
        for key in Set(samples.flatMap { $0.pools.keys }) { total.pools[key] = PoolCounters.sum(samples.compactMap { $0.pools[key] }) }
        for key in Set(samples.flatMap { $0.servers.keys }) { total.servers[key] = PoolCounters.sum(samples.compactMap { $0.servers[key] }) }
        return total
    }
}
