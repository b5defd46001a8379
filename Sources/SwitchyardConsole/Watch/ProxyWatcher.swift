import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardDeploy

/// What the console shows of one environment's proxy: its routing, lock and servers as last
/// read, and its traffic per pool over the recent window.
public struct EnvironmentLive: Codable, Sendable, Equatable {
    public var service: String
    public var environment: String
    public var admin: String
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
    /// Oldest first.
    public var traffic: [TrafficPoint]

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
    private var previous: [Target: (time: Date, sample: MetricsSample)] = [:]
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
                    live[target] = EnvironmentLive(service: plan.service, environment: env.name, admin: env.admin.description, reachable: false,
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
        var client: AdminClient?
        while true {
            let (plan, done, trusted) = lock.withLock { (plans[target.service], stopped, !untrusted.contains(target.service)) }
            if done { return }
            guard var env = plan?.environments.first(where: { $0.name == target.environment }) else {
                // The environment left the plan: stop watching it.
                lock.withLock { _ = threads.remove(target); live.removeValue(forKey: target) }
                return
            }
            var failure: String?
            if !trusted { env.tokenFile = nil }
            if client == nil || client?.address != env.admin {
                do {
                    // The environment's first proxy (by address) stands for all of them here.
                    client = try AdminClient(environment: env, address: env.admin, actor: "switchyard-console",
                                             processEnvironment: trusted ? ProcessInfo.processInfo.environment : [:])
                } catch {
                    failure = trusted ? "\(error)" : "\(error) (a plan a runner sent is read without the console's tokens; register the plan in the console's configuration to watch this proxy)"
                }
            }
            let now = Date()
            var update = lock.withLock { live[target] } ?? EnvironmentLive(service: target.service, environment: target.environment,
                                                                             admin: env.admin.description, reachable: false, servers: [], traffic: [])
            update.admin = env.admin.description
            update.checkedAt = Clock.iso(now)
            do {
                guard let client else { throw ConsoleError(failure ?? "no admin client for \(env.admin): check token_env/token_file in the plan") }
                let status = try client.api.status()
                let sample = try client.metrics()
                read(status, into: &update)
                let earlier = lock.withLock { previous[target] }
                if let earlier {
                    let seconds = max(0.001, now.timeIntervalSince(earlier.time))
                    for (pool, counters) in sample.pools.sorted(by: { $0.key < $1.key }) {
                        guard let before = earlier.sample.pools[pool] else { continue }
                        let delta = counters.since(before)
                        guard delta.requests >= 0 else { continue }  // the proxy restarted: counters began again
                        update.traffic.append(.init(time: Clock.iso(now), pool: pool, requestsPerSecond: Double(delta.requests) / seconds,
                                                    errorRate: delta.errorRate, p99Ms: delta.quantile(0.99).map { $0 * 1000 }))
                    }
                    let pools = max(1, sample.pools.count)
                    if update.traffic.count > keep * pools { update.traffic.removeFirst(update.traffic.count - keep * pools) }
                }
                lock.withLock { previous[target] = (now, sample) }
                update.reachable = true
                update.error = nil
            } catch {
                update.reachable = false
                update.error = "\(error)"
                client = nil
            }
            lock.withLock { live[target] = update }
            usleep(useconds_t(interval * 1_000_000))
        }
    }

    private func read(_ status: AdminStatus, into update: inout EnvironmentLive) {
        let service = status.services[update.service]
        update.active = service?.active
        update.standby = service?.standby
        update.canaryPool = service?.canary?.pool
        update.canaryWeight = service?.canary?.weight
        update.guardTrip = service?.guardTrip.map { "\($0.time): \($0.reason)" }
        update.lockOwner = status.lock?.owner
        update.lockReason = status.lock?.reason
        update.lockSince = status.lock?.since
        update.lockExpires = status.lock?.expires
        let pools = Set([service?.active, service?.standby, service?.canary?.pool].compactMap { $0 })
        update.servers = pools.sorted().flatMap { pool in
            status.servers(pool).map {
                EnvironmentLive.Server(pool: pool, name: $0.name, address: $0.address, state: $0.state, health: $0.healthStatus,
                                       weight: $0.weight, effectiveWeight: $0.effectiveWeight, activeRequests: $0.activeRequests)
            }
        }
    }
}
