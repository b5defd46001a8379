import Foundation

/// The four delivery measures per service and environment, with the raw numbers behind them:
/// - deploy frequency: deployments promoted per day over the range;
/// - lead time: from the commit's time to its promotion in that environment;
/// - change failure rate: deployments that did not end promoted (rolled back, failed, crashed)
///   over all finished deployments (rollbacks the console ran are restorations, not changes,
///   and count in neither);
/// - time to restore: for a failed deployment, from its start until traffic was back on a
///   good version: its own end when it rolled itself back, otherwise the end of the next
///   deployment in that environment that was promoted or rolled back.
public struct DeployStatistics: Codable, Sendable, Equatable {
    public var service: String
    public var environment: String
    public var since: String?
    public var until: String?
    public var days: Double
    public var deployments: Int
    public var promoted: Int
    public var failed: Int
    public var deployFrequencyPerDay: Double
    public var leadTime: Measure
    public var changeFailureRate: Double?
    public var timeToRestore: Measure

    public struct Measure: Codable, Sendable, Equatable {
        public var count: Int
        public var medianSeconds: Double?
        public var meanSeconds: Double?
        public var samples: [Sample]
    }

    public struct Sample: Codable, Sendable, Equatable {
        public var deployment: Int
        public var version: String
        public var from: String
        public var to: String
        public var seconds: Double
    }

    static let failures: Set<String> = ["rolled_back", "failed", "crashed"]

    /// Statistics of every service and environment in `facts` (finished deployments, oldest first).
    public static func compute(_ facts: [DeploymentFacts], since: String?, until: String?, now: Date = Date()) -> [DeployStatistics] {
        let groups = Dictionary(grouping: facts) { "\($0.service)\u{0}\($0.environment)" }
        return groups.keys.sorted().compactMap { key in
            guard let rows = groups[key], let first = rows.first else { return nil }
            let ordered = rows.sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }
            return compute(service: first.service, environment: first.environment, rows: ordered, since: since, until: until, now: now)
        }
    }

    static func compute(service: String, environment: String, rows: [DeploymentFacts], since: String?, until: String?, now: Date) -> DeployStatistics {
        let changes = rows.filter { $0.kind != "rollback" }
        let promoted = changes.filter { $0.outcome == "promoted" }
        let failed = changes.filter { failures.contains($0.outcome) }
        let start = Clock.date(since) ?? rows.compactMap { Clock.date($0.startedAt) }.min() ?? now
        let end = Clock.date(until) ?? now
        let days = max(end.timeIntervalSince(start) / 86_400, 1.0 / 24)

        var lead: [Sample] = []
        for d in promoted {
            guard let commit = d.commitTime, let from = Clock.date(commit), let endedAt = d.endedAt, let to = Clock.date(endedAt) else { continue }
            lead.append(Sample(deployment: d.id, version: d.version, from: commit, to: endedAt, seconds: max(0, to.timeIntervalSince(from))))
        }
        var restore: [Sample] = []
        for (index, d) in rows.enumerated() where d.kind != "rollback" && failures.contains(d.outcome) {
            guard let from = Clock.date(d.startedAt) else { continue }
            var restoredAt: String?
            if d.outcome == "rolled_back" {
                restoredAt = d.endedAt
            } else {
                restoredAt = rows.dropFirst(index + 1).first { $0.outcome == "promoted" || $0.outcome == "rolled_back" }?.endedAt
            }
            guard let restoredAt, let to = Clock.date(restoredAt) else { continue }
            restore.append(Sample(deployment: d.id, version: d.version, from: d.startedAt, to: restoredAt, seconds: max(0, to.timeIntervalSince(from))))
        }
        let finished = promoted.count + failed.count
        return DeployStatistics(service: service, environment: environment, since: since, until: until, days: days,
                                deployments: changes.count, promoted: promoted.count, failed: failed.count,
                                deployFrequencyPerDay: Double(promoted.count) / days, leadTime: measure(lead),
                                changeFailureRate: finished > 0 ? Double(failed.count) / Double(finished) : nil,
                                timeToRestore: measure(restore))
    }

    static func measure(_ samples: [Sample]) -> Measure {
        let values = samples.map(\.seconds).sorted()
        guard !values.isEmpty else { return Measure(count: 0, medianSeconds: nil, meanSeconds: nil, samples: []) }
        let middle = values.count / 2
        let median = values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
        return Measure(count: values.count, medianSeconds: median, meanSeconds: values.reduce(0, +) / Double(values.count), samples: samples)
    }
}
