/// Per-server counters, kept by each worker in one flat array (no locks, no allocation per
/// request) and merged by the control plane when status or metrics are asked for.
public enum ServerStats {
    public static let active = 0
    public static let openConnections = 1
    public static let requests = 2
    /// Responses by class: 1xx at `statusClass + 0` ... 5xx at `statusClass + 4`.
    public static let statusClass = 3
    /// Exchanges that ended without a response status (client gone, upstream cut off).
    public static let failures = 8
    public static let latencySumMicros = 9
    /// Times passive outlier detection ejected the server (summed over workers).
    public static let ejections = 10
    /// Workers that have the server ejected right now.
    public static let ejectedNow = 11
    /// Cumulative-style buckets are computed when exported; stored here per bucket.
    public static let latencyBuckets = 12
    /// Upper bounds of the latency buckets, in seconds (the last is +Inf).
    public static let bucketBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    public static let stride = latencyBuckets + bucketBounds.count + 1

    /// Counts one finished exchange (status 0: it ended without a response).
    @inline(__always) static func record(into counters: inout [Int], at base: Int, status: Int, durationMicros: Int64) {
        counters[base + requests] &+= 1
        if status >= 100 && status < 600 { counters[base + statusClass + status / 100 - 1] &+= 1 }
        else { counters[base + failures] &+= 1 }
        counters[base + latencySumMicros] &+= Int(durationMicros)
        counters[base + latencyBuckets + bucket(forMicros: durationMicros)] &+= 1
    }

    @inline(__always) static func bucket(forMicros micros: Int64) -> Int {
        let seconds = Double(micros) / 1_000_000
        var i = 0
        while i < bucketBounds.count && seconds > bucketBounds[i] { i += 1 }
        return i
    }
}

/// A worker's counters as handed to the control plane.
struct StatsCopy: Sendable {
    var servers: [Int] = []
    var services: [Int] = []
}
