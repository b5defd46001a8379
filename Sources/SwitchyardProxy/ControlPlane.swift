import CLibevent
import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardRouting

/// An admin request that cannot be carried out: the HTTP status, a short error and a detail
/// that tells the operator what to do.
public struct AdminError: Error, Sendable {
    public let status: Int
    public let error: String
    public let detail: String
    public init(_ status: Int, _ error: String, _ detail: String) {
        self.status = status
        self.error = error
        self.detail = detail
    }
}

/// The deploy lock: while held, mutations need its token.
public struct LockInfo: Codable, Equatable, Sendable {
    public var owner: String
    public var reason: String
    public var token: String
    public var since: Date
    public var expires: Date
}

/// Who asked for a change: the peer's user on the Unix socket, plus an optional
/// `X-Switchyard-Actor` naming the person or pipeline behind it.
public struct Actor: Sendable {
    public var user: String
    public var label: String?
    public init(user: String, label: String?) { self.user = user; self.label = label }
    public var description: String { label.map { "\(user) (\($0))" } ?? user }
}

/// Owns the runtime state. Every change builds a new immutable snapshot, publishes it to
/// every worker and returns only once each has acknowledged it; then the state is written
/// to the state file and the change to the audit trail. Runs on the control thread only.
public final class ControlPlane {
    public private(set) var config: SwitchyardConfig
    /// The file the configuration came from (reload reads it again); nil for embedded ones.
    public var configPath: String?
    public private(set) var state: RuntimeState
    public private(set) var lock: LockInfo?
    /// Earlier routing of each service, most recent last, for rollback.
    private var history: [String: [RuntimeState.Service]] = [:]
    static let historyLimit = 50
    private var auditEntries: [[String: Any]] = []
    static let auditMemoryLimit = 1000
    let registry = ServerRegistry()
    var workers: [Worker] = []
    private var statsRound: UInt64 = 0
    /// Microseconds from publishing a snapshot to the last worker's acknowledgement.
    public private(set) var publishLatencies: [Double] = []
    let auditPath: String?
    /// Lines about runtime state that could not be restored (shown at start).
    public private(set) var restoreNotes: [String] = []

    /// The state the configuration file describes, without runtime changes: what a reload
    /// or restart compares runtime state with to tell what an operator changed.
    private var fileState: RuntimeState

    struct Persisted: Codable {
        var state: RuntimeState
        var lock: LockInfo?
        var history: [String: [RuntimeState.Service]]
        /// The file's state when `state` was written (absent in older state files).
        var fileState: RuntimeState?
    }

