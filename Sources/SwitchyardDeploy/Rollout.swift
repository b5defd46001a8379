import Foundation
import Glibc
import SwitchyardConfig

/// How a rollout ended; the process exit code follows it.
public enum RolloutOutcome: Equatable, Sendable {
    /// Every environment runs the new version.
    case promoted
    /// The new version was turned back (analysis, guard, hook, smoke test or abort); traffic is on the previous version.
    case rolledBack(String)
    /// Refused before anything moved (lock held, bad plan, proxy unreachable), or the
    /// orchestrator lost the proxy and cannot vouch for where traffic is.
    case error(String)

    public var exitCode: Int32 {
        switch self {
        case .promoted: return 0
        case .rolledBack: return 1
        case .error: return 2
        }
    }
}

/// The environment and phase of a running rollout, read by the heartbeat thread.
final class LiveProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var environment: String?
    private var text = "starting"
    func set(_ environment: String?, _ text: String) { lock.lock(); self.environment = environment; self.text = text; lock.unlock() }
    func get() -> (String?, String) { lock.lock(); defer { lock.unlock() }; return (environment, text) }
}

/// Set by SIGINT/SIGTERM: the rollout rolls back and exits, as an abort would.
nonisolated(unsafe) public var rolloutInterrupted: sig_atomic_t = 0

/// Runs one rollout: locks every environment's proxy, then promotes the version through
/// the environments in order with each one's strategy, analysing as it goes, and rolls
/// back where it fails. Only the admin API is used, as an operator would.
public final class Rollout {
    public struct Options {
        public var actor: String
        public var json = false
        public init(actor: String, json: Bool) { self.actor = actor; self.json = json }
    }

    struct Failure: Error {
        let reason: String
        /// The proxy could not be reached: where traffic is may not be known.
        var unreachable = false
    }

    /// What the central wait loop returns when it ends early.
    enum Interruption: Error { case abort(String), promoteFull }

    let plan: DeployPlan
    let version: String
    let options: Options
    let history: History
    let printer: ProgressPrinter
    var notifier: Notifier!
    var clients: [String: AdminClient] = [:]
    var rolloutID = 0
    var deploymentID: Int?
    var currentEnvironment: String?
    var paused = false
    var approvals: Set<String> = []
    var skipWait = false
    var lockKeeper: LockKeeper?
    var inRollback = false
    /// The environment waiting for `deploy approve`.
    var awaitingApproval: String?
    let analyzer: Analyzer
    /// The length of the pause or watch `live.until` ends.
    var stageLength = 0.0
    /// What the heartbeat records, shared with the lock keeper's thread.
    var liveProgress: LiveProgress?
    /// Time spent paused so far; pauses and watches do not count it.
    var pausedSeconds = 0.0
    let environment = ProcessInfo.processInfo.environment
    /// What the live terminal line shows. `span` is the share of the environment's progress
    /// the current stage covers, starting at `progress`; `until` is when the current pause ends.
    var live: (phase: String, progress: Double, span: Double, weight: String?, errorRate: Double?, p99: Double?, until: Date?) = ("starting", 0, 0, nil, nil, nil, nil)

    public init(plan: DeployPlan, version: String, options: Options, history: History) {
        self.plan = plan
        self.version = version
        self.options = options
        self.history = history
        printer = ProgressPrinter(json: options.json)
        analyzer = Analyzer(plan.analysis)
    }

    // MARK: Events

    func emit(_ kind: DeployEvent.Kind, _ text: String, _ fields: [String: Any] = [:]) {
        let event = DeployEvent(kind: kind, service: plan.service, version: version, environment: currentEnvironment, text: text, fields: fields)
        printer.print(event)
        if event.isNotified { notifier?.send(event) }
    }

    func step(_ kind: String, _ detail: String, weight: String? = nil, analysis: AnalysisResult? = nil) {
        if let deploymentID { history.recordStep(deployment: deploymentID, kind: kind, detail: detail, weight: weight, analysis: analysis) }
    }

    // MARK: Running

