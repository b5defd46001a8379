import Foundation

// The admin API's answers as typed values, for clients. The proxy writes these documents
// itself (docs/admin-api.md describes them); the types read them. They are Decodable only:
// encoding them would write absent fields where the proxy writes `null`.
//
// Fields a client needs are required, so a document without them is an error that says so;
// the rest are optional, so that a proxy which adds fields, or leaves one out, stays readable.

/// `GET /v1/status`.
public struct AdminStatus: Decodable, Sendable {
    /// The state's generation: it increases with every change (see If-Match).
    public var generation: UInt64
    /// By service name.
    public var services: [String: Service]
    /// By pool name.
    public var pools: [String: Pool]
    /// The proxy-wide lock, when held. Its token is never shown here.
    public var lock: AdminLock?
    /// Every lock held: the proxy-wide one and the service locks (nil from proxies that
    /// predate service locks). Tokens are never shown here.
    public var locks: [AdminLock]?
    public var workers: Int?
    public var uptimeSeconds: Int?
    /// How long publishing a change to every worker took, in microseconds.
    public var publishAcknowledgement: PublishLatency?

    enum CodingKeys: String, CodingKey {
        case generation, services, pools, lock, locks, workers
        case uptimeSeconds = "uptime_seconds"
        case publishAcknowledgement = "publish_ack_us"
    }

    /// The pool names, sorted.
    public var poolNames: [String] { pools.keys.sorted() }

    /// Every lock held (from `locks`, or from `lock` alone for proxies that predate service locks).
    public var allLocks: [AdminLock] { locks ?? lock.map { [$0] } ?? [] }

    /// The lock that holds changes to `service` back: the proxy-wide lock or the service's own
    /// (the proxy never lets both be held at once).
    public func lock(covering service: String) -> AdminLock? {
        allLocks.first { $0.service == nil } ?? allLocks.first { $0.service == service }
    }

    /// The servers of `pool` (none for an unknown pool).
    public func servers(_ pool: String) -> [Server] { pools[pool]?.servers ?? [] }

    public struct PublishLatency: Decodable, Sendable {
        public var p50: Double
        public var p99: Double
        public var count: Int
    }

    /// One service's routing.
    public struct Service: Decodable, Sendable {
        public var active: String
        public var standby: String?
        public var canary: Canary?
        public var rules: [Rule]?
        /// The service's own traffic counters.
        public var traffic: Counters?
        /// The last time the canary guard took the canary out, if it ever did since the proxy started.
        public var guardTrip: GuardTrip?

        enum CodingKeys: String, CodingKey {
            case active, standby, canary, rules, traffic
            case guardTrip = "guard_trip"
        }
    }

    public struct Canary: Decodable, Sendable {
        public var pool: String
        /// A percentage, e.g. "2.5%".
        public var weight: String
        public var sticky: Sticky?
        /// The canary guard, when armed.
        public var guardrail: Guard?

        enum CodingKeys: String, CodingKey {
            case pool, weight, sticky
            case guardrail = "guard"
        }
    }

    /// Exactly one of the fields is set.
    public struct Sticky: Decodable, Sendable, Equatable {
        public var cookie: String?
        public var header: String?
        public var clientIP: Bool?

        enum CodingKeys: String, CodingKey {
            case cookie, header
            case clientIP = "client_ip"
        }
    }

    public struct Guard: Decodable, Sendable {
        /// A percentage, e.g. "20%".
        public var maxErrorRate: String
        public var minRequests: Int
        /// A duration, e.g. "10.0s".
        public var window: String

        enum CodingKeys: String, CodingKey {
            case maxErrorRate = "max_error_rate"
            case minRequests = "min_requests"
            case window
        }
    }

    /// What the canary guard saw when it removed the canary.
    public struct GuardTrip: Decodable, Sendable, Equatable {
        /// When, in ISO 8601 with fractional seconds (the proxy's clock).
        public var time: String
        public var pool: String?
        public var weight: String?
        public var requests: Int?
        public var errors: Int?
        public var errorRate: Double?
        /// The guard's explanation, for people.
        public var reason: String

        enum CodingKeys: String, CodingKey {
            case time, pool, weight, requests, errors, reason
            case errorRate = "error_rate"
        }

        /// The fields the proxy reported, as a JSON object (for events and `deploy status --json`).
        public var jsonObject: [String: Any] {
            var out: [String: Any] = ["time": time, "reason": reason]
            if let pool { out["pool"] = pool }
            if let weight { out["weight"] = weight }
            if let requests { out["requests"] = requests }
            if let errors { out["errors"] = errors }
            if let errorRate { out["error_rate"] = errorRate }
            return out
        }
    }

    public struct Rule: Decodable, Sendable, Equatable {
        /// "header" or "cookie".
        public var kind: String
        public var name: String
        public var value: String
        public var pool: String
    }

    /// Traffic counters, summed over the workers.
    public struct Counters: Decodable, Sendable {
        public var activeRequests: Int
        public var requests: Int
        /// By status class: "1xx" to "5xx".
        public var responses: [String: Int]
        public var failures: Int

