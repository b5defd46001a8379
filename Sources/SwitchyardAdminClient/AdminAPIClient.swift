import Foundation
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// Why an admin call did not do what was asked.
public enum AdminFailure: Error, CustomStringConvertible, Sendable {
    /// The proxy could not be reached, did not answer, or answered something unreadable.
    case unreachable(String)
    /// The proxy answered with an error: status, error and its detail.
    case refused(status: Int, error: String, detail: String)

    public var description: String {
        switch self {
        case .unreachable(let reason): return reason
        case .refused(let status, let error, let detail): return "\(error) (HTTP \(status)): \(detail)"
        }
    }
}

/// One proxy's admin API, a typed call per endpoint (`AdminAPI.endpoints`). Each call is one
/// blocking request with the headers the API defines: who acts (`X-Switchyard-Actor`), the
/// deploy lock's token (`X-Switchyard-Lock`), `If-Match`, a bearer token for the TCP listener,
/// and `Content-Type: application/json` with a body.
///
/// A value type: copies are independent, so a thread can keep its own (with its own lock token).
public struct AdminAPIClient: Sendable {
    public var target: HTTPClient.Target
    /// Names the proxy at the start of an unreachable error, e.g. "staging (unix:/run/switchyard/admin.sock)".
    public var label: String?
    /// Who acts, recorded in the audit trail.
    public var actor: String?
    /// The TCP listener's bearer token.
    public var bearer: String?
    /// The deploy lock's token: needed for changes while the lock is held.
    public var lockToken: String?
    /// Refuse changes unless the state is still at this generation.
    public var ifMatch: UInt64?
    /// Seconds each request may take, connecting included.
    public var timeout: Double
    /// When set, keeps the body of each successful answer as the proxy wrote it (for callers
    /// that print the API's own JSON, such as `switchyard ctl --json`).
    public var answers: AnswerLog?

    public init(target: HTTPClient.Target, label: String? = nil, actor: String? = nil, bearer: String? = nil,
                lockToken: String? = nil, ifMatch: UInt64? = nil, timeout: Double = 10) {
        self.target = target
        self.label = label
        self.actor = actor
        self.bearer = bearer
        self.lockToken = lockToken
        self.ifMatch = ifMatch
        self.timeout = timeout
    }

    // MARK: Reading

    /// `GET /v1/status`: services, pools, servers, the lock and the generation.
    public func status() throws(AdminFailure) -> AdminStatus {
        try decode(AdminStatus.self, from: document(.status))
    }

    /// `GET /v1/status?service=NAME`: the same document with only `service` and the pools it
    /// routes to; far smaller on a proxy with many services. (A proxy older than this view
    /// answers with the whole status, which reads the same.)
    public func status(service: String) throws(AdminFailure) -> AdminStatus {
        try decode(AdminStatus.self, from: document(.status, query: [("service", service)]))
    }

    /// `GET /v1/audit`: the most recent `limit` changes (the proxy's default, 100, when nil), oldest first.
    public func audit(limit: Int? = nil) throws(AdminFailure) -> [AdminAuditEntry] {
        struct Log: Decodable { var entries: [AdminAuditEntry] }
        return try decode(Log.self, from: document(.audit, query: limit.map { [("limit", "\($0)")] } ?? [])).entries
    }

    /// `GET /metrics`: Prometheus text (`AdminMetric` names its families).
    public func metrics() throws(AdminFailure) -> String {
        String(decoding: try document(.metrics), as: UTF8.self)
    }

    // MARK: Services

    /// `POST /v1/services/{service}/flip`: swaps active and standby, or makes `to` active.
    @discardableResult
    public func flip(service: String, to pool: String? = nil) throws(AdminFailure) -> AdminChange {
        try change(.flip, [service], body: FlipBody(to: pool))
    }

