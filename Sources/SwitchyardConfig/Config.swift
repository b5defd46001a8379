import Foundation

/// The validated configuration of a Switchyard instance.
///
/// Built only by `ConfigLoader`, which reports every problem with its key path and line;
/// once a value of this type exists it is known to be consistent (every service names an
/// existing pool, every address parses, every weight is in range).
public struct SwitchyardConfig: Sendable, Equatable {
    /// Worker threads; `nil` means one per core.
    public var workers: Int?
    public var listeners: [ListenerConfig]
    /// Pools in the order the file declares them.
    public var pools: [PoolConfig]
    /// Services in the order the file declares them.
    public var services: [ServiceConfig]
    public var accessLog: AccessLogTarget
    public var limits: Limits
    public var timeouts: Timeouts
    /// Deadline for a graceful stop (SIGTERM/SIGINT).
    public var shutdownTimeout: Duration
    /// The admin API; `nil` when the file has no `admin` section.
    public var admin: AdminConfig?
    /// Where runtime changes (flips, canaries, weights, drains, the lock) are persisted.
    public var stateFile: String?
    /// Unix socket through which a new process takes the listening sockets over (binary upgrade).
    public var takeoverSocket: String? = nil
    /// Where the names of servers given by name are resolved (`resolvers`, `resolve.timeout`).
    public var resolver = ResolverSettings()
    /// How names are resolved unless a pool says otherwise (`resolve`).
    public var resolve = ResolvePolicy()
    /// The read-only observability listener (`/metrics`, `/ready`, `/live`); nil when off.
    public var observability: ObservabilityConfig? = nil
    /// How the proxy writes its own messages on standard error (`log_format`).
    public var logFormat: LogFormat = .text
    /// What `/metrics` reports beyond the default series.
    public var metrics = MetricsConfig()

    public func pool(named name: String) -> PoolConfig? { pools.first { $0.name == name } }
}

public struct ListenerConfig: Sendable, Equatable {
    public var bind: SocketAddress
    /// TLS termination; `nil` for plain HTTP.
    public var tls: TLSListenerConfig? = nil
}

/// `tls: { certificates: [{cert, key}], min_version: "1.2", alpn: [http/1.1] }`
public struct TLSListenerConfig: Sendable, Equatable {
    public struct Certificate: Sendable, Equatable {
        public var cert: String
        public var key: String
    }
    /// The first is the default; the others are chosen by SNI from their names.
    public var certificates: [Certificate]
    /// "1.2" or "1.3".
    public var minVersion: String = "1.2"
    public var alpn: [String] = ["http/1.1"]
    /// When set, clients must present a certificate signed by this CA (mTLS).
    public var clientCA: String? = nil
    /// How often the session ticket key changes (tickets stay valid for two periods).
    public var sessionTicketRotation: Duration = .seconds(12 * 3600)
    /// Where each path was written in the file, for errors found when the files are read.
    public var lines: [String: Int] = [:]
}

public enum BalanceAlgorithm: String, Sendable, Equatable, CaseIterable {
    /// nginx's smooth weighted round robin.
    case roundRobin = "round_robin"
    /// Power of two random choices, fewest active requests relative to weight.
    case leastRequest = "least_request"
}

public struct PoolConfig: Sendable, Equatable {
    public var name: String
    public var balance: BalanceAlgorithm
    public var servers: [ServerConfig]
    /// Active health checks; `nil` means none (servers are trusted to be up).
    public var health: HealthCheckConfig?
    /// Passive ejection on consecutive failures; `nil` when turned off.
    public var outlierDetection: OutlierDetectionConfig? = OutlierDetectionConfig()
    /// How many times a failed attempt may be retried on another server (see docs/resilience.md).
    public var retries: Int = 2
    /// A server entering rotation ramps its weight up over this time (nil: at once).
    public var slowStart: Duration? = nil
    /// TLS to this pool's servers; `nil` for plain HTTP.
    public var tls: UpstreamTLSConfig? = nil
    /// Servers given by a DNS name, each standing for the addresses its name resolves to.
    public var namedServers: [NamedServerConfig] = []
    /// How this pool's names are resolved (the file's `resolve`, then the pool's).
    public var resolve = ResolvePolicy()

    /// Whether the file defines a server of this name in the pool (by address or by DNS name).
    public func hasServer(named name: String) -> Bool {
        servers.contains { $0.name == name } || namedServers.contains { $0.name == name }
    }

