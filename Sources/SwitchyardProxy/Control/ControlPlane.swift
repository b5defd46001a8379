import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

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
public final class ControlPlane: HealthCheckHost {
    public internal(set) var config: SwitchyardConfig
    /// The file the configuration came from (reload reads it again); nil for embedded ones.
    public var configPath: String?
    public internal(set) var state: RuntimeState
    /// The deploy locks held (expired ones are dropped when next read; see Locking.swift).
    public internal(set) var locks = LockSet()
    /// Earlier routing of each service, most recent last, for rollback.
    var history: [String: [RuntimeState.Service]] = [:]
    static let historyLimit = 50
    /// Every change, appended to `STATE_FILE.audit.jsonl`.
    let auditLog: AuditLog
    static let auditMemoryLimit = AuditLog.memoryLimit
    let registry = ServerRegistry()
    /// Servers given by DNS name: their answers, resolver threads and timers (NameResolution.swift).
    let resolution = NameResolutionState()
    let publisher = WorkerPublisher()
    /// Reloads, resolution outcomes, the release and the phase, for `/metrics` and `/ready`.
    let observed = ObservedCounters()
    /// The access log, whose dropped lines and write errors `/metrics` reports.
    var accessLog: AccessLog?
    var workers: [Worker] {
        get { publisher.workers }
        set { publisher.workers = newValue }
    }
    /// Microseconds from publishing a snapshot to the last worker's acknowledgement.
    public var publishLatencies: [Double] { publisher.latencies }
    /// The state file (nothing is written without one).
    let stateStore: StateStore
    /// Lines about runtime state that could not be restored (shown at start).
    public internal(set) var restoreNotes: [String] = []

    /// The state the configuration file describes, without runtime changes: what a reload
    /// or restart compares runtime state with to tell what an operator changed.
    var fileState: RuntimeState

    public init(config: SwitchyardConfig) throws {
        self.config = config
        state = RuntimeState(config: config)
        fileState = state
        stateStore = StateStore(path: config.stateFile)
        auditLog = AuditLog(path: config.stateFile.map { $0 + ".audit.jsonl" })
        if let saved = try stateStore.load() {
            // Without a recorded file state (older state files), every saved value counts as an operator's change.
            restoreNotes = state.merge(runtime: saved.state, base: saved.fileState ?? RuntimeState(config: config, generation: 0))
            locks = LockSet((saved.lock.map { [$0] } ?? []) + (saved.serviceLocks ?? []))
            history = Self.prune(saved.history, for: state)
        }
    }

    /// When each ramping server ("pool/server") entered rotation (see SlowStart.swift).
    var rampStart: [String: Int64] = [:]
    var rampTimer: OpaquePointer?

    /// Per service: the guard's window (a new canary pool or new limits start afresh); see CanaryGuardMonitor.swift.
    var guardWindows: [String: CanaryGuardWindow] = [:]
    /// The last trip per service, shown in status so the orchestrator can tell why the canary went.
    public internal(set) var guardTrips: [String: [String: Any]] = [:]
    /// Trips per service since start, for `switchyard_canary_guard_trips_total`.
    public internal(set) var guardTripCounts: [String: Int] = [:]
    var guardTimer: OpaquePointer?
    static let guardTickMilliseconds: Int64 = 100

    /// Active health checks, once the control loop runs.
    var health: HealthChecker?
    /// TLS client contexts of pools that talk TLS (health checks use them too).
    var upstreamTLS: [String: TLSClientContext] = [:]
    /// Loads the listeners' certificates from a reloaded configuration; returns how many TLS
    /// listeners were updated. Set by the server once its listeners are bound.
    var reloadCertificates: ((SwitchyardConfig) throws -> Int)?
    /// The certificates served now, by listener ("listeners 0.0.0.0:443", "admin"), for the
    /// expiry metric; set at start and by each reload.
    var servedCertificates: [String: [TLSServerContext.Expiry]] = [:]

    func snapshot() -> RoutingSnapshot {
        RoutingSnapshot(config: config, state: state, registry: registry, down: health?.down ?? [],
                        weightPercent: weightPercents(), resolved: resolution.names.snapshotAddresses, cache: poolCache)
    }

    /// What the workers route with now: the last published snapshot (built afresh before the
    /// first publication). Reading it costs nothing, where building one walks every server.
    /// The pools of the last snapshot, shared by the next one where unchanged.
    let poolCache = PoolSnapshotCache()

    var currentSnapshot: RoutingSnapshot { publisher.published ?? snapshot() }

