import CLibevent
import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardRouting

/// The control plane's side of servers given by DNS name: what it knows of each name,
/// the threads that resolve, and the timer and wake-up event on the control loop.
final class NameResolutionState {
    var names = ResolvedNames()
    /// Started when the configuration first has a name.
    var threads: ResolverThreads?
    var timer: OpaquePointer?
    /// Activated by a resolver thread when an outcome is ready (libevent is thread-safe here).
    var wake: OpaquePointer?
}

/// An event a resolver thread may activate.
private struct EventHandle: @unchecked Sendable { let event: OpaquePointer }

/// Resolving the names of servers (`address: app.internal:8080`), like nginx's `resolve` and
/// HAProxy's resolvers: at start and reload, then every `resolve.interval`. Each good answer
/// that changes the addresses is published as a routing change like any other (the same
/// snapshot publishing); addresses that leave the answer drain and leave the pool once their
/// requests have finished; a failed resolution keeps the last good answer and is reported.
extension ControlPlane {
    /// How long start and reload wait for the first answer of a new name. A name still
    /// unresolved by then serves no traffic until it resolves (it is asked again every second).
    static let firstAnswerWait: TimeInterval = 5
    /// How often due names are submitted and drains are checked.
    static let resolveTickMilliseconds: Int64 = 250
    /// An address left out of an answer drains at least this long, so that every worker has
    /// routed with the snapshot that drains it before its requests are counted.
    static let minimumDrainMilliseconds: Int64 = 500

    /// Resolves every name of the configuration before the workers start, waiting for first answers.
    public func resolveNamesAtStart() {
        resolution.names.sync(with: config, now: monotonicMilliseconds())
        resolveDueNames(waitingForNew: true, rampNew: false)
    }

    /// After a reload: names the file still has keep their answer and are asked again; new
    /// names are resolved before the reload returns (waiting for their first answers).
    func resolveNamesAfterReload() {
        resolution.names.sync(with: config, now: monotonicMilliseconds())
        resolveDueNames(waitingForNew: true, rampNew: true)
    }

    /// Starts the resolve timer and the wake-up event on the control loop.
    func startResolving(base: OpaquePointer) {
        let context = Unmanaged.passUnretained(self).toOpaque()
        resolution.wake = event_new(base, -1, EventFlags.persist, resolveWakeCallback, context)
        if let wake = resolution.wake { event_add(wake, nil) }
        if let threads = resolution.threads { connectWake(threads) }
        resolution.timer = event_new(base, -1, EventFlags.persist, resolveTimerCallback, context)
        var tv = timeval(milliseconds: Self.resolveTickMilliseconds)
        event_add(resolution.timer, &tv)
    }

    /// The resolver threads, started the first time a configuration has a name.
    func resolverThreads() -> ResolverThreads {
        if let threads = resolution.threads { return threads }
        let threads = ResolverThreads()
        resolution.threads = threads
        connectWake(threads)
        return threads
    }

    /// Lets the threads wake the control loop once it runs (before, start-up waits for them).
    private func connectWake(_ threads: ResolverThreads) {
        guard let wake = resolution.wake else { return }
        let handle = EventHandle(event: wake)
        threads.setWake { event_active(handle.event, EV_READ, 0) }
    }

    /// Submits the names that are due; with `waitingForNew`, waits (boundedly) for the
    /// answers of names that have no address yet and applies what arrived.
    func resolveDueNames(waitingForNew: Bool, rampNew: Bool) {
        let jobs = resolution.names.takeDue(now: monotonicMilliseconds())
        guard !jobs.isEmpty else { return }
        let threads = resolverThreads()
        threads.submit(jobs.map { ResolverThreads.Request(job: $0, servers: config.resolver.servers, timeout: config.resolver.timeout) })
        if waitingForNew {
            let new = Set(jobs.filter { resolution.names.entries[$0.key]?.addresses.isEmpty ?? false }.map(\.ticket))
            if !new.isEmpty { threads.wait(for: new, until: Date().addingTimeInterval(Self.firstAnswerWait)) }
            applyResolutions(rampNew: rampNew, publishing: false)
        }
    }