    public init(name: String, balance: BalanceAlgorithm, servers: [ServerConfig], health: HealthCheckConfig? = nil) {
        self.name = name
        self.balance = balance
        self.servers = servers
        self.health = health
    }
}

/// `tls: { enabled: true, ca: PATH, server_name: NAME, verify: true, client_cert: PATH, client_key: PATH }`
public struct UpstreamTLSConfig: Sendable, Equatable {
    /// CA bundle to verify servers with; the system's when absent.
    public var ca: String? = nil
    /// SNI and the name the certificate must carry; the server's IP address when absent.
    public var serverName: String? = nil
    public var verify: Bool = true
    public var clientCert: String? = nil
    public var clientKey: String? = nil
    public init() {}
}

/// Envoy's defaults: 5 consecutive failures, 30 s base ejection, at most 10% of a pool
/// (but always at least one server may be ejected).
public struct OutlierDetectionConfig: Sendable, Equatable {
    public var consecutiveFailures: Int = 5
    public var baseEjectionTime: Duration = .seconds(30)
    public var maxEjectionPercent: Int = 10
    public init() {}
}

/// `health: { path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3, expect: 200-399 }`
public struct HealthCheckConfig: Sendable, Equatable {
    public var path: String = "/healthz"
    public var interval: Duration = .seconds(2)
    public var timeout: Duration = .seconds(1)
    /// Consecutive passes that bring a server (back) into rotation.
    public var rise: Int = 2
    /// Consecutive failures that take it out.
    public var fall: Int = 3
    /// Statuses that count as passing.
    public var expect: ClosedRange<Int> = 200...399
    /// Scale the server's weight by what its `X-Switchyard-Load` header reports.
    public var adaptWeight: Bool = false
    /// With `adaptWeight`, a reported CPU use above this share halves the weight.
    public var overloadCPU: Double = 0.9

    public init() {}
}

public struct ServerConfig: Sendable, Equatable {
    /// The server's name within its pool; defaults to its address.
    public var name: String
    public var address: SocketAddress
    /// 0...1000; 0 takes no new requests.
    public var weight: Int
    public static let maxWeight = 1000
}

public struct ServiceConfig: Sendable, Equatable {
    public var name: String
    /// `nil` makes this the default service.
    public var match: MatchConfig?
    /// The pool that takes this service's traffic.
    public var active: String
    /// The other colour of a blue/green pair: reachable through `preview`, and what a flip switches to.
    public var standby: String?
    public var preview: PreviewConfig?
    public var canary: CanaryConfig?
    /// Checked in order before the canary weight.
    public var rules: [RouteRule]

    public init(name: String, match: MatchConfig?, active: String, standby: String? = nil,
                preview: PreviewConfig? = nil, canary: CanaryConfig? = nil, rules: [RouteRule] = []) {
        self.name = name
        self.match = match
        self.active = active
        self.standby = standby
        self.preview = preview
        self.canary = canary
        self.rules = rules
    }
}

/// Requests carrying `header` with the token read from `valueFile` go to the standby pool.
public struct PreviewConfig: Sendable, Equatable {
    public var header: String
    public var valueFile: String
    /// The token, read when the configuration is loaded.
    public var token: String
}

/// How a client keeps its canary assignment.
public enum StickyKey: Sendable, Equatable, Codable {
    case cookie(String)
    case header(String)
    case clientIP
}

public struct CanaryConfig: Sendable, Equatable, Codable {
    public var pool: String
    /// Share of traffic in basis points: 250 = 2.5%.
    public var weight: Int
    public var sticky: StickyKey?
    /// Armed, the proxy itself takes the canary out of rotation when it fails.
    public var guardrail: CanaryGuard?

    public init(pool: String, weight: Int, sticky: StickyKey?, guardrail: CanaryGuard? = nil) {
        self.pool = pool
        self.weight = weight
        self.sticky = sticky
        self.guardrail = guardrail
    }

    enum CodingKeys: String, CodingKey { case pool, weight, sticky, guardrail = "guard" }
}

/// `canary.guard`: when the canary pool's share of 5xx responses and failed exchanges over
/// the last `window` reaches `maxErrorRate` (with at least `minRequests` finished), the
/// proxy sets the canary weight to 0 at once and records why in the audit trail.
public struct CanaryGuard: Sendable, Equatable, Codable {
    /// Basis points: 5000 = 50%.
    public var maxErrorRate: Int
    public var minRequests: Int
    public var windowMilliseconds: Int64

