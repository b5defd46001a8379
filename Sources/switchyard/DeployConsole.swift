import ArgumentParser
import CProcessControl
import Foundation
import Glibc
import SwitchyardAdminClient
import SwitchyardConsoleAPI
import SwitchyardDeploy

// `switchyard deploy` with a console: the options that name it, reporting a run to it and
// uploading runs later, and the commands that work through its API from any machine.

/// Where the console is: `--console` (default $SWITCHYARD_CONSOLE_URL), its token from
/// $SWITCHYARD_CONSOLE_TOKEN (never a flag: flags show in `ps`), its CA for https.
struct ConsoleOptions: ParsableArguments {
    @Option(help: "The console's URL (default: $SWITCHYARD_CONSOLE_URL). Its token is read from $SWITCHYARD_CONSOLE_TOKEN.")
    var console: String?
    @Option(help: "The CA bundle that signs an https console's certificate (default: $SWITCHYARD_CONSOLE_CA, else the system's roots).")
    var consoleCa: String?

    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The console's URL, when one is given or set in the environment.
    var url: String? { console ?? Self.environment["SWITCHYARD_CONSOLE_URL"].flatMap { $0.isEmpty ? nil : $0 } }

    /// A client for the console, or nil when none is configured; a bad URL or CA ends the command.
    func client() -> ConsoleClient? {
        guard let url else { return nil }
        let ca = consoleCa ?? Self.environment["SWITCHYARD_CONSOLE_CA"].flatMap { $0.isEmpty ? nil : $0 }
        do { return try ConsoleClient(url: url, token: Self.environment["SWITCHYARD_CONSOLE_TOKEN"], ca: ca) } catch { deployFail(error.description) }
    }
}

/// Where the change comes from (`deploy run`); each defaults from the CI's environment.
struct ChangeOptions: ParsableArguments {
    @Option(help: "The commit deployed (default: $GITHUB_SHA, $GIT_COMMIT, $CI_COMMIT_SHA).") var commit: String?
    @Option(help: "When it was committed, ISO 8601 (default: asked of git in the plan's directory).") var commitTime: String?
    @Option(help: "The change's ticket, e.g. OPS-142.") var ticket: String?
    @Option(help: "A link to the change (default: the CI's commit page, or $BUILD_URL).") var link: String?
    @Option(help: "What changed, in words.") var changelog: String?
    @Option(help: "Read what changed from this file (64 KiB at most).") var changelogFile: String?

    static let changelogLimit = 64 * 1024

    /// The change, or nil when nothing is known; git is asked in `repository` for the commit's time.
    func resolve(repository: String) -> ChangeInfo? {
        var text = changelog
        if let changelogFile {
            if changelog != nil { deployFail("give --changelog or --changelog-file, not both") }
            guard let data = FileManager.default.contents(atPath: changelogFile) else { deployFail("cannot read --changelog-file \(changelogFile)") }
            guard data.count <= Self.changelogLimit else {
                deployFail("--changelog-file \(changelogFile) has \(data.count) bytes; at most \(Self.changelogLimit) are recorded: shorten it")
            }
            text = String(decoding: data, as: UTF8.self)
        }
        if let text, text.utf8.count > Self.changelogLimit { deployFail("--changelog has \(text.utf8.count) bytes; at most \(Self.changelogLimit)") }
        let given = ChangeDetection.Given(commit: commit, commitTime: commitTime, ticket: ticket, link: link, changelog: text)
        do { return try ChangeDetection.resolve(given, environment: ProcessInfo.processInfo.environment, repository: repository) }
        catch { deployFail(error.description) }
    }
}

/// `--die-with-parent`: the kernel kills this process when its parent exits (a console's
/// executed runs die with the console instance that owns them); when the parent is already
/// gone, exit at once. The parent is $SWITCHYARD_PARENT_PID when set (closing the window
/// between the parent's fork and this call), else anything but init.
func killWhenParentExits() {
    guard sy_kill_when_parent_exits() == 0 else { deployFail("--die-with-parent: prctl failed: \(String(cString: strerror(errno)))") }
    let parent = getppid()
    let expected = ProcessInfo.processInfo.environment["SWITCHYARD_PARENT_PID"].flatMap { pid_t($0) }
    let gone = expected.map { $0 != parent } ?? (parent == 1)
    if gone {
        FileHandle.standardError.write(Data("switchyard deploy: the parent process is gone (--die-with-parent); nothing was started\n".utf8))
        Glibc.exit(2)
    }
}

