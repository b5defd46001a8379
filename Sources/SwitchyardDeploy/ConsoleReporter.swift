import Foundation
import SwitchyardAdminClient
import SwitchyardConsoleAPI

/// Replicates one run's local history to a console, on a thread of its own, with a history
/// connection of its own (SQLite's last inserted row id is per connection, and the rollout's
/// connection belongs to the rollout's thread).
///
/// About every quarter of a second it sends the run's report (`History.report`) and records
/// the answer: what the console acknowledged, and the controls given there, which it queues
/// in the local `controls` table for the rollout's housekeeping. The rollout never waits for
/// the console: when the console is unreachable or answers 5xx the reporter retries with a
/// backoff of up to 2 s, and says once that it lost the console and once that it is back. A
/// 4xx (a bad token, say) is the operator's to fix: it is printed once and reporting stops.
///
/// The reporter finds the run's rollout by its run identity once the rollout recorded it, so it
/// can start before the rollout does; `finish` flushes what is left when the run ends.
public final class ConsoleReporter: @unchecked Sendable {
    /// How a flush ended.
    public enum Flush: Equatable, Sendable {
        /// The console has the whole run; its id of the rollout.
        case acknowledged(consoleRollout: Int?)
        /// The run recorded no rollout (refused before it started).
        case nothingToReport
        /// The console does not have all of it; why.
        case notAcknowledged(String)
    }

    public let client: ConsoleClient
    private let history: History
    private let run: String
    private let interval: Double
    private let say: @Sendable (String) -> Void
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var flushDeadline: Date?
    private var stopFlush: (@Sendable () -> Bool)?
    private var result: Flush?
    private var knownConsoleRollout: Int?
    /// The last report failed (the console is lost or refused the reports).
    private var unreachable = false

    /// The console's number for the run's rollout, once the console has answered a report.
    public var consoleRollout: Int? {
        condition.lock()
        defer { condition.unlock() }
        return knownConsoleRollout
    }

