import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardConsoleAPI

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

/// Runs one rollout: locks every environment's proxy, then promotes the version through
/// the environments in order with each one's strategy, analysing as it goes, and rolls
/// back where it fails. Only the admin API is used, as an operator would.
///
/// This file holds the lifecycle: locks, environments in order, the outcome and its
/// history records, hooks. The controls (`RolloutControls.swift`), the wait loop and live
/// line (`RolloutLiveView.swift`), admin calls and health waits (`RolloutAdmin.swift`),
/// analysis over time (`RolloutAnalysis.swift`) and the strategies (`CanaryStrategy.swift`,
/// `BlueGreenStrategy.swift`, `RollingStrategy.swift`) are extensions and types of their own.
public final class Rollout {
    public struct Options {
        public var actor: String
        public var json = false
        /// The run's identity, by which a console knows it.
        public var run = UUID().uuidString.lowercased()
        /// Where the change comes from (commit, ticket...), recorded with the rollout.
        public var change: ChangeInfo?
        /// The plan file's content, recorded with the rollout (a console keeps it to abort a crashed run).
        public var planText: String?
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
    var notifier: Notifier?
    var clients: [String: AdminClient] = [:]
    var rolloutID = 0
    var deploymentID: Int?
    var currentEnvironment: String?
    /// What pause, resume, promote and approve have left for the rollout.
    var controls = RolloutControls()
    var lockKeeper: LockKeeper?
    /// Set while a rollback runs: controls and signals wait until it is done.
    var inRollback = false
    let analyzer: Analyzer
    /// What the live terminal line shows.
    var live = LiveStatus()
    /// What the heartbeat records, shared with the lock keeper's thread.
    var liveProgress: LiveProgress?
    /// Time spent paused so far; pauses and watches do not count it.
    var pausedSeconds = 0.0
    let environment = ProcessInfo.processInfo.environment

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
        if rolloutID > 0 {
            history.recordEvent(rollout: rolloutID, time: event.time, kind: kind.rawValue, environment: currentEnvironment, message: text,
                                fields: event.fieldsJSON)
        }
        if event.isNotified { notifier?.send(event) }
    }

    /// Prints a line from another thread of this process (the console reporter) as a notice.
    public var notices: @Sendable (String) -> Void {
        let printer = self.printer
        return { printer.notice($0) }
    }

    func step(_ kind: String, _ detail: String, weight: String? = nil, analysis: AnalysisResult? = nil, server: String? = nil) {
        if let deploymentID { history.recordStep(deployment: deploymentID, kind: kind, detail: detail, weight: weight, analysis: analysis, server: server) }
    }

    // MARK: Running