    /// `PUT /v1/services/{service}/canary`: the canary pool (nil keeps the current one) and
    /// weight ("0%" removes the canary); a nil sticky key or guard keeps the current one.
    @discardableResult
    public func setCanary(service: String, pool: String? = nil, weight: String, sticky: AdminSetting<StickyBody>? = nil,
                          guardrail: AdminSetting<GuardBody>? = nil) throws(AdminFailure) -> AdminChange {
        try change(.setCanary, [service], body: CanaryBody(pool: pool, weight: weight, sticky: sticky, guardrail: guardrail))
    }

    /// `PUT /v1/services/{service}/rules`: replaces the service's header and cookie rules.
    @discardableResult
    public func setRules(service: String, rules: [RulesBody.Rule]) throws(AdminFailure) -> AdminChange {
        try change(.setRules, [service], body: RulesBody(rules: rules))
    }

    /// `POST /v1/services/{service}/rollback`: restores the routing from before the service's last change.
    @discardableResult
    public func rollback(service: String) throws(AdminFailure) -> AdminChange {
        try decode(AdminChange.self, from: document(.rollback, [service]))
    }

    // MARK: Servers

    /// `PUT /v1/pools/{pool}/servers/{server}`: a server's weight and/or state.
    @discardableResult
    public func setServer(pool: String, server: String, weight: Int? = nil, state: ServerState? = nil) throws(AdminFailure) -> AdminChange {
        try change(.setServer, [pool, server], body: ServerUpdateBody(weight: weight, state: state))
    }

    /// `POST /v1/pools/{pool}/servers`: adds a server (weight 100 and ready unless given).
    @discardableResult
    public func addServer(pool: String, name: String, address: String, weight: Int? = nil, state: ServerState? = nil) throws(AdminFailure) -> AdminChange {
        try change(.addServer, [pool], body: NewServerBody(name: name, address: address, weight: weight, state: state))
    }

    /// `PUT /v1/pools/{pool}/version`: labels the version the pool's servers run (nil clears
    /// it); status, metrics and the access log show it.
    @discardableResult
    public func setVersion(pool: String, version: String?) throws(AdminFailure) -> AdminChange {
        try change(.setPoolVersion, [pool], body: PoolVersionBody(version: version))
    }

    /// `DELETE /v1/pools/{pool}/servers/{server}`: removes a drained server without requests in flight.
    @discardableResult
    public func removeServer(pool: String, server: String) throws(AdminFailure) -> AdminChange {
        try decode(AdminChange.self, from: document(.removeServer, [pool, server]))
    }

    // MARK: The deploy locks and reloading

    /// `POST /v1/lock`: takes the lock of `service`, or the proxy-wide lock (maintenance,
    /// covering every change) when `service` is nil. The answer carries its token; keep it in
    /// `lockToken` for changes and renewals.
    @discardableResult
    public func lock(owner: String, ttl: String? = nil, reason: String? = nil, service: String? = nil) throws(AdminFailure) -> AdminLock {
        try decode(AdminLock.self, from: document(.lock, body: Self.encode(LockBody(owner: owner, ttl: ttl, reason: reason, service: service))))
    }

    /// `POST /v1/lock` with the token in `lockToken`: extends the lock held by `owner` by `ttl`
    /// from now (give the same `service` it was taken for).
    @discardableResult
    public func renewLock(owner: String, ttl: String? = nil, reason: String? = nil, service: String? = nil) throws(AdminFailure) -> AdminLock {
        try lock(owner: owner, ttl: ttl, reason: reason, service: service)
    }

    /// `DELETE /v1/lock`: releases the lock whose token is in `lockToken`. `force` breaks a
    /// lock whoever holds it (recorded in the audit trail): the lock of `service`, or the
    /// proxy-wide lock when `service` is nil.
    public func unlock(force: Bool = false, service: String? = nil) throws(AdminFailure) {
        var query: [(String, String)] = []
        if let service { query.append(("service", service)) }
        if force { query.append(("force", "true")) }
        _ = try document(.unlock, query: query)
    }

    /// `POST /v1/reload`: reads the configuration file again; `reset` drops runtime changes.
    @discardableResult
    public func reload(reset: Bool = false) throws(AdminFailure) -> AdminReload {
        try decode(AdminReload.self, from: document(.reload, query: reset ? [("reset", "true")] : []))
    }

