import SwitchyardConfig

/// The canary pool's finished exchanges and errors (5xx and exchanges without a response),
/// summed over all workers, at one moment (monotonic milliseconds).
public struct GuardSample: Sendable, Equatable {
    public var time: Int64
    public var requests: Int
    public var errors: Int

    public init(time: Int64, requests: Int, errors: Int) {
        self.time = time
        self.requests = requests
        self.errors = errors
    }
}

/// The canary guard's sliding window for one service: samples taken every tick, judged
/// against the guard's limits. Pure, so the rule is tested without a proxy.
public struct CanaryGuardWindow: Sendable {
    /// What the samples belong to: a new pool or new limits start a new window (a new weight does not).
    public let key: String
    public let rule: CanaryGuard
    private(set) var samples: [GuardSample] = []

    /// Why the guard tripped: the figures over the window.
    public struct Trip: Sendable, Equatable {
        public var finished: Int
        public var failed: Int
        public var seconds: Double
    }

    public init(pool: String, rule: CanaryGuard) {
        self.rule = rule
        key = Self.key(pool: pool, rule: rule)
    }

    public static func key(pool: String, rule: CanaryGuard) -> String {
        "\(pool)|\(rule.maxErrorRate)|\(rule.minRequests)|\(rule.windowMilliseconds)"
    }

    /// Adds the newest sample and says whether the window now trips the guard: at least
    /// `min_requests` finished since the window's start, and a share of errors at or above
    /// `max_error_rate`.
    public mutating func add(_ sample: GuardSample) -> Trip? {
        samples.append(sample)
        // Keep the newest sample at or before the window's start as the baseline.
        while samples.count > 2 && samples[1].time <= sample.time - rule.windowMilliseconds { samples.removeFirst() }
        guard let first = samples.first else { return nil }
        let finished = sample.requests &- first.requests, failed = sample.errors &- first.errors
        guard finished > 0, finished >= rule.minRequests, failed >= 0 else { return nil }
        // Compared as doubles: counters from the workers must not overflow a product.
        guard Double(failed) * Double(BasisPoints.whole) >= Double(rule.maxErrorRate) * Double(finished) else { return nil }
        return Trip(finished: finished, failed: failed, seconds: Double(sample.time - first.time) / 1000)
    }
}
