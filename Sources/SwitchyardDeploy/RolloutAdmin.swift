import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardAdminClient
import SwitchyardConfig

extension Rollout {
    // MARK: Admin calls with retries

    /// Retries an admin call for a few seconds (a proxy restarting); then the rollout stops
    /// as an error, because it can no longer vouch for where traffic is. A refusal is final.
    func retrying<T>(_ client: AdminClient, _ what: String, _ call: (AdminAPIClient) throws(AdminFailure) -> T) throws -> T {
        var attempt = 0
        while true {
            do { return try call(client.api) }
            catch {
                if case .refused = error { throw Failure(reason: "\(client.label) refused \(what): \(error)", refusal: error) }
                attempt += 1
                if attempt >= 10 { throw Failure(reason: "\(error); check the proxy, then `switchyard deploy status \(plan.path)`", unreachable: true) }
                usleep(500_000)
            }
        }
    }

    /// One call to `endpoint` with retries; errors name its method and path.
    @discardableResult
    func admin<T>(_ client: AdminClient, _ endpoint: AdminEndpoint.ID, _ parameters: String...,
                  call: (AdminAPIClient) throws(AdminFailure) -> T) throws -> T {
        let e = AdminAPI.endpoint(endpoint)
        return try retrying(client, "\(e.method) \(e.path(parameters))", call)
    }

    func status(_ client: AdminClient) throws -> AdminStatus {
        try admin(client, .status) { api throws(AdminFailure) in try api.status() }
    }

    /// Every proxy's status, in the fleet's order.
    func statuses(_ fleet: ProxyFleet) throws -> [(client: AdminClient, status: AdminStatus)] {
        try fleet.proxies.map { ($0, try status($0)) }
    }

    /// The counters of every proxy of the environment, added: analysis judges the
    /// environment's traffic, whichever proxy carried it.
    func metrics(_ fleet: ProxyFleet) throws -> MetricsSample {
        MetricsSample.sum(try fleet.proxies.map { client in try admin(client, .metrics) { _ throws(AdminFailure) in try client.metrics() } })
    }

    // MARK: Health

    /// Waits until every server of `pool` that takes traffic passes its health checks on
    /// every proxy of the environment (each proxy checks on its own; a pool without checks
    /// counts as healthy) and, with `after`, was checked since then.
    func waitHealthy(_ fleet: ProxyFleet, pool: String, servers only: [String]? = nil, after: Date? = nil) throws {
        let what = only.map { $0.map { "\(pool)/\($0)" }.joined(separator: ", ") } ?? "pool \(pool)"
        live.phase = "waiting for \(what) to be healthy"
        emit(.health, live.phase)
        let start = Date()
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var lastProblem = "no answer yet"
        while true {
            var problems: [String] = []
            var counted = 0
            for (client, status) in try statuses(fleet) {
                var servers = status.servers(pool).filter { $0.state != "maint" }
                if let only { servers = servers.filter { only.contains($0.name) } }
                let unhealthy = servers.filter { s in
                    let h = s.healthStatus
                    if h == "not checked" { return false }
                    if h != "up" { return true }
                    if let after, let text = s.health?.lastCheck, let checked = parser.date(from: text) { return checked < after }
                    return false
                }
                let at = fleet.proxies.count > 1 ? " on \(client.address)" : ""
                if servers.isEmpty { problems.append("pool \(pool) has no servers\(at)") }
                problems += unhealthy.map { "\($0.name)\(at): \($0.healthStatus) (\($0.health?.lastResult ?? "-"))" }
                counted = max(counted, servers.count)
            }
            if problems.isEmpty {
                emit(.health, "\(what) is healthy (\(counted) server(s)\(fleet.proxies.count > 1 ? " on each of \(fleet.proxies.count) proxies" : ""))")
                return
            }
            lastProblem = problems.joined(separator: ", ")
            if Date().timeIntervalSince(start) * 1000 > Double(fleet.environment.healthTimeout.milliseconds) {
                throw Failure(reason: "\(what) not healthy within \(fleet.environment.healthTimeout.milliseconds / 1000)s: \(lastProblem)")
            }
            try wait(0.5, deferringFullPromotion: true)
        }
    }
}
