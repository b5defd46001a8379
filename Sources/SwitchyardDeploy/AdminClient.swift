import Foundation
import SwitchyardAdminAPI
import SwitchyardAdminClient

/// Why an admin call did not do what was asked (the admin client's own type, named here for
/// the orchestrator's files).
public typealias AdminFailure = SwitchyardAdminClient.AdminFailure

/// One environment's proxy as the orchestrator reaches it: the plan's address, the token from
/// this process's environment or the plan's token file, and who acts. The calls themselves are
/// the admin client's (`api`); its errors name the environment.
public final class AdminClient: @unchecked Sendable {
    public let environment: String
    public let address: DeployPlan.AdminAddress
    /// The typed admin API of this environment's proxy, with this client's actor and lock token.
    public var api: AdminAPIClient

    public var actor: String {
        get { api.actor ?? "" }
        set { api.actor = newValue }
    }

    /// Sent with every change once the deploy lock is held.
    public var lockToken: String? {
        get { api.lockToken }
        set { api.lockToken = newValue }
    }

    public init(environment env: DeployPlan.Environment, actor: String, processEnvironment: [String: String]) throws(ClientError) {
        environment = env.name
        address = env.admin
        let target: HTTPClient.Target
        var bearer: String? = nil
        switch env.admin {
        case .unix(let path):
            target = .unix(path)
        case .tcp(let host, let port, let tls):
            target = .tcp(host: host, port: port, tls: tls, ca: env.ca, serverName: env.tlsServerName)
            if let token = processEnvironment[env.tokenEnv], !token.isEmpty {
                bearer = token
            } else if let file = env.tokenFile {
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                    throw ClientError("environment \(env.name): cannot read token_file \(file)")
                }
                bearer = text.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                throw ClientError("environment \(env.name): the TCP admin API needs a token; set \(env.tokenEnv) or token_file")
            }
        }
        api = AdminAPIClient(target: target, label: "\(env.name) (\(env.admin))", actor: actor, bearer: bearer)
    }

    /// The pool and server counters of one `/metrics` scrape.
    public func metrics() throws(AdminFailure) -> MetricsSample { MetricsSample(text: try api.metrics()) }

    // MARK: Untyped calls, until the rollout's call sites use `api`

    /// Sends one request by method and path; a non-200 answer becomes `.refused` with the
    /// proxy's explanation. Prefer the typed calls of `api`.
    @discardableResult
    public func call(_ method: String, _ path: String, body: [String: Any]? = nil, timeout: Double = 10) throws(AdminFailure) -> [String: Any] {
        var request = api
        request.timeout = timeout
        let payload = body.map { (try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys])) ?? Data("{}".utf8) }
        let response = try request.send(method: method, path: path, body: payload)
        guard response.status == 200 else { throw AdminAPIClient.refusal(response) }
        return response.json
    }

    /// `GET /v1/status` as `ProxyStatus`. Prefer `api.status()`.
    public func status() throws(AdminFailure) -> ProxyStatus {
        ProxyStatus(try call("GET", AdminAPI.endpoint(.status).path()))
    }
}

/// `GET /v1/status` as a JSON object, with accessors for what the rollout reads. The typed
/// document is `AdminStatus` (`api.status()`); this stays until the rollout reads that.
public struct ProxyStatus: @unchecked Sendable {
    public let raw: [String: Any]
    public init(_ raw: [String: Any]) { self.raw = raw }

    public func service(_ name: String) -> [String: Any]? { (raw["services"] as? [String: Any])?[name] as? [String: Any] }
    public func active(_ service: String) -> String? { self.service(service)?["active"] as? String }
    public func standby(_ service: String) -> String? { self.service(service)?["standby"] as? String }
    public func canaryPool(_ service: String) -> String? { (self.service(service)?["canary"] as? [String: Any])?["pool"] as? String }
    public func canaryWeight(_ service: String) -> String? { (self.service(service)?["canary"] as? [String: Any])?["weight"] as? String }
    public func guardTrip(_ service: String) -> [String: Any]? { self.service(service)?["guard_trip"] as? [String: Any] }
    public var lock: [String: Any]? { raw["lock"] as? [String: Any] }
    public var pools: [String] { ((raw["pools"] as? [String: Any]) ?? [:]).keys.sorted() }

    public func servers(_ pool: String) -> [[String: Any]] {
        ((raw["pools"] as? [String: Any])?[pool] as? [String: Any])?["servers"] as? [[String: Any]] ?? []
    }

    /// "up", "down", "pending" or "not checked" (a pool without health checks).
    public static func health(_ server: [String: Any]) -> String { (server["health"] as? [String: Any])?["status"] as? String ?? "not checked" }
    public static func lastCheck(_ server: [String: Any]) -> String? { (server["health"] as? [String: Any])?["last_check"] as? String }
}
