import Foundation
import Hummingbird
import NIOCore
import SwitchyardConfig
import SwitchyardConsoleAPI
import SwitchyardDeploy

/// A service as `GET /api/v1/services` shows it: per environment, in promotion order, the
/// version live there, the latest deployment and the proxy's state.
struct ServiceOverview: Encodable {
    var name: String
    /// config (the console can deploy it), reported (a runner sent its plan) or history.
    var source: String
    var deployable: Bool
    var environments: [Environment]
    /// The rollout running now, if any.
    var rollout: RolloutSummary?

    struct Environment: Encodable {
        var name: String
        /// The version promoted last.
        var version: String?
        var latest: RolloutDetail.Deployment?
        var live: EnvironmentLive?
    }
}

/// A plan's steps and thresholds, for the deploy form and the rollout's charts (never the
/// plan's text: it may hold webhook URLs).
struct PlanSummary: Encodable {
    var service: String
    var path: String
    var environments: [Environment]
    var analysis: Analysis

    struct Environment: Encodable {
        var name: String
        var strategy: String
        var approval: Bool
        var steps: [String]
        /// The proxy's own guard on the canary, if the plan sets one.
        var guardrail: Guardrail?
    }

    /// What the analysis holds a canary to. Rates are fractions (0.05 is 5%).
    struct Analysis: Encodable {
        var intervalSeconds: Double
        var minRequests: Int
        var maxErrorRate: Double?
        var maxErrorRateVsBaseline: Double?
        var maxP99Ms: Double?
        var failureLimit: Int
    }

    struct Guardrail: Encodable {
        var maxErrorRate: Double
        var minRequests: Int
        var windowSeconds: Double
    }

    /// "90s", "1.5s", "250ms".
    static func describe(_ d: Duration) -> String {
        let ms = d.milliseconds
        if ms < 1000 { return "\(ms)ms" }
        return ms % 1000 == 0 ? "\(ms / 1000)s" : String(format: "%.1fs", Double(ms) / 1000)
    }

    init(_ plan: DeployPlan) {
        service = plan.service
        path = plan.path
        environments = plan.environments.map { env in
            Environment(name: env.name, strategy: env.strategy.rawValue, approval: env.manualApproval, steps: env.steps.map { step in
                switch step {
                case .weight(let w): return BasisPoints.format(w)
                case .pause(let d): return d.map { "pause \(Self.describe($0))" } ?? "pause until promoted"
                }
            }, guardrail: env.guardrail.map {
                Guardrail(maxErrorRate: Double($0.maxErrorRate) / 10_000, minRequests: $0.minRequests, windowSeconds: Double($0.windowMilliseconds) / 1000)
            })
        }
        let a = plan.analysis
        analysis = Analysis(intervalSeconds: Double(a.interval.milliseconds) / 1000, minRequests: a.minRequests,
                            maxErrorRate: a.maxErrorRate.map { Double($0) / 10_000 }, maxErrorRateVsBaseline: a.maxErrorRateVsBaseline,
                            maxP99Ms: a.maxP99.map { Double($0.milliseconds) }, failureLimit: a.failureLimit)
    }
}

