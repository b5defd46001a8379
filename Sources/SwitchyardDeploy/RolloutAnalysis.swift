import Foundation

extension Rollout {
    // MARK: Analysis over time

    /// A check of every proxy of `fleet` (guard trips and drift, see `check(_:)`) to call
    /// from a wait's tick: it looks at most every half second.
    func periodicCheck(_ fleet: ProxyFleet) -> () throws -> Void {
        var last = Date.distantPast
        return { [self] in
            guard Date().timeIntervalSince(last) >= 0.5 else { return }
            last = Date()
            try check(fleet)
        }
    }

    /// Analyses `pool` (against `baseline`) every interval for `duration`, then until the
    /// latest conclusive result is a pass, from the counters of every proxy of `fleet` added
    /// together (with `servers`, only theirs). Throws `Failure` when failed intervals reach
    /// the failure limit, when a proxy's guard trips or a proxy drifts (checked every half
    /// second), or when `tick` throws.
    /// - Returns: true when `deploy promote` ended it early.
    @discardableResult
    func analyse(_ fleet: ProxyFleet, pool: String, servers: [String]? = nil, baseline: String?, duration: Double?,
                 failures: inout Int, label: String, tick: (() throws -> Void)? = nil) throws -> Bool {
        func counters(_ m: MetricsSample, _ p: String) -> PoolCounters {
            if let servers, p == pool { return PoolCounters.sum(servers.map { m.servers["\(p)/\($0)"] ?? PoolCounters() }) }
            return m.pools[p] ?? PoolCounters()
        }
        var start = try metrics(fleet)
        let began = Date()
        let pausedBefore = pausedSeconds
        let interval = Double(plan.analysis.interval.milliseconds) / 1000
        var lastConclusive: AnalysisResult.Verdict?
        var nextAnalysis = Date().addingTimeInterval(interval)
        let check = periodicCheck(fleet)
        var localFailures = failures
        live.stageLength = duration ?? 0
        live.until = duration.map { Date().addingTimeInterval($0) }
        defer { failures = localFailures; live.until = nil }
        var done = false
        while !done {
            let skipped = try wait(0.2) { [self] in
                try check()
                try tick?()
                guard Date() >= nextAnalysis else { return }
                nextAnalysis = Date().addingTimeInterval(interval)
                let now = try metrics(fleet)
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
            if skipped { return true }
        }
        return false
    }
}
