import Foundation

/// The console's `GET /metrics`: rollouts in Prometheus text, computed from the database at
/// each scrape (every instance on one PostgreSQL answers the same). Per service and environment:
/// - `switchyard_rollouts_total{service,environment,outcome}`: finished deployments (one per
///   environment a rollout reached) by outcome (`promoted`, `rolled_back`, `failed`, `crashed`, ...);
/// - `switchyard_rollouts_in_progress{service,environment}`: deployments running now;
/// - `switchyard_rollout_step_duration_seconds{service,environment}`: a histogram of how long each
///   step of a deployment lasted (from the step to the next one, the last one to the deployment's end);
/// - `switchyard_rollout_time_to_rollback_seconds{service,environment}`: a histogram of the time from
///   a deployment's start until it was rolled back.
public enum RolloutMetrics {
    public static let rolloutsTotal = "switchyard_rollouts_total"
    public static let rolloutsInProgress = "switchyard_rollouts_in_progress"
    public static let stepDuration = "switchyard_rollout_step_duration_seconds"
    public static let timeToRollback = "switchyard_rollout_time_to_rollback_seconds"

    /// Histogram bounds, in seconds (steps last from seconds to hours).
    public static let bounds: [Double] = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200]

    /// One deployment as the metrics see it.
    public struct Deployment: Sendable, Equatable {
        public var rolloutID: Int
        public var localID: Int
        public var service: String
        public var environment: String
        public var outcome: String
        public var startedAt: String
        public var endedAt: String?
        public init(rolloutID: Int, localID: Int, service: String, environment: String, outcome: String, startedAt: String, endedAt: String?) {
            self.rolloutID = rolloutID; self.localID = localID; self.service = service; self.environment = environment
            self.outcome = outcome; self.startedAt = startedAt; self.endedAt = endedAt
        }
    }

    /// One step: the deployment it belongs to (rollout and local id) and when it happened.
    public struct Step: Sendable, Equatable {
        public var rolloutID: Int
        public var deploymentLocalID: Int
        public var time: String
        public init(rolloutID: Int, deploymentLocalID: Int, time: String) {
            self.rolloutID = rolloutID; self.deploymentLocalID = deploymentLocalID; self.time = time
        }
    }

    struct Key: Hashable, Comparable {
        var service: String
        var environment: String
        static func < (a: Key, b: Key) -> Bool { (a.service, a.environment) < (b.service, b.environment) }
        var labels: String { "service=\"\(escape(service))\",environment=\"\(escape(environment))\"" }
    }

    struct Histogram {
        var counts = [Int](repeating: 0, count: RolloutMetrics.bounds.count)
        var sum = 0.0
        var count = 0
        mutating func observe(_ seconds: Double) {
            let value = max(0, seconds)
            for (i, bound) in RolloutMetrics.bounds.enumerated() where value <= bound { counts[i] += 1 }
            sum += value
            count += 1
        }
    }

    /// Prometheus text for `deployments` and their `steps`.
    public static func text(deployments: [Deployment], steps: [Step]) -> String {
        var outcomes: [Key: [String: Int]] = [:]
        var running: [Key: Int] = [:]
        var stepDurations: [Key: Histogram] = [:]
        var rollbacks: [Key: Histogram] = [:]
        var byDeployment: [String: Deployment] = [:]
        for d in deployments {
            let key = Key(service: d.service, environment: d.environment)
            byDeployment["\(d.rolloutID)/\(d.localID)"] = d
            if d.outcome == "running" {
                running[key, default: 0] += 1
                continue
            }
            outcomes[key, default: [:]][d.outcome, default: 0] += 1
            if d.outcome == "rolled_back", let start = Clock.date(d.startedAt), let end = Clock.date(d.endedAt) {
                rollbacks[key, default: Histogram()].observe(end.timeIntervalSince(start))
            }
        }
        let grouped = Dictionary(grouping: steps) { "\($0.rolloutID)/\($0.deploymentLocalID)" }
        for (id, list) in grouped {
            guard let deployment = byDeployment[id] else { continue }
            let key = Key(service: deployment.service, environment: deployment.environment)
            let times = list.compactMap { Clock.date($0.time) }.sorted()
            // Each step lasts until the next; the last one until the deployment ended (a running one's is not over).
            var ends = Array(times.dropFirst())
            if let end = Clock.date(deployment.endedAt) { ends.append(end) }
            for (start, end) in zip(times, ends) {
                stepDurations[key, default: Histogram()].observe(end.timeIntervalSince(start))
            }
        }

        func header(_ name: String, _ type: String, _ help: String) -> String { "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        var out = header(rolloutsTotal, "counter", "Finished deployments (one per environment of a rollout), by outcome.")
        for key in outcomes.keys.sorted() {
            for (outcome, count) in (outcomes[key] ?? [:]).sorted(by: { $0.key < $1.key }) {
                out += "\(rolloutsTotal){\(key.labels),outcome=\"\(escape(outcome))\"} \(count)\n"
            }
        }
        out += header(rolloutsInProgress, "gauge", "Deployments running now.")
        for key in running.keys.sorted() { out += "\(rolloutsInProgress){\(key.labels)} \(running[key] ?? 0)\n" }
        out += histogram(stepDuration, "How long each step of a deployment lasted, in seconds.", stepDurations, header: header)
        out += histogram(timeToRollback, "Time from a deployment's start until it was rolled back, in seconds.", rollbacks, header: header)
        return out
    }

    static func histogram(_ name: String, _ help: String, _ values: [Key: Histogram],
                          header: (String, String, String) -> String) -> String {
        var out = header(name, "histogram", help)
        for key in values.keys.sorted() {
            guard let h = values[key] else { continue }
            for (i, bound) in bounds.enumerated() {
                out += "\(name)_bucket{\(key.labels),le=\"\(formatBound(bound))\"} \(h.counts[i])\n"
            }
            out += "\(name)_bucket{\(key.labels),le=\"+Inf\"} \(h.count)\n"
            out += "\(name)_sum{\(key.labels)} \(h.sum)\n"
            out += "\(name)_count{\(key.labels)} \(h.count)\n"
        }
        return out
    }

    static func formatBound(_ bound: Double) -> String {
        bound == bound.rounded() ? String(Int(bound)) : String(bound)
    }

    /// A label value: backslash, quote and newline escaped.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
