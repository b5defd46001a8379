import Foundation
import Glibc
import Logging
import SwitchyardConsoleAPI
import SwitchyardDeploy

/// Runs rollouts on the console: each in a `switchyard deploy run` process of its own, which
/// reports to this console like any runner (so one history holds both kinds), and dies with
/// this console instance (`--die-with-parent`): a rollout is owned by the instance that runs
/// it, and when that instance is gone its lease lapses and any instance can abort it.
///
/// Child processes are started and waited for on threads of their own; nothing here blocks
/// the web service.
public final class RunSupervisor: @unchecked Sendable {
    let store: RolloutStore
    let logger: Logger
    let dataDirectory: String
    /// This instance's name (the owner of the rollouts it runs).
    public let instance: String
    private let lock = NSLock()
    private var children: [Int: Process] = [:]
    private var consoleURL = ""
    private var runnerToken = ""
    private var certificate: String?

    init(store: RolloutStore, dataDirectory: String, instance: String, logger: Logger) {
        self.store = store
        self.dataDirectory = dataDirectory
        self.instance = instance
        self.logger = logger
    }

    /// Where children report, once the listener is up.
    func configure(consoleURL: String, runnerToken: String, certificate: String?) {
        lock.lock(); defer { lock.unlock() }
        self.consoleURL = consoleURL
        self.runnerToken = runnerToken
        self.certificate = certificate
    }

    /// The rollouts this instance runs now.
    var running: [Int] { lock.lock(); defer { lock.unlock() }; return Array(children.keys) }

    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments.first ?? "switchyard"
    }

    var runsDirectory: String { (dataDirectory as NSString).appendingPathComponent("runs") }

    /// Starts `deploy run` for a rollout recorded as pending.
    func startRun(rollout id: Int, run: String, planPath: String, version: String, environments: [String], actor: String) throws(ConsoleError) {
        var arguments = ["deploy", "run", planPath, "--version", version, "--run-id", run, "--actor", actor, "--json",
                         "--history", path(run, "sqlite"), "--die-with-parent"]
        for environment in environments { arguments += ["--env", environment] }
        try spawn(rollout: id, arguments: arguments, log: path(run, "log")) { [store, logger] status, tail in
            // A run that reported keeps its own outcome; one that never did is failed here.
            Task {
                do {
                    if let row = try await store.rolloutRow(id), RolloutStore.liveStates.contains(row.state) {
                        try await Task.sleep(for: .seconds(2))
                        try await store.failUnreported(id, reason: "the rollout process exited with status \(status) without reporting its end: \(tail)")
                    }
                } catch { logger.error("rollout #\(id): cannot record how its process ended: \(error)") }
            }
        }
    }

    /// Aborts a crashed rollout: rebuilds its history from what it reported (deployments, the
    /// drained servers, the proxies' lock tokens) and runs `deploy abort` on it, which rolls
    /// traffic back with the rollout's own strategies and locks, and reports as the rollout.
    func startAbort(rollout id: Int, service: String, report: RunReport, planPath: String, actor: String, control: Int) throws(ConsoleError) {
        let attempt = "\(report.run)-abort-\(control)"
        let historyPath = path(attempt, "sqlite")
        do {
            try FileManager.default.createDirectory(atPath: runsDirectory, withIntermediateDirectories: true)
            let history = try History(path: historyPath)
            try history.importRun(report)
        } catch {
            throw ConsoleError("cannot prepare the abort of rollout #\(id): \(error)")
        }
        let arguments = ["deploy", "abort", planPath, "--history", historyPath, "--run-id", report.run, "--actor", actor]
        try spawn(rollout: id, arguments: arguments, log: path(attempt, "log")) { [store, logger] status, tail in
            Task {
                do {
                    let result = status == 0 ? "rolled back" : "refused: the abort failed (exit \(status)): \(tail); it can be run again"
                    try await store.answerControl(control, result: result)
                    try await store.feed(topic: "control", rollout: id, service: service, environment: nil, kind: "abort", message: "abort: \(result)")
                } catch { logger.error("rollout #\(id): cannot record the abort's result: \(error)") }
            }
        }
    }

    private func path(_ name: String, _ ext: String) -> String { (runsDirectory as NSString).appendingPathComponent("\(name).\(ext)") }

    private func spawn(rollout id: Int, arguments: [String], log: String, ended: @escaping @Sendable (Int32, String) -> Void) throws(ConsoleError) {
        let (url, token, certificate) = lock.withLock { (consoleURL, runnerToken, self.certificate) }
        guard !url.isEmpty else { throw ConsoleError("the console is not listening yet") }
        do { try FileManager.default.createDirectory(atPath: runsDirectory, withIntermediateDirectories: true) } catch {
            throw ConsoleError("cannot create \(runsDirectory): \(error.localizedDescription)")
        }
        guard FileManager.default.createFile(atPath: log, contents: nil), let output = FileHandle(forWritingAtPath: log) else {
            throw ConsoleError("cannot create the rollout's log \(log)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = arguments + ["--console", url]
        var environment = ProcessInfo.processInfo.environment
        environment["SWITCHYARD_CONSOLE_TOKEN"] = token
        if let certificate { environment["SWITCHYARD_CONSOLE_CA"] = certificate } else { environment.removeValue(forKey: "SWITCHYARD_CONSOLE_CA") }
        environment.removeValue(forKey: "SWITCHYARD_CONSOLE_ADMIN_TOKEN")
        // Closes the gap between the fork and the child's prctl: a parent that is already gone by then is noticed.
        environment["SWITCHYARD_PARENT_PID"] = String(getpid())
        process.environment = environment
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        // Started and waited for on one thread: the child's death signal follows the thread
        // that started it, which lives exactly as long as the child.
        let started = DispatchSemaphore(value: 0)
        let failure = Shared<String?>(nil)
        let thread = Thread { [weak self] in
            do { try process.run() } catch {
                failure.value = "\(error)"
                started.signal()
                return
            }
            self?.lock.withLock { self?.children[id] = process }
            started.signal()
            process.waitUntilExit()
            try? output.close()
            self?.lock.withLock { _ = self?.children.removeValue(forKey: id) }
            let tail = (try? String(contentsOfFile: log, encoding: .utf8)).map { text in
                text.split(separator: "\n").suffix(3).joined(separator: " | ")
            } ?? ""
            ended(process.terminationStatus, String(tail.suffix(600)))
        }
        thread.name = "rollout-\(id)"
        thread.start()
        started.wait()
        if let message = failure.value { throw ConsoleError("cannot start \(Self.executable): \(message)") }
    }

    /// Stops every child the way an operator's Ctrl-C would (they roll back), waiting up to `timeout`.
    func stopAll(timeout: Double) {
        let processes = lock.withLock { Array(children.values) }
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, processes.contains(where: \.isRunning) { usleep(100_000) }
    }
}

/// A value shared between threads under a lock.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
