import Foundation
import SwitchyardAdminAPI

/// One pool's cumulative counters as `/metrics` reports them.
public struct PoolCounters: Sendable, Equatable {
    public var requests = 0
    /// 5xx responses plus exchanges that ended without a response.
    public var errors = 0
    /// Cumulative histogram: (upper bound in seconds, count at or below it); +Inf last.
    public var buckets: [(bound: Double, count: Int)] = []

    public static func == (a: PoolCounters, b: PoolCounters) -> Bool {
        a.requests == b.requests && a.errors == b.errors && a.buckets.map(\.count) == b.buckets.map(\.count)
    }

    /// What happened between `earlier` and this sample.
    public func since(_ earlier: PoolCounters) -> PoolCounters {
        var d = PoolCounters(requests: requests - earlier.requests, errors: errors - earlier.errors, buckets: buckets)
        if earlier.buckets.count == buckets.count {
            for i in buckets.indices { d.buckets[i].count -= earlier.buckets[i].count }
        }
        return d
    }

    public var errorRate: Double { requests > 0 ? Double(errors) / Double(requests) : 0 }

    /// The 99th percentile, interpolated linearly inside its bucket as Prometheus's
    /// histogram_quantile does; nil without requests.
    public func quantile(_ q: Double) -> Double? {
        guard let total = buckets.last?.count, total > 0 else { return nil }
        let rank = q * Double(total)
        var previousBound = 0.0, previousCount = 0
        for (bound, count) in buckets {
            if Double(count) >= rank {
                if bound.isInfinite { return previousBound }
                let inBucket = count - previousCount
                guard inBucket > 0 else { return bound }
                return previousBound + (bound - previousBound) * (rank - Double(previousCount)) / Double(inBucket)
            }
            previousBound = bound
            previousCount = count
        }
        return previousBound
    }
}

/// The pool and server counters of one `/metrics` scrape.
public struct MetricsSample: Sendable {
    public var pools: [String: PoolCounters] = [:]
    /// By "pool/server".
    public var servers: [String: PoolCounters] = [:]

    /// What a sample line counts toward, by metric name: the pool or the server level, and which sum.
    private enum Reading { case responses, failures, bucket }
    private static let readings: [String: (level: AdminMetric.Level, reading: Reading)] = {
        var out: [String: (AdminMetric.Level, Reading)] = [:]
        for level in [AdminMetric.Level.pool, .upstream] {
            out[AdminMetric.name(level, .responses)] = (level, .responses)
            out[AdminMetric.name(level, .failures)] = (level, .failures)
            out[AdminMetric.bucketName(level)] = (level, .bucket)
        }
        return out
    }()

    public init(text: String) {
        var buckets: [String: [(Double, Int)]] = [:]
        var serverBuckets: [String: [(Double, Int)]] = [:]
        for line in text.split(separator: "\n") {
            guard let brace = line.firstIndex(of: "{"), let close = line.firstIndex(of: "}"), brace < close,
                  let (level, reading) = Self.readings[String(line[..<brace])] else { continue }
            let isPool = level == .pool
            let labels = Self.labels(line[line.index(after: brace)..<close])
            guard let pool = labels["pool"], let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)) else { continue }
            var key = pool
            if !isPool { guard let server = labels["server"] else { continue }; key = "\(pool)/\(server)" }
            func add(_ requests: Int, _ errors: Int) {
                func sum(_ a: Int, _ b: Int) -> Int { let (r, o) = a.addingReportingOverflow(b); return o ? .max : r }
                if isPool {
                    pools[key, default: PoolCounters()].requests = sum(pools[key, default: PoolCounters()].requests, requests)
                    pools[key, default: PoolCounters()].errors = sum(pools[key, default: PoolCounters()].errors, errors)
                } else {
                    servers[key, default: PoolCounters()].requests = sum(servers[key, default: PoolCounters()].requests, requests)
                    servers[key, default: PoolCounters()].errors = sum(servers[key, default: PoolCounters()].errors, errors)
                }
            }
            // Counters come from the network: anything that is not a count a proxy could have made is skipped.
            guard value >= 0, value < 1e15 else { continue }
            let count = Int(value)
            switch reading {
            case .responses: add(count, labels["class"] == "5xx" ? count : 0)
            case .failures: add(count, count)
            case .bucket:
                let le = labels["le"] ?? "+Inf"
                let entry = (le == "+Inf" ? Double.infinity : Double(le) ?? .infinity, count)
                if isPool { buckets[key, default: []].append(entry) } else { serverBuckets[key, default: []].append(entry) }
            }
        }
        for (key, list) in buckets { pools[key, default: PoolCounters()].buckets = list.sorted { $0.0 < $1.0 } }
        for (key, list) in serverBuckets { servers[key, default: PoolCounters()].buckets = list.sorted { $0.0 < $1.0 } }
    }

    static func labels(_ text: Substring) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            out[String(kv[0])] = String(kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
        }
        return out
    }
}

