import Foundation
import SwitchyardAdminAPI
import SwitchyardAdminClient

// ADAPTER — the two admin calls below belong to the proxy's side of fleets, which is built
// in parallel. Until the admin client has them, these stand in, so that the orchestrator
// already calls them where it should:
//
// - Service-scoped deploy locks: `AdminAPIClient.lock(owner:ttl:reason:service:)`. Until then
//   the rollout takes the proxy-wide lock (which also blocks other services' rollouts).
//   Replace the bodies of `takeDeployLock` and `renewDeployLock` with the call passing
//   `service`, and `releaseDeployLock` with the service-scoped release if it takes one.
// - Pool version labels: `AdminAPIClient.setVersion(pool:version:)`. Until then the label is
//   sent as `PUT /v1/pools/{pool}/version` with `{"version": ...}`; a proxy without the
//   endpoint answers 404 "no such endpoint", which means "this proxy has no labels", not a
//   failure. Replace the body of `setPoolVersion` with the typed call (keeping the 404 case
//   for older proxies).
extension AdminAPIClient {
    /// Takes the deploy lock for `service` (the proxy-wide lock until service locks exist).
    func takeDeployLock(owner: String, ttl: String, reason: String, service: String) throws(AdminFailure) -> AdminLock {
        try lock(owner: owner, ttl: ttl, reason: reason)
    }

    /// Renews the deploy lock held with `lockToken` for `service`.
    func renewDeployLock(owner: String, ttl: String, reason: String, service: String) throws(AdminFailure) {
        try renewLock(owner: owner, ttl: ttl, reason: reason)
    }

    /// Releases the deploy lock held with `lockToken`.
    func releaseDeployLock(service: String) throws(AdminFailure) {
        try unlock()
    }

    /// Labels `pool` with the version it runs. False when the proxy has no version labels.
    func setPoolVersion(pool: String, version: String) throws(AdminFailure) -> Bool {
        let body = Data("{\"version\":\(Self.jsonString(version))}".utf8)
        let response = try send(method: "PUT", path: "/v1/pools/\(AdminEndpoint.percentEncode(pool))/version", body: body)
        if response.status == 200 { return true }
        let refusal = Self.refusal(response)
        if case .refused(404, "no such endpoint", _) = refusal { return false }
        throw refusal
    }

    static func jsonString(_ text: String) -> String {
        (try? JSONEncoder().encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
    }
}
