import ArgumentParser
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardAdminClient
import SwitchyardConfig
import SwitchyardDeploy

/// `switchyard deploy`: progressive rollouts driven through the proxies' admin API.
/// Exit codes: 0 promoted (or done); 1 rolled back (or refused by a proxy); 2 error, refused or bad usage.
struct Deploy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Roll a version out through the plan's environments (canary, blue/green, rolling).",
        discussion: "See docs/deploy.md. Exit codes of `run`: 0 promoted, 1 rolled back, 2 error or refused.",
        subcommands: [DeployCheck.self, DeployRun.self, DeployStatus.self, DeployPause.self, DeployResume.self,
                      DeployPromote.self, DeployAbort.self, DeployApprove.self, DeployUnlock.self, DeployUpload.self])
}

func deployFail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("switchyard deploy: \(message)\n".utf8))
    Glibc.exit(2)
}

func loadPlan(_ path: String) -> DeployPlan {
    do { return try PlanLoader.load(path: path) } catch { deployFail("the plan is invalid:\n\(error)") }
}

func openHistory(_ path: String) -> History {
    do { return try History(path: path) } catch { deployFail(error.description) }
}

/// Who acts: --actor, else $SWITCHYARD_ACTOR, the CI's user ($GITHUB_ACTOR, $BUILD_USER_ID), or the login user.
func deployActor(_ explicit: String?) -> String {
    let e = ProcessInfo.processInfo.environment
    if let name = explicit ?? e["SWITCHYARD_ACTOR"] ?? e["GITHUB_ACTOR"].map({ "github:\($0)" }) ?? e["BUILD_USER_ID"].map({ "jenkins:\($0)" }) {
        return name
    }
    if let entry = getpwuid(getuid()), let name = entry.pointee.pw_name { return String(cString: name) }
    return e["USER"] ?? "uid \(getuid())"
}

/// A client for each of an environment's proxies, with this process's environment for tokens.
func adminClients(_ env: DeployPlan.Environment, actor: String) throws(ClientError) -> [AdminClient] {
    try AdminClient.all(for: env, actor: actor, processEnvironment: ProcessInfo.processInfo.environment)
}

struct DeployCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Validate a rollout plan; exit 0 when valid, 2 with each problem otherwise.")
    @Argument(help: "The plan (YAML).") var plan: String
    @Flag(help: "Also connect to every environment's admin API and check the service and pools there.") var connect = false

    func run() throws {
        let p = loadPlan(plan)
        var problems = 0
        for env in p.environments {
            let steps = env.steps.map { s -> String in
                switch s {
                case .weight(let w): return BasisPoints.format(w)
                case .pause(let d): return d.map { "pause \($0.milliseconds / 1000)s" } ?? "pause until promoted"
                }
            }
            var extras: [String] = []
            if env.manualApproval { extras.append("manual approval") }
            if let batch = env.batch {
                switch batch {
                case .servers(let n): extras.append("batches of \(n)")
                case .share(let bp): extras.append("batches of \(BasisPoints.format(bp))")
                }
            }
            if let bake = env.bake { extras.append("bake \(bake.milliseconds / 1000)s") }
            print("\(env.name): \(env.strategy.rawValue) via \(env.proxies.map(\.description).joined(separator: ", "))\(extras.map { ", \($0)" }.joined())\(steps.isEmpty ? "" : " [\(steps.joined(separator: ", "))]")")
            guard connect else { continue }
            let clients: [AdminClient]
            do { clients = try adminClients(env, actor: deployActor(nil)) } catch { print("  problem: \(error)"); problems += 1; continue }
            var routings: [(String, ServiceRouting)] = []
            for client in clients {
                let at = clients.count > 1 ? "\(client.address): " : ""
                do {
                    let status = try client.api.status()
                    if let service = status.services[p.service] {
                        print("  \(at)reachable; \(p.service) active \(service.active), standby \(service.standby ?? "none")")
                        if let routing = ServiceRouting(status: status, service: p.service, pools: []) { routings.append((client.address.description, routing)) }
                    } else {
                        print("  \(at)problem: no service \(p.service) there"); problems += 1
                    }
                    if let lock = status.lock(covering: p.service) { print("  \(at)locked by \(lock.owner) since \(lock.since): \(lock.reason)") }
                } catch {
                    print("  \(at)problem: \(error)"); problems += 1
                }
            }
            if let first = routings.first, routings.contains(where: { $0.1 != first.1 }) {
                print("  problem: the proxies disagree (drift): \(routings.map { "\($0.0) has \($0.1)" }.joined(separator: "; "))"); problems += 1
            }
        }
        print("plan \(plan) is valid: service \(p.service), \(p.environments.count) environment(s), history \(p.history)")
        if problems > 0 { throw ExitCode(2) }
    }
}

