import Foundation

/// Why an admin call did not do what was asked.
public enum AdminFailure: Error, CustomStringConvertible, Sendable {
    /// The proxy could not be reached or did not answer.
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

/// One proxy's admin API as the orchestrator uses it: the same endpoints as `switchyard ctl`.
public final class AdminClient: @unchecked Sendable {
    public let environment: String
    public let address: DeployPlan.AdminAddress
    let target: HTTPClient.Target
    let bearer: String?
    public var actor: String
    /// Sent with every change once the deploy lock is held.
    public var lockToken: String?

    public init(environment env: DeployPlan.Environment, actor: String, processEnvironment: [String: String]) throws(ClientError) {
        environment = env.name
        address = env.admin
        self.actor = actor
        switch env.admin {
        case .unix(let path):
            target = .unix(path)
            bearer = nil
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
    }

    /// Sends one request; a non-200 answer becomes `.refused` with the proxy's explanation.
    @discardableResult
    public func call(_ method: String, _ path: String, body: [String: Any]? = nil, timeout: Double = 10) throws(AdminFailure) -> [String: Any] {
        let response = try raw(method, path, body: body, timeout: timeout)
        let object = response.json
        guard response.status == 200 else {
            throw .refused(status: response.status, error: object["error"] as? String ?? "HTTP \(response.status)",
                           detail: object["detail"] as? String ?? String(decoding: response.body.prefix(500), as: UTF8.self))
        }
        return object
    }

    public func raw(_ method: String, _ path: String, body: [String: Any]? = nil, timeout: Double = 10) throws(AdminFailure) -> HTTPResponse {
        var headers: [(String, String)] = [("X-Switchyard-Actor", actor)]
        if let bearer { headers.append(("Authorization", "Bearer \(bearer)")) }
        if let lockToken { headers.append(("X-Switchyard-Lock", lockToken)) }
        var payload: Data? = nil
        if let body {
            payload = try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            headers.append(("Content-Type", "application/json"))
        }
        do {
            return try HTTPClient.send(to: target, method: method, path: path, headers: headers, body: payload, timeout: timeout)
        } catch {
            throw .unreachable("\(environment) (\(address)): \(error.description)")
        }
    }

    public func status() throws(AdminFailure) -> ProxyStatus { ProxyStatus(try call("GET", "/v1/status")) }

    public func metrics() throws(AdminFailure) -> MetricsSample {
        let response = try raw("GET", "/metrics")
        guard response.status == 200 else { throw .refused(status: response.status, error: "metrics", detail: "HTTP \(response.status)") }
        return MetricsSample(text: String(decoding: response.body, as: UTF8.self))
    }
}

/// The parts of `GET /v1/status` the orchestrator reads.
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