/// What `deploy run` and `deploy abort` say when their flush ends.
func explainFlush(_ flush: ConsoleReporter.Flush, console: ConsoleClient, historyPath: String, run: String, say: (String) -> Void) {
    switch flush {
    case .acknowledged(let rollout):
        say("the console has the whole run\(rollout.map { " (its rollout #\($0))" } ?? "")")
    case .nothingToReport:
        break
    case .notAcknowledged(let why):
        FileHandle.standardError.write(Data("""
            switchyard deploy: the console does not have all of this run (\(why)); it is recorded in \(historyPath).
              Upload it once the console can take it: switchyard deploy upload --console \(console.url) --db \(historyPath) --run \(run)

            """.utf8))
    }
}

// MARK: deploy upload

struct DeployUpload: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload",
        abstract: "Upload runs recorded locally that the console does not have (it was down, or refused the token).",
        discussion: "Runs still running are left to their own runner. Exit 2 when a run could not be uploaded.")
    @OptionGroup var history: HistoryOptions
    @OptionGroup var console: ConsoleOptions
    @Option(name: .customLong("run"), help: "Only this run: its identity (a UUID) or its local rollout number.") var runID: String?
    @Option(help: "Seconds to keep trying for each run.") var timeout: Double = 30

    func run() throws {
        guard let client = console.client() else { deployFail("give --console URL or set SWITCHYARD_CONSOLE_URL") }
        let local = history.open()
        signal(SIGPIPE, SIG_IGN)
        // A rollout whose process died is uploaded as crashed, not as running.
        for service in local.servicesWithRunningRollouts() { local.markCrashed(service: service) }
        var ids: [Int]
        if let runID {
            guard let row = Int(runID).flatMap({ local.rollout($0) }) ?? local.rollout(run: runID), let id = row["id"] as? Int else {
                deployFail("no run \(runID) in \(history.path)")
            }
            if row["outcome"] as? String == "running" {
                deployFail("rollout #\(id) still runs (pid \(row["pid"] ?? "?") on \(row["host"] ?? "?")); its runner reports it")
            }
            ids = [id]
        } else {
            ids = local.unacknowledgedRollouts()
            if ids.isEmpty { print("nothing to upload: the console has every run of \(history.path) that ended"); return }
        }
        var failed = 0
        for id in ids {
            let row = local.rollout(id)
            let what = "rollout #\(id) of \(row?["service"] ?? "?") \(row?["version"] ?? "?") (\(row?["outcome"] ?? "?"))"
            if local.isAcknowledged(rollout: id) { print("\(what): the console has it already"); continue }
            switch ConsoleReporter.upload(rollout: id, history: local, client: client, timeout: timeout) {
            case .acknowledged(let consoleRollout):
                let run = local.rollout(id)?["run"] as? String ?? "?"
                print("\(what): uploaded as run \(run)\(consoleRollout.map { ", the console's rollout #\($0)" } ?? "")")
            case .nothingToReport:
                print("\(what): nothing to upload")
            case .notAcknowledged(let why):
                print("\(what): not uploaded: \(why)")
                failed += 1
            }
        }
        if failed > 0 { throw ExitCode(2) }
    }
}

// MARK: Commands through the console's API

/// `deploy status|approve|pause|resume|promote|abort` and `history` with a console: from any
/// machine, through its API instead of the local history.
enum ConsoleCommands {
    /// Ends the command on a console error: 2, as the local commands' errors.
    static func fail(_ failure: ConsoleFailure) -> Never {
        var hint = ""
        if case .refused(let status, _) = failure {
            if status == 401 { hint = "; check $SWITCHYARD_CONSOLE_TOKEN" }
            if status == 403 { hint = "; the token is not allowed to do this" }
        }
        deployFail("\(failure)\(hint)")
    }

    static func attempt<T>(_ call: () throws(ConsoleFailure) -> T) -> T {
        do { return try call() } catch { fail(error) }
    }

    /// Sends a control to the service's rollout and prints the answer. Exit 1 when the
    /// rollout refused it, 2 when there is no rollout to take it or it did not answer.
    static func control(_ client: ConsoleClient, service: String, command: String, argument: String?, run: String?) {
        let rollout = target(client, service: service, run: run, running: command != "abort")
        if command == "abort", !["pending", "running", "crashed"].contains(rollout.state) {
            deployFail("rollout #\(rollout.id) of \(service) already ended: \(rollout.state)")
        }
        let (answer, answered) = attempt { () throws(ConsoleFailure) in try client.control(rollout.id, command: command, argument: argument) }
        var result = answered ? answer.result : nil
        // Queued: the rollout's runner takes it with its next report.
        let deadline = Date().addingTimeInterval(15)
        while result == nil && Date() < deadline {
            usleep(250_000)
            let detail = attempt { () throws(ConsoleFailure) in try client.rollout(rollout.id) }
            result = detail.controls.first { $0.id == answer.control }?.result
        }
        guard let result else {
            deployFail("the console queued the \(command) (control #\(answer.control)), but rollout #\(rollout.id) did not answer within 15s; "
                       + "its runner may have lost the console (see `switchyard deploy status --console \(client.url)`)")
        }
        print("rollout #\(rollout.id) of \(service) \(rollout.version): \(result)")
        if result.hasPrefix("refused") { Glibc.exit(1) }
    }

    /// The rollout a command is about: the run named, else the newest (running) one of the service.
    static func target(_ client: ConsoleClient, service: String, run: String?, running: Bool) -> RolloutSummary {
        if let run {
            let recent = attempt { () throws(ConsoleFailure) in try client.rollouts(service: service, limit: 100) }
            guard let rollout = recent.first(where: { $0.run == run }) else { deployFail("no run \(run) of \(service) among its last 100 rollouts at the console") }
            return rollout
        }
        let newest = attempt { () throws(ConsoleFailure) in try client.rollouts(service: service, state: running ? "running" : nil, limit: 1) }
        guard let rollout = newest.first else {
            deployFail(running ? "no rollout of \(service) is running (see `switchyard deploy status --console \(client.url)`)"
                               : "the console has no rollout of \(service)")
        }
        return rollout
    }

    // MARK: Status

    /// Prints the service's newest rollout; with `watch`, follows it until it ends and
    /// returns the exit code its outcome stands for (0 promoted, 1 rolled back, 2 otherwise).
    static func status(_ client: ConsoleClient, service: String, json: Bool, watch: Bool) -> Int32 {
        let newest = attempt { () throws(ConsoleFailure) in try client.rollouts(service: service, limit: 1) }
        guard let summary = newest.first else {
            if json {
                let none = (try? JSONSerialization.data(withJSONObject: ["rollout": NSNull(), "service": service], options: [.sortedKeys])) ?? Data()
                print(String(decoding: none, as: UTF8.self))
            } else { print("no rollout of \(service) at the console \(client.url)") }
            return watch ? 2 : 0
        }
        var detail = attempt { () throws(ConsoleFailure) in try client.rollout(summary.id) }
        if json && !watch {
            let encoder = ConsoleJSON.encoder
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            print((try? encoder.encode(detail)).map { String(decoding: $0, as: UTF8.self) } ?? "{}")
            return 0
        }
        if !json { printDetail(detail, client: client) }
        guard watch else { return 0 }
        // Into a pipe or a file (a CI log) stdout is block-buffered: each line goes out as it comes.
        fflush(nil)
        // From now on: the feed's entries after the ones that exist.
        var last = 0
        for _ in 0..<1000 {
            let page = attempt { () throws(ConsoleFailure) in try client.events(after: last, wait: 0, rollout: summary.id) }
            if page.entries.isEmpty || page.last <= last { last = max(last, page.last); break }
            last = page.last
        }
        var shown = stateLine(detail.rollout)
        var lost = false
        while isLive(detail.rollout.state) {
            do {
                let page = try client.events(after: last, wait: 25, rollout: summary.id)
                last = max(last, page.last)
                if lost { FileHandle.standardError.write(Data("switchyard deploy: the console is reachable again\n".utf8)); lost = false }
                for entry in page.entries {
                    if json { print(encoded(entry)) } else { print("\(clock(entry.time)) \((entry.environment ?? "-").padding(toLength: 6, withPad: " ", startingAt: 0)) \(entry.message)") }
                }
                detail = try client.rollout(summary.id)
                let line = stateLine(detail.rollout)
                if line != shown && !json { print(line) }
                shown = line
                fflush(nil)
            } catch {
                guard error.isTransient else { fail(error) }
                if !lost { FileHandle.standardError.write(Data("switchyard deploy: warning: \(error); still watching\n".utf8)); lost = true }
                sleep(2)
            }
        }
        switch detail.rollout.state {
        case "promoted": return 0
        case "rolled_back": return 1
        default: return 2
        }
    }

    static func isLive(_ state: String) -> Bool { state == "running" || state == "pending" }

    static func stateLine(_ r: RolloutSummary) -> String {
        switch r.state {
        case "running", "pending":
            return "  \(r.state.uppercased()): \(r.environment ?? "-"), \(r.progress ?? "-")\(r.reason.map { " (\($0))" } ?? "")"
        case "crashed":
            return "  CRASHED: \(r.reason ?? "")"
        default:
            return "  \(r.state.uppercased())\(r.endedAt.map { " at \($0)" } ?? "")\(r.reason.map { ": \($0)" } ?? "")"
        }
    }

    static func printDetail(_ detail: RolloutDetail, client: ConsoleClient) {
        let r = detail.rollout
        print("rollout #\(r.id) (run \(r.run)): \(r.service) \(r.version) by \(r.actor), started \(r.startedAt); \(r.mode)\(r.host.map { " on \($0)" } ?? "")")
        print(stateLine(r))
        if r.state == "crashed" {
            print("  To roll back: switchyard deploy abort --console \(client.url) --service \(r.service)")
        }
        if let change = r.change {
            let parts = [change.commit.map { "commit \($0)" }, change.commitTime.map { "committed \($0)" }, change.ticket.map { "ticket \($0)" },
                         change.link].compactMap { $0 }
            if !parts.isEmpty { print("  change: \(parts.joined(separator: ", "))") }
        }
        print("  environments: " + r.environments.map { "\($0.name) \($0.state)" }.joined(separator: ", "))
        for d in detail.deployments {
            print("  #\(d.id) \(d.environment): \(d.strategy) to \(d.pool ?? "?"): \(d.outcome)\(d.reason.map { " (\($0))" } ?? "")")
        }
        if !detail.events.isEmpty {
            print("  last events:")
            for e in detail.events.suffix(5) { print("    \(clock(e.time)) \(e.environment ?? "-") \(e.message)") }
        }
    }

    // MARK: History

    static func history(_ client: ConsoleClient, service: String?, environment: String?, limit: Int, json: Bool) {
        let rows = attempt { () throws(ConsoleFailure) in try client.deployments(service: service, environment: environment, limit: limit) }
        if json {
            let encoder = ConsoleJSON.encoder
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            print((try? encoder.encode(rows)).map { String(decoding: $0, as: UTF8.self) } ?? "[]")
            return
        }
        print("ID    ROLLOUT SERVICE      ENV      STRATEGY   VERSION                          OUTCOME      STARTED                  ACTOR")
        for d in rows {
            func col(_ value: Any, _ width: Int) -> String { "\(value)".padding(toLength: width, withPad: " ", startingAt: 0) }
            print("\(col(d.id, 5)) \(col(d.rollout, 7)) \(col(d.service, 12)) \(col(d.environment, 8)) \(col(d.strategy, 10)) \(col(d.version, 32)) \(col(d.outcome, 12)) \(col(d.startedAt, 24)) \(d.actor)")
            if let reason = d.reason { print("      reason: \(reason)") }
        }
    }

    // MARK: Formatting

    /// HH:mm:ss in local time, as the rollout's own lines.
    static func clock(_ iso: String) -> String {
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = parser.date(from: iso) ?? ISO8601DateFormatter().date(from: iso) else { return iso }
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: date)
    }

    static func encoded<T: Encodable>(_ value: T) -> String {
        (try? ConsoleJSON.encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

}
