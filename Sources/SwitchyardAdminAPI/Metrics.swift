/// The names of the metrics `GET /metrics` reports: the proxy writes them and the
/// orchestrator reads them, so both take them from here.
public enum AdminMetric {
    public static let generation = "switchyard_generation"
    public static let tlsHandshakeFailures = "switchyard_tls_handshake_failures_total"
    public static let acceptErrors = "switchyard_accept_errors_total"
    public static let canaryWeightRatio = "switchyard_canary_weight_ratio"
    public static let canaryGuardTrips = "switchyard_canary_guard_trips_total"
    public static let serverHealthy = "switchyard_server_healthy"
    public static let serverEffectiveWeight = "switchyard_server_effective_weight"
    public static let serverReportedCPU = "switchyard_server_reported_cpu_ratio"
    public static let serverReportedMemory = "switchyard_server_reported_memory_ratio"
    public static let serverReady = "switchyard_server_ready"

    /// The three levels that report the same families of traffic counters.
    public enum Level: String, CaseIterable, Sendable {
        /// Labels `service`.
        case service = "switchyard_service"
        /// Labels `pool`: the sum of the pool's servers.
        case pool = "switchyard_pool"
        /// Labels `pool` and `server`.
        case upstream = "switchyard_upstream"

        public var prefix: String { rawValue }
    }

    /// The families of traffic counters, by the suffix that follows a level's prefix.
    public enum Family: String, CaseIterable, Sendable {
        /// Responses by status class (label `class`: 1xx to 5xx). A counter.
        case responses = "_responses_total"
        /// Exchanges that ended without a response. A counter.
        case failures = "_failures_total"
        /// Requests in flight. A gauge.
        case activeRequests = "_active_requests"
        /// Time from request head to last response byte. A histogram (`_bucket` with `le`, `_sum`, `_count`).
        case requestDuration = "_request_duration_seconds"
        /// Open upstream connections (pool and server levels only). A gauge.
        case openConnections = "_open_connections"
        /// Ejections by passive outlier detection (pool and server levels only). A counter.
        case ejections = "_ejections_total"

        public var suffix: String { rawValue }

        /// Whether the service level reports this family (connections belong to pools and servers).
        public func isReported(by level: Level) -> Bool {
            level != .service || (self != .openConnections && self != .ejections)
        }
    }

    /// A family's full name at a level, e.g. `switchyard_pool_responses_total`.
    public static func name(_ level: Level, _ family: Family) -> String { level.prefix + family.suffix }

    /// The name of a histogram's bucket samples, e.g. `switchyard_pool_request_duration_seconds_bucket`.
    public static func bucketName(_ level: Level) -> String { name(level, .requestDuration) + "_bucket" }
}
