import Foundation
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// Servers given by DNS name in `GET /v1/status` and `GET /metrics`.
extension AdminServer {
    /// A pool's names, by the file's server name: the addresses in use, those draining, and
    /// how the last resolutions went. Nil for a pool without names.
    /// `resolver` describes the DNS servers asked ("system" for the system's resolver).
    static func resolutionJSON(pool: String, names: ResolvedNames, resolver: String, dates: ISO8601DateFormatter) -> [String: Any]? {
        let entries = names.entries.values.filter { $0.pool == pool }
        guard !entries.isEmpty else { return nil }
        func time(_ seconds: Double?) -> Any {
            seconds.map { dates.string(from: Date(timeIntervalSince1970: $0)) } ?? NSNull()
        }
        var out: [String: Any] = [:]
        for entry in entries {
            out[entry.server] = [
                "host": entry.target.host,
                "port": Int(entry.target.port),
                "family": entry.policy.family.rawValue,
                "interval_ms": entry.policy.interval.milliseconds,
                "resolver": resolver,
                "addresses": entry.addresses.map(\.description),
                "draining": entry.draining.keys.map(\.description).sorted(),
                "last_resolution": time(entry.lastAttempt),
                "last_success": time(entry.lastSuccess),
                "last_error": entry.lastError ?? NSNull(),
                "stale": entry.isStale,
                "consecutive_failures": entry.consecutiveFailures,
                "resolutions": entry.resolutions,
                "failures": entry.failures,
            ] as [String: Any]
        }
        return out
    }

    /// For a server that stands for an address of a DNS name: the name, and whether the
    /// address is in the name's last answer (else it drains).
    static func resolution(pool: String, server: ServerSnapshot, names: ResolvedNames) -> (resolvedFrom: String, inAnswer: Bool)? {
        guard let configured = ResolvedNames.configuredName(of: server.name),
              let entry = names.entries[ResolvedNames.key(pool: pool, server: configured)] else { return nil }
        return (configured, entry.addresses.contains(server.address))
    }

    /// Prometheus lines for every name.
    static func resolutionMetrics(control: ControlPlane) -> String {
        let entries = control.resolution.names.entries.values.sorted { $0.key < $1.key }
        guard !entries.isEmpty else { return "" }
        func header(_ name: String, _ type: String, _ help: String) -> String { "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        var out = header(AdminMetric.dnsResolutions, "counter", "Resolutions of each server's DNS name, by result.")
        for entry in entries {
            let labels = "pool=\"\(entry.pool)\",server=\"\(entry.server)\""
            out += "\(AdminMetric.dnsResolutions){\(labels),result=\"success\"} \(entry.resolutions - entry.failures)\n"
            out += "\(AdminMetric.dnsResolutions){\(labels),result=\"failure\"} \(entry.failures)\n"
        }
        let gauges: [(String, String, (ResolvedNames.Entry) -> Int)] = [
            (AdminMetric.dnsAddresses, "Addresses of each server's DNS name in use (the last good answer).", { $0.addresses.count }),
            (AdminMetric.dnsDraining, "Addresses that left the answer and finish their requests.", { $0.draining.count }),
            (AdminMetric.dnsStale, "Whether the last resolution failed (1) and the last good answer stays in use.", { $0.isStale ? 1 : 0 }),
        ]
        for (name, help, value) in gauges {
            out += header(name, "gauge", help)
            for entry in entries { out += "\(name){pool=\"\(entry.pool)\",server=\"\(entry.server)\"} \(value(entry))\n" }
        }
        return out
    }
}