extension ConsoleServer {
    func addServiceRoutes(to router: Router<ConsoleContext>) {
        let api = router.group("api/v1")

        api.get("services") { request, context in
            _ = try context.require(.read)
            var list: [ServiceOverview] = []
            let latest = try await self.deployments.latestPerEnvironment()
            let running = try await self.rollouts.rollouts(state: "running", limit: 1000) + (try await self.rollouts.rollouts(state: "pending", limit: 1000))
            let versions = try await self.deployments.livePromotedVersions()
            for (name, source) in try await self.knownServices() {
                list.append(self.overview(name, source: source, latest: latest, running: running, versions: versions, traffic: false))
            }
            return JSONBody.response(["services": list])
        }

        api.get("services/{service}") { request, context in
            _ = try context.require(.read)
            let name = context.parameters.get("service") ?? ""
            guard let known = try await self.knownServices().first(where: { $0.name == name }) else { throw APIError(.notFound, "no service \(name.prefix(100))") }
            let latest = try await self.deployments.latestPerEnvironment()
            let running = try await self.rollouts.rollouts(service: name, limit: 5).filter { RolloutStore.liveStates.contains($0.state) }
            let overview = self.overview(name, source: known.source, latest: latest, running: running,
                                         versions: try await self.deployments.livePromotedVersions(), traffic: true)
            struct Answer: Encodable { var service: ServiceOverview; var plan: PlanSummary?; var rollouts: [RolloutSummary] }
            return JSONBody.response(Answer(service: overview, plan: self.plan(of: name).map(PlanSummary.init),
                                            rollouts: try await self.rollouts.rollouts(service: name, limit: 20)))
        }

        api.get("services/{service}/environments/{environment}") { request, context in
            _ = try context.require(.read)
            let service = context.parameters.get("service") ?? "", environment = context.parameters.get("environment") ?? ""
            var filter = DeploymentStore.Filter()
            filter.service = service
            filter.environment = environment
            filter.limit = 100
            struct Answer: Encodable {
                var service: String, environment: String
                var live: EnvironmentLive?
                var versions: [RolloutDetail.Deployment]
                var deployments: [RolloutDetail.Deployment]
            }
            let live = self.watcher.environments(of: service).first { $0.environment == environment }
            let history = try await self.deployments.deployments(filter)
            guard live != nil || !history.isEmpty else { throw APIError(.notFound, "no environment \(environment.prefix(100)) of service \(service.prefix(100))") }
            return JSONBody.response(Answer(service: service, environment: environment, live: live,
                                            versions: try await self.deployments.promotedVersions(service: service, environment: environment),
                                            deployments: history))
        }

        api.post("services/{service}/environments/{environment}/rollback") { request, context in
            let caller = try context.require(.deploy)
            let service = context.parameters.get("service") ?? "", environment = context.parameters.get("environment") ?? ""
            let body = try await JSONBody.decodeOptional(RollbackBody.self, from: request, context: context) ?? RollbackBody()
            guard let plan = self.registered[service] else {
                throw APIError(.unprocessableContent, "the console has no plan for service \(service.prefix(100)) (register it under plans: in the console's configuration)", field: "service")
            }
            guard plan.environments.contains(where: { $0.name == environment }) else {
                throw APIError(.notFound, "the plan of \(service) has no environment \(environment.prefix(100)); it has \(plan.environments.map(\.name).joined(separator: ", "))")
            }
            let promoted = try await self.deployments.promotedVersions(service: service, environment: environment)
            guard let current = promoted.first else { throw APIError(.conflict, "nothing was promoted in \(environment) yet; there is no version to go back to") }
            let target: String
            if let asked = body.version {
                guard promoted.contains(where: { $0.version == asked }) else {
                    throw APIError(.badRequest, "\(asked.prefix(80)) was never promoted in \(environment); versions there: \(Array(Set(promoted.map(\.version))).sorted().prefix(20).joined(separator: ", "))", field: "version")
                }
                target = asked
            } else {
                guard let previous = promoted.first(where: { $0.version != current.version }) else {
                    throw APIError(.conflict, "\(environment) has run only \(current.version); there is no earlier version to go back to")
                }
                target = previous.version
            }
            let summary = try await self.startExecuted(service: service, version: target, environments: [environment], kind: "rollback", caller: caller)
            return JSONBody.response(summary, status: .created)
        }

        api.get("plans/{service}") { request, context in
            _ = try context.require(.read)
            let service = context.parameters.get("service") ?? ""
            guard let plan = self.plan(of: service) else { throw APIError(.notFound, "no plan for service \(service.prefix(100))") }
            return JSONBody.response(PlanSummary(plan))
        }

        api.get("deployments") { request, context in
            _ = try context.require(.read)
            let query = request.uri.queryParameters
            var filter = DeploymentStore.Filter()
            filter.service = query.get("service")
            filter.environment = query.get("environment")
            filter.outcome = query.get("outcome")
            filter.actor = query.get("actor")
            filter.since = try Self.time(query.get("since"), name: "since")
            filter.until = try Self.time(query.get("until"), name: "until")
            filter.limit = try Self.integer(query.get("limit"), name: "limit", range: 1...10_000) ?? 100
            let rows = try await self.deployments.deployments(filter)
            switch query.get("format") ?? "json" {
            case "json": return JSONBody.response(["deployments": rows])
            case "csv":
                return Response(status: .ok, headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"deployments.csv\""],
                                body: .init(byteBuffer: ByteBuffer(string: Self.csv(rows))))
            default: throw APIError(.badRequest, "format must be json or csv", field: "format")
            }
        }