    public init(config: SwitchyardConfig) throws {
        self.config = config
        state = RuntimeState(config: config)
        fileState = state
        auditPath = config.stateFile.map { $0 + ".audit.jsonl" }
        if let path = config.stateFile, FileManager.default.fileExists(atPath: path) {
            let saved: Persisted
            do {
                saved = try JSONDecoder.switchyard.decode(Persisted.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw ProxyError("cannot read state file \(path): \(error); fix or move it away (runtime changes it holds would be lost)")
            }
            // Without a recorded file state (older state files), every saved value counts as an operator's change.
            restoreNotes = state.merge(runtime: saved.state, base: saved.fileState ?? RuntimeState(config: config, generation: 0))
            lock = saved.lock
            history = saved.history.filter { state.services[$0.key] != nil }
        }
        // The audit trail outlives restarts: reload its most recent entries.
        if let auditPath, let text = try? String(contentsOfFile: auditPath, encoding: .utf8) {
            for line in text.split(separator: "\n").suffix(Self.auditMemoryLimit) {
                if let entry = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { auditEntries.append(entry) }
            }
        }
    }

    /// Active health checks, once the control loop runs.
    var health: HealthChecker?
    /// TLS client contexts of pools that talk TLS (health checks use them too).
    var upstreamTLS: [String: TLSClientContext] = [:]
    /// Loads the listeners' certificates from a reloaded configuration; returns how many TLS
    /// listeners were updated. Set by the server once its listeners are bound.
    var reloadCertificates: ((SwitchyardConfig) throws -> Int)?

    func snapshot() -> RoutingSnapshot {
        RoutingSnapshot(config: config, state: state, registry: registry, down: health?.down ?? [],
                        weightPercent: weightPercents())
    }

    // MARK: Slow start and reported load

    /// When each ramping server ("pool/server") entered rotation.
    private var rampStart: [String: Int64] = [:]
    private var rampTimer: OpaquePointer?

    /// A server entering rotation (up again, undrained, added) ramps up if its pool asks for it.
    func startRamp(pool: String, server: String) {
        guard config.pool(named: pool)?.slowStart != nil else { return }
        rampStart["\(pool)/\(server)"] = monotonicMilliseconds()
    }

    /// Weight percents: the slow-start ramp (10% to 100%) times what the server reports.
    func weightPercents() -> [String: Int] {
        var out: [String: Int] = [:]
        let now = monotonicMilliseconds()
        for (key, start) in rampStart {
            let parts = key.split(separator: "/", maxSplits: 1)
            guard let slow = config.pool(named: String(parts[0]))?.slowStart, slow.milliseconds > 0 else { rampStart[key] = nil; continue }
            let percent = Int((now - start) * 100 / slow.milliseconds)
            if percent >= 100 { rampStart[key] = nil } else { out[key] = max(10, percent) }
        }
        if let health {
            for entry in health.servers.values {
                let load = health.loadPercent(pool: entry.pool, server: entry.server)
                if load != 100 { out[entry.key] = (out[entry.key] ?? 100) * load / 100 }
            }
        }
        return out
    }

    /// While a server ramps, the snapshot is republished every second with its new weight.
    func startRampTimer(base: OpaquePointer) {
        rampTimer = event_new(base, -1, EventFlags.persist, rampTimerCallback, Unmanaged.passUnretained(self).toOpaque())
        var tv = timeval(milliseconds: 1000)
        event_add(rampTimer, &tv)
    }

    fileprivate func rampTick() {
        if !rampStart.isEmpty { publish() }
    }

    /// The routing as the runtime state alone describes it (which servers exist, their addresses).
    func snapshotIgnoringHealth() -> RoutingSnapshot {
        RoutingSnapshot(config: config, state: state, registry: registry)
    }

    func startHealthChecks(base: OpaquePointer) {
        health = HealthChecker(control: self, base: base)
        health?.sync(startup: true)
        startRampTimer(base: base)
        startGuardTimer(base: base)
    }

    /// A server went up or down: workers get a new snapshot (the state itself did not change).
    func healthChanged() { publish() }

    // MARK: Canary guard

    /// A finished exchange count of the canary pool at one moment.
    struct GuardSample { var time: Int64; var requests: Int; var errors: Int }
    /// Per service: what the samples belong to (a new canary or guard starts afresh) and the samples.
    private var guardSamples: [String: (key: String, samples: [GuardSample])] = [:]
    /// The last trip per service, shown in status so the orchestrator can tell why the canary went.
    public private(set) var guardTrips: [String: [String: Any]] = [:]
    /// Trips per service since start, for `switchyard_canary_guard_trips_total`.
    public private(set) var guardTripCounts: [String: Int] = [:]
    private var guardTimer: OpaquePointer?
    static let guardTickMilliseconds: Int64 = 100

    func startGuardTimer(base: OpaquePointer) {
        guardTimer = event_new(base, -1, EventFlags.persist, guardTimerCallback, Unmanaged.passUnretained(self).toOpaque())
        var tv = timeval(milliseconds: Self.guardTickMilliseconds)
        event_add(guardTimer, &tv)
    }

    /// Every 100 ms while some canary has an armed guard: sums the canary pool's finished
    /// exchanges and errors (5xx and exchanges without a response) and trips when the share
    /// over the guard's window reaches its threshold. Costs nothing without an armed guard.
    fileprivate func guardTick() {
        let armed = state.services.filter { $0.value.canary?.guardrail != nil && ($0.value.canary?.weight ?? 0) > 0 }
        guardSamples = guardSamples.filter { armed[$0.key] != nil }
        guard !armed.isEmpty else { return }
        let stats = collectStats()
        let snapshot = snapshot()
        let now = monotonicMilliseconds()
        for (name, service) in armed.sorted(by: { $0.key < $1.key }) {
            let canary = service.canary!, rule = canary.guardrail!
            guard let sample = Self.guardSample(pool: canary.pool, stats: stats, snapshot: snapshot, time: now) else { continue }
            let key = Self.guardKey(canary)
            var entry = guardSamples[name]
            if entry == nil || entry!.key != key { entry = (key, []) }
            entry!.samples.append(sample)
            // Keep the newest sample at or before the window's start as the baseline.
            while entry!.samples.count > 2 && entry!.samples[1].time <= now - rule.windowMilliseconds { entry!.samples.removeFirst() }
            guardSamples[name] = entry
            let first = entry!.samples.first!
            let finished = sample.requests - first.requests, failed = sample.errors - first.errors
            guard finished >= rule.minRequests, finished > 0, failed * BasisPoints.whole >= rule.maxErrorRate * finished else { continue }
            trip(service: name, canary: canary, finished: finished, failed: failed,
                 seconds: Double(now - first.time) / 1000)
        }
    }

    /// What the samples of a guard belong to: a new pool or new limits start a new window
    /// (a new weight does not).
    static func guardKey(_ canary: CanaryConfig) -> String {
        let rule = canary.guardrail!
        return "\(canary.pool)|\(rule.maxErrorRate)|\(rule.minRequests)|\(rule.windowMilliseconds)"
    }

    /// The canary pool's finished exchanges and errors (5xx and exchanges without a response) at `time`.
    static func guardSample(pool name: String, stats: StatsCopy, snapshot: RoutingSnapshot, time: Int64) -> GuardSample? {
        guard let pool = snapshot.pools.first(where: { $0.name == name }) else { return nil }
        var requests = 0, errors = 0
        for server in pool.servers {
            let base = server.id * ServerStats.stride
            guard base + ServerStats.stride <= stats.servers.count else { continue }
            requests += stats.servers[base + ServerStats.requests]
            errors += stats.servers[base + ServerStats.statusClass + 4] + stats.servers[base + ServerStats.failures]
        }
        return GuardSample(time: time, requests: requests, errors: errors)
    }

    private func trip(service name: String, canary: CanaryConfig, finished: Int, failed: Int, seconds: Double) {
        let rate = Double(failed) / Double(finished)
        let reason = String(format: "canary pool %@ failed %d of %d requests (%.1f%%) in %.1fs; the guard trips at %@",
                            canary.pool, failed, finished, rate * 100, seconds, BasisPoints.format(canary.guardrail!.maxErrorRate))
        let current = state.services[name]!
        let trip: [String: Any] = ["time": ISO8601DateFormatter.withFraction.string(from: Date()), "pool": canary.pool,
                                   "weight": BasisPoints.format(canary.weight), "requests": finished, "errors": failed,
                                   "error_rate": rate, "reason": reason]
        // The guard acts for the proxy itself: it passes its own lock check, even during a deploy.
        _ = try? mutate(actor: Actor(user: "switchyard-guard", label: nil), action: "guard trip", target: "service \(name)",
                        ifMatch: nil, lockToken: lock?.token, before: Self.json(current)) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            var s = current
            s.canary = nil
            state.services[name] = s
            pushHistory(name, current)
            var after = Self.json(s)
            after["guard_trip"] = trip
            return after
        }
        guardTrips[name] = trip
        guardTripCounts[name, default: 0] += 1
        guardSamples[name] = nil
        FileHandle.standardError.write(Data("switchyard: canary guard tripped for service \(name): \(reason); canary weight set to 0\n".utf8))
    }

