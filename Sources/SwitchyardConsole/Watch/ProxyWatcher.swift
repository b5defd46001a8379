import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardDeploy

/// What the console shows of one environment: its proxies' routing, locks and servers as last
/// read, whether they agree, and the traffic of all of them together per pool over the recent
/// window. The top-level routing, lock and servers are those of the first proxy (by address)
/// that answered; `proxies` has each one, and `drift` says when they disagree.
public struct EnvironmentLive: Codable, Sendable, Equatable {
    public var service: String
    public var environment: String
    /// The proxies' admin addresses, comma-separated.
    public var admin: String
    /// Every proxy answered at the last read.
    public var reachable: Bool
    public var error: String?
    public var checkedAt: String?
    public var active: String?
    public var standby: String?
    public var canaryPool: String?
    public var canaryWeight: String?
    public var guardTrip: String?
    public var lockOwner: String?
    public var lockReason: String?
    public var lockSince: String?
    public var lockExpires: String?
    public var servers: [Server]
    /// Oldest first; the proxies' counters added.
    public var traffic: [TrafficPoint]
    /// Each proxy of the environment, in address order (the order rollouts lock and change them).
    public var proxies: [ProxyLive] = []
    /// The proxies that answered route the service differently (someone changed one by hand):
    /// what each has. Nil while they agree.
    public var drift: String?

    public struct Server: Codable, Sendable, Equatable {
        public var pool: String
        public var name: String
        public var address: String
        public var state: String
        public var health: String
        public var weight: Int
        public var effectiveWeight: Int?
        public var activeRequests: Int
    }

    /// One pool over one polling interval.
    public struct TrafficPoint: Codable, Sendable, Equatable {
        public var time: String
        public var pool: String
        public var requestsPerSecond: Double
        public var errorRate: Double
        public var p99Ms: Double?
    }
}

/// One proxy of an environment as last read.
public struct ProxyLive: Codable, Sendable, Equatable {
    public var admin: String
    public var reachable: Bool = false
    public var error: String?
    public var checkedAt: String?
    public var generation: UInt64?
    public var active: String?
    public var standby: String?
    public var canaryPool: String?
    public var canaryWeight: String?
    public var guardTrip: String?
    /// The lock that holds changes to the service back: the service's own or the proxy-wide one.
    public var lockOwner: String?
    public var lockReason: String?
    public var lockSince: String?
    public var lockExpires: String?
    /// Whether that lock is the proxy-wide (maintenance) lock.
    public var lockProxyWide: Bool?
    public var servers: [EnvironmentLive.Server] = []
}

/// Reads every known proxy's status and metrics on an interval, each environment on a thread
/// of its own (the admin client blocks, with deadlines), and keeps a window of it in memory.
public final class ProxyWatcher: @unchecked Sendable {
    struct Target: Hashable {
        var service: String
        var environment: String
    }

    private let lock = NSLock()
    private var plans: [String: DeployPlan] = [:]
    private var live: [Target: EnvironmentLive] = [:]
    private var threads: Set<Target> = []
    /// Services whose plan a runner sent (not the operator): their proxies are read without
    /// the console's tokens, so a plan cannot send those to an address of its choosing.
    private var untrusted: Set<String> = []
    private var stopped = false
    let interval: Double
    let keep: Int

    init(interval: Duration, window: Duration) {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        self.interval = max(0.2, seconds)
        let windowSeconds = Double(window.components.seconds)
        keep = max(2, min(100_000, Int(windowSeconds / self.interval)))
    }

    /// Starts (or updates) watching the environments of `plan`; `trusted` for plans the
    /// operator registered, whose proxies are read with the tokens the plan names.
    func watch(_ plan: DeployPlan, trusted: Bool) {
        var start: [Target] = []
        lock.withLock {
            plans[plan.service] = plan
            if trusted { untrusted.remove(plan.service) } else { untrusted.insert(plan.service) }
            for env in plan.environments {
                let target = Target(service: plan.service, environment: env.name)
                if live[target] == nil {
                    live[target] = EnvironmentLive(service: plan.service, environment: env.name,
                                                   admin: env.proxies.map(\.description).joined(separator: ", "), reachable: false,
                                                   servers: [], traffic: [])
                }
                if !threads.contains(target) { threads.insert(target); start.append(target) }
            }
        }
        for target in start {
            let thread = Thread { [weak self] in self?.poll(target) }
            thread.name = "watch-\(target.service)-\(target.environment)"
            thread.start()
        }
    }

    func stop() { lock.withLock { stopped = true } }

    public var services: [String] { lock.withLock { plans.keys.sorted() } }

    public func plan(_ service: String) -> DeployPlan? { lock.withLock { plans[service] } }

    /// The environments of `service` in the plan's order.
    public func environments(of service: String) -> [EnvironmentLive] {
        lock.withLock {
            guard let plan = plans[service] else { return [] }
            return plan.environments.compactMap { live[Target(service: service, environment: $0.name)] }
        }
    }

