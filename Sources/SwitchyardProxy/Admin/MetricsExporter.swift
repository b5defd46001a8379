import CLibevent
import COpenSSL
import Foundation
import Glibc
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// `GET /metrics`: Prometheus text.
extension AdminServer {
    /// The counters of one server or service, read from a merged array.
    struct Counters {
        /// Response classes, in the order `ServerStats.statusClass` counts them.
        static let statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        let values: ArraySlice<Int>
        init(_ array: [Int], index: Int) {
            let base = index * ServerStats.stride
            values = base + ServerStats.stride <= array.count ? array[base..<base + ServerStats.stride] : ArraySlice(repeating: 0, count: ServerStats.stride)
        }
        init(sum: [Counters]) {
            var total = [Int](repeating: 0, count: ServerStats.stride)
            for c in sum { for (i, v) in c.values.enumerated() { total[i] &+= v } }
            values = total[...]
        }
        subscript(_ field: Int) -> Int { values[values.startIndex + field] }

        var json: [String: Any] {
            ["active_requests": self[ServerStats.active], "requests": self[ServerStats.requests],
             "responses": Dictionary(uniqueKeysWithValues: Self.statusClasses.enumerated().map { ($0.element, self[ServerStats.statusClass + $0.offset]) }),
             "failures": self[ServerStats.failures]]
        }

        /// Prometheus sample lines for these counters (each line without the family's name), by family.
        func samples(_ labels: String, connections: Bool) -> [(family: AdminMetric.Family, lines: String)] {
            var responses = ""
            for (i, cls) in Self.statusClasses.enumerated() {
                responses += "{\(labels),class=\"\(cls)\"} \(self[ServerStats.statusClass + i])\n"
            }
            var histogram = ""
            var cumulative = 0
            for (i, bound) in ServerStats.bucketBounds.enumerated() {
                cumulative += self[ServerStats.latencyBuckets + i]
                histogram += "_bucket{\(labels),le=\"\(bound)\"} \(cumulative)\n"
            }
            cumulative += self[ServerStats.latencyBuckets + ServerStats.bucketBounds.count]
            histogram += "_bucket{\(labels),le=\"+Inf\"} \(cumulative)\n"
            histogram += "_sum{\(labels)} \(Double(self[ServerStats.latencySumMicros]) / 1_000_000)\n"
            histogram += "_count{\(labels)} \(cumulative)\n"
            var result: [(AdminMetric.Family, String)] = [
                (.responses, responses),
                (.failures, "{\(labels)} \(self[ServerStats.failures])\n"),
                (.activeRequests, "{\(labels)} \(self[ServerStats.active])\n"),
                (.requestDuration, histogram),
            ]
            if connections {
                result.append((.openConnections, "{\(labels)} \(self[ServerStats.openConnections])\n"))
                result.append((.ejections, "{\(labels)} \(self[ServerStats.ejections])\n"))
            }
            return result
        }
    }

    /// Prometheus text: per service, per pool (the sum of its servers) and per server, each
    /// with responses by class, failures, active requests and a latency histogram; then the
    /// process's own metrics. The observability listener serves the same text.
    func metrics() -> String { Self.metrics(control: control) }

