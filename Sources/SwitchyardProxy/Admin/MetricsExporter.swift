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

        /// Appends this entity's samples of `family` (the family's name and `labels` on each line).
        func write(_ family: AdminMetric.Family, name: String, labels: String, to out: inout MetricsText) {
            func line(_ value: Int, _ suffix: String = "", _ extra: String = "") {
                out.append(name); out.append(suffix); out.append("{"); out.append(labels); out.append(extra); out.append("} ")
                out.append(value); out.newline()
            }
            switch family {
            case .responses:
                for (i, cls) in Self.statusClasses.enumerated() { line(self[ServerStats.statusClass + i], "", ",class=\"\(cls)\"") }
            case .failures: line(self[ServerStats.failures])
            case .activeRequests: line(self[ServerStats.active])
            case .openConnections: line(self[ServerStats.openConnections])
            case .ejections: line(self[ServerStats.ejections])
            case .requestDuration:
                var cumulative = 0
                for (i, bound) in Self.boundLabels.enumerated() {
                    cumulative += self[ServerStats.latencyBuckets + i]
                    line(cumulative, "_bucket", bound)
                }
                cumulative += self[ServerStats.latencyBuckets + ServerStats.bucketBounds.count]
                line(cumulative, "_bucket", ",le=\"+Inf\"")
                out.append(name); out.append("_sum{"); out.append(labels); out.append("} ")
                out.append("\(Double(self[ServerStats.latencySumMicros]) / 1_000_000)"); out.newline()
                line(cumulative, "_count")
            }
        }

        /// `,le="0.001"` and so on, made once.
        static let boundLabels = ServerStats.bucketBounds.map { ",le=\"\($0)\"" }
    }

    /// Prometheus text: per service, per pool (the sum of its servers) and per server, each
    /// with responses by class, failures, active requests and a latency histogram; then the
    /// process's own metrics. The observability listener serves the same text.
    func metrics(servers: Bool = true) -> Data { Self.metrics(control: control, servers: servers) }

    /// The `servers` query parameter of `GET /metrics`: `off` leaves out every per-server
    /// series, so a scrape of a large configuration stays the size of its services and pools.
    /// Throws the answer for a value that is neither `on` nor `off`.
    static func serversParameter(_ value: String?) throws(AdminError) -> Bool {
        switch value {
        case nil, "on", "true": return true
        case "off", "false": return false
        case let other?: throw AdminError(400, "invalid servers", "servers is on or off (off leaves out the per-server series), not \(other)")
        }
    }

    static func metrics(control: ControlPlane, servers includeServers: Bool = true) -> Data {
        let stats = control.collectStats()
        let snapshot = control.currentSnapshot
        func header(_ name: String, _ type: String, _ help: String) -> String { metricHeader(name, type, help) }
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
        // Thousands of servers make tens of thousands of lines: they are written as bytes into
        // one buffer, not as interpolated strings.
        var text = MetricsText()
        text.append(out)
        let serverHistograms = control.config.metrics.serverHistograms
        for level in AdminMetric.Level.allCases where includeServers || level != .upstream {
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
            // One group per metric family, as the exposition format requires.
            for family in families where family.family.isReported(by: level) {
                if level == .upstream && family.family == .requestDuration && !serverHistograms { continue }
                let name = AdminMetric.name(level, family.family)
                text.append(header(name, family.type, "\(family.help), by \(what)."))
                for entity in entities { entity.counters.write(family.family, name: name, labels: entity.labels, to: &text) }
            }
        }
        func perServer(_ name: String, _ value: (ServerSnapshot) -> Int) {
            guard includeServers else { return }
            for pool in snapshot.pools {
                for server in pool.servers {
                    text.append(name); text.append("{pool=\""); text.append(pool.name); text.append("\",server=\"")
                    text.append(server.name); text.append("\"} "); text.append(value(server)); text.newline()
                }
            }
        }
        if includeServers {
            text.append(header(AdminMetric.serverHealthy, "gauge", "Whether active health checks find each server up (1) or down/pending (0)."))
            perServer(AdminMetric.serverHealthy) { $0.healthy ? 1 : 0 }
            text.append(header(AdminMetric.serverEffectiveWeight, "gauge",
                               "The weight balancing uses now (0 when drained or down; scaled by slow start and reported load)."))
            perServer(AdminMetric.serverEffectiveWeight) { $0.weight }
            text.append(header(AdminMetric.serverReady, "gauge", "Whether each server takes new requests (1) or drains/is in maintenance (0)."))
            perServer(AdminMetric.serverReady) { $0.state == .ready ? 1 : 0 }
            text.append(serverLoadMetrics(control: control))
            text.append(resolutionMetrics(control: control))
        }
        text.append(processMetrics(control: control, stats: stats))
        return Data(text.bytes)
    }

    /// HELP and TYPE lines: the start of a metric family's group.
    private static func metricHeader(_ name: String, _ type: String, _ help: String) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    /// What instances report in `X-Switchyard-Load`, per server that reported.
    private static func serverLoadMetrics(control: ControlPlane) -> String {
        var cpu = metricHeader(AdminMetric.serverReportedCPU, "gauge", "CPU use the instance reports in X-Switchyard-Load.")
        var memory = metricHeader(AdminMetric.serverReportedMemory, "gauge", "Memory use the instance reports in X-Switchyard-Load.")
        for entry in (control.health?.servers.values.sorted { $0.key < $1.key }) ?? [] {
            let labels = "pool=\"\(entry.pool)\",server=\"\(entry.server)\""
            if let v = entry.reportedCPU { cpu += "\(AdminMetric.serverReportedCPU){\(labels)} \(v)\n" }
            if let v = entry.reportedMemory { memory += "\(AdminMetric.serverReportedMemory){\(labels)} \(v)\n" }
        }
        return cpu + memory
    }
}

/// Prometheus text being written: bytes appended to one buffer.
struct MetricsText {
    private(set) var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(1 << 20) }

    mutating func append(_ text: String) { bytes.append(contentsOf: text.utf8) }

    mutating func append(_ value: Int) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        // The magnitude as UInt: Int.min has no positive Int.
        var rest = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            } while rest > 0 && count < buffer.count
            for i in stride(from: count - 1, through: 0, by: -1) { bytes.append(buffer[i]) }
        }
    }

    mutating func newline() { bytes.append(UInt8(ascii: "\n")) }
}
