import Foundation
import Hummingbird
import SwitchyardConsoleAPI
import SwitchyardDeploy

/// `POST /api/v1/rollouts`.
struct StartRolloutBody: Decodable {
    var service: String
    var version: String
    /// Default: every environment of the plan, in its order.
    var environments: [String]?
}

/// `POST /api/v1/rollouts/{id}/{command}`.
struct ControlBody: Decodable {
    /// approve: the environment; promote: "full".
    var argument: String?
    /// Seconds to wait for the rollout's answer (default 10, at most 60).
    var wait: Double?
}

/// `POST /api/v1/services/{service}/environments/{environment}/rollback`.
struct RollbackBody: Decodable {
    /// A version promoted there before (default: the one before the current one).
    var version: String?
}

extension ConsoleServer {
    static let controlCommands: Set<String> = ["approve", "pause", "resume", "promote", "abort"]

    func addRolloutRoutes(to router: Router<ConsoleContext>) {
        let api = router.group("api/v1")

        api.get("rollouts") { request, context in
            _ = try context.require(.read)
            let query = request.uri.queryParameters
            let limit = try Self.integer(query.get("limit"), name: "limit", range: 1...1000) ?? 50
            let before = try Self.integer(query.get("before"), name: "before", range: 1...Int.max)
            let list = try await self.rollouts.rollouts(service: query.get("service"), state: query.get("state"), limit: limit, before: before)
            return JSONBody.response(["rollouts": list])
        }

        api.get("rollouts/{id}") { request, context in
            _ = try context.require(.read)
            let id = try Self.id(context)
            guard let detail = try await self.rollouts.detail(id) else { throw APIError(.notFound, "no rollout #\(id)") }
            return JSONBody.response(detail)
        }

        api.post("rollouts") { request, context in
            let caller = try context.require(.deploy)
            let body = try await JSONBody.decode(StartRolloutBody.self, from: request, context: context)
            let summary = try await self.startExecuted(service: body.service, version: body.version, environments: body.environments, kind: "deploy", caller: caller)
            return JSONBody.response(summary, status: .created)
        }

        api.post("rollouts/{id}/{command}") { request, context in
            let id = try Self.id(context)
            let command = context.parameters.get("command") ?? ""
            guard Self.controlCommands.contains(command) else {
                throw APIError(.notFound, "no control \(command); use approve, pause, resume, promote or abort", field: "command")
            }
            let caller = try context.require(command == "approve" ? .approve : .control)
            let body = try await JSONBody.decodeOptional(ControlBody.self, from: request, context: context) ?? ControlBody()
            if let argument = body.argument, argument.count > 200 { throw APIError(.badRequest, "argument is too long", field: "argument") }
            let wait = max(0, min(body.wait ?? 10, 60))
            guard let row = try await self.rollouts.rolloutRow(id) else { throw APIError(.notFound, "no rollout #\(id)") }
            let controlID: Int
            if row.state == "crashed" && command == "abort" {
                controlID = try await self.abortCrashed(row, caller: caller)
            } else {
                guard RolloutStore.liveStates.contains(row.state) else {
                    throw APIError(.conflict, "rollout #\(id) of \(row.service) is \(row.state)\(row.reason.map { " (\($0))" } ?? ""); there is nothing to \(command)")
                }
                if command == "approve" {
                    let environment = body.argument ?? row.environment ?? ""
                    if self.configuration.separateApprover.contains(environment) && Self.startedBy(row, caller) {
                        try await self.access.audit(caller, action: "approve", target: "rollout/\(id)", detail: environment, outcome: "refused: starter")
                        throw APIError(.forbidden, "\(environment) must be approved by someone other than the rollout's starter (\(row.actor))")
                    }
                }
                controlID = try await self.rollouts.addControl(rollout: id, command: command, argument: body.argument, actor: caller.name)
                try await self.rollouts.feed(topic: "control", rollout: id, service: row.service, environment: row.environment, kind: command,
                                             message: "\(command)\(body.argument.map { " \($0)" } ?? "") requested by \(caller.name)")
            }
            try await self.access.audit(caller, action: command, target: "rollout/\(id)", detail: body.argument, outcome: "requested (control #\(controlID))")
            let deadline = Date().addingTimeInterval(wait)
            while true {
                if let control = try await self.rollouts.control(controlID), let result = control.result {
                    return JSONBody.response(ControlAnswer(control: controlID, rollout: id, command: command, result: result))
                }
                if Date() >= deadline { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            return JSONBody.response(ControlAnswer(control: controlID, rollout: id, command: command, result: nil), status: .accepted)
        }

        api.post("reports") { request, context in
            let caller = try context.require(.deploy)
            let report = try await JSONBody.decode(RunReport.self, from: request, context: context, limit: context.maxUploadSize)
            try Self.validate(report)
            let isNew = try await self.rollouts.sql.raw("SELECT id FROM rollouts WHERE run = \(bind: report.run)").first() == nil
            let answer: ReportAnswer
            do {
                answer = try await self.rollouts.ingest(report, from: caller.name, leaseUntil: Clock.milliseconds(Date().addingTimeInterval(self.configuration.lease.seconds)))
            } catch RolloutStore.ReportRefusal.notTheReporter(let owner) {
                throw APIError(.forbidden, "run \(report.run) is reported by \(owner); a run's reports come from the token that started reporting it", field: "run")
            } catch RolloutStore.ReportRefusal.otherService(let service) {
                throw APIError(.conflict, "run \(report.run) is a rollout of \(service), not \(report.service)", field: "service")
            }
            if isNew {
                try await self.access.audit(caller, action: "report", target: "rollout/\(answer.rollout)",
                                            detail: "\(report.service) \(report.version) by \(report.actor) from \(report.host)", outcome: "recorded")
            }
            if let text = report.planText, self.registered[report.service] == nil, let plan = try? PlanLoader.parse(yaml: text, file: report.planPath) {
                self.watcher.watch(plan, trusted: false)
            }
            return JSONBody.response(answer)
        }
    }

    /// Starts a rollout the console runs itself.
    func startExecuted(service: String, version: String, environments: [String]?, kind: String, caller: Caller) async throws -> RolloutSummary {
        guard let plan = registered[service] else {
            let names = registered.keys.sorted()
            throw APIError(.unprocessableContent, "the console has no plan for service \(service) (register its plan under plans: in the console's configuration)\(names.isEmpty ? "" : "; it runs: \(names.joined(separator: ", "))")", field: "service")
        }
        guard VersionName.isValid(version) else {
            throw APIError(.badRequest, "version \"\(version.prefix(80))\" may hold only letters, digits and - _ . +", field: "version")
        }
        let names = plan.environments.map(\.name)
        var chosen = names
        if let environments {
            guard !environments.isEmpty else { throw APIError(.badRequest, "environments is empty; name at least one of \(names.joined(separator: ", "))", field: "environments") }
            if let unknown = environments.first(where: { !names.contains($0) }) {
                throw APIError(.badRequest, "environment \(unknown.prefix(80)) is not in the plan of \(service); it has \(names.joined(separator: ", "))", field: "environments")
            }
            chosen = names.filter { environments.contains($0) }
        }
        if let live = try await rollouts.liveRollout(service: service) {
            throw APIError(.conflict, "rollout #\(live.id) of \(service) (version \(live.version), by \(live.actor)) is \(live.state); wait for it or abort it first")
        }
        let run = UUID().uuidString.lowercased()
        let id = try await rollouts.createExecuted(run: run, service: service, version: version, environments: chosen, actor: caller.name, kind: kind,
                                                   planPath: plan.path, owner: supervisor.instance,
                                                   leaseUntil: Clock.milliseconds(Date().addingTimeInterval(configuration.lease.seconds)))
        do {
            try supervisor.startRun(rollout: id, run: run, planPath: plan.path, version: version, environments: chosen, actor: caller.name)
        } catch {
            try await rollouts.failUnreported(id, reason: error.description)
            try await access.audit(caller, action: kind, target: "rollout/\(id)", detail: "\(service) \(version)", outcome: "failed: \(error.description)")
            throw APIError(.internalServerError, "rollout #\(id) could not start: \(error.description)")
        }
        try await access.audit(caller, action: kind, target: "rollout/\(id)", detail: "\(service) \(version) to \(chosen.joined(separator: ", "))", outcome: "started")
        guard let summary = try await rollouts.rollout(id) else { throw APIError(.internalServerError, "rollout #\(id) vanished") }
        return summary
    }

    /// Aborts a crashed rollout from this instance, whoever ran it. Only with a plan registered
    /// in the configuration: an abort runs the plan's hooks, and the console runs no hook a
    /// runner sent it.
    func abortCrashed(_ row: RolloutStore.RolloutRow, caller: Caller) async throws -> Int {
        guard let plan = registered[row.service] else {
            throw APIError(.conflict, "the console runs only plans registered in its configuration, and \(row.service) has none there; abort it where it ran: switchyard deploy abort PLAN")
        }
        guard try await !rollouts.abortInProgress(rollout: row.id) else {
            throw APIError(.conflict, "an abort of rollout #\(row.id) is already running; wait for its result (GET /api/v1/rollouts/\(row.id))")
        }
        guard let report = try await rollouts.reconstructedReport(row.id) else { throw APIError(.notFound, "no rollout #\(row.id)") }
        let controlID = try await rollouts.addControl(rollout: row.id, command: "abort", argument: nil, actor: caller.name, byConsole: true)
        try await rollouts.feed(topic: "control", rollout: row.id, service: row.service, environment: nil, kind: "abort",
                                message: "abort of crashed rollout #\(row.id) by \(caller.name): rolling back from the console")
        do {
            try supervisor.startAbort(rollout: row.id, service: row.service, report: report, planPath: plan.path, actor: caller.name, control: controlID)
        } catch {
            try await rollouts.answerControl(controlID, result: "refused: \(error.description)")
        }
        return controlID
    }

    /// Whether `caller` started the rollout: its actor, the token that reported it, or a
    /// pipeline actor naming the same person (github:alice for the token alice).
    static func startedBy(_ row: RolloutStore.RolloutRow, _ caller: Caller) -> Bool {
        caller.name == row.actor || caller.name == row.reporter || row.actor.hasSuffix(":" + caller.name)
    }

    static func id(_ context: ConsoleContext, of what: String = "rollout") throws -> Int {
        guard let text = context.parameters.get("id"), let id = Int(text), id > 0 else {
            throw APIError(.badRequest, "the \(what) id must be a positive number", field: "id")
        }
        return id
    }

    static func integer(_ text: String?, name: String, range: ClosedRange<Int>) throws -> Int? {
        guard let text else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw APIError(.badRequest, "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)", field: name)
        }
        return value
    }

    static func isName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 100 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    /// What a report must hold before anything of it is stored.
    static func validate(_ report: RunReport) throws {
        guard !report.run.isEmpty, report.run.count <= 100, report.run.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw APIError(.badRequest, "run must be 1 to 100 letters, digits or dashes (a UUID)", field: "run")
        }
        guard isName(report.service) else { throw APIError(.badRequest, "service is not a name (letters, digits, - _ .)", field: "service") }
        guard VersionName.isValid(report.version) else { throw APIError(.badRequest, "version may hold only letters, digits and - _ . +", field: "version") }
        guard !report.environments.isEmpty, report.environments.allSatisfy(isName) else {
            throw APIError(.badRequest, "environments must list the run's environments by name", field: "environments")
        }
        let outcomes: Set<String> = ["running", "promoted", "rolled_back", "failed", "crashed"]
        guard outcomes.contains(report.rollout.outcome) else {
            throw APIError(.badRequest, "rollout.outcome must be one of \(outcomes.sorted().joined(separator: ", "))", field: "rollout.outcome")
        }
        for (i, d) in report.deployments.enumerated() where !outcomes.contains(d.outcome) {
            throw APIError(.badRequest, "deployments[\(i)].outcome must be one of \(outcomes.sorted().joined(separator: ", "))", field: "deployments[\(i)].outcome")
        }
        guard report.actor.count <= 200, report.host.count <= 255 else { throw APIError(.badRequest, "actor or host is too long", field: "actor") }
        // Times are compared as text: only ISO 8601 in UTC sorts right.
        func time(_ text: String?, _ field: String) throws {
            guard let text else { return }
            guard text.hasSuffix("Z"), Clock.date(text) != nil else { throw APIError(.badRequest, "\(field) must be an ISO 8601 time in UTC, e.g. 2026-11-30T09:00:00Z", field: field) }
        }
        try time(report.rollout.startedAt, "rollout.started_at")
        try time(report.rollout.endedAt, "rollout.ended_at")
        try time(report.rollout.heartbeatAt, "rollout.heartbeat_at")
        try time(report.change?.commitTime, "change.commit_time")
        for (i, d) in report.deployments.enumerated() {
            try time(d.startedAt, "deployments[\(i)].started_at")
            try time(d.endedAt, "deployments[\(i)].ended_at")
            guard isName(d.environment) else { throw APIError(.badRequest, "deployments[\(i)].environment is not a name", field: "deployments[\(i)].environment") }
            guard VersionName.isValid(d.version), d.previousVersion.map(VersionName.isValid) ?? true else {
                throw APIError(.badRequest, "deployments[\(i)] names a version with characters other than letters, digits and - _ . +", field: "deployments[\(i)].version")
            }
            for pool in [d.pool, d.previousPool].compactMap({ $0 }) where !isName(pool) {
                throw APIError(.badRequest, "deployments[\(i)] names a pool that is not a name", field: "deployments[\(i)].pool")
            }
        }
        for (i, s) in report.steps.enumerated() where s.server.map({ !isName($0) }) ?? false {
            throw APIError(.badRequest, "steps[\(i)].server is not a server name", field: "steps[\(i)].server")
        }
    }
}