    // MARK: Publishing

    /// Publishes the current state to every worker and waits for all acknowledgements.
    @discardableResult
    func publish() -> Double {
        let snapshot = snapshot()
        let start = monotonicMicroseconds()
        for worker in workers {
            worker.slot.store(snapshot)
            worker.notifySnapshot()
        }
        let deadline = start + 5_000_000
        while workers.contains(where: { $0.acknowledgedGeneration.load(ordering: .acquiring) < snapshot.generation }) {
            if monotonicMicroseconds() > deadline { break } // a worker stuck for 5 s is reported by status
            sched_yield()
        }
        let elapsed = Double(monotonicMicroseconds() - start)
        publishLatencies.append(elapsed)
        if publishLatencies.count > 1000 { publishLatencies.removeFirst(publishLatencies.count - 1000) }
        return elapsed
    }

    /// Counters summed over all workers, `ServerStats.stride` per server id and per service.
    func collectStats() -> StatsCopy {
        statsRound += 1
        for worker in workers { worker.requestStats(round: statsRound) }
        let deadline = monotonicMicroseconds() + 2_000_000
        while workers.contains(where: { $0.statsAnswered.load(ordering: .acquiring) < statsRound }),
              monotonicMicroseconds() < deadline {
            sched_yield()
        }
        var total = StatsCopy()
        func add(_ from: [Int], to into: inout [Int]) {
            if into.count < from.count { into += [Int](repeating: 0, count: from.count - into.count) }
            for i in 0..<from.count { into[i] &+= from[i] }
        }
        for worker in workers {
            let copy = worker.statsSlot.withLock { $0 }
            add(copy.servers, to: &total.servers)
            add(copy.services, to: &total.services)
            total.tlsHandshakeFailures += copy.tlsHandshakeFailures
            total.acceptErrors += copy.acceptErrors
        }
        return total
    }