    static func metrics(control: ControlPlane) -> String {
        let stats = control.collectStats()
        let snapshot = control.snapshot()
        /// HELP and TYPE lines: the start of a metric family's group.
        func header(_ name: String, _ type: String, _ help: String) -> String { "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        var out = header(AdminMetric.generation, "gauge", "Runtime state generation.")
        out += "\(AdminMetric.generation) \(control.state.generation)\n"
        out += header(AdminMetric.tlsHandshakeFailures, "counter", "TLS handshakes that failed or timed out.")
        out += "\(AdminMetric.tlsHandshakeFailures) \(stats.tlsHandshakeFailures)\n"
        out += header(AdminMetric.acceptErrors, "counter", "Accepts that failed for want of descriptors or memory (each pauses accepting for 100 ms).")
        out += "\(AdminMetric.acceptErrors) \(stats.acceptErrors)\n"
        out += header(AdminMetric.canaryWeightRatio, "gauge", "Canary share of each service (0 to 1).")
        for route in snapshot.services {
            out += "\(AdminMetric.canaryWeightRatio){service=\"\(route.name)\"} \(Double(route.canaryPool == nil ? 0 : route.canaryWeight) / 10000)\n"
        }
        out += header(AdminMetric.canaryGuardTrips, "counter", "Times the canary guard removed a failing canary.")
        for route in snapshot.services {
            out += "\(AdminMetric.canaryGuardTrips){service=\"\(route.name)\"} \(control.guardTripCounts[route.name] ?? 0)\n"
        }
        let families: [(family: AdminMetric.Family, type: String, help: String)] = [
            (.responses, "counter", "Responses by status class"),
            (.failures, "counter", "Exchanges that ended without a response"),
            (.activeRequests, "gauge", "Requests in flight"),
            (.requestDuration, "histogram", "Time from request head to last response byte"),
            (.openConnections, "gauge", "Open upstream connections"),
            (.ejections, "counter", "Ejections by passive outlier detection"),
        ]
        for level in AdminMetric.Level.allCases {
            var entities: [(labels: String, counters: Counters)] = []
            let what: String
            switch level {
            case .service:
                what = "service"
                for route in snapshot.services {
                    entities.append(("service=\"\(route.name)\"", Counters(stats.services, index: route.statsID)))
                }
            case .pool:
                what = "pool"
                for pool in snapshot.pools {
                    // One version label per pool (its current one), so the series stay as many as the pools.
                    let labels = "pool=\"\(pool.name)\"" + (pool.version.map { ",version=\"\($0)\"" } ?? "")
                    entities.append((labels, Counters(sum: pool.servers.map { Counters(stats.servers, index: $0.id) })))
                }
            case .upstream:
                what = "upstream server"
                for pool in snapshot.pools {
                    for server in pool.servers {
                        entities.append(("pool=\"\(pool.name)\",server=\"\(server.name)\"", Counters(stats.servers, index: server.id)))
                    }
                }
            }
            let samples = entities.map { $0.counters.samples($0.labels, connections: level != .service) }
            // One group per metric family, as the exposition format requires.
            for family in families where family.family.isReported(by: level) {
                let name = AdminMetric.name(level, family.family)
                out += header(name, family.type, "\(family.help), by \(what).")
                for entity in samples {
                    guard let lines = entity.first(where: { $0.family == family.family })?.lines else { continue }
                    for line in lines.split(separator: "\n") { out += "\(name)\(line)\n" }
                }
            }
        }
        out += header(AdminMetric.serverHealthy, "gauge", "Whether active health checks find each server up (1) or down/pending (0).")
        for pool in snapshot.pools {
            for server in pool.servers {
                out += "\(AdminMetric.serverHealthy){pool=\"\(pool.name)\",server=\"\(server.name)\"} \(server.healthy ? 1 : 0)\n"
            }
        }
        out += header(AdminMetric.serverEffectiveWeight, "gauge",
                      "The weight balancing uses now (0 when drained or down; scaled by slow start and reported load).")
        for pool in snapshot.pools {
            for server in pool.servers {
                out += "\(AdminMetric.serverEffectiveWeight){pool=\"\(pool.name)\",server=\"\(server.name)\"} \(server.weight)\n"
            }
        }
        var cpu = header(AdminMetric.serverReportedCPU, "gauge", "CPU use the instance reports in X-Switchyard-Load.")
        var memory = header(AdminMetric.serverReportedMemory, "gauge", "Memory use the instance reports in X-Switchyard-Load.")
        for entry in (control.health?.servers.values.sorted { $0.key < $1.key }) ?? [] {
            let labels = "pool=\"\(entry.pool)\",server=\"\(entry.server)\""
            if let v = entry.reportedCPU { cpu += "\(AdminMetric.serverReportedCPU){\(labels)} \(v)\n" }
            if let v = entry.reportedMemory { memory += "\(AdminMetric.serverReportedMemory){\(labels)} \(v)\n" }
        }
        out += cpu + memory
        out += header(AdminMetric.serverReady, "gauge", "Whether each server takes new requests (1) or drains/is in maintenance (0).")
        for pool in snapshot.pools {
            for server in pool.servers {
                out += "\(AdminMetric.serverReady){pool=\"\(pool.name)\",server=\"\(server.name)\"} \(server.state == .ready ? 1 : 0)\n"
            }
        }
        out += resolutionMetrics(control: control)
        out += processMetrics(control: control, stats: stats)
        return out
    }
}
