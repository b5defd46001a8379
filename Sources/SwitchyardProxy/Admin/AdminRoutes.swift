import CLibevent
import COpenSSL
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// Each endpoint of the admin API table (`AdminAPI.endpoints`) carried out on the control plane.
extension AdminServer {
    func route(_ r: Request) throws(AdminError) -> Reply {
        let path = "/" + r.path.joined(separator: "/")
        let endpoint: AdminEndpoint.ID, parameters: [String: String]
        switch AdminAPI.route(method: r.method, path: path) {
        case .endpoint(let id, let values):
            (endpoint, parameters) = (id, values)
        case .methodNotAllowed(let allowed):
            throw AdminError(405, "method not allowed", "\(path) takes \(allowed.joined(separator: ", "))")
        case .notFound:
            throw AdminError(404, "no such endpoint", "\(r.method) \(path) is not part of the admin API; see docs/admin-api.md")
        }
        let service = parameters["service"] ?? "", pool = parameters["pool"] ?? "", server = parameters["server"] ?? ""
        switch endpoint {
        case .status:
            // One service's view is small, and what rollouts and the console poll: answered at once.
            if r.query["service"] != nil { return Self.ok(Self.status(try statusSource(query: r.query))) }
            try checkRoomForLaterReply()
            let source = try statusSource(query: r.query)
            return .later { RenderedReply(status: 200, body: AdminJSON.data(AdminServer.status(source)), contentType: "application/json") }
        case .audit:
            var limit = 100
            if let text = r.query["limit"] {
                guard let value = Int(text), (0...ControlPlane.auditMemoryLimit).contains(value) else {
                    throw AdminError(400, "invalid limit", "limit is a whole number from 0 to \(ControlPlane.auditMemoryLimit)")
                }
                limit = value
            }
            return Self.ok(["entries": Array(control.audit.suffix(limit))])
        case .metrics:
            let servers = try Self.serversParameter(r.query["servers"])
            try checkRoomForLaterReply()
            let source = Self.metricsSource(control: control, servers: servers)
            let gzip = r.acceptsGzip
            return .later {
                AdminServer.scrapeReply(source, gzip: gzip) { error in
                    RenderedReply(status: error.status, body: AdminServer.error(error).body, contentType: "application/json")
                }
            }
        case .flip:
            let to = try AdminBody.flipTarget(r.body)
            return try changed(control.flip(service: service, to: to, actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case .setCanary:
            // Syntax first (400), then what depends on the state (404/409).
            let change = try AdminBody.CanaryChange(r.body)
            let weight = change.weight
            let pool = change.pool ?? control.state.services[service]?.canary?.pool ?? ""
            if weight > 0 && pool.isEmpty {
                // Whether pool may be left out depends on the state (an existing canary): a conflict, not bad syntax.
                throw AdminError(409, "no canary pool", "service \(service) has no canary pool yet; give it: {\"pool\": \"green\", \"weight\": \"5%\"}")
            }
            return try changed(control.setCanary(service: service, pool: pool, weight: weight, sticky: change.sticky, guardrail: change.guardrail,
                                                 actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case .setRules:
            let rules = try AdminBody.rules(r.body)
            return try changed(control.setRules(service: service, rules: rules, actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case .rollback:
            return try changed(control.rollback(service: service, actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case .setServer:
            let change = try AdminBody.ServerChange(r.body)
            return try changed(control.setServer(pool: pool, server: server, weight: change.weight, serverState: change.state,
                                                 actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case .addServer:
            let new = try AdminBody.NewServer(r.body)
            return try changed(control.addServer(pool: pool, server: new, actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case .setPoolVersion:
            let version = try AdminBody.poolVersion(r.body)
            return try changed(control.setVersion(pool: pool, version: version, actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case .removeServer:
            return try changed(control.removeServer(pool: pool, name: server, actor: r.actor, ifMatch: r.ifMatch, lockToken: r.lockToken))
        case .reload:
            try control.checkLockFor(r.lockToken)
            let (generation, notes) = try control.reload(reset: r.query["reset"] == "true", actor: r.actor)
            return Self.ok(["generation": generation, "notes": notes, "acknowledged_us": control.publishLatencies.last ?? 0])
        case .lock:
            let request = try AdminBody.LockRequest(r.body)
            let info = try control.acquireLock(owner: request.owner, reason: request.reason, ttl: request.ttl,
                                               service: request.service, actor: r.actor, token: r.lockToken)
            return Self.ok(Self.lockJSON(info, withToken: true))
        case .unlock:
            let scope = r.query["service"]
            if let scope, scope.isEmpty {
                throw AdminError(400, "invalid service", "service=NAME names the service whose lock to release; leave it out for the proxy-wide lock")
            }
            try control.releaseLock(token: r.lockToken, service: scope, force: r.query["force"] == "true", actor: r.actor)
            return Self.ok(["unlocked": true])
        }
    }

    func changed(_ generation: UInt64) -> Reply {
        Self.ok(["generation": generation, "acknowledged_us": control.publishLatencies.last ?? 0])
    }
}