    public init(maxErrorRate: Int, minRequests: Int, windowMilliseconds: Int64) {
        self.maxErrorRate = maxErrorRate
        self.minRequests = minRequests
        self.windowMilliseconds = windowMilliseconds
    }

    enum CodingKeys: String, CodingKey { case maxErrorRate = "max_error_rate", minRequests = "min_requests", windowMilliseconds = "window_ms" }

    public static let defaultMinRequests = 20
    public static let defaultWindowMilliseconds: Int64 = 10_000
}

/// `{ header: X-Canary, value: always, pool: green }` or `{ cookie: canary, value: always, pool: green }`.
public struct RouteRule: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case header, cookie }
    public var kind: Kind
    public var name: String
    public var value: String
    public var pool: String

    public init(kind: Kind, name: String, value: String, pool: String) {
        self.kind = kind
        self.name = name
        self.value = value
        self.pool = pool
    }
}

public struct AdminConfig: Sendable, Equatable {
    /// Unix domain socket path, created with mode 0600.
    public var socket: String?
    /// Optional loopback TCP listener; every request needs `Authorization: Bearer TOKEN`.
    public var tcp: SocketAddress?
    /// Tokens for the TCP listener, by name (the name is the actor in the audit trail).
    public var tokens: [String: String]
    public var tokensFile: String?
    /// TLS for the TCP listener; with `client_ca`, a verified client certificate authenticates
    /// like a token (its common name is the actor).
    public var tls: TLSListenerConfig? = nil
    /// Which client certificate names (common names) may do what on the TCP listener. Absent:
    /// every certificate signed by `client_ca` may operate. Present: others are refused.
    public var clientRoles: AdminClientRoles? = nil
}

/// `admin.client_roles: { operate: [deployer], read: [grafana] }`: certificate names allowed
/// to change routing, and names allowed only to read (GET).
public struct AdminClientRoles: Sendable, Equatable {
    public var operate: Set<String> = []
    public var read: Set<String> = []
    public init(operate: Set<String> = [], read: Set<String> = []) { self.operate = operate; self.read = read }
}

/// Canary weights: "2.5%" is 250 basis points; 0.01% steps from 0% to 100%.
public enum BasisPoints {
    public static let whole = 10_000

    public static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasSuffix("%") else { return nil }
        let number = trimmed.dropLast()
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        // Digits only (no sign), and never more than 100 before the point: no arithmetic below can overflow.
        guard parts.count <= 2, parts[0].allSatisfy({ $0.isASCII && $0.isNumber }), parts[0].count <= 3,
              let whole = Int(parts[0]), whole <= 100 else { return nil }
        var fraction = 0
        if parts.count == 2 {
            let f = parts[1]
            guard !f.isEmpty, f.count <= 2, f.allSatisfy({ $0.isASCII && $0.isNumber }), let v = Int(f) else { return nil }
            fraction = f.count == 1 ? v * 10 : v
        }
        let value = whole * 100 + fraction
        return value <= BasisPoints.whole ? value : nil
    }

    /// "2.5%", "5%", "0.01%".
    public static func format(_ value: Int) -> String {
        let whole = value / 100, fraction = value % 100
        if fraction == 0 { return "\(whole)%" }
        if fraction % 10 == 0 { return "\(whole).\(fraction / 10)%" }
        return "\(whole).\(fraction < 10 ? "0" : "")\(fraction)%"
    }
}

public struct MatchConfig: Sendable, Equatable {
    /// Lowercased; `*.example.com` matches any subdomain. Empty matches any host.
    public var hosts: [String]
    public var pathPrefix: String
}

/// The observability listener: metrics, readiness and liveness over plain HTTP, without a
/// token and without any way to change anything.
public struct ObservabilityConfig: Sendable, Equatable {
    public var bind: SocketAddress
    public init(bind: SocketAddress) { self.bind = bind }
}

/// `metrics:`: optional series whose number grows with the servers.
public struct MetricsConfig: Sendable, Equatable {
    /// A latency histogram per upstream server (16 series each); services and pools always have theirs.
    public var serverHistograms = false
    public init(serverHistograms: Bool = false) { self.serverHistograms = serverHistograms }
}

/// The format of the proxy's own messages on standard error.
public enum LogFormat: String, Sendable, Equatable, CaseIterable {
    /// `switchyard: message` lines.
    case text
    /// One JSON object per line: `time`, `level`, `message` and fields.
    case json
}