        api.get("deployments/{id}") { request, context in
            _ = try context.require(.read)
            let id = try Self.id(context, of: "deployment")
            guard let deployment = try await self.deployments.deployment(id) else { throw APIError(.notFound, "no deployment #\(id)") }
            return JSONBody.response(deployment)
        }

        api.get("statistics") { request, context in
            _ = try context.require(.read)
            let query = request.uri.queryParameters
            let since = try Self.time(query.get("since"), name: "since"), until = try Self.time(query.get("until"), name: "until")
            let facts = try await self.deployments.statisticsRows(service: query.get("service"), environment: query.get("environment"), since: since, until: until)
            return JSONBody.response(["statistics": DeployStatistics.compute(facts, since: since, until: until)])
        }

        // Prometheus text of the rollouts in the database (docs/console.md, "Metrics").
        router.get("metrics") { _, context in
            _ = try context.require(.read)
            let rows = try await self.deployments.metricsRows()
            let text = RolloutMetrics.text(deployments: rows.deployments, steps: rows.steps)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    func overview(_ name: String, source: String, latest: [RolloutDetail.Deployment], running: [RolloutSummary],
                  versions: [String: String], traffic: Bool) -> ServiceOverview {
        let plan = plan(of: name)
        var order = plan?.environments.map(\.name) ?? []
        for d in latest where d.service == name && !order.contains(d.environment) { order.append(d.environment) }
        let live = watcher.environments(of: name)
        var environments: [ServiceOverview.Environment] = []
        for env in order {
            var state = live.first { $0.environment == env }
            if !traffic, var s = state {
                // The overview needs the latest point of each pool, not the window.
                var latest: [String: EnvironmentLive.TrafficPoint] = [:]
                for point in s.traffic { latest[point.pool] = point }
                s.traffic = latest.values.sorted { $0.pool < $1.pool }
                state = s
            }
            let version = versions["\(name)/\(env)"]
            environments.append(.init(name: env, version: version, latest: latest.first { $0.service == name && $0.environment == env }, live: state))
        }
        return ServiceOverview(name: name, source: source, deployable: registered[name] != nil, environments: environments,
                               rollout: running.first { $0.service == name })
    }

    /// An ISO 8601 time or a date (YYYY-MM-DD), normalised to what the database compares.
    static func time(_ text: String?, name: String) throws -> String? {
        guard let text else { return nil }
        if let date = Clock.date(text) { return Clock.iso(date) }
        if let date = Clock.date(text + "T00:00:00Z") { return Clock.iso(date) }
        throw APIError(.badRequest, "\(name) must be an ISO 8601 time (2026-11-30T09:00:00Z) or a date (2026-11-30)", field: name)
    }

    static func csv(_ rows: [RolloutDetail.Deployment]) -> String {
        func cell(_ value: String?) -> String {
            guard var v = value else { return "" }
            // A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
            if let first = v.first, "=+-@".contains(first) { v = "'" + v }
            return v.contains(where: { ",\"\n\r".contains($0) }) ? "\"" + v.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : v
        }
        var out = "id,rollout,service,environment,version,strategy,actor,started_at,ended_at,outcome,reason,pool,previous_pool,previous_version\r\n"
        for d in rows {
            out += [String(d.id), String(d.rollout), d.service, d.environment, d.version, d.strategy, d.actor, d.startedAt, d.endedAt, d.outcome,
                    d.reason, d.pool, d.previousPool, d.previousVersion].map(cell).joined(separator: ",") + "\r\n"
        }
        return out
    }
}