    public func run() -> RolloutOutcome {
        history.markCrashed(service: plan.service)
        if let running = history.runningRollout(service: plan.service) {
            return refuse("rollout #\(running["id"] ?? "?") of \(plan.service) (version \(running["version"] ?? "?"), by \(running["actor"] ?? "?"), pid \(running["pid"] ?? "?")) is running since \(running["started_at"] ?? "?")")
        }
        for env in plan.environments {
            do { clients[env.name] = try AdminClient(environment: env, actor: options.actor, processEnvironment: environment) }
            catch { return refuse(error.description) }
        }
        // Every proxy must know the service before anything starts.
        for env in plan.environments {
            do {
                let status = try clients[env.name]!.status()
                guard status.service(plan.service) != nil else {
                    return refuse("\(env.name) (\(env.admin)) has no service \(plan.service); services there: \(((status.raw["services"] as? [String: Any]) ?? [:]).keys.sorted().joined(separator: ", "))")
                }
                if let pool = env.pool, !status.pools.contains(pool) {
                    return refuse("\(env.name): pool \(pool) is not configured there; pools: \(status.pools.joined(separator: ", "))")
                }
            } catch {
                return refuse(error.description)
            }
        }
        // The lock covers the whole promotion path: a second rollout of the service is refused everywhere.
        var locked: [String] = []
        for env in plan.environments {
            let client = clients[env.name]!
            do {
                let answer = try client.call("POST", "/v1/lock", body: ["owner": lockOwner, "ttl": "\(plan.lockTTL.milliseconds)ms", "reason": lockReason])
                client.lockToken = answer["token"] as? String
                locked.append(env.name)
            } catch {
                for name in locked { releaseLock(name) }
                if case .refused(423, _, let detail) = error { return refuse("\(env.name) is locked: \(detail)") }
                return refuse("\(env.name): \(error)")
            }
        }
        rolloutID = history.startRollout(service: plan.service, version: version, actor: options.actor, plan: plan.path)
        for name in locked { history.saveLock(rollout: rolloutID, environment: name, token: clients[name]!.lockToken ?? "") }
        var keeperClients: [(environment: String, client: AdminClient)] = []
        for env in plan.environments {
            guard let copy = try? AdminClient(environment: env, actor: options.actor, processEnvironment: environment) else { continue }
            copy.lockToken = clients[env.name]!.lockToken
            keeperClients.append((env.name, copy))
        }
        let (history, printer, id) = (self.history, self.printer, rolloutID)
        let progress = LiveProgress()
        liveProgress = progress
        lockKeeper = LockKeeper(locks: keeperClients, ttl: plan.lockTTL, owner: lockOwner, reason: lockReason,
            heartbeat: { let (env, text) = progress.get(); history.heartbeat(id, environment: env, progress: text) },
            warn: { printer.warn($0) })
        notifier = Notifier(plan: plan, environment: environment) { [printer] in printer.warn($0) }
        emit(.started, "rollout #\(rolloutID): \(plan.service) \(version) through \(plan.environments.map(\.name).joined(separator: " → ")) by \(options.actor)",
             ["rollout": rolloutID, "environments": plan.environments.map(\.name)])
        let outcome = runEnvironments()
        lockKeeper?.stop()
        for env in plan.environments { releaseLock(env.name) }
        printer.end()
        switch outcome {
        case .promoted:
            if plan.gitTag {
                // The plan lives in the application's repository: tag that repository's HEAD.
                let directory = (plan.path as NSString).deletingLastPathComponent
                let r = HookRunner.run("git -C {repository} tag -a {version} -m {message}",
                                       values: ["repository": directory.isEmpty ? "." : directory, "version": version,
                                                "message": "switchyard rollout #\(rolloutID) of \(plan.service)"], timeout: .seconds(30))
                history.recordHook(rollout: rolloutID, deployment: nil, phase: "git_tag", command: "git tag -a \(version)", result: r)
                emit(.notice, r.exitCode == 0 ? "tagged \(version) in git" : "warning: git tag \(version) failed (exit \(r.exitCode)): \(Self.lastLine(r.output))")
            }
            history.finishRollout(rolloutID, outcome: "promoted", reason: nil)
            currentEnvironment = nil
            emit(.finished, "promoted \(plan.service) \(version) in \(plan.environments.map(\.name).joined(separator: ", "))", ["outcome": "promoted", "rollout": rolloutID])
        case .rolledBack(let reason):
            history.finishRollout(rolloutID, outcome: "rolled_back", reason: reason)
            emit(.finished, "rolled back: \(reason)", ["outcome": "rolled_back", "reason": reason, "rollout": rolloutID])
        case .error(let reason):
            history.finishRollout(rolloutID, outcome: "failed", reason: reason)
            emit(.failed, "failed: \(reason)", ["outcome": "failed", "reason": reason, "rollout": rolloutID])
        }
        notifier.finish(timeout: 10)
        return outcome
    }

    var lockOwner: String { "switchyard-deploy/\(plan.service)" }
    var lockReason: String { "rollout of \(plan.service) version \(version) by \(options.actor) (pid \(getpid()) on \(History.hostName))" }

    func refuse(_ reason: String) -> RolloutOutcome {
        emit(.refused, "refused: \(reason)", ["reason": reason])
        return .error(reason)
    }

    func releaseLock(_ environment: String) {
        guard let client = clients[environment], client.lockToken != nil else { return }
        do {
            try client.call("DELETE", "/v1/lock")
            if rolloutID > 0 { history.releaseLock(rollout: rolloutID, environment: environment) }
        } catch {
            emit(.notice, "warning: could not release the lock of \(environment): \(error); it expires by itself after \(plan.lockTTL.milliseconds / 1000)s")
        }
        client.lockToken = nil
    }