public enum AccessLogTarget: Sendable, Equatable {
    case off
    case stdout
    case file(String)
}

public struct Limits: Sendable, Equatable {
    public var maxHeaderBytes: Int = 16384
    public var maxHeaders: Int = 100
    public var maxConnections: Int = 10000
    public var maxRequestLine: Int = 8192
}

public struct Timeouts: Sendable, Equatable {
    public var clientHeader: Duration = .seconds(10)
    public var clientIdle: Duration = .seconds(60)
    public var upstreamConnect: Duration = .seconds(2)
    public var upstreamResponse: Duration = .seconds(30)
    public var upstreamIdle: Duration = .seconds(60)
    /// How long a draining server's open tunnels (WebSocket) are kept before they are closed.
    public var tunnelDrain: Duration = .seconds(300)
}

/// An IPv4 or IPv6 address and port, parsed from `host:port` or `[v6]:port`.
public struct SocketAddress: Sendable, Equatable, Hashable, CustomStringConvertible {
    public enum Family: Sendable { case ipv4, ipv6 }
    public var host: String
    public var port: UInt16
    public var family: Family

    public var description: String { family == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Parses `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080` or `*:8080` (all IPv4 interfaces).
    /// Other names are not addresses: servers given by name are `NamedServerConfig`s, which
    /// the proxy resolves and keeps resolving.
    /// Port 0 is accepted only when `allowsAnyPort` is set (listeners: the kernel picks a free port).
    public init?(parsing text: String, allowsAnyPort: Bool = false) {
        var hostPart: Substring
        var portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
            guard Self.isIPv6(hostPart) else { return nil }
            family = .ipv6
        } else {
            guard let colonIndex = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colonIndex]
            portPart = text[text.index(after: colonIndex)...]
            if hostPart == "localhost" { hostPart = "127.0.0.1" }
            if hostPart == "*" { hostPart = "0.0.0.0" }
            guard Self.isIPv4(hostPart) else { return nil }
            family = .ipv4
        }
        guard !portPart.isEmpty, portPart.allSatisfy(\.isASCII), portPart.allSatisfy(\.isNumber),
              let port = UInt16(portPart), port > 0 || allowsAnyPort else { return nil }
        self.host = String(hostPart)
        self.port = port
    }

    static func isIPv4(_ s: Substring) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { p in
            !p.isEmpty && p.count <= 3 && p.allSatisfy { $0.isASCII && $0.isNumber } && (Int(p) ?? 256) <= 255
        }
    }

    static func isIPv6(_ s: Substring) -> Bool {
        guard s.contains(":"), s.count <= 45 else { return false }
        return s.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
    }
}

extension Duration {
    /// Milliseconds, rounded down.
    /// Whole milliseconds, saturating at `Int64.max` (durations this program makes are
    /// bounded by `DurationText.maximum`, so saturation only guards against misuse).
    public var milliseconds: Int64 {
        let (s, atto) = components
        let (ms, overflow) = s.multipliedReportingOverflow(by: 1000)
        if overflow { return s < 0 ? .min : .max }
        let (total, overflow2) = ms.addingReportingOverflow(atto / 1_000_000_000_000_000)
        return overflow2 ? .max : total
    }
}

/// What an instance reports about itself in `X-Switchyard-Load: cpu=75%, memory=40%, weight=50%`
/// (each part optional, in any order). Parts that are not a percentage from 0% to 100% are ignored:
/// the header comes from the network and must never do more than inform.
public struct ReportedLoad: Sendable, Equatable {
    /// CPU use, 0...1.
    public var cpu: Double?
    /// Memory use, 0...1.
    public var memory: Double?
    /// The share of its configured weight the instance asks for, 0...100.
    public var weightPercent: Int?

    public init(cpu: Double? = nil, memory: Double? = nil, weightPercent: Int? = nil) {
        self.cpu = cpu
        self.memory = memory
        self.weightPercent = weightPercent
    }

    /// Reads the header's value; nil (no header) reports nothing.
    public static func parse(_ text: String?) -> ReportedLoad {
        var load = ReportedLoad()
        guard let text else { return load }
        for part in text.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, let bp = BasisPoints.parse(kv[1]) else { continue }
            switch kv[0].lowercased() {
            case "cpu": load.cpu = Double(bp) / Double(BasisPoints.whole)
            case "memory": load.memory = Double(bp) / Double(BasisPoints.whole)
            case "weight": load.weightPercent = bp / 100
            default: break
            }
        }
        return load
    }
}
