import SwitchyardConfig
import SwitchyardRouting

// The admin API's request bodies as a client writes them. Values a person types (weights,
// durations) stay text here: the proxy checks them (AdminBody) and explains what is wrong,
// so every client gets the same answer.

/// A field that a change may leave as it is (`nil` around it), clear (`null`) or set.
public enum AdminSetting<Value: Encodable & Sendable>: Encodable, Sendable {
    /// Sent as `null`: remove the setting.
    case clear
    case set(Value)

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .clear: try container.encodeNil()
        case .set(let value): try container.encode(value)
        }
    }
}

/// `POST /v1/services/{service}/flip`.
public struct FlipBody: Encodable, Sendable {
    /// The pool to make active; nil for the standby.
    public var to: String?
    public init(to: String? = nil) { self.to = to }
}

/// `PUT /v1/services/{service}/canary`.
public struct CanaryBody: Encodable, Sendable {
    /// Nil keeps the current canary pool.
    public var pool: String?
    /// A percentage such as "5%" or "0.25%"; "0%" removes the canary.
    public var weight: String
    /// Nil keeps the current sticky setting.
    public var sticky: AdminSetting<StickyBody>?
    /// Nil keeps the current guard; `.clear` disarms it.
    public var guardrail: AdminSetting<GuardBody>?

    public init(pool: String? = nil, weight: String, sticky: AdminSetting<StickyBody>? = nil, guardrail: AdminSetting<GuardBody>? = nil) {
        self.pool = pool
        self.weight = weight
        self.sticky = sticky
        self.guardrail = guardrail
    }

    enum CodingKeys: String, CodingKey {
        case pool, weight, sticky
        case guardrail = "guard"
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(pool, forKey: .pool)
        try container.encode(weight, forKey: .weight)
        // Present as null (`.clear`) or as a value; absent when nil.
        try container.encodeIfPresent(sticky, forKey: .sticky)
        try container.encodeIfPresent(guardrail, forKey: .guardrail)
    }
}

/// What keeps a client on the canary or off it.
public enum StickyBody: Encodable, Sendable, Equatable {
    case cookie(String)
    case header(String)
    case clientIP

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .cookie(let name): try container.encode(["cookie": name])
        case .header(let name): try container.encode(["header": name])
        case .clientIP: try container.encode(["client_ip": true])
        }
    }
}

/// The canary guard: the proxy removes the canary when its error share reaches `maxErrorRate`.
public struct GuardBody: Encodable, Sendable, Equatable {
    /// A percentage above 0%, e.g. "20%".
    public var maxErrorRate: String
    /// Finished requests needed in the window; nil for the proxy's default (20).
    public var minRequests: Int?
    /// A duration such as "10s"; nil for the proxy's default (10 s).
    public var window: String?

    public init(maxErrorRate: String, minRequests: Int? = nil, window: String? = nil) {
        self.maxErrorRate = maxErrorRate
        self.minRequests = minRequests
        self.window = window
    }

    enum CodingKeys: String, CodingKey {
        case maxErrorRate = "max_error_rate"
        case minRequests = "min_requests"
        case window
    }
}

/// `PUT /v1/services/{service}/rules`.
public struct RulesBody: Encodable, Sendable {
    public var rules: [Rule]
    public init(rules: [Rule]) { self.rules = rules }

    /// Requests whose header (or cookie) `name` has `value` go to `pool`.
    public struct Rule: Encodable, Sendable, Equatable {
        public var kind: RouteRule.Kind
        public var name: String
        public var value: String
        public var pool: String

        public init(kind: RouteRule.Kind, name: String, value: String, pool: String) {
            self.kind = kind
            self.name = name
            self.value = value
            self.pool = pool
        }

        enum CodingKeys: String, CodingKey { case header, cookie, value, pool }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: kind == .header ? .header : .cookie)
            try container.encode(value, forKey: .value)
            try container.encode(pool, forKey: .pool)
        }
    }
}

/// `PUT /v1/pools/{pool}/servers/{server}`: at least one of the two.
public struct ServerUpdateBody: Encodable, Sendable, Equatable {
    /// 0 to 1000.
    public var weight: Int?
    public var state: ServerState?
    public init(weight: Int? = nil, state: ServerState? = nil) { self.weight = weight; self.state = state }
}

/// `POST /v1/pools/{pool}/servers`.
public struct NewServerBody: Encodable, Sendable, Equatable {
    public var name: String
    /// IPv4:port, [IPv6]:port or localhost:port.
    public var address: String
    /// Nil for 100.
    public var weight: Int?
    /// Nil for ready.
    public var state: ServerState?

    public init(name: String, address: String, weight: Int? = nil, state: ServerState? = nil) {
        self.name = name
        self.address = address
        self.weight = weight
        self.state = state
    }
}

/// `POST /v1/lock`: take a lock, or renew it with its token.
public struct LockBody: Encodable, Sendable, Equatable {
    public var owner: String
    /// A duration such as "10m"; nil for 10 minutes.
    public var ttl: String?
    public var reason: String?
    /// The service to lock; nil for the proxy-wide lock (maintenance), which covers everything.
    public var service: String?

    public init(owner: String, ttl: String? = nil, reason: String? = nil, service: String? = nil) {
        self.owner = owner
        self.ttl = ttl
        self.reason = reason
        self.service = service
    }
}

/// `PUT /v1/pools/{pool}/version`: the version the pool's servers run.
public struct PoolVersionBody: Encodable, Sendable, Equatable {
    /// Letters, digits, `-`, `_`, `.` and `+`, at most 128; nil clears the label.
    public var version: String?

    public init(version: String?) { self.version = version }

    enum CodingKeys: String, CodingKey { case version }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(version, forKey: .version) // null clears: always present
    }
}