    func runEnvironments() -> RolloutOutcome {
        if !plan.hooks.preDeploy.isEmpty {
            if let failure = runHooks("pre_deploy", plan.hooks.preDeploy, values: baseValues(pool: nil, env: nil)) {
                return .rolledBack("pre_deploy hook failed before any traffic moved: \(failure)")
            }
        }
        for (index, env) in plan.environments.enumerated() {
            currentEnvironment = env.name
            let client = clients[env.name]!
            let status: ProxyStatus
            do { status = try client.status() } catch { return .error("\(error)") }
            let active = status.active(plan.service) ?? ""
            let target: String
            switch env.strategy {
            case .rolling: target = env.pool ?? active
            default:
                guard let t = env.pool ?? status.standby(plan.service), t != active else {
                    return .error("\(env.name): service \(plan.service) has no standby pool to deploy \(version) to (active: \(active)); add standby to its configuration or pool: to the plan")
                }
                target = t
            }
            let previousVersion = history.lastPromotedVersion(service: plan.service, environment: env.name)
            deploymentID = history.startDeployment(rollout: rolloutID, service: plan.service, environment: env.name, version: version,
                                                   strategy: env.strategy.rawValue, actor: options.actor, pool: target,
                                                   previousPool: env.strategy == .rolling ? nil : active, previousVersion: previousVersion)
            history.heartbeat(rolloutID, environment: env.name, progress: "starting")
            emit(.environment, "\(env.name): \(env.strategy.rawValue) of \(version) to pool \(target) (\(index + 1) of \(plan.environments.count); active now: \(active))",
                 ["strategy": env.strategy.rawValue, "pool": target, "active": active])
            do {
                if env.manualApproval { try waitForApproval(env) }
                switch env.strategy {
                case .canary: try runCanary(env, client: client, target: target, active: active)
                case .bluegreen: try runBlueGreen(env, client: client, target: target, active: active)
                case .rolling: try runRolling(env, client: client, pool: target, previousVersion: previousVersion)
                }
            } catch let failure as Failure {
                history.finishDeployment(deploymentID!, outcome: failure.unreachable ? "failed" : "rolled_back", reason: failure.reason)
                if failure.unreachable { return .error(failure.reason) }
                emit(.rolledBack, "\(env.name): rolled back: \(failure.reason)", ["reason": failure.reason])
                return .rolledBack("\(env.name): \(failure.reason)")
            } catch {
                return .error("\(error)")
            }
            history.finishDeployment(deploymentID!, outcome: "promoted", reason: nil)
            emit(.promoted, "\(env.name): \(version) is live on pool \(env.strategy == .rolling ? target : target)", ["pool": target])
            if !plan.hooks.postDeploy.isEmpty, let failure = runHooks("post_deploy", plan.hooks.postDeploy, values: baseValues(pool: target, env: env)) {
                emit(.notice, "warning: post_deploy hook failed (the version stays): \(failure)")
            }
        }
        return .promoted
    }

    // MARK: Hooks

    func baseValues(pool: String?, env: DeployPlan.Environment?) -> [String: String] {
        var values = ["version": version, "service": plan.service, "env": env?.name ?? "", "pool": pool ?? "", "preview_url": env?.previewURL ?? ""]
        values["previous_version"] = env.flatMap { history.lastPromotedVersion(service: plan.service, environment: $0.name) } ?? ""
        return values
    }

    /// Runs hook commands in order; returns why the first failing one failed.
    func runHooks(_ phase: String, _ commands: [String], values: [String: String]) -> String? {
        for command in commands {
            let expanded = HookRunner.expand(command, values: values)
            emit(.hook, "\(phase): \(expanded)", ["phase": phase, "command": expanded])
            let interruptible = !inRollback
            let result = HookRunner.run(command, values: values, timeout: plan.hooks.timeout,
                                        shouldStop: { interruptible && rolloutInterrupted != 0 })
            history.recordHook(rollout: rolloutID, deployment: deploymentID, phase: phase, command: expanded, result: result)
            if result.exitCode != 0 {
                let how = result.interrupted ? "was stopped by a signal to the rollout" : result.timedOut ? "timed out" : "exited with \(result.exitCode)"
                return "\(phase) hook `\(expanded)` \(how): \(Self.lastLine(result.output))"
            }
            emit(.hook, "\(phase): done in \(result.durationMilliseconds)ms", ["phase": phase, "exit_code": 0])
        }
        return nil
    }

    /// "90s", "2.5s".
    static func seconds(_ d: Duration) -> String {
        let ms = d.milliseconds
        return ms % 1000 == 0 ? "\(ms / 1000)s" : String(format: "%.1fs", Double(ms) / 1000)
    }

    static func lastLine(_ text: String) -> String {
        text.split(separator: "\n").last.map { String($0.prefix(300)) } ?? "(no output)"
    }

    // MARK: The wait loop