struct DeployRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Start a rollout and stay in the foreground until it is promoted, rolled back or refused.",
        discussion: "With --console (or $SWITCHYARD_CONSOLE_URL) the run is also reported to the console as it goes; the local history stays the record, and the rollout never waits for the console. See docs/deploy.md, \"Reporting to a console\".")
    @Argument(help: "The plan (YAML).") var plan: String
    @Option(help: "The version, e.g. from `switchyard version --ticket OPS-142 --module api`.") var version: String
    @Option(help: "Who deploys, for the locks, audit and history (default: $SWITCHYARD_ACTOR, $GITHUB_ACTOR, $USER).") var actor: String?
    @Flag(help: "Print one JSON event per line instead of the terminal view.") var json = false
    @Option(name: .customLong("env"), help: "Only this environment of the plan (repeat for more); they run in the plan's order.")
    var environments: [String] = []
    @Option(help: "The history database (default: the plan's history).") var history: String?
    @Option(help: "The run's identity, a UUID (default: a new one); a console chooses it for the runs it executes.") var runId: String?
    @Flag(help: "Be killed when the parent process exits, and exit at once if it is already gone (for a console's executed runs).")
    var dieWithParent = false
    @OptionGroup(title: "Change") var change: ChangeOptions
    @OptionGroup(title: "Console") var console: ConsoleOptions
    @Option(help: "Seconds to keep reporting after the rollout ends, until the console has the whole run.") var flushTimeout: Double = 15

    func run() throws {
        if dieWithParent { killWhenParentExits() }
        let loaded: (plan: DeployPlan, text: String)
        do { loaded = try PlanLoader.loadWithText(path: plan) } catch { deployFail("the plan is invalid:\n\(error)") }
        var p = loaded.plan
        if !environments.isEmpty {
            do { p = try p.selecting(environments: environments) } catch { deployFail(error.description) }
        }
        if let history { p.history = history }
        guard VersionName.isValid(version) else { deployFail("version \"\(version)\" may hold only letters, digits and - _ . + (it goes into hooks and tags)") }
        if let runId, UUID(uuidString: runId) == nil { deployFail("--run-id \(runId) is not a UUID such as 3f2c8a4e-9b1d-4c6e-8f0a-2d5b7e9c1a34") }
        guard flushTimeout.isFinite, flushTimeout >= 0 else { deployFail("--flush-timeout must be a number of seconds, 0 or more") }
        let directory = (plan as NSString).deletingLastPathComponent
        let changeInfo = change.resolve(repository: directory.isEmpty ? "." : directory)
        let client = console.client()
        let history = openHistory(p.history)
        var options = Rollout.Options(actor: deployActor(actor), json: json)
        if let runId { options.run = runId }
        if let recorded = history.rollout(run: options.run) {
            deployFail("run \(options.run) is already recorded in \(p.history) (rollout #\(recorded["id"] ?? "?")); give a new --run-id")
        }
        options.change = changeInfo
        options.planText = loaded.text
        signal(SIGINT) { _ in rolloutInterrupted = 1 }
        signal(SIGTERM) { _ in rolloutInterrupted = 1 }
        signal(SIGPIPE, SIG_IGN)
        let rollout = Rollout(plan: p, version: version, options: options, history: history)
        var reporter: ConsoleReporter?
        if let client {
            do { reporter = try ConsoleReporter(client: client, historyPath: p.history, run: options.run, say: rollout.notices) }
            catch { deployFail(error.description) }
            if let reporter { rollout.console = NotifyConsole(url: client.url) { reporter.waitForConsoleRollout(timeout: 5) } }
        }
        let outcome = rollout.run()
        if let reporter, let client {
            // A second Ctrl-C ends the flush: the run stays in the history for `deploy upload`.
            rolloutInterrupted = 0
            let flush = reporter.finish(timeout: flushTimeout) { rolloutInterrupted != 0 }
            explainFlush(flush, console: client, historyPath: p.history, run: options.run, say: rollout.notices)
        }
        throw ExitCode(outcome.exitCode)
    }
}

