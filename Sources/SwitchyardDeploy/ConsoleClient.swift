import Foundation
import SwitchyardAdminClient
import SwitchyardConsoleAPI

/// Why a call to the console did not get the answer asked for.
public enum ConsoleFailure: Error, CustomStringConvertible, Sendable {
    /// No answer: cannot connect, TLS, timeout, a broken connection.
    case unreachable(String)
    /// The console answered 5xx: it may work again soon.
    case server(status: Int, message: String)
    /// The console refused the call (4xx): bad token, unknown rollout, a conflict. Retrying
    /// the same call does not help.
    case refused(status: Int, error: ConsoleErrorBody)
    /// An answer that is not what the API promises.
    case invalidAnswer(String)

    /// Worth trying again later: the console is down or overloaded, or a proxy before it
    /// times out or limits the rate.
    public var isTransient: Bool {
        switch self {
        case .unreachable, .server: return true
        case .refused(let status, _): return status == 408 || status == 429
        case .invalidAnswer: return false
        }
    }

    public var description: String {
        switch self {
        case .unreachable(let reason): return reason
        case .server(let status, let message): return "the console answered \(status)\(message.isEmpty ? "" : ": \(message)")"
        case .refused(let status, let error):
            return "the console refused (HTTP \(status)): \(error.error)\(error.field.map { " (field \($0))" } ?? "")"
        case .invalidAnswer(let reason): return "the console's answer is not understood: \(reason)"
        }
    }
}

/// The console's API as typed calls over the blocking `HTTPClient`: the report a runner
/// sends, and what `deploy status`, the controls and `history` ask with `--console`. The token
/// goes in `Authorization: Bearer` and is never part of an error.
public struct ConsoleClient: Sendable {
    /// The console's address as given (no credentials: `HTTPURL` refuses them).
    public let url: String
    let target: HTTPClient.Target
    /// The URL's path without its final slash: a console may live under a prefix.
    let basePath: String
    let token: String?

    /// - Parameters:
    ///   - url: http:// or https://, e.g. https://console.example.com.
    ///   - token: sent as a bearer token.
    ///   - ca: the CA bundle that signed an https console's certificate (default: the system's).
    public init(url: String, token: String?, ca: String?) throws(ClientError) {
        guard let parsed = HTTPURL(url) else {
            throw ClientError("console URL \(url) is not an http:// or https:// URL such as https://console.example.com")
        }
        if let ca, !FileManager.default.isReadableFile(atPath: ca) { throw ClientError("cannot read the console's CA file \(ca)") }
        self.url = url
        target = .tcp(host: parsed.host, port: parsed.port, tls: parsed.tls, ca: ca)
        var path = parsed.path
        while path.hasSuffix("/") { path.removeLast() }
        basePath = path
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
    }

    // MARK: Calls

    /// `POST /api/v1/reports`.
    public func report(_ report: RunReport, timeout: Double = 5) throws(ConsoleFailure) -> ReportAnswer {
        try decode(ReportAnswer.self, send("POST", "/api/v1/reports", body: encode(report), timeout: timeout))
    }

    /// `GET /api/v1/rollouts`, newest first.
    public func rollouts(service: String?, state: String? = nil, limit: Int = 20) throws(ConsoleFailure) -> [RolloutSummary] {
        let query = Self.query([("service", service), ("state", state), ("limit", String(limit))])
        return try decode(RolloutList.self, send("GET", "/api/v1/rollouts\(query)")).rollouts
    }

    /// `GET /api/v1/rollouts/{id}`.
    public func rollout(_ id: Int) throws(ConsoleFailure) -> RolloutDetail {
        try decode(RolloutDetail.self, send("GET", "/api/v1/rollouts/\(id)"))
    }

    /// `POST /api/v1/rollouts/{id}/{command}`. `answered` is false when the console queued the
    /// control but the rollout has not answered yet (202).
    public func control(_ id: Int, command: String, argument: String?) throws(ConsoleFailure) -> (answer: ControlAnswer, answered: Bool) {
        let response = try send("POST", "/api/v1/rollouts/\(id)/\(command)", body: encode(ControlRequest(argument: argument)))
        return (try decode(ControlAnswer.self, response), response.status != 202)
    }