    /// The console's number for the run's rollout, waiting up to `timeout` seconds for the
    /// console's first answer: a run that ends before its first report would otherwise send its
    /// last notifications without the rollout's link. Returns at once (nil) while the console
    /// is unreachable, so a console that is down never delays a notification.
    public func waitForConsoleRollout(timeout: Double) -> Int? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while knownConsoleRollout == nil && !unreachable && result == nil {
            if !condition.wait(until: deadline) { break }
        }
        return knownConsoleRollout
    }

    /// Starts reporting.
    /// - Parameters:
    ///   - historyPath: the history file the run writes; opened again here.
    ///   - run: the run's identity (`Rollout.Options.run`).
    ///   - interval: between reports while all goes well.
    ///   - say: prints a line for the operator (the rollout's printer).
    public init(client: ConsoleClient, historyPath: String, run: String, interval: Double = 0.25,
                say: @escaping @Sendable (String) -> Void) throws(ClientError) {
        self.client = client
        history = try History(path: historyPath)
        self.run = run
        self.interval = interval
        self.say = say
        let thread = Thread { [self] in loop() }
        thread.name = "switchyard-console"
        thread.start()
    }

    /// Reports until the console has acknowledged the whole run or `timeout` seconds pass
    /// (or `shouldStop` says so, checked a few times a second), then stops the reporter.
    public func finish(timeout: Double, shouldStop: @escaping @Sendable () -> Bool = { false }) -> Flush {
        condition.lock()
        defer { condition.unlock() }
        flushDeadline = Date().addingTimeInterval(timeout)
        stopFlush = shouldStop
        condition.broadcast()
        while result == nil { condition.wait() }
        return result ?? .nothingToReport
    }

    private var flushState: (deadline: Date?, shouldStop: (@Sendable () -> Bool)?) {
        condition.lock()
        defer { condition.unlock() }
        return (flushDeadline, stopFlush)
    }

    private func end(_ flush: Flush) {
        condition.lock()
        result = flush
        condition.broadcast()
        condition.unlock()
    }

    /// Sleeps `seconds`, or less when a flush begins or its deadline comes first.
    private func pause(_ seconds: Double) {
        condition.lock()
        defer { condition.unlock() }
        let wasFlushing = flushDeadline != nil
        var until = Date().addingTimeInterval(seconds)
        if let deadline = flushDeadline { until = min(until, deadline) }
        while Date() < until {
            if !wasFlushing && flushDeadline != nil { return }
            // Short waits: a flush's `shouldStop` is polled.
            _ = condition.wait(until: min(until, Date().addingTimeInterval(0.2)))
            if wasFlushing, stopFlush?() == true { return }
        }
    }

    private func loop() {
        var delay = interval
        var rolloutID: Int?
        var lost = false
        var lastProblem: String?
        var refusal: ConsoleFailure?
        var announced = false
        while true {
            pause(delay)
            let (deadline, shouldStop) = flushState
            let flushing = deadline != nil
            if rolloutID == nil { rolloutID = history.rollout(run: run)?["id"] as? Int }
            guard let id = rolloutID else {
                if flushing { return end(.nothingToReport) }
                continue
            }
            if let refusal {
                if flushing { return end(.notAcknowledged(refusal.description)) }
                delay = 1
                continue
            }
            if let deadline {
                history.refuseConsoleControls(rollout: id)
                if history.isAcknowledged(rollout: id) { return end(.acknowledged(consoleRollout: history.consoleSync(rollout: id).consoleRollout)) }
                if shouldStop?() == true { return end(.notAcknowledged(lastProblem ?? "interrupted before the console acknowledged every row")) }
                if Date() >= deadline { return end(.notAcknowledged(lastProblem ?? "the console did not acknowledge every row in time")) }
            }
            let timeout = deadline.map { max(0.5, min(5, $0.timeIntervalSinceNow)) } ?? 5
            do {
                let answer = try Self.exchange(history: history, client: client, rollout: id, timeout: timeout)
                condition.lock()
                knownConsoleRollout = answer.rollout
                unreachable = false
                condition.broadcast()
                condition.unlock()
                if lost { say("the console is reachable again (\(client.url)); reporting resumes") }
                if !announced { say("reporting to the console \(client.url) as its rollout #\(answer.rollout)") }
                lost = false
                announced = true
                lastProblem = nil
                // A flush sends what is left at once; a running rollout reports at its pace.
                delay = flushing ? 0 : interval
            } catch {
                condition.lock()
                unreachable = true
                condition.broadcast()
                condition.unlock()
                lastProblem = error.description
                if error.isTransient {
                    if !lost { say("warning: lost the console: \(error); the rollout carries on, and reports are retried") }
                    lost = true
                    delay = min(2, max(interval, delay * 2))
                } else {
                    say("warning: \(error); the rollout carries on without reporting to the console")
                    refusal = error
                }
            }
        }
    }

    /// Sends rollout `id`'s report and records the answer.
    static func exchange(history: History, client: ConsoleClient, rollout id: Int, timeout: Double) throws(ConsoleFailure) -> ReportAnswer {
        guard let report = history.report(rollout: id) else { throw .invalidAnswer("rollout #\(id) has no run identity to report under") }
        let answer = try client.report(report, timeout: timeout)
        history.acknowledge(answer, to: report, rollout: id)
        return answer
    }

    /// Uploads rollout `id` of `history`, which ended, until the console has all of it or
    /// `timeout` seconds pass: for runs that could not report when they ran (`deploy upload`).
    public static func upload(rollout id: Int, history: History, client: ConsoleClient, timeout: Double) -> Flush {
        guard history.ensureRun(rollout: id) != nil else { return .notAcknowledged("no rollout #\(id) in \(history.path)") }
        let deadline = Date().addingTimeInterval(timeout)
        var delay = 0.25
        var lastProblem: String?
        while true {
            history.refuseConsoleControls(rollout: id)
            if history.isAcknowledged(rollout: id) { return .acknowledged(consoleRollout: history.consoleSync(rollout: id).consoleRollout) }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return .notAcknowledged(lastProblem ?? "the console did not acknowledge every row in time") }
            do {
                _ = try exchange(history: history, client: client, rollout: id, timeout: max(0.5, min(10, left)))
                delay = 0.25
            } catch {
                guard error.isTransient else { return .notAcknowledged(error.description) }
                lastProblem = error.description
                usleep(useconds_t(min(delay, max(0, left)) * 1_000_000))
                delay = min(2, delay * 2)
            }
        }
    }
}
