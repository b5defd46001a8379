import CLibevent
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// Slow start and reported load: how much of its weight each server gets while it ramps up
/// and according to what it reports.
extension ControlPlane {
    // MARK: Slow start and reported load

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
            let pool = key.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
            let duration = config.pool(named: pool)?.slowStart?.milliseconds ?? 0
            if let percent = WeightScaling.slowStartPercent(elapsedMs: now - start, durationMs: duration) { out[key] = percent }
            else { rampStart[key] = nil }
        }
        if let health {
            for entry in health.servers.values {
                let load = health.loadPercent(pool: entry.pool, server: entry.server)
                if load != 100 { out[entry.key] = WeightScaling.combined(ramp: out[entry.key], load: load) }
            }
        }
        return out
    }

    /// While a server ramps, the snapshot is republished four times a second with its new
    /// weight, so a ramp ends (and status shows it ended) within a quarter second of its time.
    func startRampTimer(base: OpaquePointer) {
        rampTimer = event_new(base, -1, EventFlags.persist, rampTimerCallback, Unmanaged.passUnretained(self).toOpaque())
        var tv = timeval(milliseconds: 250)
        event_add(rampTimer, &tv)
    }

    func rampTick() {
        if !rampStart.isEmpty { publish() }
    }
}

private let rampTimerCallback: event_callback_fn = { _, _, context in
    Unmanaged<ControlPlane>.fromOpaque(context!).takeUnretainedValue().rampTick()
}
