import Foundation
import SwitchyardAdminAPI
import SwitchyardAdminClient

/// Why an admin call did not do what was asked (the admin client's own type, named here for
/// the orchestrator's files).
public typealias AdminFailure = SwitchyardAdminClient.AdminFailure

/// One proxy of an environment as the orchestrator reaches it: an address of the plan, the
/// environment's token from this process's environment or the plan's token file, and who acts.
/// The calls themselves are the admin client's (`api`); its errors name the environment and
/// the proxy.
public final class AdminClient: @unchecked Sendable {
    public let environment: String
    public let address: DeployPlan.AdminAddress
    /// "prod (unix:///run/switchyard/admin.sock)": how messages name this proxy.
    public var label: String { "\(environment) (\(address))" }
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

    /// A client for the proxy at `address`, one of `env`'s.
    public init(environment env: DeployPlan.Environment, address: DeployPlan.AdminAddress, actor: String,
                processEnvironment: [String: String]) throws(ClientError) {
        environment = env.name
        self.address = address
        let target = address.target(ca: env.ca, serverName: env.tlsServerName)
        var bearer: String? = nil
        if case .tcp = address {
            do {
                bearer = try AdminAddress.token(variable: env.tokenEnv, environment: processEnvironment, file: env.tokenFile)
            } catch {
                throw ClientError("environment \(env.name): \(error.description) (token_file)")
            }
            guard bearer != nil else {
                throw ClientError("environment \(env.name): the TCP admin API needs a token; set \(env.tokenEnv) or token_file")
            }
        }
        api = AdminAPIClient(target: target, label: "\(env.name) (\(address))", actor: actor, bearer: bearer)
    }

    /// A client for each of `env`'s proxies, in the plan's order (sorted by address).
    public static func all(for env: DeployPlan.Environment, actor: String, processEnvironment: [String: String]) throws(ClientError) -> [AdminClient] {
        var clients: [AdminClient] = []
        for address in env.proxies {
            clients.append(try AdminClient(environment: env, address: address, actor: actor, processEnvironment: processEnvironment))
        }
        return clients
    }

    /// A new client for the same proxy with the same lock token (for another thread).
    public func copy(environment env: DeployPlan.Environment, processEnvironment: [String: String]) throws(ClientError) -> AdminClient {
        let copy = try AdminClient(environment: env, address: address, actor: actor, processEnvironment: processEnvironment)
        copy.lockToken = lockToken
        return copy
    }

    /// The pool and server counters of one `/metrics` scrape.
    public func metrics() throws(AdminFailure) -> MetricsSample { MetricsSample(text: try api.metrics()) }
}
