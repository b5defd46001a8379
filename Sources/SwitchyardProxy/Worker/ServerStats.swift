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
    /// `latencyBuckets + bucketBounds.count + 1`, written as a literal: a computed static is a lazy
    /// global, and the request path would pay its initialisation check on every count.
    public static let stride = 26

    /// Counts one finished exchange (status 0: it ended without a response).
    @inline(__always) static func record(into counters: inout [Int], at base: Int, status: Int, durationMicros: Int64) {
        counters[base + requests] &+= 1
        if status >= 100 && status < 600 { counters[base + statusClass + status / 100 - 1] &+= 1 }
        else { counters[base + failures] &+= 1 }
        counters[base + latencySumMicros] &+= Int(durationMicros)
        counters[base + latencyBuckets + bucket(forMicros: durationMicros)] &+= 1
    }

    /// The bucket of a duration, by integer comparisons (the bounds above, in microseconds).
    @inline(__always) static func bucket(forMicros micros: Int64) -> Int {
        switch micros {
        case ...1_000: return 0
        case ...2_500: return 1
        case ...5_000: return 2
        case ...10_000: return 3
        case ...25_000: return 4
        case ...50_000: return 5
        case ...100_000: return 6
        case ...250_000: return 7
        case ...500_000: return 8
        case ...1_000_000: return 9
        case ...2_500_000: return 10
        case ...5_000_000: return 11
        case ...10_000_000: return 12
        default: return 13
        }
    }
}

/// A worker's counters as handed to the control plane.
struct StatsCopy: Sendable {
    var servers: [Int] = []
    var services: [Int] = []
    var tlsHandshakeFailures = 0
    var acceptErrors = 0
    /// Open client connections of each worker, by worker index (`switchyard_client_connections`).
    var clientConnections: [Int] = []
}