    /// The routing as the runtime state alone describes it (which servers exist, their addresses).
    func snapshotIgnoringHealth() -> RoutingSnapshot {
        RoutingSnapshot(config: config, state: state, registry: registry, resolved: resolution.names.snapshotAddresses)
    }

    func startHealthChecks(base: OpaquePointer) {
        health = HealthChecker(host: self, base: base)
        health?.sync(startup: true)
        startRampTimer(base: base)
        startGuardTimer(base: base)
    }

    /// Publishes the current state to every worker and waits for all acknowledgements.
    @discardableResult
    func publish() -> Double { publisher.publish(snapshot()) }

    /// Counters summed over all workers, `ServerStats.stride` per server id and per service.
    func collectStats() -> StatsCopy { publisher.collectStats() }

    /// A server went up or down: workers get a new snapshot (the state itself did not change).
    func healthChanged() { publish() }

    /// A server back in rotation ramps up if its pool has slow start.
    func serverCameUp(pool: String, server: String) { startRamp(pool: pool, server: server) }

    // MARK: Mutations

    /// Runs a change: checks the locks covering `scope` (none when `scope` is nil: the guard,
    /// which acts for the proxy itself) and `If-Match`, applies `change` to a copy of the
    /// state, makes it durable (state file, then audit trail) and only then publishes it.
    /// A change that cannot be written is refused with a 500 and leaves everything as it was,
    /// unless `requireDurable` is false (the guard, whose job is to protect traffic now).
    /// Returns the new generation.
    func mutate(actor: Actor, action: String, target: String, scope: LockScope?, pool: String? = nil, ifMatch: UInt64?, lockToken: String?,
                before: Any?, requireDurable: Bool = true,
                change: (inout RuntimeState) throws(AdminError) -> Any?) throws(AdminError) -> UInt64 {
        if let scope { try checkLock(lockToken, scope: scope, pool: pool) }
        if let ifMatch, ifMatch != state.generation {
            throw AdminError(412, "stale generation",
                             "If-Match was \(ifMatch) but the state is at generation \(state.generation); read /v1/status and retry")
        }
        let saved = savedState()
        var next = state
        let after: Any?
        do throws(AdminError) { after = try change(&next) } catch { restore(saved); throw error }
        next.generation = state.generation + 1
        state = next
        do throws(AdminError) {
            try makeDurable(actor: actor, action: action, target: target, before: before, after: after,
                            restoring: requireDurable ? saved : nil)
        } catch {
            guard !requireDurable else { throw error }
            logToStandardError("switchyard: \(action) applied although it could not be recorded: \(error.detail)")
        }
        publish()
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
        if (history[name]?.count ?? 0) > Self.historyLimit { history[name]?.removeFirst() }
    }

    func popHistory(_ name: String) -> RuntimeState.Service? { history[name]?.popLast() }

    /// The rollback history of the services `state` has, without earlier routings that name a
    /// pool `state` no longer has (rolling back to one would route to nothing).
    static func prune(_ history: [String: [RuntimeState.Service]], for state: RuntimeState) -> [String: [RuntimeState.Service]] {
        let pools = Set(state.servers.keys)
        var kept: [String: [RuntimeState.Service]] = [:]
        for (name, entries) in history where state.services[name] != nil {
            kept[name] = entries.filter { RuntimeState.routes($0, onlyTo: pools) }
        }
        return kept
    }

    // MARK: Persistence and audit

    /// What a change may have to be undone to.
    struct SavedState {
        var config: SwitchyardConfig
        var state: RuntimeState
        var fileState: RuntimeState
        var locks: LockSet
        var history: [String: [RuntimeState.Service]]
    }

    func savedState() -> SavedState { SavedState(config: config, state: state, fileState: fileState, locks: locks, history: history) }

    func restore(_ saved: SavedState) {
        config = saved.config
        state = saved.state
        fileState = saved.fileState
        locks = saved.locks
        history = saved.history
    }

    /// Writes the state file, then appends the audit entry. If either fails, the in-memory
    /// state goes back to `saved` when given (and the state file too, as far as it can be
    /// written), and the error names the file and the reason.
    func makeDurable(actor: Actor, action: String, target: String, before: Any?, after: Any?,
                             restoring saved: SavedState?) throws(AdminError) {
        do throws(AdminError) {
            try persist()
            try record(actor: actor, action: action, target: target, before: before, after: after)
        } catch {
            if let saved {
                restore(saved)
                try? persist()
            }
            throw error
        }
    }

    public var audit: [[String: Any]] { auditLog.entries }

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