/// The shared arguments of the control commands: the plan names the service and the history;
/// with a console (and no --history) they go through the console's API instead.
struct ControlOptions: ParsableArguments {
    @Argument(help: "The plan (YAML) of the rollout (with a console, --service may name the service instead).") var plan: String?
    @Option(help: "Who acts (recorded; a console records the token's owner).") var actor: String?
    @Option(help: "The history database (default: the plan's); given, the command acts on it even when a console is set.") var history: String?
    @Option(help: "With a console: the service (default: the plan's).") var service: String?
    @OptionGroup(title: "Console") var console: ConsoleOptions

    /// Through the console's API: a console is given and no local history named.
    var viaConsole: ConsoleClient? { history == nil ? console.client() : nil }

    /// The plan, with the history given by --history.
    func localPlan() -> DeployPlan {
        guard let plan else { deployFail("give the plan (or, with a console, --service)") }
        var p = loadPlan(plan)
        if let history { p.history = history }
        return p
    }

    var serviceName: String { service ?? localPlan().service }

    /// Sends a control command to the running rollout and waits for it to be handled.
    func send(_ command: String, argument: String? = nil) {
        if let client = viaConsole {
            ConsoleCommands.control(client, service: serviceName, command: command, argument: argument, run: nil)
            return
        }
        let p = localPlan()
        let history = openHistory(p.history)
        history.markCrashed(service: p.service)
        guard let rollout = history.latestRollout(service: p.service), rollout["outcome"] as? String == "running", let id = rollout["id"] as? Int else {
            deployFail("no rollout of \(p.service) is running (see `switchyard deploy status \(plan ?? "")`)")
        }
        sendLocal(command, argument: argument, rollout: rollout, id: id, history: history, service: p.service)
    }

    /// Queues the control in the history and waits for the rollout to answer it.
    func sendLocal(_ command: String, argument: String?, rollout: [String: Any], id: Int, history: History, service: String) {
        let control = history.addControl(rollout: id, command: command, argument: argument, actor: deployActor(actor))
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let row = history.control(control), let result = row["result"] as? String {
                print("rollout #\(id) of \(service) \(rollout["version"] ?? ""): \(result)")
                if result.hasPrefix("refused") { Glibc.exit(1) }
                return
            }
            usleep(100_000)
        }
        deployFail("rollout #\(id) did not take the \(command) within 15s; is its process (pid \(rollout["pid"] ?? "?")) stuck?")
    }
}

struct DeployPause: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause the running rollout (weights stay; analysis stops counting time).")
    @OptionGroup var options: ControlOptions
    func run() { options.send("pause") }
}

struct DeployResume: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused rollout.")
    @OptionGroup var options: ControlOptions
    func run() { options.send("resume") }
}

struct DeployPromote: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "promote", abstract: "End the current pause or wait now; with --full, promote the current environment at once.")
    @OptionGroup var options: ControlOptions
    @Flag(help: "Skip the remaining steps and analysis of the current environment.") var full = false
    func run() { options.send("promote", argument: full ? "full" : nil) }
}

struct DeployApprove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "approve", abstract: "Approve the environment waiting for manual approval.")
    @OptionGroup var options: ControlOptions
    @Option(help: "The environment to approve (default: the one waiting).") var env: String?
    func run() { options.send("approve", argument: env) }
}