        enum CodingKeys: String, CodingKey {
            case activeRequests = "active_requests"
            case requests, responses, failures
        }
    }

    public struct Pool: Decodable, Sendable {
        /// "round_robin" or "least_request".
        public var balance: String?
        /// The version the pool's servers run, when labelled.
        public var version: String?
        public var servers: [Server]
        /// Servers given by DNS name, by their name in the file: how their names resolve.
        public var names: [String: NameResolution]?
    }

    public struct Server: Decodable, Sendable {
        public var name: String
        public var address: String
        /// The configured weight (0 to 1000).
        public var weight: Int
        /// The weight balancing uses now (0 when drained or down; scaled by slow start and reported load).
        public var effectiveWeight: Int?
        /// "ready", "drain" or "maint".
        public var state: String
        public var activeRequests: Int
        public var openConnections: Int?
        public var requests: Int?
        /// By status class: "1xx" to "5xx".
        public var responses: [String: Int]?
        public var failures: Int?
        public var ejections: Int?
        /// Workers in which passive outlier detection has the server ejected now.
        public var ejectedInWorkers: Int?
        public var health: Health?
        /// For an address a DNS name resolved to: the server in the file it comes from.
        public var resolvedFrom: String?
        /// For an address a DNS name resolved to: whether the last good answer still has it
        /// (false: it drains, and leaves the pool once its requests have finished).
        public var inAnswer: Bool?

        enum CodingKeys: String, CodingKey {
            case name, address, weight, state, requests, responses, failures, ejections, health
            case resolvedFrom = "resolved_from"
            case inAnswer = "in_answer"
            case effectiveWeight = "effective_weight"
            case activeRequests = "active_requests"
            case openConnections = "open_connections"
            case ejectedInWorkers = "ejected_in_workers"
        }

        /// "up", "down", "pending" or "not checked" (a pool without health checks).
        public var healthStatus: String { health?.status ?? "not checked" }
    }

    /// Active health checking of one server.
    public struct Health: Decodable, Sendable {
        /// "up", "down", "pending" or "not checked".
        public var status: String
        public var lastResult: String?
        /// ISO 8601 with fractional seconds; nil before the first check.
        public var lastCheck: String?
        /// What the instance reports in X-Switchyard-Load.
        public var reportedLoad: ReportedLoad?
        public var consecutivePasses: Int?
        public var consecutiveFailures: Int?

        enum CodingKeys: String, CodingKey {
            case status
            case lastResult = "last_result"
            case lastCheck = "last_check"
            case reportedLoad = "reported_load"
            case consecutivePasses = "consecutive_passes"
            case consecutiveFailures = "consecutive_failures"
        }
    }

    public struct ReportedLoad: Decodable, Sendable {
        /// 0 to 1.
        public var cpu: Double?
        /// 0 to 1.
        public var memory: Double?
        public var weightPercent: Int?

        enum CodingKeys: String, CodingKey {
            case cpu, memory
            case weightPercent = "weight_percent"
        }
    }
}

/// A deploy lock: in `GET /v1/status`, and (with its token) the answer to `POST /v1/lock`.
public struct AdminLock: Decodable, Sendable, Equatable {
    /// The locked service; nil for the proxy-wide lock.
    public var service: String?
    public var owner: String
    public var reason: String
    /// ISO 8601.
    public var since: String
    /// ISO 8601: the lock lapses then unless renewed.
    public var expires: String
    /// Only in the answer to `POST /v1/lock`.
    public var token: String?
}

/// The answer to a change: the new generation and how long every worker took to have it.
public struct AdminChange: Decodable, Sendable, Equatable {
    public var generation: UInt64
    /// Microseconds until every worker had switched.
    public var acknowledgedMicroseconds: Double

    enum CodingKeys: String, CodingKey {
        case generation
        case acknowledgedMicroseconds = "acknowledged_us"
    }
}

/// The answer to `POST /v1/reload`.
public struct AdminReload: Decodable, Sendable, Equatable {
    public var generation: UInt64
    /// Settings that wait for a restart, and runtime changes that could not be kept.
    public var notes: [String]
    public var acknowledgedMicroseconds: Double

    enum CodingKeys: String, CodingKey {
        case generation, notes
        case acknowledgedMicroseconds = "acknowledged_us"
    }
}

/// One entry of `GET /v1/audit`. `before` and `after` (the changed state) are not decoded:
/// their shape depends on the action; read the document itself for them.
public struct AdminAuditEntry: Decodable, Sendable, Equatable {
    /// ISO 8601 with fractional seconds.
    public var time: String
    /// The peer's Unix user, `token:NAME`, `cert:NAME` or `switchyard-guard`.
    public var actor: String
    /// What the client sent in X-Switchyard-Actor.
    public var actorLabel: String?
    public var action: String
    public var target: String
    public var generation: UInt64?

    enum CodingKeys: String, CodingKey {
        case time, actor, action, target, generation
        case actorLabel = "actor_label"
    }
}

/// The body of every error answer.
public struct AdminErrorBody: Decodable, Sendable, Equatable {
    public var error: String
    public var detail: String
}
