import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// The proxy-side canary guard: every 100 ms while a guard is armed, the canary pool's
/// counters are judged (`CanaryGuardWindow`) and a failing canary is taken out.
extension ControlPlane {
    // MARK: Canary guard


    func startGuardTimer(base: OpaquePointer) {
        guardTimer = event_new(base, -1, EventFlags.persist, guardTimerCallback, Unmanaged.passUnretained(self).toOpaque())
        var tv = timeval(milliseconds: Self.guardTickMilliseconds)
        event_add(guardTimer, &tv)
    }

    /// Every 100 ms while some canary has an armed guard: sums the canary pool's finished
    /// exchanges and errors (5xx and exchanges without a response) and trips when the share
    /// over the guard's window reaches its threshold. Costs nothing without an armed guard.
    func guardTick() {
        var armed: [(name: String, canary: CanaryConfig, rule: CanaryGuard)] = []
        for (name, service) in state.services.sorted(by: { $0.key < $1.key }) {
            if let canary = service.canary, let rule = canary.guardrail, canary.weight > 0 { armed.append((name, canary, rule)) }
        }
        guardWindows = guardWindows.filter { entry in armed.contains { $0.name == entry.key } }
        guard !armed.isEmpty else { return }
        let stats = collectStats()
        let snapshot = snapshot()
        let now = monotonicMilliseconds()
        for (name, canary, rule) in armed {
            guard let sample = Self.guardSample(pool: canary.pool, stats: stats, snapshot: snapshot, time: now) else { continue }
            var window = guardWindows[name] ?? CanaryGuardWindow(pool: canary.pool, rule: rule)
            if window.key != CanaryGuardWindow.key(pool: canary.pool, rule: rule) { window = CanaryGuardWindow(pool: canary.pool, rule: rule) }
            let verdict = window.add(sample)
            guardWindows[name] = window
            if let verdict { trip(service: name, canary: canary, rule: rule, verdict: verdict) }
        }
    }

    /// The canary pool's finished exchanges and errors (5xx and exchanges without a response) at `time`.
    static func guardSample(pool name: String, stats: StatsCopy, snapshot: RoutingSnapshot, time: Int64) -> GuardSample? {
        guard let pool = snapshot.pools.first(where: { $0.name == name }) else { return nil }
        var requests = 0, errors = 0
        for server in pool.servers {
            let base = server.id * ServerStats.stride
            guard base + ServerStats.stride <= stats.servers.count else { continue }
            requests &+= stats.servers[base + ServerStats.requests]
            errors &+= stats.servers[base + ServerStats.statusClass + 4] &+ stats.servers[base + ServerStats.failures]
        }
        return GuardSample(time: time, requests: requests, errors: errors)
    }

    func trip(service name: String, canary: CanaryConfig, rule: CanaryGuard, verdict: CanaryGuardWindow.Trip) {
        guard let current = state.services[name] else { return }
        let finished = verdict.finished, failed = verdict.failed
        let rate = Double(failed) / Double(finished)
        let reason = String(format: "canary pool %@ failed %d of %d requests (%.1f%%) in %.1fs; the guard trips at %@",
                            canary.pool, failed, finished, rate * 100, verdict.seconds, BasisPoints.format(rule.maxErrorRate))
        let trip: [String: Any] = ["time": ISO8601DateFormatter.withFraction.string(from: Date()), "pool": canary.pool,
                                   "weight": BasisPoints.format(canary.weight), "requests": finished, "errors": failed,
                                   "error_rate": rate, "reason": reason]
        // The guard acts for the proxy itself: it passes its own lock check, even during a deploy.
        _ = try? mutate(actor: Actor(user: "switchyard-guard", label: nil), action: "guard trip", target: "service \(name)",
                        scope: nil, ifMatch: nil, lockToken: nil, before: Self.json(current), requireDurable: false) { (state: inout RuntimeState) throws(AdminError) -> Any? in
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
        guardWindows[name] = nil
        logToStandardError("switchyard: canary guard tripped for service \(name): \(reason); canary weight set to 0", level: .warning)
    }
}

private let guardTimerCallback: event_callback_fn = { _, _, context in
    Unmanaged<ControlPlane>.fromOpaque(context!).takeUnretainedValue().guardTick()
}

