import SwitchyardConfig

/// Passive outlier detection for one worker: consecutive failures (5xx, connection failures)
/// eject a server from balancing for a while, longer with each ejection in a row (up to ten
/// times the base), never more than `max_ejection_percent` of its pool at once (but always
/// at least one). State is kept by stable server id. Pure, so the rules are tested without
/// sockets; the worker turns its answers into balancer masks, counters and log lines.
public struct OutlierDetector: Sendable {
    private var consecutiveFailures: [Int] = []
    /// Monotonic milliseconds until which a server is ejected; 0 when it is not.
    private var ejectedUntil: [Int64] = []
    private var ejectionStreak: [Int] = []
    private var successesSinceReturn: [Int] = []

    public init() {}

    /// Makes room for server ids below `limit`.
    public mutating func grow(to limit: Int) {
        let grow = limit - ejectedUntil.count
        guard grow > 0 else { return }
        consecutiveFailures += [Int](repeating: 0, count: grow)
        ejectedUntil += [Int64](repeating: 0, count: grow)
        ejectionStreak += [Int](repeating: 0, count: grow)
        successesSinceReturn += [Int](repeating: 0, count: grow)
    }

    @inline(__always)
    public func isEjected(_ id: Int) -> Bool { id >= 0 && id < ejectedUntil.count && ejectedUntil[id] != 0 }

    /// Whether any server is ejected now.
    public var anyEjected: Bool { ejectedUntil.contains { $0 != 0 } }

    /// Records how an attempt on server `id` of `pool` ended. Returns how long it is ejected
    /// for (ms) when this outcome ejects it; nothing for a pool without outlier detection.
    public mutating func record(serverID id: Int, failed: Bool, pool: PoolSnapshot, now: Int64) -> Int64? {
        guard let od = pool.outlierDetection else { return nil }
        return record(serverID: id, failed: failed, config: od, poolServerIDs: pool.servers.lazy.map(\.id), now: { now })
    }

    /// The same, for the request path: the pool's server ids and the time are read only when
    /// the outcome may eject the server (most outcomes are successes).
    @inline(__always)
    public mutating func record<IDs: Sequence<Int>>(serverID id: Int, failed: Bool, config od: OutlierDetectionConfig,
                                                   poolServerIDs: @autoclosure () -> IDs, now: () -> Int64) -> Int64? {
        guard id >= 0, id < ejectedUntil.count else { return nil }
        if !failed {
            consecutiveFailures[id] = 0
            if ejectionStreak[id] > 0 && ejectedUntil[id] == 0 {
                successesSinceReturn[id] += 1
                // Twice the failure threshold in successes forgives earlier ejections.
                if successesSinceReturn[id] >= 2 * od.consecutiveFailures { ejectionStreak[id] = 0 }
            }
            return nil
        }
        successesSinceReturn[id] = 0
        consecutiveFailures[id] += 1
        guard ejectedUntil[id] == 0, consecutiveFailures[id] >= od.consecutiveFailures else { return nil }
        var ejected = 0, size = 0
        for server in poolServerIDs() {
            size += 1
            if isEjected(server) { ejected += 1 }
        }
        let limit = max(1, size * max(0, od.maxEjectionPercent) / 100)
        guard ejected < limit else { return nil }
        ejectionStreak[id] = min(ejectionStreak[id] + 1, 10)
        let ms = od.baseEjectionTime.milliseconds.multipliedReportingOverflow(by: Int64(ejectionStreak[id]))
        let duration = ms.overflow ? Int64.max / 2 : ms.partialValue
        ejectedUntil[id] = now() &+ duration
        consecutiveFailures[id] = 0
        return duration
    }

    /// Returns to balancing the servers whose ejection is over at `now`; their ids.
    public mutating func returnDue(now: Int64) -> [Int] {
        var returned: [Int] = []
        for id in 0..<ejectedUntil.count where ejectedUntil[id] != 0 && ejectedUntil[id] <= now {
            ejectedUntil[id] = 0
            returned.append(id)
        }
        return returned
    }
}