    // MARK: Requests

    /// Sends one request to `endpoint` with `parameters` in its path (in order), and returns
    /// the body of its 200 answer; any other answer throws `.refused` with the proxy's explanation.
    public func document(_ endpoint: AdminEndpoint.ID, _ parameters: [String] = [], query: [(String, String)] = [],
                         body: Data? = nil) throws(AdminFailure) -> Data {
        let e = AdminAPI.endpoint(endpoint)
        var path = e.path(parameters)
        if !query.isEmpty {
            path += "?" + query.map { "\(AdminEndpoint.percentEncode($0.0))=\(AdminEndpoint.percentEncode($0.1))" }.joined(separator: "&")
        }
        let response = try send(method: e.method, path: path, body: body)
        guard response.status == 200 else { throw Self.refusal(response) }
        answers?.record(response.body)
        return response.body
    }

    /// Sends one request as it is, whatever the answer's status. For callers that build their
    /// own paths; prefer the typed calls.
    public func send(method: String, path: String, body: Data? = nil) throws(AdminFailure) -> HTTPResponse {
        var headers: [(String, String)] = []
        if let actor { headers.append(("X-Switchyard-Actor", actor)) }
        if let bearer { headers.append(("Authorization", "Bearer \(bearer)")) }
        if let lockToken { headers.append(("X-Switchyard-Lock", lockToken)) }
        if let ifMatch { headers.append(("If-Match", "\(ifMatch)")) }
        if body != nil { headers.append(("Content-Type", "application/json")) }
        var busyAnswers = 0
        while true {
            let response: HTTPResponse
            do {
                response = try HTTPClient.send(to: target, method: method, path: path, headers: headers, body: body, timeout: timeout)
            } catch {
                throw .unreachable(label.map { "\($0): \(error.description)" } ?? error.description)
            }
            // 503 with Retry-After: the proxy did nothing (too many connections, or too many
            // statuses and scrapes being written) and says when to ask again.
            guard response.status == 503, busyAnswers < Self.busyRetries,
                  let seconds = response.headers["retry-after"].flatMap({ Int($0) }), seconds >= 0 else { return response }
            busyAnswers += 1
            usleep(UInt32(min(seconds, 2)) * 1_000_000 + 100_000)
        }
    }

    /// How often a 503 with `Retry-After` is asked again before it is returned.
    static let busyRetries = 5

    /// The error an answer other than 200 means: the proxy's `error` and `detail`, or the
    /// status and the start of the body when the answer is not the API's error document.
    public static func refusal(_ response: HTTPResponse) -> AdminFailure {
        if let e = try? JSONDecoder().decode(AdminErrorBody.self, from: response.body) {
            return .refused(status: response.status, error: e.error, detail: e.detail)
        }
        return .refused(status: response.status, error: "HTTP \(response.status)",
                        detail: String(decoding: response.body.prefix(500), as: UTF8.self))
    }

    private func change(_ endpoint: AdminEndpoint.ID, _ parameters: [String], body: some Encodable) throws(AdminFailure) -> AdminChange {
        try decode(AdminChange.self, from: document(endpoint, parameters, body: Self.encode(body)))
    }

    /// JSON for a request body. The bodies are plain structures of text and numbers, which
    /// always encode; the empty object stands in should one ever not.
    static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)) ?? Data("{}".utf8)
    }

    private func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(AdminFailure) -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            let what = "the proxy's answer is not the \(type) document this client knows (\(error)); are the proxy and this program the same version?"
            throw .unreachable(label.map { "\($0): \(what)" } ?? what)
        }
    }
}

/// The body of the last successful answer a client received (see `AdminAPIClient.answers`).
public final class AnswerLog: @unchecked Sendable {
    private let lock = NSLock()
    private var body: Data?

    public init() {}

    /// The last answer's body, as the proxy wrote it; nil before any.
    public var last: Data? { lock.withLock { body } }

    func record(_ data: Data) { lock.withLock { body = data } }
}
