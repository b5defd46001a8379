import Foundation
import Glibc

extension Rollout {
    // MARK: Admin calls with retries

    /// Retries an admin call for a few seconds (a proxy restarting); then the rollout stops
    /// as an error, because it can no longer vouch for where traffic is. A refusal is final.
    func retrying<T>(_ client: AdminClient, _ what: String, _ call: () throws(AdminFailure) -> T) throws -> T {
        var attempt = 0
        while true {
            do { return try call() }
            catch {
                if case .refused = error { throw Failure(reason: "\(client.environment) refused \(what): \(error)") }
                attempt += 1
                if attempt >= 10 { throw Failure(reason: "\(error); check the proxy, then `switchyard deploy status \(plan.path)`", unreachable: true) }
                usleep(500_000)
            }
        }
    }

    @discardableResult
    func admin(_ client: AdminClient, _ method: String, _ path: String, body: [String: Any]? = nil) throws -> [String: Any] {
        try retrying(client, "\(method) \(path)") { () throws(AdminFailure) in try client.call(method, path, body: body) }
    }

    func status(_ client: AdminClient) throws -> ProxyStatus { ProxyStatus(try admin(client, "GET", "/v1/status")) }

    func metrics(_ client: AdminClient) throws -> MetricsSample {
        try retrying(client, "GET /metrics") { () throws(AdminFailure) in try client.metrics() }
    }

    // MARK: Health

    /// Waits until every server of `pool` that takes traffic passes its health checks
    /// (a pool without checks counts as healthy) and, with `after`, was checked since then.
    func waitHealthy(_ env: DeployPlan.Environment, _ client: AdminClient, pool: String, server: String? = nil, after: Date? = nil) throws {
        live.phase = "waiting for \(server.map { "\(pool)/\($0)" } ?? "pool \(pool)") to be healthy"
        emit(.health, live.phase)
        let start = Date()
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var lastProblem = "no answer yet"
        while true {
            let status = try self.status(client)
            var servers = status.servers(pool).filter { ($0["state"] as? String) != "maint" }
            if let server { servers = servers.filter { $0["name"] as? String == server } }
            let unhealthy = servers.filter { s in
                let h = ProxyStatus.health(s)
                if h == "not checked" { return false }
                if h != "up" { return true }
                if let after, let text = ProxyStatus.lastCheck(s), let checked = parser.date(from: text) { return checked < after }
                return false
            }
            if servers.isEmpty { lastProblem = "pool \(pool) has no servers" }
            else if unhealthy.isEmpty {
                emit(.health, "\(server.map { "\(pool)/\($0)" } ?? "pool \(pool)") is healthy (\(servers.count) server(s))")
                return
            } else {
                lastProblem = unhealthy.map { "\($0["name"] ?? "?"): \(ProxyStatus.health($0)) (\(($0["health"] as? [String: Any])?["last_result"] ?? "-"))" }.joined(separator: ", ")
            }
            if Date().timeIntervalSince(start) * 1000 > Double(env.healthTimeout.milliseconds) {
                throw Failure(reason: "\(server.map { "\(pool)/\($0)" } ?? "pool \(pool)") not healthy within \(env.healthTimeout.milliseconds / 1000)s: \(lastProblem)")
            }
            try wait(0.5, deferringFullPromotion: true)
        }
    }
}