    // MARK: Mutations

    /// Runs a change: checks the lock and `If-Match`, applies `change` to a copy of the
    /// state, publishes it, persists it and records it. Returns the new generation.
    func mutate(actor: Actor, action: String, target: String, ifMatch: UInt64?, lockToken: String?,
                before: Any?, change: (inout RuntimeState) throws(AdminError) -> Any?) throws(AdminError) -> UInt64 {
        try checkLock(lockToken)
        if let ifMatch, ifMatch != state.generation {
            throw AdminError(412, "stale generation",
                             "If-Match was \(ifMatch) but the state is at generation \(state.generation); read /v1/status and retry")
        }
        var next = state
        let after = try change(&next)
        next.generation = state.generation + 1
        state = next
        publish()
        persist()
        record(actor: actor, action: action, target: target, before: before, after: after)
        return state.generation
    }

    func service(_ name: String) throws(AdminError) -> RuntimeState.Service {
        guard let s = state.services[name] else {
            throw AdminError(404, "no such service", "service \(name) is not configured; services: \(state.services.keys.sorted().joined(separator: ", "))")
        }
        return s
    }

    func pool(_ name: String) throws(AdminError) {
        guard state.servers[name] != nil else {
            throw AdminError(404, "no such pool", "pool \(name) is not configured; pools: \(state.servers.keys.sorted().joined(separator: ", "))")
        }
    }

    /// Remembers a service's routing before a change, so rollback can restore it.
    func pushHistory(_ name: String, _ service: RuntimeState.Service) {
        history[name, default: []].append(service)
        if history[name]!.count > Self.historyLimit { history[name]!.removeFirst() }
    }

    func popHistory(_ name: String) -> RuntimeState.Service? { history[name]?.popLast() }

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
        return try mutate(actor: actor, action: "flip", target: "service \(name)", ifMatch: ifMatch, lockToken: lockToken,
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
        // The sample taken before the change is the window's start: nothing the canary pool
        // served before counts, everything after does.
        let effectiveGuard: CanaryGuard?
        switch guardrail {
        case .some(let given): effectiveGuard = given
        case .none: effectiveGuard = current.canary?.guardrail
        }
        if weight > 0, let g = effectiveGuard {
            let key = Self.guardKey(CanaryConfig(pool: canaryPool, weight: weight, sticky: nil, guardrail: g))
            if guardSamples[name]?.key != key,
               let sample = Self.guardSample(pool: canaryPool, stats: collectStats(), snapshot: snapshot(), time: monotonicMilliseconds()) {
                guardSamples[name] = (key, [sample])
            }
        }
        return try mutate(actor: actor, action: "canary", target: "service \(name)", ifMatch: ifMatch, lockToken: lockToken,
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
        return try mutate(actor: actor, action: "rules", target: "service \(name)", ifMatch: ifMatch, lockToken: lockToken,
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
        return try mutate(actor: actor, action: "rollback", target: "service \(name)", ifMatch: ifMatch, lockToken: lockToken,
                          before: Self.json(current)) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            let previous = popHistory(name)!
            state.services[name] = previous
            return Self.json(previous)
        }
    }

    public func setServer(pool poolName: String, server: String, weight: Int?, serverState: ServerState?,
                          actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        try pool(poolName)
        guard let current = state.servers[poolName]?[server], current.removed != true else {
            let names = state.servers[poolName]!.keys.sorted().joined(separator: ", ")
            throw AdminError(404, "no such server", "pool \(poolName) has no server \(server); servers: \(names)")
        }
        if let weight, !(0...ServerConfig.maxWeight).contains(weight) {
            throw AdminError(400, "weight out of range", "weight must be 0 to \(ServerConfig.maxWeight)")
        }
        let action = serverState.map { $0 == .ready ? "undrain" : $0.rawValue } ?? "weight"
        if serverState == .ready && current.state != .ready {
            // Back from a drain: in a checked pool it must pass its checks first; then it ramps up.
            health?.markPending(pool: poolName, server: server)
            startRamp(pool: poolName, server: server)
        }
        return try mutate(actor: actor, action: action, target: "server \(poolName)/\(server)", ifMatch: ifMatch, lockToken: lockToken,
                          before: ["weight": current.weight, "state": current.state.rawValue]) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            var s = current
            if let weight { s.weight = weight }
            if let serverState { s.state = serverState }
            state.servers[poolName]![server] = s
            return ["weight": s.weight, "state": s.state.rawValue]
        }
    }