    private func poll(_ target: Target) {
        var clients: [String: AdminClient] = [:]
        var previous: [String: (time: Date, sample: MetricsSample)] = [:]
        while true {
            let (plan, done, trusted) = lock.withLock { (plans[target.service], stopped, !untrusted.contains(target.service)) }
            if done { return }
            guard var env = plan?.environments.first(where: { $0.name == target.environment }) else {
                // The environment left the plan: stop watching it.
                lock.withLock { _ = threads.remove(target); live.removeValue(forKey: target) }
                return
            }
            if !trusted { env.tokenFile = nil }
            let now = Date()
            var update = lock.withLock { live[target] } ?? EnvironmentLive(service: target.service, environment: target.environment,
                                                                             admin: "", reachable: false, servers: [], traffic: [])
            update.admin = env.proxies.map(\.description).joined(separator: ", ")
            update.checkedAt = Clock.iso(now)
            var proxies: [ProxyLive] = []
            var routings: [(admin: String, routing: ServiceRouting)] = []
            // Per pool, each proxy's counters since its previous read and the seconds between.
            var deltas: [String: [(counters: PoolCounters, seconds: Double)]] = [:]
            for address in env.proxies {
                let key = address.description
                var proxy = ProxyLive(admin: key, checkedAt: Clock.iso(now))
                do {
                    if clients[key] == nil {
                        do {
                            clients[key] = try AdminClient(environment: env, address: address, actor: "switchyard-console",
                                                           processEnvironment: trusted ? ProcessInfo.processInfo.environment : [:])
                        } catch {
                            throw ConsoleError(trusted ? "\(error)" : "\(error) (a plan a runner sent is read without the console's tokens; register the plan in the console's configuration to watch this proxy)")
                        }
                    }
                    guard let client = clients[key] else { throw ConsoleError("no admin client for \(key): check token_env/token_file in the plan") }
                    let status = try client.api.status(service: target.service)
                    let sample = try client.metrics()
                    read(status, service: target.service, into: &proxy)
                    if let routing = ServiceRouting(status: status, service: target.service, pools: []) { routings.append((key, routing)) }
                    if let earlier = previous[key] {
                        for (pool, counters) in sample.pools {
                            guard let before = earlier.sample.pools[pool] else { continue }
                            let delta = counters.since(before)
                            guard delta.requests >= 0 else { continue }  // the proxy restarted: counters began again
                            deltas[pool, default: []].append((delta, max(0.001, now.timeIntervalSince(earlier.time))))
                        }
                    }
                    previous[key] = (now, sample)
                    proxy.reachable = true
                } catch {
                    proxy.error = "\(error)"
                    clients[key] = nil
                    previous[key] = nil
                }
                proxies.append(proxy)
            }
            for (pool, parts) in deltas.sorted(by: { $0.key < $1.key }) {
                let delta = PoolCounters.sum(parts.map(\.counters))
                let rate = parts.reduce(0.0) { $0 + Double($1.counters.requests) / $1.seconds }
                update.traffic.append(.init(time: Clock.iso(now), pool: pool, requestsPerSecond: rate,
                                            errorRate: delta.errorRate, p99Ms: delta.quantile(0.99).map { $0 * 1000 }))
            }
            let pools = max(1, Set(update.traffic.map(\.pool)).count)
            if update.traffic.count > keep * pools { update.traffic.removeFirst(update.traffic.count - keep * pools) }
            Self.summarize(proxies, routings: routings, into: &update)
            lock.withLock { live[target] = update }
            usleep(useconds_t(interval * 1_000_000))
        }
    }

    /// The environment's view from its proxies: routing, lock and servers of the first that
    /// answered, every proxy's error, and drift when their routings differ.
    static func summarize(_ proxies: [ProxyLive], routings: [(admin: String, routing: ServiceRouting)], into update: inout EnvironmentLive) {
        update.proxies = proxies
        update.reachable = !proxies.isEmpty && proxies.allSatisfy(\.reachable)
        let errors = proxies.compactMap { p in p.error.map { proxies.count > 1 ? "\(p.admin): \($0)" : $0 } }
        update.error = errors.isEmpty ? nil : errors.joined(separator: "; ")
        let lead = proxies.first(where: \.reachable)
        update.active = lead?.active
        update.standby = lead?.standby
        update.canaryPool = lead?.canaryPool
        update.canaryWeight = lead?.canaryWeight
        update.guardTrip = proxies.lazy.compactMap(\.guardTrip).first
        let locked = proxies.first { $0.lockOwner != nil }
        update.lockOwner = locked?.lockOwner
        update.lockReason = locked?.lockReason
        update.lockSince = locked?.lockSince
        update.lockExpires = locked?.lockExpires
        update.servers = lead?.servers ?? []
        if let first = routings.first, routings.contains(where: { $0.routing != first.routing }) {
            update.drift = "the proxies disagree: " + routings.map { "\($0.admin) has \($0.routing)" }.joined(separator: "; ")
        } else {
            update.drift = nil
        }
    }

    private func read(_ status: AdminStatus, service name: String, into proxy: inout ProxyLive) {
        let service = status.services[name]
        proxy.generation = status.generation
        proxy.active = service?.active
        proxy.standby = service?.standby
        proxy.canaryPool = service?.canary?.pool
        proxy.canaryWeight = service?.canary?.weight
        proxy.guardTrip = service?.guardTrip.map { "\($0.time): \($0.reason)" }
        let lock = status.lock(covering: name)
        proxy.lockOwner = lock?.owner
        proxy.lockReason = lock?.reason
        proxy.lockSince = lock?.since
        proxy.lockExpires = lock?.expires
        proxy.lockProxyWide = lock.map { $0.service == nil }
        let pools = Set([service?.active, service?.standby, service?.canary?.pool].compactMap { $0 })
        proxy.servers = pools.sorted().flatMap { pool in
            status.servers(pool).map {
                EnvironmentLive.Server(pool: pool, name: $0.name, address: $0.address, state: $0.state, health: $0.healthStatus,
                                       weight: $0.weight, effectiveWeight: $0.effectiveWeight, activeRequests: $0.activeRequests)
            }
        }
    }
}