    /// `GET /api/v1/deployments`, newest first.
    public func deployments(service: String?, environment: String?, limit: Int) throws(ConsoleFailure) -> [RolloutDetail.Deployment] {
        let query = Self.query([("service", service), ("environment", environment), ("limit", String(limit))])
        return try decode(DeploymentList.self, send("GET", "/api/v1/deployments\(query)")).deployments
    }

    /// `GET /api/v1/events`: the feed entries after `after`, waiting up to `wait` seconds for one.
    public func events(after: Int, wait: Int, rollout: Int?) throws(ConsoleFailure) -> (entries: [FeedEntry], last: Int) {
        let query = Self.query([("after", String(after)), ("wait", String(wait)), ("rollout", rollout.map(String.init))])
        let feed = try decode(EventFeed.self, send("GET", "/api/v1/events\(query)", timeout: Double(wait) + 10))
        return (feed.events, feed.last)
    }

    // MARK: Plumbing

    struct RolloutList: Decodable { var rollouts: [RolloutSummary] }
    struct DeploymentList: Decodable { var deployments: [RolloutDetail.Deployment] }
    struct EventFeed: Decodable { var events: [FeedEntry]; var last: Int }
    struct ControlRequest: Encodable { var argument: String? }

    /// `?a=1&b=2` of the pairs that have a value, percent-encoded.
    static func query(_ pairs: [(String, String?)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let parts = pairs.compactMap { name, value in
            value.map { "\(name)=\($0.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }
        }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    func encode<T: Encodable>(_ value: T) throws(ConsoleFailure) -> Data {
        do { return try ConsoleJSON.encoder.encode(value) } catch { throw .invalidAnswer("cannot encode the request: \(error)") }
    }

    func decode<T: Decodable>(_ type: T.Type, _ response: HTTPResponse) throws(ConsoleFailure) -> T {
        do { return try ConsoleJSON.decoder.decode(type, from: response.body) }
        catch { throw .invalidAnswer("HTTP \(response.status), \(Self.describe(error))") }
    }

    /// A 2xx answer, or the failure it stands for.
    func send(_ method: String, _ path: String, body: Data? = nil, timeout: Double = 10) throws(ConsoleFailure) -> HTTPResponse {
        var headers = [("Accept", "application/json")]
        if body != nil { headers.append(("Content-Type", "application/json")) }
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        let response: HTTPResponse
        do {
            response = try HTTPClient.send(to: target, method: method, path: basePath + path, headers: headers, body: body, timeout: timeout)
        } catch {
            throw .unreachable("console \(url): \(error.description)")
        }
        switch response.status {
        case 200..<300: return response
        case 400..<500:
            let error = (try? ConsoleJSON.decoder.decode(ConsoleErrorBody.self, from: response.body))
                ?? ConsoleErrorBody(error: Self.excerpt(response.body, otherwise: "no reason given"))
            throw .refused(status: response.status, error: error)
        default:
            let error = (try? ConsoleJSON.decoder.decode(ConsoleErrorBody.self, from: response.body))?.error
            throw .server(status: response.status, message: error ?? Self.excerpt(response.body, otherwise: ""))
        }
    }

    /// The start of a body that is not the API's error document (a proxy's page, say).
    static func excerpt(_ body: Data, otherwise: String) -> String {
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? otherwise : text.replacingOccurrences(of: "\n", with: " ")
    }

    /// A decoding error in words: what was missing or wrong, and where.
    static func describe(_ error: Error) -> String {
        func path(_ keys: [CodingKey]) -> String { keys.isEmpty ? "the document" : keys.map(\.stringValue).joined(separator: ".") }
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?: return "\(path(context.codingPath + [key])) is missing"
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?: return "\(path(context.codingPath)): \(context.debugDescription)"
        case .dataCorrupted(let context)?: return "\(path(context.codingPath)): \(context.debugDescription)"
        default: return "\(error)"
        }
    }
}
