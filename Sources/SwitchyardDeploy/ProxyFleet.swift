import Foundation
import SwitchyardAdminAPI

/// The proxies of one environment, driven as one: an HA pair or a fleet in front of the same
/// pools. They are kept in the plan's order (sorted by address), which is the order in which
/// every rollout locks and changes them, and the fleet remembers where the rollout left each
/// one, so that a proxy someone changed by hand (drift) is noticed instead of overwritten.
final class ProxyFleet {
    let environment: DeployPlan.Environment
    /// One client per proxy, sorted by address.
    let proxies: [AdminClient]
    /// Pools whose servers' states are part of the routing compared across proxies: the pool
    /// a rolling update changes.
    var trackedPools: [String] = []
    /// The routing each proxy had after the rollout's last acknowledged change, by address.
    /// Empty until the environment's first look; then every proxy has an entry.
    var expected: [String: ServiceRouting] = [:]
    /// Each proxy's last guard trip (its time, as the proxy wrote it) when the environment
    /// started; a different one later is a new trip. No clock is compared.
    var tripsBefore: [String: String] = [:]

    init(environment: DeployPlan.Environment, proxies: [AdminClient]) {
        self.environment = environment
        self.proxies = proxies
    }

    var name: String { environment.name }

    /// How messages name `client`: the address alone when the environment has several
    /// proxies (the environment is named around it), else the environment and its address.
    func label(_ client: AdminClient) -> String {
        proxies.count > 1 ? "proxy \(client.address)" : client.label
    }

    /// The environment's proxies, for messages: "prod (unix:///a.sock, https://b:9901)".
    var summary: String { "\(name) (\(proxies.map(\.address.description).joined(separator: ", ")))" }
}

/// One proxy's answer to a look: its status and the service's routing there.
struct ProxyView {
    var client: AdminClient
    var status: AdminStatus
    var routing: ServiceRouting
}