struct DeployAbort: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "Roll the running rollout back now.",
        discussion: "When the rollout's process is gone (killed, machine lost), abort rolls back itself with the locks the rollout recorded, as the rollout would have: canary weight to 0 (gradually if the plan says so), a flip back to the previous pool, or the servers a rolling update reached restored to the version before. Exit 2 when an environment could not be rolled back; abort can then be run again. With a console and no --history, the console aborts the rollout (a crashed one itself). With --history and a console, a crashed rollout's abort is reported to the console.")
    @OptionGroup var options: ControlOptions
    @Option(help: "The run to abort, by its identity (default: the service's latest rollout).") var runId: String?
    @Option(help: "With a console: seconds to keep reporting after the abort, until the console has it.") var flushTimeout: Double = 15

    func run() throws {
        if let client = options.viaConsole {
            ConsoleCommands.control(client, service: options.serviceName, command: "abort", argument: nil, run: runId)
            return
        }
        let p = options.localPlan()
        let history = openHistory(p.history)
        history.markCrashed(service: p.service)
        let row: [String: Any]?
        if let runId {
            row = history.rollout(run: runId)
            if row == nil { deployFail("no run \(runId) in \(p.history)") }
        } else {
            row = history.latestRollout(service: p.service)
        }
        guard let rollout = row, let id = rollout["id"] as? Int else { deployFail("no rollout of \(p.service) in \(p.history)") }
        if rollout["outcome"] as? String == "running" {
            options.sendLocal("abort", argument: nil, rollout: rollout, id: id, history: history, service: p.service)
            return
        }
        guard rollout["outcome"] as? String == "crashed" else { deployFail("rollout #\(id) already ended: \(rollout["outcome"] ?? "?")") }
        // The orchestrator is gone: act for it with the lock tokens it recorded, and its strategies' own rollback.
        signal(SIGPIPE, SIG_IGN)
        let client = options.console.client()
        var reporter: ConsoleReporter?
        let run = history.ensureRun(rollout: id) ?? ""
        let say: @Sendable (String) -> Void = { line in print(line) }
        if let client {
            do { reporter = try ConsoleReporter(client: client, historyPath: p.history, run: run, say: say) } catch { deployFail(error.description) }
        }
        let recovered = Rollout.abortCrashed(rollout: id, plan: p, history: history, actor: deployActor(options.actor))
        if let reporter, let client {
            explainFlush(reporter.finish(timeout: flushTimeout), console: client, historyPath: p.history, run: run, say: say)
        }
        if !recovered { throw ExitCode(2) }
    }
}

struct DeployUnlock: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unlock", abstract: "Break the deploy lock of a crashed rollout (recorded in each proxy's audit trail).")
    @Argument(help: "The plan (YAML).") var plan: String
    @Flag(help: "Required: breaking someone's lock is deliberate.") var force = false
    @Option(help: "Only this environment (default: all in the plan).") var env: String?
    @Option(help: "Who acts (recorded).") var actor: String?

    func run() throws {
        guard force else { deployFail("unlock breaks another rollout's lock; repeat with --force if its orchestrator is gone (see `switchyard deploy status`)") }
        let p = loadPlan(plan)
        let history = openHistory(p.history)
        history.markCrashed(service: p.service)
        if let running = history.latestRollout(service: p.service), running["outcome"] as? String == "running" {
            FileHandle.standardError.write(Data("switchyard deploy: warning: rollout #\(running["id"] ?? "?") (pid \(running["pid"] ?? "?")) still runs and will lose its lock\n".utf8))
        }
        var failed = false
        for e in p.environments where env == nil || e.name == env {
            let clients: [AdminClient]
            do { clients = try adminClients(e, actor: deployActor(actor)) } catch { print("\(e.name): \(error)"); failed = true; continue }
            for client in clients {
                let name = clients.count > 1 ? "\(e.name) \(client.address)" : e.name
                do {
                    // The rollout's lock is the service's; a proxy-wide (maintenance) lock is not ours to break.
                    guard let lock = try client.api.status().allLocks.first(where: { $0.service == p.service }) else {
                        print("\(name): \(p.service) is not locked"); continue
                    }
                    try client.api.unlock(force: true, service: p.service)
                    print("\(name): broke the lock of \(lock.owner) (since \(lock.since): \(lock.reason))")
                } catch {
                    print("\(name): \(error)")
                    failed = true
                }
            }
        }
        if let latest = history.latestRollout(service: p.service), let id = latest["id"] as? Int {
            _ = history.addControl(rollout: id, command: "unlock --force", argument: env, actor: deployActor(actor))
            for (key, _) in history.heldLocks(rollout: id) where env == nil || History.parseLockKey(key).environment == env {
                history.releaseLock(rollout: id, environment: key)
            }
        }
        if failed { throw ExitCode(2) }
    }
}

