import Foundation
import Glibc
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import NIOCore
import SwitchyardConfig
import SwitchyardDeploy

/// `switchyard console`: the shared server where rollouts run, report, are controlled and
/// remembered. It owns the database, the proxy watcher and the rollouts it runs itself, and
/// serves the API under `/api/v1/` and the web console.
public final class ConsoleServer: Sendable {
    public let configuration: ConsoleConfiguration
    let database: ConsoleDatabase
    let rollouts: RolloutStore
    let deployments: DeploymentStore
    let access: AccessStore
    let watcher: ProxyWatcher
    let supervisor: RunSupervisor
    let logger: Logger
    /// The plans registered in the configuration, by service: what the console may run itself.
    let registered: [String: DeployPlan]
    let bootstrapDigest: String?
    /// The token of the runs this instance starts; known to this instance only, never stored.
    let runnerSecret = "sy_" + AccessStore.newSecret()
    let started = Date()

    /// Opens the database (migrating it), reads the registered plans and prepares the watcher.
    /// Errors name the file and what to do.
    public init(configuration: ConsoleConfiguration, environment: [String: String] = ProcessInfo.processInfo.environment) async throws {
        var logger = Logger(label: "switchyard.console")
        logger.logLevel = environment["SWITCHYARD_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .notice
        self.logger = logger
        self.configuration = configuration
        var plans: [String: DeployPlan] = [:]
        for path in configuration.plans {
            let plan: DeployPlan
            do { plan = try PlanLoader.load(path: path) } catch {
                throw ConsoleError("plan \(path) (from \(configuration.file ?? "--plan")) is invalid:\n\(error)")
            }
            if let other = plans[plan.service] {
                throw ConsoleError("plans \(other.path) and \(path) are both for service \(plan.service); register one plan per service")
            }
            plans[plan.service] = plan
        }
        registered = plans
        database = try await ConsoleDatabase(location: configuration.database, logger: logger)
        rollouts = RolloutStore(database: database)
        deployments = DeploymentStore(database: database)
        access = AccessStore(database: database)
        watcher = ProxyWatcher(interval: configuration.pollInterval, window: configuration.window)
        let instance = "\(History.hostName)/\(getpid())/\(AccessStore.newSecret().prefix(6))"
        supervisor = RunSupervisor(store: rollouts, dataDirectory: configuration.dataDirectory, instance: instance, logger: logger)
        bootstrapDigest = environment["SWITCHYARD_CONSOLE_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : AccessStore.digest($0) }
        do { try await migrate() } catch {
            // Closed here: a connection left open is a programming error to SQLiteNIO.
            await database.shutdown()
            throw error
        }
    }

    /// Runs the migrations, waiting up to 30 s for a database that is not up yet.
    private func migrate() async throws {
        let deadline = Date().addingTimeInterval(30)
        while true {
            do {
                let applied = try await Migrations.run(on: database)
                if !applied.isEmpty { logger.notice("database \(database.displayName): applied migrations \(applied.map(String.init).joined(separator: ", "))") }
                return
            } catch let error as ConsoleError {
                throw error
            } catch {
                if Date() > deadline {
                    throw ConsoleError("database \(database.displayName) did not answer within 30s (\(UnavailableMiddleware.summary(error))); check that it runs and the URL, user and password")
                }
                FileHandle.standardError.write(Data("switchyard console: waiting for the database \(database.displayName): \(UnavailableMiddleware.summary(error))\n".utf8))
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Serves until SIGINT or SIGTERM; then stops the rollouts this instance runs (they roll back).
    /// `onListening` gets the URL once the listener is bound (port 0 picks a free port).
    public func run(onListening: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        do { try await serve(onListening: onListening) } catch {
            watcher.stop()
            supervisor.stopAll(timeout: 60)
            await database.shutdown()
            throw error
        }
    }

    private func serve(onListening: @escaping @Sendable (String) -> Void) async throws {
        for plan in registered.values {
            watcher.watch(plan, trusted: true)
            try await registerService(plan, source: "config")
        }
        for plan in try await reportedPlans() where registered[plan.service] == nil { watcher.watch(plan, trusted: false) }

        let router = makeRouter()

        let server: HTTPServerBuilder
        let tls = configuration.tlsCertificate != nil
        if let certificate = configuration.tlsCertificate, let key = configuration.tlsKey {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
                let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
                server = try .tls(.http1(), tlsConfiguration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey)))
            } catch {
                throw ConsoleError("tls: cannot load \(certificate) and \(key) (\(error)); give PEM files of the certificate chain and its key")
            }
        } else {
            server = .http1()
        }
        let supervisor = self.supervisor
        let host = configuration.listenHost
        let certificate = configuration.tlsCertificate
        let runnerSecret = self.runnerSecret
        let app = Application(router: router, server: server,
                              configuration: .init(address: .hostname(host, port: configuration.listenPort), serverName: "switchyard-console"),
                              onServerRunning: { channel in
                                  let port = channel.localAddress?.port ?? 0
                                  let shown = host.contains(":") ? "[\(host)]" : host
                                  let url = "\(tls ? "https" : "http")://\(shown):\(port)"
                                  // Runs started here report over loopback.
                                  let local = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : shown
                                  supervisor.configure(consoleURL: "\(tls ? "https" : "http")://\(local):\(port)", runnerToken: runnerSecret, certificate: certificate)
                                  onListening(url)
                              },
                              logger: logger)
        let background = Task { await self.keepLeases() }
        defer { background.cancel() }
        do {
            try await app.runService()
        } catch {
            throw ConsoleError("listen \(configuration.listenHost):\(configuration.listenPort): \(error)")
        }
        watcher.stop()
        supervisor.stopAll(timeout: 60)
        await database.shutdown()
    }

    /// The API and the web console, behind the access middleware.
    func makeRouter() -> Router<ConsoleContext> {
        let router = Router(context: ConsoleContext.self)
        router.middlewares.add(UnavailableMiddleware())
        router.middlewares.add(AccessMiddleware(access: access, bootstrapDigest: bootstrapDigest, runnerDigest: AccessStore.digest(runnerSecret),
                                                anonymousViewer: configuration.anonymousViewer))
        addRolloutRoutes(to: router)
        addServiceRoutes(to: router)
        addFeedRoutes(to: router)
        addAccessRoutes(to: router)
        addWebRoutes(to: router)
        return router
    }

    /// Every second: renew the leases of the rollouts this instance runs, and mark crashed the
    /// rollouts nobody reports for anymore. A console that just started first waits one lease,
    /// so that runners it could not hear while it was down have time to report again.
    private func keepLeases() async {
        let lease = configuration.lease.seconds
        while !Task.isCancelled {
            do {
                let until = Clock.milliseconds(Date().addingTimeInterval(lease))
                for id in supervisor.running { try await rollouts.renewLease(id, until: until) }
                if Date().timeIntervalSince(started) > lease {
                    for id in try await rollouts.expireLeases() { logger.warning("rollout #\(id): no report within the lease (\(lease)s); marked crashed") }
                }
            } catch {
                logger.error("leases: \(UnavailableMiddleware.summary(error))")
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    func registerService(_ plan: DeployPlan, source: String) async throws {
        let text = (try? String(contentsOfFile: plan.path, encoding: .utf8))
        try await database.sql.raw("""
            INSERT INTO services (name, plan_path, plan_text, source, updated_at) VALUES (\(bind: plan.service), \(bind: plan.path), \(bind: text), \(bind: source), \(bind: Clock.now()))
            ON CONFLICT (name) DO UPDATE SET plan_path = excluded.plan_path, plan_text = excluded.plan_text, source = excluded.source, updated_at = excluded.updated_at
            """).run()
    }

    /// Plans runners sent along with their reports: watched without the console's credentials,
    /// never run by the console.
    func reportedPlans() async throws -> [DeployPlan] {
        try await database.sql.raw("SELECT name, plan_path, plan_text FROM services WHERE source = 'reported' AND plan_text IS NOT NULL").all().compactMap { row in
            guard let text = try row.decode(column: "plan_text", as: String?.self) else { return nil }
            let path = try row.decode(column: "plan_path", as: String?.self) ?? "reported plan"
            return try? PlanLoader.parse(yaml: text, file: path)
        }
    }

    /// Every service the console knows: registered, reported or seen in the history.
    func knownServices() async throws -> [(name: String, source: String)] {
        var out: [String: String] = [:]
        for row in try await database.sql.raw("SELECT name, source FROM services").all() {
            out[try row.decode(column: "name", as: String.self)] = try row.decode(column: "source", as: String.self)
        }
        for row in try await database.sql.raw("SELECT DISTINCT service FROM rollouts").all() {
            let name = try row.decode(column: "service", as: String.self)
            if out[name] == nil { out[name] = "history" }
        }
        return out.map { ($0.key, $0.value) }.sorted { $0.name < $1.name }
    }

    /// The plan of `service`: the registered one, else the one a runner sent last.
    func plan(of service: String) -> DeployPlan? { registered[service] ?? watcher.plan(service) }
}

extension Duration {
    /// In seconds, fractions kept.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