/// One analysis window's figures and what they mean.
public struct AnalysisResult: Sendable {
    public enum Verdict: String, Sendable { case pass, fail, inconclusive }
    public var verdict: Verdict
    public var requests: Int
    public var errorRate: Double
    public var baselineRequests: Int?
    public var baselineErrorRate: Double?
    public var p99: Double?
    /// Why it failed, or why it is inconclusive; empty for a pass.
    public var reasons: [String]

    public var summary: String {
        var parts = ["\(requests) requests", String(format: "errors %.2f%%", errorRate * 100)]
        if let b = baselineErrorRate { parts.append(String(format: "baseline %.2f%%", b * 100)) }
        if let p99 { parts.append(String(format: "p99 %.0fms", p99 * 1000)) }
        return parts.joined(separator: ", ") + (reasons.isEmpty ? "" : ": " + reasons.joined(separator: "; "))
    }
}

/// Judges a window against the plan's criteria. Fewer than `min_requests` is inconclusive:
/// no data is never a pass and never a fail.
public struct Analyzer: Sendable {
    public let criteria: DeployPlan.Analysis
    /// Baseline rates below this are treated as this, so one error against a perfect
    /// baseline does not fail a canary on the ratio alone (0.1%).
    public static let baselineFloor = 0.001

    public init(_ criteria: DeployPlan.Analysis) { self.criteria = criteria }

    public func judge(_ window: PoolCounters, baseline: PoolCounters?) -> AnalysisResult {
        var result = AnalysisResult(verdict: .pass, requests: window.requests, errorRate: window.errorRate,
                                    baselineRequests: baseline?.requests, baselineErrorRate: baseline.map(\.errorRate),
                                    p99: window.quantile(0.99), reasons: [])
        if window.requests < criteria.minRequests {
            result.verdict = .inconclusive
            result.reasons = ["\(window.requests) of the \(criteria.minRequests) requests analysis needs"]
            return result
        }
        if let max = criteria.maxErrorRate, window.errorRate * 10_000 > Double(max) {
            result.reasons.append(String(format: "error rate %.2f%% is above %.2f%%", window.errorRate * 100, Double(max) / 100))
        }
        if let factor = criteria.maxErrorRateVsBaseline, let baseline, baseline.requests >= criteria.minRequests {
            let allowed = factor * Swift.max(baseline.errorRate, Self.baselineFloor)
            if window.errorRate > allowed {
                result.reasons.append(String(format: "error rate %.2f%% is above %.1fx the baseline's %.2f%%", window.errorRate * 100, factor, baseline.errorRate * 100))
            }
        }
        if let limit = criteria.maxP99, let p99 = result.p99, p99 * 1000 > Double(limit.milliseconds) {
            result.reasons.append(String(format: "p99 %.0fms is above %lldms", p99 * 1000, limit.milliseconds))
        }
        if !result.reasons.isEmpty { result.verdict = .fail }
        return result
    }
}