struct DeployStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "The latest rollout of the plan's service, and where traffic is now in every environment.",
        discussion: "With a console (and no --history): the service's latest rollout as the console has it, from any machine; --watch follows it until it ends.")
    @Argument(help: "The plan (YAML) (with a console, --service may name the service instead).") var plan: String?
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "The history database (default: the plan's); given, it is read even when a console is set.") var history: String?
    @Option(help: "With a console: the service (default: the plan's).") var service: String?
    @Flag(help: "With a console: follow the rollout until it ends; exit 0 promoted, 1 rolled back, 2 otherwise.") var watch = false
    @OptionGroup(title: "Console") var console: ConsoleOptions

    func run() throws {
        if history == nil, let client = console.client() {
            guard let name = service ?? plan.map({ loadPlan($0).service }) else { deployFail("give the plan or --service") }
            let code = ConsoleCommands.status(client, service: name, json: json, watch: watch)
            if code != 0 { throw ExitCode(code) }
            return
        }
        if watch { deployFail("--watch follows a rollout through a console: give --console URL or set SWITCHYARD_CONSOLE_URL") }
        guard let plan else { deployFail("give the plan") }
        var p = loadPlan(plan)
        if let history { p.history = history }
        let history = openHistory(p.history)
        history.markCrashed(service: p.service)
        var out: [String: Any] = ["service": p.service]
        let rollout = history.latestRollout(service: p.service)
        if let rollout, let id = rollout["id"] as? Int {
            var r = rollout
            r["alive"] = rollout["outcome"] as? String == "running"
            r["deployments"] = history.deployments(rollout: id)
            r["held_locks"] = Array(history.heldLocks(rollout: id).keys).sorted()
            out["rollout"] = r
        }
        var live: [[String: Any]] = []
        for env in p.environments {
            var entry: [String: Any] = ["environment": env.name, "admin": env.admin.description]
            let clients: [AdminClient]
            do { clients = try adminClients(env, actor: deployActor(nil)) } catch {
                entry["error"] = "\(error)"
                live.append(entry)
                continue
            }
            let proxies = clients.map { Self.proxyEntry($0, service: p.service, rolling: env.strategy == .rolling, plannedPool: env.pool) }
            // The environment's own fields are its first reachable proxy's (all of them, when they agree).
            if let first = proxies.first(where: { $0.entry["error"] == nil }) ?? proxies.first {
                for (key, value) in first.entry where key != "address" { entry[key] = value }
            }
            if clients.count > 1 {
                entry["proxies"] = proxies.map(\.entry)
                let routings = proxies.compactMap(\.routing)
                if let first = routings.first, routings.contains(where: { $0.routing != first.routing }) {
                    entry["drift"] = routings.map { "\($0.address) has \($0.routing)" }
                }
            }
            live.append(entry)
        }
        out["environments"] = live
        if json {
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if let r = rollout {
            let outcome = r["outcome"] as? String ?? "?"
            print("rollout #\(r["id"] ?? "?"): \(p.service) \(r["version"] ?? "?") by \(r["actor"] ?? "?"), started \(r["started_at"] ?? "?")")
            switch outcome {
            case "running":
                print("  RUNNING (pid \(r["pid"] ?? "?") on \(r["host"] ?? "?")): \(r["environment"] ?? "-"), \(r["progress"] ?? "-"); heartbeat \(r["heartbeat_at"] ?? "?")")
            case "crashed":
                print("  CRASHED: \(r["reason"] ?? "")")
                print("  It was at \(r["environment"] ?? "-"): \(r["progress"] ?? "-"). Traffic stays where it was left (below).")
                print("  To roll back: switchyard deploy abort \(plan)   (uses the rollout's own locks)")
                print("  To keep traffic as it is and free the proxies: switchyard deploy unlock --force \(plan)")
            default:
                print("  \(outcome.uppercased())\(r["ended_at"].map { " at \($0)" } ?? "")\((r["reason"] as? String).map { ": \($0)" } ?? "")")
            }
            for d in history.deployments(rollout: r["id"] as? Int ?? 0) {
                print("  #\(d["id"] ?? "?") \(d["environment"] ?? "?"): \(d["strategy"] ?? "?") to \(d["pool"] ?? "?"): \(d["outcome"] ?? "?")\((d["reason"] as? String).map { " (\($0))" } ?? "")")
            }
        } else {
            print("no rollout of \(p.service) recorded in \(p.history)")
        }
        print("\nwhere traffic is now:")
        for e in live {
            let name = "\(e["environment"] ?? "")".padding(toLength: 8, withPad: " ", startingAt: 0)
            guard let proxies = e["proxies"] as? [[String: Any]] else {
                print("  \(name) " + Self.trafficLine(e))
                for extra in Self.detailLines(e) { print("           \(extra)") }
                continue
            }
            print("  \(name) \(proxies.count) proxies\(e["drift"] == nil ? ", in step" : ", DRIFT: they disagree")")
            for proxy in proxies {
                print("    \(proxy["address"] ?? "?")  " + Self.trafficLine(proxy))
                for extra in Self.detailLines(proxy) { print("      \(extra)") }
            }
        }
    }

    /// One proxy's part of `deploy status`: where the service's traffic is, its lock, its
    /// guard trips and the servers out of rotation; `routing` for comparing proxies.
    static func proxyEntry(_ client: AdminClient, service name: String, rolling: Bool, plannedPool: String?)
        -> (entry: [String: Any], routing: (address: String, routing: ServiceRouting)?) {
        var entry: [String: Any] = ["address": client.address.description]
        do {
            let s = try client.api.status()
            let service = s.services[name]
            entry["active"] = service?.active ?? NSNull()
            entry["standby"] = service?.standby ?? NSNull()
            entry["canary"] = service?.canary.map { ["pool": $0.pool, "weight": $0.weight] } ?? NSNull()
            entry["lock"] = s.lock(covering: name).map { ["owner": $0.owner, "reason": $0.reason, "since": $0.since, "expires": $0.expires] } ?? NSNull()
            entry["guard_trip"] = service?.guardTrip.map(\.jsonObject) ?? NSNull()
            // Servers of the service's pools that take no traffic now (a rolling update leaves them drained).
            let pools = [service?.active, service?.canary?.pool].compactMap { $0 }
            var out: [String] = []
            for pool in Set(pools).sorted() {
                for server in s.servers(pool) {
                    let health = server.healthStatus
                    if server.state != "ready" || (health != "up" && health != "not checked") {
                        out.append("\(pool)/\(server.name) (\(server.state), \(health))")
                    }
                }
            }
            entry["out_of_rotation"] = out
            // A rolling update's pool: its servers' states are part of what the proxies must agree on.
            let tracked = rolling ? [plannedPool ?? service?.active].compactMap { $0 } : []
            let routing = ServiceRouting(status: s, service: name, pools: tracked)
            return (entry, routing.map { (client.address.description, $0) })
        } catch {
            entry["error"] = "\(error)"
            return (entry, nil)
        }
    }

    /// "active blue, canary green at 25%, standby green; LOCKED by ..." (or unreachable).
    static func trafficLine(_ e: [String: Any]) -> String {
        if let error = e["error"] { return "unreachable: \(error)" }
        var line = "active \(e["active"] ?? "?")"
        if let c = e["canary"] as? [String: Any] { line += ", canary \(c["pool"] ?? "?") at \(c["weight"] ?? "?")" } else { line += ", no canary" }
        if let s = e["standby"] as? String { line += ", standby \(s)" }
        if let lock = e["lock"] as? [String: Any] { line += "; LOCKED by \(lock["owner"] ?? "?") since \(lock["since"] ?? "?") until \(lock["expires"] ?? "?") (\(lock["reason"] ?? ""))" }
        return line
    }

    static func detailLines(_ e: [String: Any]) -> [String] {
        var lines: [String] = []
        if let trip = e["guard_trip"] as? [String: Any] { lines.append("guard tripped at \(trip["time"] ?? "?"): \(trip["reason"] ?? "")") }
        if let out = e["out_of_rotation"] as? [String], !out.isEmpty { lines.append("out of rotation: \(out.joined(separator: ", "))") }
        return lines
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print a release name: [ticket]-[module]-[yyyyMMddHHmmss] in UTC, e.g. OPS-142-api-20261121153000 (without options: Switchyard's own version).")
    @Option(help: "The ticket, e.g. OPS-142.") var ticket: String?
    @Option(help: "The module, e.g. api.") var module: String?

    func run() {
        guard ticket != nil || module != nil else { print("switchyard \(Switchyard.release)"); return } // as `switchyard --version`
        guard let ticket, let module else { deployFail("give both --ticket and --module, e.g. --ticket OPS-142 --module api") }
        let name = VersionName.make(ticket: ticket, module: module)
        guard VersionName.isValid(name) else { deployFail("ticket and module may hold only letters, digits and - _ .") }
        print(name)
    }
}

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "List deployments (one per environment of each rollout), newest first.",
        subcommands: [HistoryList.self, HistoryShow.self], defaultSubcommand: HistoryList.self)
}

