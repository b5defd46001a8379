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
        /// A proxy's refusal, when that is what failed.
        var refusal: AdminFailure? = nil
        /// A proxy was changed outside the rollout.
        var drift = false
    }

    /// What the central wait loop returns when it ends early.
    enum Interruption: Error { case abort(String), promoteFull }

    let plan: DeployPlan
    let version: String
    let options: Options
    let history: History
    let printer: ProgressPrinter
    var notifier: Notifier?
    /// The console the run reports to, for the links in notifications (set before `run`).
    public var console: NotifyConsole?
    /// Each environment's proxies, by environment name.
    var fleets: [String: ProxyFleet] = [:]
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
    /// Proxies known to have no version labels (said once).
    var proxiesWithoutLabels: Set<String> = []
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
        var connected: [ProxyFleet] = []
        for env in plan.environments {
            do { connected.append(ProxyFleet(environment: env, proxies: try AdminClient.all(for: env, actor: options.actor, processEnvironment: environment))) }
            catch { return refuse(error.description) }
        }
        // Every proxy must know the service before anything starts, and an environment's proxies must agree.
        for fleet in connected {
            if let problem = preflight(fleet) { return refuse(problem) }
        }
        // The locks cover the whole promotion path: a second rollout of the service is refused
        // everywhere. They are taken in one order, by address, whatever the plan: two rollouts
        // reaching for the same proxies meet at the first one instead of each holding half.
        let lockOrder = connected.flatMap(\.proxies).sorted { $0.address.description < $1.address.description }
        for client in lockOrder {
            do {
                client.lockToken = try client.api.lock(owner: lockOwner, ttl: "\(plan.lockTTL.milliseconds)ms", reason: lockReason, service: plan.service).token
            } catch {
                for taken in lockOrder where taken.lockToken != nil { release(taken) }
                if case .refused(423, _, let detail) = error { return refuse("\(client.environment) is locked (\(client.address)): \(detail)") }
                return refuse("\(client.label): \(error)")
            }
        }
        for fleet in connected { fleets[fleet.name] = fleet }
        rolloutID = history.startRollout(service: plan.service, version: version, actor: options.actor, plan: plan.path, run: options.run,
                                         environments: plan.environments.map(\.name), planText: options.planText, change: options.change)
        for fleet in connected {
            for client in fleet.proxies { history.saveLock(rollout: rolloutID, environment: lockKey(fleet, client), token: client.lockToken ?? "") }
        }
        let progress = LiveProgress()
        liveProgress = progress
        let (history, id) = (self.history, rolloutID)
        startLockKeeper(connected, reason: lockReason) { let (env, text) = progress.get(); history.heartbeat(id, environment: env, progress: text) }
        let context = NotificationContext(actor: options.actor, run: options.run, rollout: rolloutID, environments: plan.environments.map(\.name),
                                          change: options.change, console: console)
        notifier = Notifier(plan: plan, environment: environment, context: context) { [printer] in printer.warn($0) }
        let many = plan.environments.filter { $0.proxies.count > 1 }
        emit(.started, "rollout #\(rolloutID): \(plan.service) \(version) through \(plan.environments.map(\.name).joined(separator: " → ")) by \(options.actor)"
             + (many.isEmpty ? "" : " (\(many.map { "\($0.name): \($0.proxies.count) proxies" }.joined(separator: ", ")))"),
             ["rollout": rolloutID, "run": options.run, "environments": plan.environments.map(\.name),
              "proxies": Dictionary(uniqueKeysWithValues: plan.environments.map { ($0.name, $0.proxies.map(\.description)) })])
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

    /// Why the rollout cannot start in `fleet`'s environment: a proxy without the service or
    /// the plan's pool, or proxies that disagree on the service's routing. Nil when it can.
    func preflight(_ fleet: ProxyFleet) -> String? {
        let env = fleet.environment
        var views: [ProxyView] = []
        for client in fleet.proxies {
            do {
                let status = try client.api.status()
                guard let service = status.services[plan.service] else {
                    return "\(client.label) has no service \(plan.service); services there: \(status.services.keys.sorted().joined(separator: ", "))"
                }
                if let pool = env.pool, status.pools[pool] == nil {
                    return "\(client.label): pool \(pool) is not configured there; pools: \(status.poolNames.joined(separator: ", "))"
                }
                let pools = env.strategy == .rolling ? [env.pool ?? service.active] : []
                if let routing = ServiceRouting(status: status, service: plan.service, pools: pools) {
                    views.append(ProxyView(client: client, status: status, routing: routing))
                }
            } catch {
                return error.description
            }
        }
        if let disagreement = Self.disagreement(views) {
            return "\(env.name): the proxies disagree: \(disagreement); make them agree with `switchyard ctl` (`deploy status \(plan.path)` shows them), then run again"
        }
        return nil
    }

    // MARK: Locks

    var lockOwner: String { "switchyard-deploy/\(plan.service)" }
    var lockReason: String { "rollout of \(plan.service) version \(version) by \(options.actor) (pid \(getpid()) on \(History.hostName))" }

    /// The history's name for the lock on `client`: the environment's name when it has one
    /// proxy (as histories always had), else "environment@address".
    func lockKey(_ fleet: ProxyFleet, _ client: AdminClient) -> String {
        History.lockKey(environment: fleet.name, proxy: fleet.proxies.count > 1 ? client.address.description : nil)
    }

    /// Renews the locks the fleets' proxies hold on a thread of its own, with copies of the
    /// clients: an admin client is not shared between threads.
    func startLockKeeper(_ fleets: [ProxyFleet], reason: String, heartbeat: @escaping @Sendable () -> Void) {
        var keeperClients: [(environment: String, client: AdminClient)] = []
        for fleet in fleets {
            for client in fleet.proxies where client.lockToken != nil {
                guard let copy = try? client.copy(environment: fleet.environment, processEnvironment: environment) else { continue }
                keeperClients.append((client.label, copy))
            }
        }
        lockKeeper = LockKeeper(locks: keeperClients, ttl: plan.lockTTL, owner: lockOwner, reason: reason, service: plan.service,
                                heartbeat: heartbeat, warn: { [printer] in printer.warn($0) })
    }

    func refuse(_ reason: String) -> RolloutOutcome {
        emit(.refused, "refused: \(reason)", ["reason": reason])
        return .error(reason)
    }

    /// Releases the lock one proxy holds; false when it was not held or could not be released.
    @discardableResult
    func release(_ client: AdminClient) -> Bool {
        guard client.lockToken != nil else { return false }
        defer { client.lockToken = nil }
        do {
            try client.api.unlock(service: plan.service)
            return true
        } catch {
            emit(.notice, "warning: could not release the lock of \(client.label): \(error); it expires by itself after \(plan.lockTTL.milliseconds / 1000)s")
            return false
        }
    }

    /// Releases the locks held on `environment`'s proxies; false when one was not held or
    /// could not be released.
    @discardableResult
    func releaseLock(_ environment: String) -> Bool {
        guard let fleet = fleets[environment] else { return false }
        var all = true
        for client in fleet.proxies {
            let key = lockKey(fleet, client)
            if release(client) {
                if rolloutID > 0 { history.releaseLock(rollout: rolloutID, environment: key) }
            } else {
                all = false
            }
        }
        return all
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
            guard let fleet = fleets[env.name], let first = fleet.proxies.first else {
                return .error("\(env.name): no admin client (a bug: every environment gets one before the locks)")
            }
            let service: AdminStatus.Service?
            do { service = try status(first).services[plan.service] } catch { return .error((error as? Failure)?.reason ?? "\(error)") }
            let active = service?.active ?? ""
            guard let target = Self.targetPool(strategy: env.strategy, planned: env.pool, active: active, standby: service?.standby) else {
                return .error("\(env.name): service \(plan.service) has no standby pool to deploy \(version) to (active: \(active)); add standby to its configuration or pool: to the plan")
            }
            fleet.trackedPools = env.strategy == .rolling ? [target] : []
            let previousVersion = history.lastPromotedVersion(service: plan.service, environment: env.name)
            let deployment = Deployment(environment: env, fleet: fleet, pool: target,
                                        previousPool: env.strategy == .rolling ? nil : active, previousVersion: previousVersion)
            let id = history.startDeployment(rollout: rolloutID, service: plan.service, environment: env.name, version: version,
                                             strategy: env.strategy.rawValue, actor: options.actor, pool: target,
                                             previousPool: deployment.previousPool, previousVersion: previousVersion,
                                             proxies: env.proxies.map(\.description))
            deploymentID = id
            history.heartbeat(rolloutID, environment: env.name, progress: "starting")
            var fields: [String: Any] = ["strategy": env.strategy.rawValue, "pool": target, "active": active]
            if env.proxies.count > 1 { fields["proxies"] = env.proxies.map(\.description) }
            emit(.environment, "\(env.name): \(env.strategy.rawValue) of \(version) to pool \(target) (\(index + 1) of \(plan.environments.count); active now: \(active))"
                 + (env.proxies.count > 1 ? " on \(env.proxies.count) proxies" : ""), fields)
            let strategy = Self.strategy(env.strategy, for: deployment)
            do {
                if env.manualApproval { try waitForApproval(env) }
                // Where each proxy is, after any wait: nothing moves where they disagree.
                do { try survey(fleet) } catch let failure as Failure {
                    history.finishDeployment(id, outcome: "failed", reason: failure.reason)
                    return .error(failure.reason)
                }
                if !env.preDeploy.isEmpty, let failure = runHooks("pre_deploy", env.preDeploy, values: baseValues(pool: target, env: env)) {
                    throw Failure(reason: "pre_deploy hook failed before any traffic moved in \(env.name): \(failure)")
                }
                try strategy.deploy(in: self)
            } catch let failure as Failure {
                return ended(deployment: id, env, failure)
            } catch {
                history.finishDeployment(id, outcome: "failed", reason: "\(error)")
                return .error("\(error)")
            }
            emit(.promoted, "\(env.name): \(version) is live on pool \(target)", ["pool": target])
            if !plan.hooks.postDeploy.isEmpty, let failure = runHooks("post_deploy", plan.hooks.postDeploy, values: baseValues(pool: target, env: env)) {
                emit(.notice, "warning: post_deploy hook failed (the version stays): \(failure)")
            }
            if let bake = env.bake {
                do { try self.bake(strategy, for: bake) } catch let failure as Failure {
                    return ended(deployment: id, env, failure)
                } catch {
                    history.finishDeployment(id, outcome: "failed", reason: "\(error)")
                    return .error("\(error)")
                }
            }
            strategy.finish(in: self)
            history.finishDeployment(id, outcome: "promoted", reason: nil)
            if !env.postPromote.isEmpty, let failure = runHooks("post_promote", env.postPromote, values: baseValues(pool: target, env: env)) {
                emit(.notice, "warning: post_promote hook failed (the version stays): \(failure)")
            }
        }
        return .promoted
    }

    /// Records how an environment ended with `failure` and what the rollout's outcome is.
    func ended(deployment id: Int, _ env: DeployPlan.Environment, _ failure: Failure) -> RolloutOutcome {
        history.finishDeployment(id, outcome: failure.unreachable ? "failed" : "rolled_back", reason: failure.reason)
        if failure.unreachable { return .error(failure.reason) }
        emit(.rolledBack, "\(env.name): rolled back: \(failure.reason)", ["reason": failure.reason])
        return .rolledBack("\(env.name): \(failure.reason)")
    }

    /// After an environment is promoted, analysis keeps watching the promoted pool for
    /// `duration` (then until its latest conclusive result is a pass); a failure, an abort or
    /// a signal puts the previous version back. `deploy promote` ends the bake early.
    func bake(_ strategy: any RolloutStrategy, for duration: Duration) throws {
        let deployment = strategy.deployment
        let env = deployment.environment
        live.phase = "baking"
        live.progress = 1
        live.span = 0
        step("bake", "baking \(Self.seconds(duration)): analysis of \(deployment.pool) continues")
        emit(.notice, "\(env.name): baking \(version) for \(Self.seconds(duration)) before \(nextEnvironment(after: env).map { "\($0) starts" } ?? "the rollout ends"); "
             + "a failure puts the previous version back", ["bake_seconds": Double(duration.milliseconds) / 1000])
        var failures = 0
        var endedEarly = false
        do {
            endedEarly = try analyse(deployment.fleet, pool: deployment.pool, baseline: nil, duration: Double(duration.milliseconds) / 1000,
                                     failures: &failures, label: "bake")
        } catch Interruption.promoteFull {
            // Skips the rest of the bake, as it skips the rest of an environment.
            endedEarly = true
        } catch {
            guard let reason = Self.rollbackReason(error) else { throw error }
            try rollingBack("bake: \(reason)") { try strategy.rollBackPromotion(in: self) }
        }
        let outcome = endedEarly ? "bake ended early by `deploy promote`" : "bake passed"
        step("bake", outcome)
        emit(.notice, "\(env.name): \(outcome)")
    }

    func nextEnvironment(after env: DeployPlan.Environment) -> String? {
        guard let index = plan.environments.firstIndex(where: { $0.name == env.name }), index + 1 < plan.environments.count else { return nil }
        return plan.environments[index + 1].name
    }

    /// Labels `pool` with `version` on every proxy of the environment (status, metrics and
    /// the access log show it). A label is information: a proxy that refuses it, or has no
    /// labels, is reported and the rollout goes on.
    func labelVersion(_ fleet: ProxyFleet, pool: String, version: String) {
        for client in fleet.proxies {
            do {
                try client.api.setVersion(pool: pool, version: version)
            } catch .refused(404, "no such endpoint", _) {
                // A proxy of an older release, met mid-upgrade of the fleet: it simply has no labels.
                if !proxiesWithoutLabels.contains(client.address.description) {
                    proxiesWithoutLabels.insert(client.address.description)
                    emit(.notice, "\(client.label) has no version labels (an older proxy); pools there are not labelled")
                }
            } catch {
                emit(.notice, "warning: \(client.label) did not label pool \(pool) with \(version): \(error)")
            }
        }
    }

    /// The plan lives in the application's repository: tag that repository's HEAD, and push
    /// the tag when the plan says where.
    func tagInGit() {
        let directory = (plan.path as NSString).deletingLastPathComponent
        let repository = directory.isEmpty ? "." : directory
        let r = HookRunner.run("git -C {repository} tag -a {version} -m {message}",
                               values: ["repository": repository, "version": version,
                                        "message": "switchyard rollout #\(rolloutID) of \(plan.service)"], timeout: .seconds(30))
        history.recordHook(rollout: rolloutID, deployment: nil, phase: "git_tag", command: "git tag -a \(version)", result: r)
        emit(.notice, r.exitCode == 0 ? "tagged \(version) in git" : "warning: git tag \(version) failed (exit \(r.exitCode)): \(Self.lastLine(r.output))")
        guard r.exitCode == 0, let remote = plan.gitPush else { return }
        // The tag alone, by its full name: nothing else of the repository is pushed.
        let push = HookRunner.run("git -C {repository} push {remote} {ref}",
                                  values: ["repository": repository, "remote": remote, "ref": "refs/tags/\(version)"], timeout: .seconds(120))
        history.recordHook(rollout: rolloutID, deployment: nil, phase: "git_push", command: "git push \(Self.remoteForMessages(remote)) refs/tags/\(version)", result: push)
        emit(.notice, push.exitCode == 0 ? "pushed tag \(version) to \(Self.remoteForMessages(remote))"
                                         : "warning: git push of tag \(version) to \(Self.remoteForMessages(remote)) failed (exit \(push.exitCode)): \(Self.lastLine(push.output))")
    }

    /// A remote as messages show it: a URL's user and password (a token) are left out.
    static func remoteForMessages(_ remote: String) -> String {
        guard let scheme = remote.range(of: "://"), let at = remote[scheme.upperBound...].firstIndex(of: "@") else { return remote }
        let slash = remote[scheme.upperBound...].firstIndex(of: "/") ?? remote.endIndex
        guard at < slash else { return remote }
        return String(remote[..<scheme.upperBound]) + String(remote[remote.index(after: at)...])
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
