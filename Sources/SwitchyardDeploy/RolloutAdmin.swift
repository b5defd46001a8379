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
                if case .refused = error { throw Failure(reason: "\(client.environment) refused \(what): \(error)") }
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

    func metrics(_ client: AdminClient) throws -> MetricsSample {
        try admin(client, .metrics) { _ throws(AdminFailure) in try client.metrics() }
    }

    // MARK: The changes strategies make

    /// Sets the service's canary: `pool` at `weight`, with the plan's guard when it has one.
    func setCanary(_ client: AdminClient, pool: String, weight: Int, guardrail: CanaryGuard?) throws {
        let service = plan.service
        try admin(client, .setCanary, service) { api throws(AdminFailure) in
            try api.setCanary(service: service, pool: pool, weight: BasisPoints.format(weight), guardrail: CanaryStrategy.guardSetting(guardrail))
        }
    }

    /// Weight 0: all traffic on the active pool.
    func clearCanary(_ client: AdminClient) throws {
        let service = plan.service
        try admin(client, .setCanary, service) { api throws(AdminFailure) in try api.setCanary(service: service, weight: "0%") }
    }

    /// Makes `pool` the service's active pool (the canary, if any, is cleared in the same change).
    func flip(_ client: AdminClient, to pool: String) throws {
        let service = plan.service
        try admin(client, .flip, service) { api throws(AdminFailure) in try api.flip(service: service, to: pool) }
    }

    /// Takes a server out of rotation (in-flight requests finish), or puts it back.
    func setServer(_ client: AdminClient, pool: String, server: String, inRotation: Bool) throws {
        try admin(client, .setServer, pool, server) { api throws(AdminFailure) in
            try api.setServer(pool: pool, server: server, state: inRotation ? .ready : .drain)
        }
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
            var servers = status.servers(pool).filter { $0.state != "maint" }
            if let server { servers = servers.filter { $0.name == server } }
            let unhealthy = servers.filter { s in
                let h = s.healthStatus
                if h == "not checked" { return false }
                if h != "up" { return true }
                if let after, let text = s.health?.lastCheck, let checked = parser.date(from: text) { return checked < after }
                return false
            }
            if servers.isEmpty { lastProblem = "pool \(pool) has no servers" }
            else if unhealthy.isEmpty {
                emit(.health, "\(server.map { "\(pool)/\($0)" } ?? "pool \(pool)") is healthy (\(servers.count) server(s))")
                return
            } else {
                lastProblem = unhealthy.map { "\($0.name): \($0.healthStatus) (\($0.health?.lastResult ?? "-"))" }.joined(separator: ", ")
            }
            if Date().timeIntervalSince(start) * 1000 > Double(env.healthTimeout.milliseconds) {
                throw Failure(reason: "\(server.map { "\(pool)/\($0)" } ?? "pool \(pool)") not healthy within \(env.healthTimeout.milliseconds / 1000)s: \(lastProblem)")
            }
            try wait(0.5, deferringFullPromotion: true)
        }
    }
}