struct HistoryOptions: ParsableArguments {
    @Option(help: "The history database (default: the plan's, else .switchyard/history.sqlite).") var db: String?
    @Option(help: "Read the database path from this plan.") var plan: String?

    var path: String { db ?? plan.map { loadPlan($0).history } ?? ".switchyard/history.sqlite" }

    func open() -> History {
        guard FileManager.default.fileExists(atPath: path) else { deployFail("no history at \(path); give --db or --plan") }
        return openHistory(path)
    }
}

struct HistoryList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List deployments.",
        discussion: "With a console (and neither --db nor --plan): the deployments the console has, of every runner.")
    @OptionGroup var options: HistoryOptions
    @Option(help: "Only this environment.") var env: String?
    @Option(help: "Only this service.") var service: String?
    @Option(help: "At most this many.") var limit = 50
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup(title: "Console") var console: ConsoleOptions

    func run() throws {
        if options.db == nil && options.plan == nil, let client = console.client() {
            ConsoleCommands.history(client, service: service, environment: env, limit: limit, json: json)
            return
        }
        let history = options.open()
        if let service { history.markCrashed(service: service) }
        let rows = history.list(service: service, environment: env, limit: limit)
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
            return
        }
        print("ID    ROLLOUT SERVICE      ENV      STRATEGY   VERSION                          OUTCOME      STARTED                  ACTOR")
        for r in rows {
            func col(_ key: String, _ width: Int) -> String { "\(r[key] ?? "")".padding(toLength: width, withPad: " ", startingAt: 0) }
            print("\(col("id", 5)) \(col("rollout_id", 7)) \(col("service", 12)) \(col("environment", 8)) \(col("strategy", 10)) \(col("version", 32)) \(col("outcome", 12)) \(col("started_at", 24)) \(r["actor"] ?? "")")
            if let reason = r["reason"] as? String { print("      reason: \(reason)") }
        }
    }
}

