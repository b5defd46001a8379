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
            let body = (request.headers[.contentLength] == nil || request.headers[.contentLength] == "0") && request.headers[.transferEncoding] == nil
                ? ControlBody() : try await JSONBody.decode(ControlBody.self, from: request, context: context)
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
                    if self.configuration.separateApprover.contains(environment) && caller.name == row.actor {
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
            let lease = Double(self.configuration.lease.components.seconds)
            let isNew = try await self.rollouts.sql.raw("SELECT id FROM rollouts WHERE run = \(bind: report.run)").first() == nil
            let answer = try await self.rollouts.ingest(report, leaseUntil: Clock.milliseconds(Date().addingTimeInterval(lease)))
            if isNew {
                try await self.access.audit(caller, action: "report", target: "rollout/\(answer.rollout)",
                                            detail: "\(report.service) \(report.version) by \(report.actor) from \(report.host)", outcome: "recorded")
            }
            if let text = report.planText, self.registered[report.service] == nil, let plan = try? PlanLoader.parse(yaml: text, file: report.planPath) {
                self.watcher.watch(plan)
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
        let lease = Double(configuration.lease.components.seconds)
        let id = try await rollouts.createExecuted(run: run, service: service, version: version, environments: chosen, actor: caller.name, kind: kind,
                                                   planPath: plan.path, owner: supervisor.instance,
                                                   leaseUntil: Clock.milliseconds(Date().addingTimeInterval(lease)))
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

    /// Aborts a crashed rollout from this instance, whoever ran it.
    func abortCrashed(_ row: RolloutStore.RolloutRow, caller: Caller) async throws -> Int {
        guard let report = try await rollouts.reconstructedReport(row.id) else { throw APIError(.notFound, "no rollout #\(row.id)") }
        var planPath = registered[row.service]?.path
        if planPath == nil, let text = report.planText {
            let directory = (configuration.dataDirectory as NSString).appendingPathComponent("plans")
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let path = (directory as NSString).appendingPathComponent("\(row.run).yaml")
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw APIError(.internalServerError, "cannot write the plan of rollout #\(row.id) to \(path)")
            }
            planPath = path
        }
        guard let planPath else {
            throw APIError(.conflict, "the console has neither a registered plan for \(row.service) nor the plan the runner used; abort it on the runner: switchyard deploy abort PLAN")
        }
        let controlID = try await rollouts.addControl(rollout: row.id, command: "abort", argument: nil, actor: caller.name)
        try await rollouts.feed(topic: "control", rollout: row.id, service: row.service, environment: nil, kind: "abort",
                                message: "abort of crashed rollout #\(row.id) by \(caller.name): rolling back from the console")
        do {
            try supervisor.startAbort(rollout: row.id, report: report, planPath: planPath, actor: caller.name, control: controlID)
        } catch {
            try await rollouts.answerControl(controlID, result: "refused: \(error.description)")
        }
        return controlID
    }

    static func id(_ context: ConsoleContext) throws -> Int {
        guard let text = context.parameters.get("id"), let id = Int(text), id > 0 else {
            throw APIError(.badRequest, "the rollout id must be a positive number", field: "id")
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
    }
}