    public func run() -> RolloutOutcome {
        history.markCrashed(service: plan.service)
        if let running = history.runningRollout(service: plan.service) {
            return refuse("rollout #\(running["id"] ?? "?") of \(plan.service) (version \(running["version"] ?? "?"), by \(running["actor"] ?? "?"), pid \(running["pid"] ?? "?")) is running since \(running["started_at"] ?? "?")")
        }
        var connected: [(env: DeployPlan.Environment, client: AdminClient)] = []
        for env in plan.environments {
            do { connected.append((env, try AdminClient(environment: env, actor: options.actor, processEnvironment: environment))) }
            catch { return refuse(error.description) }
        }
        // Every proxy must know the service before anything starts.
        for (env, client) in connected {
            do {
                let status = try client.api.status()
                guard status.services[plan.service] != nil else {
                    return refuse("\(env.name) (\(env.admin)) has no service \(plan.service); services there: \(status.services.keys.sorted().joined(separator: ", "))")
                }
                if let pool = env.pool, status.pools[pool] == nil {
                    return refuse("\(env.name): pool \(pool) is not configured there; pools: \(status.poolNames.joined(separator: ", "))")
                }
            } catch {
                return refuse(error.description)
            }
        }
        // The lock covers the whole promotion path: a second rollout of the service is refused everywhere.
        for (env, client) in connected {
            clients[env.name] = client
            do {
                client.lockToken = try client.api.lock(owner: lockOwner, ttl: "\(plan.lockTTL.milliseconds)ms", reason: lockReason).token
            } catch {
                for (locked, _) in connected { releaseLock(locked.name) }
                if case .refused(423, _, let detail) = error { return refuse("\(env.name) is locked: \(detail)") }
                return refuse("\(env.name): \(error)")
            }
        }
        rolloutID = history.startRollout(service: plan.service, version: version, actor: options.actor, plan: plan.path, run: options.run,
                                         environments: plan.environments.map(\.name), planText: options.planText, change: options.change)
        for (env, client) in connected { history.saveLock(rollout: rolloutID, environment: env.name, token: client.lockToken ?? "") }
        let progress = LiveProgress()
        liveProgress = progress
        let (history, id) = (self.history, rolloutID)
        startLockKeeper(connected, reason: lockReason) { let (env, text) = progress.get(); history.heartbeat(id, environment: env, progress: text) }
        notifier = Notifier(plan: plan, environment: environment) { [printer] in printer.warn($0) }
        emit(.started, "rollout #\(rolloutID): \(plan.service) \(version) through \(plan.environments.map(\.name).joined(separator: " → ")) by \(options.actor)",
             ["rollout": rolloutID, "run": options.run, "environments": plan.environments.map(\.name)])
        let outcome = runEnvironments()
        lockKeeper?.stop()
        for env in plan.environments { releaseLock(env.name) }
        printer.end()
        switch outcome {
        case .promoted:
            if plan.gitTag { tagInGit() }
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
        notifier?.finish(timeout: 10)
        return outcome
    }

    // MARK: Locks

    var lockOwner: String { "switchyard-deploy/\(plan.service)" }
    var lockReason: String { "rollout of \(plan.service) version \(version) by \(options.actor) (pid \(getpid()) on \(History.hostName))" }

    /// Renews the locks `clients` hold on a thread of its own, with copies of the clients:
    /// an admin client is not shared between threads.
    func startLockKeeper(_ clients: [(env: DeployPlan.Environment, client: AdminClient)], reason: String, heartbeat: @escaping @Sendable () -> Void) {
        var keeperClients: [(environment: String, client: AdminClient)] = []
        for (env, client) in clients where client.lockToken != nil {
            guard let copy = try? AdminClient(environment: env, actor: options.actor, processEnvironment: environment) else { continue }
            copy.lockToken = client.lockToken
            keeperClients.append((env.name, copy))
        }
        lockKeeper = LockKeeper(locks: keeperClients, ttl: plan.lockTTL, owner: lockOwner, reason: reason,
                                heartbeat: heartbeat, warn: { [printer] in printer.warn($0) })
    }

    func refuse(_ reason: String) -> RolloutOutcome {
        emit(.refused, "refused: \(reason)", ["reason": reason])
        return .error(reason)
    }

    /// Releases the lock held in `environment`; false when it was not held or could not be released.
    @discardableResult
    func releaseLock(_ environment: String) -> Bool {
        guard let client = clients[environment], client.lockToken != nil else { return false }
        defer { client.lockToken = nil }
        do {
            try client.api.unlock()
            if rolloutID > 0 { history.releaseLock(rollout: rolloutID, environment: environment) }
            return true
        } catch {
            emit(.notice, "warning: could not release the lock of \(environment): \(error); it expires by itself after \(plan.lockTTL.milliseconds / 1000)s")
            return false
        }
    }

    // MARK: Environments in order

    func runEnvironments() -> RolloutOutcome {
        if !plan.hooks.preDeploy.isEmpty {
            if let failure = runHooks("pre_deploy", plan.hooks.preDeploy, values: baseValues(pool: nil, env: nil)) {
                return .rolledBack("pre_deploy hook failed before any traffic moved: \(failure)")
            }
        }
        for (index, env) in plan.environments.enumerated() {
            currentEnvironment = env.name
            // A full promotion belongs to the environment it was asked for.
            controls.fullPromotionPending = false
            guard let client = clients[env.name] else { return .error("\(env.name): no admin client (a bug: every environment gets one before the locks)") }
            let service: AdminStatus.Service?
            do { service = try client.api.status().services[plan.service] } catch { return .error("\(error)") }
            let active = service?.active ?? ""
            guard let target = Self.targetPool(strategy: env.strategy, planned: env.pool, active: active, standby: service?.standby) else {
                return .error("\(env.name): service \(plan.service) has no standby pool to deploy \(version) to (active: \(active)); add standby to its configuration or pool: to the plan")
            }
            let previousVersion = history.lastPromotedVersion(service: plan.service, environment: env.name)
            let deployment = Deployment(environment: env, client: client, pool: target,
                                        previousPool: env.strategy == .rolling ? nil : active, previousVersion: previousVersion)
            let id = history.startDeployment(rollout: rolloutID, service: plan.service, environment: env.name, version: version,
                                             strategy: env.strategy.rawValue, actor: options.actor, pool: target,
                                             previousPool: deployment.previousPool, previousVersion: previousVersion)
            deploymentID = id
            history.heartbeat(rolloutID, environment: env.name, progress: "starting")
            emit(.environment, "\(env.name): \(env.strategy.rawValue) of \(version) to pool \(target) (\(index + 1) of \(plan.environments.count); active now: \(active))",
                 ["strategy": env.strategy.rawValue, "pool": target, "active": active])
            do {
                if env.manualApproval { try waitForApproval(env) }
                try Self.strategy(env.strategy, for: deployment).deploy(in: self)
            } catch let failure as Failure {
                history.finishDeployment(id, outcome: failure.unreachable ? "failed" : "rolled_back", reason: failure.reason)
                if failure.unreachable { return .error(failure.reason) }
                emit(.rolledBack, "\(env.name): rolled back: \(failure.reason)", ["reason": failure.reason])
                return .rolledBack("\(env.name): \(failure.reason)")
            } catch {
                return .error("\(error)")
            }
            history.finishDeployment(id, outcome: "promoted", reason: nil)
            emit(.promoted, "\(env.name): \(version) is live on pool \(target)", ["pool": target])
            if !plan.hooks.postDeploy.isEmpty, let failure = runHooks("post_deploy", plan.hooks.postDeploy, values: baseValues(pool: target, env: env)) {
                emit(.notice, "warning: post_deploy hook failed (the version stays): \(failure)")
            }
        }
        return .promoted
    }

    /// The plan lives in the application's repository: tag that repository's HEAD.
    func tagInGit() {
        let directory = (plan.path as NSString).deletingLastPathComponent
        let r = HookRunner.run("git -C {repository} tag -a {version} -m {message}",
                               values: ["repository": directory.isEmpty ? "." : directory, "version": version,
                                        "message": "switchyard rollout #\(rolloutID) of \(plan.service)"], timeout: .seconds(30))
        history.recordHook(rollout: rolloutID, deployment: nil, phase: "git_tag", command: "git tag -a \(version)", result: r)
        emit(.notice, r.exitCode == 0 ? "tagged \(version) in git" : "warning: git tag \(version) failed (exit \(r.exitCode)): \(Self.lastLine(r.output))")
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
}