    public func addServer(pool poolName: String, name: String, address: String, weight: Int, serverState: ServerState,
                          actor: Actor, ifMatch: UInt64?, lockToken: String?) throws(AdminError) -> UInt64 {
        try pool(poolName)
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) }) else {
            throw AdminError(400, "invalid name", "server names may use letters, digits, '-', '_', '.' and ':'")
        }
        if let existing = state.servers[poolName]?[name], existing.removed != true {
            throw AdminError(409, "server exists", "pool \(poolName) already has a server \(name)")
        }
        guard SocketAddress(parsing: address) != nil else {
            throw AdminError(400, "invalid address", "\"\(address)\" is not IPv4:port, [IPv6]:port or localhost:port")
        }
        guard (0...ServerConfig.maxWeight).contains(weight) else {
            throw AdminError(400, "weight out of range", "weight must be 0 to \(ServerConfig.maxWeight)")
        }
        let inFile = config.pool(named: poolName)?.servers.first { $0.name == name }
        if let inFile, inFile.address.description != SocketAddress(parsing: address)!.description {
            throw AdminError(409, "server exists", "the configuration file defines \(poolName)/\(name) at \(inFile.address); use that address or another name")
        }
        let generation = try mutate(actor: actor, action: "add server", target: "server \(poolName)/\(name)", ifMatch: ifMatch,
                                    lockToken: lockToken, before: nil) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            state.servers[poolName]![name] = RuntimeState.Server(weight: weight, state: serverState,
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
        if let id = snapshot.pools.first(where: { $0.name == poolName })?.servers.first(where: { $0.name == name })?.id {
            let stats = collectStats().servers
            let active = id * ServerStats.stride + ServerStats.active < stats.count ? stats[id * ServerStats.stride + ServerStats.active] : 0
            if active > 0 {
                throw AdminError(409, "requests in flight", "\(poolName)/\(name) still has \(active) active request(s); wait until it reaches zero")
            }
        }
        let inFile = config.pool(named: poolName)?.servers.contains { $0.name == name } ?? false
        return try mutate(actor: actor, action: "remove server", target: "server \(poolName)/\(name)", ifMatch: ifMatch,
                          lockToken: lockToken, before: ["weight": current.weight, "state": current.state.rawValue]) { (state: inout RuntimeState) throws(AdminError) -> Any? in
            if inFile {
                var removed = current
                removed.removed = true
                state.servers[poolName]![name] = removed
            } else {
                state.servers[poolName]![name] = nil
            }
            return nil
        }
    }

    // MARK: Reload

    /// Settings that live in the workers or the process and so change only with a restart.
    static func restartOnlyChanges(from old: SwitchyardConfig, to new: SwitchyardConfig) -> [String] {
        var keys: [String] = []
        if old.workers != new.workers { keys.append("workers") }
        // Certificates reload; the addresses themselves need a restart.
        if old.listeners.map(\.bind) != new.listeners.map(\.bind) { keys.append("listeners") }
        if old.limits != new.limits { keys.append("limits") }
        if old.timeouts != new.timeouts { keys.append("timeouts") }
        if old.accessLog != new.accessLog { keys.append("access_log") }
        if old.admin != new.admin { keys.append("admin") }
        if old.stateFile != new.stateFile { keys.append("state_file") }
        if old.shutdownTimeout != new.shutdownTimeout { keys.append("shutdown_timeout") }
        return keys
    }

    /// Reads the configuration file again and applies it without touching existing
    /// connections: pools, servers and services change at once. Runtime changes are kept
    /// where what they name still exists (as at a restart), unless `reset` asks to start
    /// from the file's routing. An invalid file is refused, and the running configuration
    /// stays. Returns the new generation and warnings for settings that need a restart.
    public func reload(reset: Bool, actor: Actor) throws(AdminError) -> (generation: UInt64, notes: [String]) {
        guard let configPath else {
            throw AdminError(409, "nothing to reload", "this instance runs an embedded configuration, not a file")
        }
        let fresh: SwitchyardConfig
        do {
            fresh = try ConfigLoader.load(path: configPath)
        } catch {
            throw AdminError(400, "invalid configuration", "\(configPath) was not applied; the running configuration stays. Problems:\n\(error.description)")
        }
        var notes = Self.restartOnlyChanges(from: config, to: fresh).map {
            "\($0) changed in the file; it takes effect at the next restart"
        }
        if let reloadCertificates, fresh.listeners.map(\.bind) == config.listeners.map(\.bind) {
            do {
                let count = try reloadCertificates(fresh)
                if count > 0 { notes.append("certificates reloaded for \(count) TLS listener(s); new handshakes use them") }
            } catch {
                throw AdminError(400, "invalid certificates", "\(error); the running configuration and certificates stay")
            }
        }
        var next = RuntimeState(config: fresh, generation: state.generation)
        let newFileState = next
        if !reset { notes += next.merge(runtime: state, base: fileState) }
        next.generation = state.generation + 1
        let before: [String: Any] = ["pools": config.pools.map(\.name), "services": config.services.map(\.name)]
        // Keep the parts that only change at restart as they are running.
        var applied = fresh
        applied.workers = config.workers
        if applied.listeners.map(\.bind) != config.listeners.map(\.bind) { applied.listeners = config.listeners }
        applied.limits = config.limits
        applied.timeouts = config.timeouts
        applied.accessLog = config.accessLog
        applied.admin = config.admin
        applied.stateFile = config.stateFile
        applied.shutdownTimeout = config.shutdownTimeout
        config = applied
        state = next
        fileState = newFileState
        history = history.filter { state.services[$0.key] != nil }
        health?.sync(startup: false)
        publish()
        persist()
        record(actor: actor, action: reset ? "reload (reset runtime changes)" : "reload", target: configPath, before: before,
               after: ["pools": config.pools.map(\.name), "services": config.services.map(\.name), "notes": notes])
        return (state.generation, notes)
    }

    // MARK: Lock

    private func currentLock() -> LockInfo? {
        if let lock, lock.expires <= Date() {
            self.lock = nil
            persist()
        }
        return lock
    }

    /// A reload is a mutation too: refused while someone else holds the lock.
    func checkLockFor(_ token: String?) throws(AdminError) { try checkLock(token) }

    private func checkLock(_ token: String?) throws(AdminError) {
        guard let lock = currentLock() else { return }
        if token == lock.token { return }
        throw AdminError(423, "locked",
                         "locked by \(lock.owner) since \(ISO8601DateFormatter().string(from: lock.since)) (reason: \(lock.reason)); send the lock token in X-Switchyard-Lock, or wait until \(ISO8601DateFormatter().string(from: lock.expires))")
    }

    public func acquireLock(owner: String, reason: String, ttl: Duration, actor: Actor, token existing: String?) throws(AdminError) -> LockInfo {
        if let held = currentLock(), held.token != existing {
            throw AdminError(423, "locked", "already locked by \(held.owner) since \(ISO8601DateFormatter().string(from: held.since)) (reason: \(held.reason))")
        }
        let now = Date()
        var bytes = [UInt8](repeating: 0, count: 16)
        _ = bytes.withUnsafeMutableBytes { getentropy($0.baseAddress, 16) }
        let token = existing ?? bytes.map { String(format: "%02x", $0) }.joined()
        let since = currentLock()?.since ?? now
        let info = LockInfo(owner: owner, reason: reason, token: token, since: since,
                            expires: now.addingTimeInterval(Double(ttl.milliseconds) / 1000))
        lock = info
        persist()
        record(actor: actor, action: existing == nil ? "lock" : "renew lock", target: "lock", before: nil,
               after: ["owner": owner, "reason": reason, "expires": ISO8601DateFormatter().string(from: info.expires)])
        return info
    }

    public func releaseLock(token: String?, force: Bool, actor: Actor) throws(AdminError) {
        guard let held = currentLock() else { throw AdminError(409, "not locked", "there is no lock to release") }
        if !force && token != held.token {
            throw AdminError(423, "locked", "the lock belongs to \(held.owner); send its token in X-Switchyard-Lock, or force=true to break it")
        }
        lock = nil
        persist()
        record(actor: actor, action: force && token != held.token ? "break lock" : "unlock", target: "lock",
               before: ["owner": held.owner, "reason": held.reason], after: nil)
    }

    public var activeLock: LockInfo? { currentLock() }

    // MARK: Persistence and audit

    /// Writes the state file atomically: temporary file, fsync, rename, fsync of the directory.
    func persist() {
        guard let path = config.stateFile else { return }
        do {
            let data = try JSONEncoder.switchyard.encode(Persisted(state: state, lock: lock, history: history, fileState: fileState))
            try writeAtomically(data, to: path)
        } catch {
            FileHandle.standardError.write(Data("switchyard: cannot write state file \(path): \(error)\n".utf8))
        }
    }

    private func record(actor: Actor, action: String, target: String, before: Any?, after: Any?) {
        var entry: [String: Any] = [
            "time": ISO8601DateFormatter.withFraction.string(from: Date()),
            "actor": actor.user,
            "action": action,
            "target": target,
            "generation": state.generation,
        ]
        if let label = actor.label { entry["actor_label"] = label }
        entry["before"] = before ?? NSNull()
        entry["after"] = after ?? NSNull()
        auditEntries.append(entry)
        if auditEntries.count > Self.auditMemoryLimit { auditEntries.removeFirst() }
        if let auditPath, let line = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]) {
            let fd = open(auditPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            if fd >= 0 {
                var bytes = [UInt8](line)
                bytes.append(10)
                _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                fsync(fd)
                close(fd)
            }
        }
    }

    public var audit: [[String: Any]] { auditEntries }

    static func json(_ s: RuntimeState.Service) -> [String: Any] {
        var out: [String: Any] = ["active": s.active]
        out["standby"] = s.standby ?? NSNull()
        if let c = s.canary {
            var canary: [String: Any] = ["pool": c.pool, "weight": BasisPoints.format(c.weight)]
            switch c.sticky {
            case .cookie(let n)?: canary["sticky"] = ["cookie": n]
            case .header(let n)?: canary["sticky"] = ["header": n]
            case .clientIP?: canary["sticky"] = ["client_ip": true]
            case nil: break
            }
            if let g = c.guardrail {
                canary["guard"] = ["max_error_rate": BasisPoints.format(g.maxErrorRate), "min_requests": g.minRequests,
                                   "window": "\(Double(g.windowMilliseconds) / 1000)s"]
            }
            out["canary"] = canary
        } else {
            out["canary"] = NSNull()
        }
        out["rules"] = s.rules.map { ["kind": $0.kind.rawValue, "name": $0.name, "value": $0.value, "pool": $0.pool] }
        return out
    }
}

/// Writes `data` to `path` so that a crash leaves either the old file or the new one.
func writeAtomically(_ data: Data, to path: String) throws {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw ProxyError("open \(temporary): \(String(cString: strerror(errno)))") }
    let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == data.count, fsync(fd) == 0 else {
        let reason = String(cString: strerror(errno))
        close(fd)
        throw ProxyError("write \(temporary): \(reason)")
    }
    close(fd)
    guard rename(temporary, path) == 0 else { throw ProxyError("rename to \(path): \(String(cString: strerror(errno)))") }
    let directory = (path as NSString).deletingLastPathComponent
    let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}

extension JSONEncoder {
    static var switchyard: JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return e
    }
}

extension JSONDecoder {
    static var switchyard: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) static let withFraction: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
}

private let guardTimerCallback: event_callback_fn = { _, _, context in
    Unmanaged<ControlPlane>.fromOpaque(context!).takeUnretainedValue().guardTick()
}

private let rampTimerCallback: event_callback_fn = { _, _, context in
    Unmanaged<ControlPlane>.fromOpaque(context!).takeUnretainedValue().rampTick()
}