struct HistoryShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "One deployment with its steps, analysis figures and hook outputs.")
    @OptionGroup var options: HistoryOptions
    @Argument(help: "The deployment ID (first column of `switchyard history`).") var id: Int
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let history = options.open()
        guard var d = history.deployment(id) else { deployFail("no deployment \(id) in \(options.path)") }
        let steps = history.steps(deployment: id)
        let hooks = history.hooks(deployment: id, rollout: d["rollout_id"] as? Int ?? 0)
        if json {
            d["steps"] = steps
            d["hooks"] = hooks
            d["rollout"] = history.rollout(d["rollout_id"] as? Int ?? 0) ?? NSNull()
            print(String(decoding: try JSONSerialization.data(withJSONObject: d, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
            return
        }
        print("deployment #\(id) (rollout #\(d["rollout_id"] ?? "?")): \(d["service"] ?? "") \(d["version"] ?? "") to \(d["environment"] ?? "") by \(d["actor"] ?? "")")
        print("strategy \(d["strategy"] ?? ""), pool \(d["pool"] ?? "-") (previous pool \(d["previous_pool"] ?? "-"), previous version \(d["previous_version"] ?? "-"))")
        print("started \(d["started_at"] ?? ""), ended \(d["ended_at"] ?? "-"): \(d["outcome"] ?? "")\((d["reason"] as? String).map { ": \($0)" } ?? "")")
        print("\nSTEPS")
        for s in steps {
            var line = "  \(s["time"] ?? "")  \("\(s["kind"] ?? "")".padding(toLength: 9, withPad: " ", startingAt: 0)) \(s["detail"] ?? "")"
            if s["verdict"] is String { line = "  \(s["time"] ?? "")  analysis  \(s["detail"] ?? "")" }
            print(line)
        }
        print("\nHOOKS")
        for h in hooks {
            print("  \(h["time"] ?? "")  \(h["phase"] ?? "") `\(h["command"] ?? "")` exit \(h["exit_code"] ?? "?") in \(h["duration_ms"] ?? "?")ms")
            let output = (h["output"] as? String ?? "").split(separator: "\n").suffix(10)
            for line in output { print("      | \(line)") }
        }
    }
}