    /// Waits `seconds` (nil: until promoted), in short ticks: handles controls, renews the
    /// locks, keeps the heartbeat, and calls `tick` (which may throw to end the wait).
    /// Paused time does not count. Returns true when `deploy promote` ended the wait early.
    @discardableResult
    func wait(_ seconds: Double?, tick: (() throws -> Void)? = nil) throws -> Bool {
        var deadline = seconds.map { Date().addingTimeInterval($0) }
        skipWait = false
        while true {
            let before = Date()
            try housekeeping()
            if skipWait { skipWait = false; return true }
            if !paused {
                try tick?()
                if let deadline, Date() >= deadline { return false }
            }
            let stageShare = live.until.map { until -> Double in
                guard live.span > 0 else { return 0 }
                return live.span * (1 - min(1, max(0, until.timeIntervalSinceNow) / max(0.001, stageLength)))
            } ?? 0
            printer.status(environment: currentEnvironment ?? "-", phase: paused ? "PAUSED (deploy resume)" : live.phase, progress: live.progress + stageShare,
                           weight: live.weight, errorRate: live.errorRate, p99: live.p99, remaining: live.until?.timeIntervalSinceNow)
            liveProgress?.set(currentEnvironment, (paused ? "paused: " : "") + live.phase + (live.weight.map { " at \($0)" } ?? ""))
            usleep(200_000)
            if paused {
                pausedSeconds += Date().timeIntervalSince(before)
                if deadline != nil { deadline = deadline!.addingTimeInterval(Date().timeIntervalSince(before)) }
            }
        }
    }

    /// Controls; throws `Interruption` for abort and full promotion. A rollback in progress
    /// is not interrupted: signals and controls wait until it is done.
    func housekeeping() throws {
        guard !inRollback else { return }
        if rolloutInterrupted != 0 { throw Interruption.abort("interrupted by a signal (SIGINT/SIGTERM)") }
        for control in history.pendingControls(rollout: rolloutID) {
            let id = control["id"] as! Int
            let command = control["command"] as? String ?? ""
            let argument = control["argument"] as? String
            let actor = control["actor"] as? String ?? "?"
            switch command {
            case "pause":
                paused = true
                history.handleControl(id, result: "paused")
                step("pause", "paused by \(actor)")
                emit(.paused, "paused by \(actor); `switchyard deploy resume` continues", ["actor": actor])
            case "resume":
                paused = false
                history.handleControl(id, result: "resumed")
                step("resume", "resumed by \(actor)")
                emit(.resumed, "resumed by \(actor)", ["actor": actor])
            case "approve":
                // Only the environment that waits can be approved: no approval in advance.
                guard let waiting = awaitingApproval else {
                    history.handleControl(id, result: "refused: no environment waits for approval (now: \(currentEnvironment ?? "-"), \(live.phase))")
                    continue
                }
                if let argument, !argument.isEmpty, argument != waiting {
                    history.handleControl(id, result: "refused: \(waiting) waits for approval, not \(argument)")
                    continue
                }
                approvals.insert(waiting)
                history.handleControl(id, result: "approved \(waiting)")
                emit(.approved, "\(waiting) approved by \(actor)", ["actor": actor])
            case "promote":
                // A manual approval is passed with approve, never by skipping past it.
                if let waiting = awaitingApproval {
                    history.handleControl(id, result: "refused: \(waiting) waits for approval; use `switchyard deploy approve`")
                    continue
                }
                history.handleControl(id, result: argument == "full" ? "promoting fully" : "skipping to the next step")
                step("promote", "\(argument == "full" ? "full promotion" : "next step") by \(actor)")
                emit(.notice, argument == "full" ? "full promotion by \(actor): remaining steps and analysis skipped" : "promoted to the next step by \(actor)")
                if argument == "full" { throw Interruption.promoteFull }
                paused = false
                skipWait = true
            case "abort":
                history.handleControl(id, result: "rolling back")
                throw Interruption.abort("aborted by \(actor)")
            default:
                history.handleControl(id, result: "unknown command")
            }
        }
    }

    func waitForApproval(_ env: DeployPlan.Environment) throws {
        emit(.approvalNeeded, "\(env.name) waits for approval: switchyard deploy approve \(plan.path)", ["plan": plan.path])
        step("approval", "waiting for approval")
        live.phase = "waiting for approval (deploy approve)"
        awaitingApproval = env.name
        defer { awaitingApproval = nil }
        while !approvals.contains(env.name) {
            do {
                try wait(1)
            } catch Interruption.abort(let reason) {
                throw Failure(reason: "\(reason) while \(env.name) waited for approval; nothing moved there")
            }
        }
        step("approval", "approved")
    }

    // MARK: Admin calls with retries