    /// Applies the outcomes that are ready. Returns whether the routing changed; publishes
    /// the change unless `publishing` is false (the caller publishes).
    @discardableResult
    func applyResolutions(rampNew: Bool = true, publishing: Bool = true) -> Bool {
        guard let threads = resolution.threads else { return false }
        let outcomes = threads.takeOutcomes()
        var changed = false
        let now = monotonicMilliseconds(), wallClock = Date().timeIntervalSince1970
        for outcome in outcomes {
            let key = outcome.job.key
            switch outcome.result {
            case .success(let addresses):
                // An answer without any address is recorded as a failure (below, by recordAnswer).
                if addresses.isEmpty { observed.dnsFailures += 1 } else { observed.dnsSuccesses += 1 }
                let hadAnswer = !(resolution.names.entries[key]?.addresses.isEmpty ?? true)
                guard let change = resolution.names.recordAnswer(addresses, ticket: outcome.job.ticket, key: key,
                                                                 now: now, wallClock: wallClock) else {
                    // An empty answer is recorded as a failure; say so like one.
                    if addresses.isEmpty, let entry = resolution.names.entries[key], entry.consecutiveFailures == 1 {
                        logFailure(entry)
                    }
                    continue
                }
                if change.recovered && hadAnswer { logToStandardError("switchyard: dns: \(key) (\(outcome.job.target.host)) resolves again") }
                guard !change.isEmpty else { continue }
                changed = true
                let inUse = resolution.names.entries[key]?.addresses.map(\.host).joined(separator: ", ") ?? ""
                var parts: [String] = []
                if !change.added.isEmpty && hadAnswer { parts.append("added \(change.added.map(\.host).joined(separator: ", "))") }
                if !change.removed.isEmpty { parts.append("draining \(change.removed.map(\.host).joined(separator: ", "))") }
                logToStandardError("switchyard: dns: \(key) (\(outcome.job.target.host)) is \(inUse)\(parts.isEmpty ? "" : " (" + parts.joined(separator: "; ") + ")")")
                if rampNew, let entry = resolution.names.entries[key] {
                    for address in change.added {
                        startRamp(pool: entry.pool, server: ResolvedNames.serverName(entry.server, address: address))
                    }
                }
            case .failure(let failure):
                observed.dnsFailures += 1
                if resolution.names.recordFailure(failure.reason, ticket: outcome.job.ticket, key: key, now: now, wallClock: wallClock),
                   let entry = resolution.names.entries[key] {
                    logFailure(entry)
                }
            }
        }
        if changed && publishing {
            health?.sync(startup: false) // new addresses of a checked pool wait for their checks
            publish()
        }
        return changed
    }

    private func logFailure(_ entry: ResolvedNames.Entry) {
        let keeping = entry.addresses.isEmpty ? "it has no address yet, so it serves nothing"
                                              : "keeping \(entry.addresses.map(\.host).joined(separator: ", "))"
        logToStandardError("switchyard: dns: cannot resolve \(entry.key) (\(entry.target.host)): \(entry.lastError ?? "unknown error"); \(keeping)")
    }

    /// Every tick: submits the names that are due and removes drained addresses.
    func resolveTick() {
        applyResolutions() // outcomes that arrived while nothing could wake this loop (start, reload)
        resolveDueNames(waitingForNew: false, rampNew: true)
        guard resolution.names.isDraining else { return }
        let now = monotonicMilliseconds()
        // Only addresses that drained long enough are worth counting requests for.
        guard resolution.names.entries.values.contains(where: { $0.draining.values.contains { now - $0 >= Self.minimumDrainMilliseconds } }) else { return }
        let stats = collectStats().servers
        var ids: [String: Int] = [:]
        for pool in snapshotIgnoringHealth().pools {
            for server in pool.servers { ids[ResolvedNames.key(pool: pool.name, server: server.name)] = server.id }
        }
        let dropped = resolution.names.removeDrained(now: now, minimumMs: Self.minimumDrainMilliseconds) { pool, server in
            guard let id = ids[ResolvedNames.key(pool: pool, server: server)] else { return 0 }
            let index = id * ServerStats.stride + ServerStats.active
            return index < stats.count ? stats[index] : 0
        }
        guard !dropped.isEmpty else { return }
        for (key, address) in dropped {
            logToStandardError("switchyard: dns: \(key): \(address.host) has drained and leaves the pool")
        }
        health?.sync(startup: false)
        publish()
    }

    /// The servers a file's server stands for: itself, or the addresses its name resolved to
    /// (what health checks and slow start know them by).
    func resolvedServerNames(pool: String, server: String) -> [String] {
        guard let entry = resolution.names.entries[ResolvedNames.key(pool: pool, server: server)] else { return [server] }
        return entry.addresses.map { ResolvedNames.serverName(server, address: $0) }
    }
}

private let resolveWakeCallback: event_callback_fn = { _, _, context in
    guard let context else { return }
    Unmanaged<ControlPlane>.fromOpaque(context).takeUnretainedValue().applyResolutions()
}

private let resolveTimerCallback: event_callback_fn = { _, _, context in
    guard let context else { return }
    Unmanaged<ControlPlane>.fromOpaque(context).takeUnretainedValue().resolveTick()
}
