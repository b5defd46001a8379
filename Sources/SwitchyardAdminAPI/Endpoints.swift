/// One endpoint of the admin API: its method, its path pattern (parameters in braces, such as
/// `/v1/services/{service}/flip`), a stable identifier and a one-line summary.
///
/// `AdminAPI.endpoints` lists every endpoint once. The proxy routes with it, the clients build
/// their paths from it, and a unit test checks docs/openapi.yaml against it.
public struct AdminEndpoint: Sendable, Hashable {
    /// A stable name for an endpoint. It is the endpoint's `operationId` in docs/openapi.yaml.
    public enum ID: String, CaseIterable, Sendable {
        case status, audit, metrics
        case flip, setCanary, setRules, rollback
        case setServer, addServer, removeServer, setPoolVersion
        case lock, unlock, reload
    }

    public let id: ID
    /// An upper-case HTTP method: GET, POST, PUT or DELETE.
    public let method: String
    /// The path pattern, e.g. `/v1/pools/{pool}/servers/{server}`.
    public let pattern: String
    /// What the endpoint does, in one line (the `summary` in docs/openapi.yaml).
    public let summary: String

    /// The pattern's segments: a literal, or a parameter's name.
    enum Segment: Sendable, Hashable {
        case literal(String)
        case parameter(String)
    }

    let segments: [Segment]

    init(_ id: ID, _ method: String, _ pattern: String, _ summary: String) {
        self.id = id
        self.method = method
        self.pattern = pattern
        self.summary = summary
        segments = pattern.split(separator: "/").map { part in
            part.hasPrefix("{") && part.hasSuffix("}") && part.count > 2
                ? .parameter(String(part.dropFirst().dropLast())) : .literal(String(part))
        }
    }

    /// The names of the path's parameters, in order.
    public var parameterNames: [String] {
        segments.compactMap { if case .parameter(let name) = $0 { return name } else { return nil } }
    }

    /// The path with `values` in place of the parameters, in order (`service`, or `pool` then
    /// `server`): give one value per parameter. Each value is percent-encoded, so a value can
    /// never reach another path segment or the query.
    public func path(_ values: String...) -> String { path(values) }

    /// The path with `values` in place of the parameters, in order.
    public func path(_ values: [String]) -> String {
        var next = values.makeIterator()
        var out = ""
        for segment in segments {
            out += "/"
            switch segment {
            case .literal(let text): out += text
            case .parameter: out += next.next().map(Self.percentEncode) ?? ""
            }
        }
        return out.isEmpty ? "/" : out
    }

    /// Percent-encodes everything but the characters names may hold (letters, digits, `-`, `_`,
    /// `.`, `:` and `~`), so that what a caller gives stays one path segment or query value.
    public static func percentEncode(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 0x0f)])
            }
        }
        return out
    }

    /// The path parameters when `parts` (a path split at `/`, empty parts dropped) fits this
    /// endpoint's pattern; nil otherwise. The method is not compared.
    func parameters(_ parts: [Substring]) -> [String: String]? {
        guard parts.count == segments.count else { return nil }
        var values: [String: String] = [:]
        for (part, segment) in zip(parts, segments) {
            switch segment {
            case .literal(let text): guard part == text else { return nil }
            case .parameter(let name): values[name] = String(part)
            }
        }
        return values
    }
}

/// Where a request goes: an endpoint with its path parameters, or why none.
public enum AdminRoute: Sendable, Equatable {
    /// The endpoint and its path parameters by name (`service`, `pool`, `server`).
    case endpoint(AdminEndpoint.ID, parameters: [String: String])
    /// The path is known, but not with this method; `allowed` lists the methods it takes.
    case methodNotAllowed(allowed: [String])
    /// No endpoint has this path.
    case notFound
}

/// The admin API's contract: the endpoint table and the router over it.
public enum AdminAPI {
    /// Every endpoint, once. A path with several methods lists them in the order `Allow` gives.
    public static let endpoints: [AdminEndpoint] = [
        AdminEndpoint(.status, "GET", "/v1/status", "Services, pools, servers, the locks and the generation."),
        AdminEndpoint(.flip, "POST", "/v1/services/{service}/flip", "Swap active and standby atomically (or make `to` active)."),
        AdminEndpoint(.setCanary, "PUT", "/v1/services/{service}/canary",
                      "Set the canary pool, weight, sticky key and guard; weight 0 removes the canary."),
        AdminEndpoint(.setRules, "PUT", "/v1/services/{service}/rules", "Replace the service's header and cookie rules."),
        AdminEndpoint(.rollback, "POST", "/v1/services/{service}/rollback", "Restore the service's routing from before its last change."),
        AdminEndpoint(.setServer, "PUT", "/v1/pools/{pool}/servers/{server}", "Set a server's weight and/or state (ready, drain, maint)."),
        AdminEndpoint(.removeServer, "DELETE", "/v1/pools/{pool}/servers/{server}", "Remove a drained server that has no request in flight."),
        AdminEndpoint(.addServer, "POST", "/v1/pools/{pool}/servers", "Add a server to a pool (kept across restarts)."),
        AdminEndpoint(.setPoolVersion, "PUT", "/v1/pools/{pool}/version",
                      "Label the version a pool's servers run (shown in status, metrics and the access log)."),
        AdminEndpoint(.lock, "POST", "/v1/lock", "Take (or, with its token, renew) a service's lock or the proxy-wide lock."),
        AdminEndpoint(.unlock, "DELETE", "/v1/lock", "Release a lock (its token, or force=true to break it)."),
        AdminEndpoint(.reload, "POST", "/v1/reload",
                      "Read the configuration file again and apply it in place (runtime changes kept unless reset=true)."),
        AdminEndpoint(.audit, "GET", "/v1/audit", "The most recent changes."),
        AdminEndpoint(.metrics, "GET", "/metrics", "Prometheus metrics."),
    ]

    /// The endpoint with this identifier.
    public static func endpoint(_ id: AdminEndpoint.ID) -> AdminEndpoint {
        // Every identifier is in the table (a unit test checks it); the fallback only keeps this total.
        endpointsByID[id] ?? AdminEndpoint(id, "GET", "/", "")
    }

    private static let endpointsByID: [AdminEndpoint.ID: AdminEndpoint] = Dictionary(endpoints.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })

    /// Routes a request: `path` is the request target without its query. Empty segments are
    /// ignored (`//v1//status` is `/v1/status`); segments are compared as they are sent.
    public static func route(method: String, path: String) -> AdminRoute {
        let parts = path.split(separator: "/")
        var allowed: [String] = []
        for endpoint in endpoints {
            guard let parameters = endpoint.parameters(parts) else { continue }
            if endpoint.method == method { return .endpoint(endpoint.id, parameters: parameters) }
            if !allowed.contains(endpoint.method) { allowed.append(endpoint.method) }
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }

    /// The methods a path takes, in the table's order (empty for an unknown path): the `Allow` header.
    public static func allowedMethods(path: String) -> [String] {
        let parts = path.split(separator: "/")
        var allowed: [String] = []
        for endpoint in endpoints where endpoint.parameters(parts) != nil && !allowed.contains(endpoint.method) {
            allowed.append(endpoint.method)
        }
        return allowed
    }
}