    /// Retries an admin call for a few seconds (a proxy restarting); then the rollout stops
    /// as an error, because it can no longer vouch for where traffic is. A refusal is final.
    func retrying<T>(_ client: AdminClient, _ what: String, _ call: () throws(AdminFailure) -> T) throws -> T {
        var attempt = 0
        while true {
            do { return try call() }
            catch {
                if case .refused = error { throw Failure(reason: "\(client.environment) refused \(what): \(error)") }
                attempt += 1
                if attempt >= 10 { throw Failure(reason: "\(error); check the proxy, then `switchyard deploy status \(plan.path)`", unreachable: true) }
                usleep(500_000)
            }
        }
    }

    @discardableResult
    func admin(_ client: AdminClient, _ method: String, _ path: String, body: [String: Any]? = nil) throws -> [String: Any] {
        try retrying(client, "\(method) \(path)") { () throws(AdminFailure) in try client.call(method, path, body: body) }
    }

    func status(_ client: AdminClient) throws -> ProxyStatus { ProxyStatus(try admin(client, "GET", "/v1/status")) }

    func metrics(_ client: AdminClient) throws -> MetricsSample {
        try retrying(client, "GET /metrics") { () throws(AdminFailure) in try client.metrics() }
    }

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
            var servers = status.servers(pool).filter { ($0["state"] as? String) != "maint" }
            if let server { servers = servers.filter { $0["name"] as? String == server } }
            let unhealthy = servers.filter { s in
                let h = ProxyStatus.health(s)
                if h == "not checked" { return false }
                if h != "up" { return true }
                if let after, let text = ProxyStatus.lastCheck(s), let checked = parser.date(from: text) { return checked < after }
                return false
            }
            if servers.isEmpty { lastProblem = "pool \(pool) has no servers" }
            else if unhealthy.isEmpty {
                emit(.health, "\(server.map { "\(pool)/\($0)" } ?? "pool \(pool)") is healthy (\(servers.count) server(s))")
                return
            } else {
                lastProblem = unhealthy.map { "\($0["name"] ?? "?"): \(ProxyStatus.health($0)) (\(($0["health"] as? [String: Any])?["last_result"] ?? "-"))" }.joined(separator: ", ")
            }
            if Date().timeIntervalSince(start) * 1000 > Double(env.healthTimeout.milliseconds) {
                throw Failure(reason: "\(server.map { "\(pool)/\($0)" } ?? "pool \(pool)") not healthy within \(env.healthTimeout.milliseconds / 1000)s: \(lastProblem)")
            }
            do { try wait(0.5) } catch Interruption.promoteFull { return }
        }
    }

    // MARK: Analysis over time

    /// Analyses `pool` (against `baseline`) every interval for `duration`, then until the
    /// latest conclusive result is a pass. Throws `Failure` when failed intervals reach the
    /// failure limit, or when `guardCheck` finds the proxy's guard tripped.
    func analyse(_ client: AdminClient, pool: String, server: String? = nil, baseline: String?, duration: Double?,
                 failures: inout Int, label: String, guardCheck: (() throws -> Void)? = nil) throws {
        func counters(_ m: MetricsSample, _ p: String) -> PoolCounters { server != nil && p == pool ? (m.servers["\(p)/\(server!)"] ?? PoolCounters()) : (m.pools[p] ?? PoolCounters()) }
        var start = try metrics(client)
        let began = Date()
        let pausedBefore = pausedSeconds
        let interval = Double(plan.analysis.interval.milliseconds) / 1000
        var lastConclusive: AnalysisResult.Verdict?
        var nextAnalysis = Date().addingTimeInterval(interval)
        var lastGuardCheck = Date()
        var localFailures = failures
        stageLength = duration ?? 0
        live.until = duration.map { Date().addingTimeInterval($0) }
        defer { failures = localFailures; live.until = nil }
        var done = false
        while !done {
            let skipped = try wait(0.2) { [self] in
                if let guardCheck, Date().timeIntervalSince(lastGuardCheck) >= 0.5 {
                    lastGuardCheck = Date()
                    try guardCheck()
                }
                guard Date() >= nextAnalysis else { return }
                nextAnalysis = Date().addingTimeInterval(interval)
                let now = try metrics(client)
                let window = counters(now, pool).since(counters(start, pool))
                let base = baseline.map { counters(now, $0).since(counters(start, $0)) }
                let result = analyzer.judge(window, baseline: base)
                live.errorRate = result.requests > 0 ? result.errorRate : live.errorRate
                live.p99 = result.p99 ?? live.p99
                step("analysis", "\(label): \(result.verdict.rawValue): \(result.summary)", weight: live.weight, analysis: result)
                var fields: [String: Any] = ["verdict": result.verdict.rawValue, "requests": result.requests, "error_rate": result.errorRate]
                if let p99 = result.p99 { fields["p99_ms"] = p99 * 1000 }
                if let b = result.baselineErrorRate { fields["baseline_error_rate"] = b }
                if let w = live.weight { fields["weight"] = w }
                switch result.verdict {
                case .inconclusive:
                    emit(.analysis, "\(label): inconclusive (\(result.summary)); waiting for more traffic", fields)
                case .pass:
                    emit(.analysis, "\(label): pass (\(result.summary))", fields)
                    lastConclusive = .pass
                    start = now
                case .fail:
                    localFailures += 1
                    fields["failures"] = localFailures
                    emit(.analysis, "\(label): FAIL \(localFailures) of \(plan.analysis.failureLimit) (\(result.summary))", fields)
                    lastConclusive = .fail
                    start = now
                    if localFailures >= plan.analysis.failureLimit {
                        throw Failure(reason: "analysis failed \(localFailures) time(s): \(result.reasons.joined(separator: "; "))")
                    }
                }
            }
            let elapsed = Date().timeIntervalSince(began) - (pausedSeconds - pausedBefore)
            live.until = duration.map { Date().addingTimeInterval($0 - elapsed) }
            if let duration, elapsed >= duration && lastConclusive == .pass { done = true }
            if skipped { done = true }
        }
    }

    // MARK: Canary

    func runCanary(_ env: DeployPlan.Environment, client: AdminClient, target: String, active: String) throws {
        var weight = 0
        do {
            let started = Date()
            if let failure = runHooks("start", plan.hooks.start, values: baseValues(pool: target, env: env)) { throw Failure(reason: failure) }
            try waitHealthy(env, client, pool: target, after: started)
            var failures = 0
            let steps = env.steps
            // A trip is new when its time differs from the one before this rollout: no clock
            // comparison between this machine and the proxy's.
            let tripBefore = try status(client).guardTrip(plan.service)?["time"] as? String
            let guardCheck: () throws -> Void = { [self] in
                let s = try status(client)
                if let trip = s.guardTrip(plan.service), let time = trip["time"] as? String, time != tripBefore {
                    let reason = "the proxy's guard tripped: \(trip["reason"] ?? "")"
                    emit(.guardTripped, "\(env.name): \(reason)", ["trip": trip])
                    throw Failure(reason: reason)
                }
                if weight > 0 && s.canaryPool(plan.service) != target {
                    throw Failure(reason: "the canary of \(plan.service) was removed outside this rollout (now: \(s.canaryWeight(plan.service) ?? "none")); see `switchyard ctl audit`")
                }
            }
            for (i, s) in steps.enumerated() {
                live.progress = Double(i) / Double(steps.count)
                live.span = 1 / Double(steps.count)
                switch s {
                case .weight(let w):
                    if weight > 0 { try guardCheck() } // never raise a canary the guard just pulled
                    weight = w
                    var body: [String: Any] = ["pool": target, "weight": BasisPoints.format(w)]
                    if let g = env.guardrail {
                        body["guard"] = ["max_error_rate": BasisPoints.format(g.maxErrorRate), "min_requests": g.minRequests, "window": "\(g.windowMilliseconds)ms"]
                    }
                    try admin(client, "PUT", "/v1/services/\(plan.service)/canary", body: body)
                    live.weight = BasisPoints.format(w)
                    live.phase = "canary step \(i + 1)/\(steps.count)"
                    step("weight", "canary \(target) at \(BasisPoints.format(w))", weight: BasisPoints.format(w))
                    emit(.step, "canary \(target) at \(BasisPoints.format(w)) (step \(i + 1) of \(steps.count))",
                         ["weight": BasisPoints.format(w), "step": i + 1, "steps": steps.count, "pool": target])
                case .pause(let d):
                    live.phase = d == nil ? "paused until `deploy promote`" : "canary step \(i + 1)/\(steps.count): analysing"
                    step("pause", d.map { "pause \($0.milliseconds / 1000)s" } ?? "pause until promoted", weight: live.weight)
                    if d == nil {
                        emit(.paused, "waiting for `switchyard deploy promote \(plan.path)` at \(live.weight ?? "0%")")
                        try wait(nil, tick: guardCheck)
                    } else {
                        emit(.step, "pause \(Self.seconds(d!)) at \(live.weight ?? "0%") (step \(i + 1) of \(steps.count)): analysis every \(Self.seconds(plan.analysis.interval))",
                             ["weight": live.weight ?? "0%", "step": i + 1, "steps": steps.count, "pause_seconds": Double(d!.milliseconds) / 1000])
                        try analyse(client, pool: target, baseline: active, duration: Double(d!.milliseconds) / 1000, failures: &failures,
                                    label: "step \(i + 1)", guardCheck: guardCheck)
                    }
                }
            }
        } catch Interruption.promoteFull {
            // Skip the remaining steps and analysis.
        } catch Interruption.abort(let reason) {
            try rollingBack(reason) { try rollbackCanary(env, client: client, from: weight, target: target) }
        } catch let failure as Failure where !failure.unreachable {
            try rollingBack(failure.reason) { try rollbackCanary(env, client: client, from: weight, target: target) }
        }
        // Promotion: the canary pool becomes active, and the canary is cleared in the same change.
        try admin(client, "POST", "/v1/services/\(plan.service)/flip", body: ["to": target])
        live.weight = "100%"
        live.progress = 1
        step("promote", "pool \(target) is active; \(active) is standby")
        emit(.flipped, "promoted: pool \(target) takes all traffic; \(active) is standby", ["pool": target, "previous": active])
    }

    func rollbackCanary(_ env: DeployPlan.Environment, client: AdminClient, from weight: Int, target: String) throws {
        emit(.rollingBack, "rolling back the canary \(target) from \(BasisPoints.format(weight))")
        if case .gradual(let interval) = env.rollback, weight > 100 {
            var w = weight / 2
            while w >= 100 {
                try admin(client, "PUT", "/v1/services/\(plan.service)/canary", body: ["pool": target, "weight": BasisPoints.format(w)])
                live.weight = BasisPoints.format(w)
                step("rollback", "canary down to \(BasisPoints.format(w))", weight: live.weight)
                emit(.notice, "canary down to \(BasisPoints.format(w))")
                usleep(UInt32(min(Int64(UInt32.max / 1000), interval.milliseconds)) * 1000)
                w /= 2
            }
        }
        try admin(client, "PUT", "/v1/services/\(plan.service)/canary", body: ["weight": "0%"])
        live.weight = "0%"
        step("rollback", "canary weight 0%: all traffic on the stable pool", weight: "0%")
    }

    /// Runs a rollback and then fails with `reason`; a rollback that fails itself makes the
    /// rollout an error (exit 2): traffic may not be where it should be.
    func rollingBack(_ reason: String, _ body: () throws -> Void) throws -> Never {
        inRollback = true
        defer { inRollback = false }
        do {
            try body()
        } catch {
            let why = (error as? Failure)?.reason ?? "\(error)"
            throw Failure(reason: "\(reason); then the rollback failed: \(why); see `switchyard deploy status \(plan.path)`", unreachable: true)
        }
        throw Failure(reason: reason)
    }

    // MARK: Blue/green

    func runBlueGreen(_ env: DeployPlan.Environment, client: AdminClient, target: String, active: String) throws {
        var flipped = false
        do {
            live.phase = "starting \(target)"
            let started = Date()
            if let failure = runHooks("start", plan.hooks.start, values: baseValues(pool: target, env: env)) { throw Failure(reason: failure) }
            try waitHealthy(env, client, pool: target, after: started)
            live.phase = "smoke tests against the preview"
            if let failure = runHooks("smoke", plan.hooks.smoke, values: baseValues(pool: target, env: env)) {
                throw Failure(reason: "\(failure); traffic never moved")
            }
            step("smoke", "smoke tests passed")
            try admin(client, "POST", "/v1/services/\(plan.service)/flip", body: ["to": target])
            flipped = true
            live.progress = 0.5
            live.span = 0.5
            live.weight = "100%"
            step("flip", "pool \(target) is active; \(active) is standby")
            emit(.flipped, "flipped: pool \(target) takes all traffic; \(active) is standby for instant rollback", ["pool": target, "previous": active])
            var failures = 0
            let watch = env.watch.map { Double($0.milliseconds) / 1000 } ?? Double(plan.analysis.interval.milliseconds) / 1000
            let keep = Double(env.keepPrevious.milliseconds) / 1000
            if watch > 0 {
                live.phase = "watching \(target)"
                try analyse(client, pool: target, baseline: nil, duration: watch, failures: &failures, label: "watch")
            }
            if keep > 0 {
                live.phase = "keeping \(active) for rollback"
                emit(.notice, "keeping \(active) as standby for \(Int(keep))s; analysis continues")
                try analyse(client, pool: target, baseline: nil, duration: keep, failures: &failures, label: "keep")
            }
        } catch Interruption.promoteFull {
            if !flipped {
                try admin(client, "POST", "/v1/services/\(plan.service)/flip", body: ["to": target])
                step("flip", "pool \(target) is active (full promotion)")
            }
        } catch let interruption as Interruption {
            guard case .abort(let reason) = interruption else { throw interruption }
            try rollingBack(reason) { if flipped { try flipBack(client, to: active, from: target) } }
        } catch let failure as Failure where !failure.unreachable {
            try rollingBack(failure.reason) { if flipped { try flipBack(client, to: active, from: target) } }
        }
        if !plan.hooks.retire.isEmpty, let failure = runHooks("retire", plan.hooks.retire, values: baseValues(pool: active, env: env)) {
            emit(.notice, "warning: retire hook failed: \(failure)")
        }
    }

    func flipBack(_ client: AdminClient, to active: String, from target: String) throws {
        emit(.rollingBack, "flipping back to \(active)")
        try admin(client, "POST", "/v1/services/\(plan.service)/flip", body: ["to": active])
        live.weight = "0%"
        step("rollback", "flipped back: pool \(active) is active again")
    }

    // MARK: Rolling

    func runRolling(_ env: DeployPlan.Environment, client: AdminClient, pool: String, previousVersion: String?) throws {
        let servers = try status(client).servers(pool).filter { ($0["state"] as? String) == "ready" }
            .map { (name: $0["name"] as? String ?? "", address: $0["address"] as? String ?? "") }
        guard !servers.isEmpty else { throw Failure(reason: "pool \(pool) has no server in rotation to update") }
        var changed: [(name: String, address: String)] = []
        var failures = 0
        do {
            for (i, server) in servers.enumerated() {
                live.progress = Double(i) / Double(servers.count)
                live.span = 1 / Double(servers.count)
                live.phase = "server \(i + 1)/\(servers.count): \(server.name)"
                changed.append(server)
                try replace(env, client, pool: pool, server: server, version: version, label: "\(i + 1) of \(servers.count)")
                live.phase = "server \(i + 1)/\(servers.count): analysing \(server.name)"
                // Passive outlier detection ejecting the new instance is a verdict of its own:
                // an ejected server gets no traffic, so the analysis alone would wait forever.
                func ejections() throws -> Int {
                    try status(client).servers(pool).first { $0["name"] as? String == server.name }?["ejections"] as? Int ?? 0
                }
                let ejectedBefore = try ejections()
                try analyse(client, pool: pool, server: server.name, baseline: nil, duration: Double(plan.analysis.interval.milliseconds) / 1000,
                            failures: &failures, label: "\(pool)/\(server.name)") {
                    let count = try ejections() - ejectedBefore
                    if count > 0 { throw Failure(reason: "passive outlier detection ejected \(pool)/\(server.name) (\(count) time(s)) running \(self.version)") }
                }
            }
        } catch Interruption.promoteFull {
            // The rest of the servers are updated without analysis.
            for server in servers where !changed.contains(where: { $0.name == server.name }) {
                try replace(env, client, pool: pool, server: server, version: version, label: "rest")
            }
        } catch let e where !(e is Failure && (e as! Failure).unreachable) {
            let reason: String
            if let f = e as? Failure { reason = f.reason } else if case Interruption.abort(let r) = e { reason = r } else { reason = "\(e)" }
            try rollingBack(reason) { try restore(env, client, pool: pool, servers: changed, previousVersion: previousVersion, reason: reason) }
        }
    }

    /// Drain, update hook, healthy, undrain: one server.
    func replace(_ env: DeployPlan.Environment, _ client: AdminClient, pool: String, server: (name: String, address: String), version: String, label: String) throws {
        let path = "/v1/pools/\(pool)/servers/\(server.name)"
        try admin(client, "PUT", path, body: ["state": "drain"])
        step("drain", "\(pool)/\(server.name) draining (\(label))")
        emit(.step, "\(pool)/\(server.name): draining (\(label))", ["server": server.name, "pool": pool])
        let deadline = Date().addingTimeInterval(Double(env.drainTimeout.milliseconds) / 1000)
        while true {
            let active = try status(client).servers(pool).first { $0["name"] as? String == server.name }?["active_requests"] as? Int ?? 0
            if active == 0 { break }
            if Date() >= deadline {
                emit(.notice, "warning: \(pool)/\(server.name) still has \(active) request(s) after drain_timeout \(env.drainTimeout.milliseconds / 1000)s; updating anyway")
                break
            }
            usleep(100_000)
        }
        var values = baseValues(pool: pool, env: env)
        values["version"] = version
        values["server"] = server.name
        values["address"] = server.address
        let hookStart = Date()
        if let failure = runHooks("update", plan.hooks.update, values: values) { throw Failure(reason: failure) }
        try waitHealthy(env, client, pool: pool, server: server.name, after: hookStart)
        try admin(client, "PUT", path, body: ["state": "ready"])
        try waitHealthy(env, client, pool: pool, server: server.name)
        step("undrain", "\(pool)/\(server.name) runs \(version) and is back in rotation")
        emit(.step, "\(pool)/\(server.name): \(version) in rotation", ["server": server.name, "pool": pool])
    }

    func restore(_ env: DeployPlan.Environment, _ client: AdminClient, pool: String, servers: [(name: String, address: String)],
                 previousVersion: String?, reason: String) throws {
        emit(.rollingBack, "restoring \(servers.map(\.name).joined(separator: ", ")) after: \(reason)")
        guard let previousVersion else {
            for server in servers {
                try admin(client, "PUT", "/v1/pools/\(pool)/servers/\(server.name)", body: ["state": "drain"])
            }
            step("rollback", "no previous version of \(plan.service) in \(env.name) is recorded; \(servers.map(\.name).joined(separator: ", ")) left drained")
            emit(.notice, "no earlier promoted version in history: \(servers.map(\.name).joined(separator: ", ")) left drained, out of rotation")
            return
        }
        for server in servers.reversed() {
            try replace(env, client, pool: pool, server: server, version: previousVersion, label: "restore to \(previousVersion)")
        }
        step("rollback", "restored \(servers.map(\.name).joined(separator: ", ")) to \(previousVersion)")
    }
}
