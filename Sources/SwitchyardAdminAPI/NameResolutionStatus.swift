extension AdminStatus {
    /// How one server given by DNS name resolves (`pools.POOL.names.SERVER` in status).
    public struct NameResolution: Decodable, Sendable {
        public var host: String
        public var port: Int
        /// "ipv4", "ipv6" or "any".
        public var family: String?
        public var intervalMilliseconds: Int?
        /// "system", or the DNS servers asked.
        public var resolver: String?
        /// The last good answer: each address is a server of the pool.
        public var addresses: [String]
        /// Addresses that left the answer and finish their requests.
        public var draining: [String]?
        /// ISO 8601 with fractional seconds; nil before the first resolution ends.
        public var lastResolution: String?
        public var lastSuccess: String?
        /// Why the last resolution failed; nil when it succeeded.
        public var lastError: String?
        /// The addresses in use are not a fresh answer (the last resolution failed, or none succeeded yet).
        public var stale: Bool
        public var consecutiveFailures: Int?
        public var resolutions: Int?
        public var failures: Int?

        enum CodingKeys: String, CodingKey {
            case host, port, family, resolver, addresses, draining, stale, resolutions, failures
            case intervalMilliseconds = "interval_ms"
            case lastResolution = "last_resolution"
            case lastSuccess = "last_success"
            case lastError = "last_error"
            case consecutiveFailures = "consecutive_failures"
        }
    }
}
