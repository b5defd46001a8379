import CLibevent
import COpenSSL
import Foundation
import Glibc
import Synchronization
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// The size of the last scrape, to size the next one's buffer.
private let lastScrapeBytes = Atomic<Int>(0)

/// `GET /metrics`: Prometheus text.
extension AdminServer {
    /// The counters of one server or service, read from a merged array.
    struct Counters {
        /// Response classes, in the order `ServerStats.statusClass` counts them.
        static let statusClasses: [StaticString] = ["1xx", "2xx", "3xx", "4xx", "5xx"]
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
             "responses": Dictionary(uniqueKeysWithValues: Self.statusClasses.enumerated().map { ($0.element.description, self[ServerStats.statusClass + $0.offset]) }),
             "failures": self[ServerStats.failures]]
        }

        /// Appends this entity's samples of `family` (the family's name and `labels` on each line).
        func write(_ family: AdminMetric.Family, name: Range<Int>, labels: Range<Int>, in texts: LabelTexts, to out: MetricsText) {
            let name = texts[name], labels = texts[labels]
            func line(_ value: Int, _ suffix: StaticString = "", _ extra: UnsafeBufferPointer<UInt8> = UnsafeBufferPointer(start: nil, count: 0)) {
                out.append(name); out.append(literal: suffix); out.append(byte: UInt8(ascii: "{"))
                out.append(labels); out.append(extra); out.append(literal: "} ")
                out.append(value); out.newline()
            }
            switch family {
            case .responses:
                for i in 0..<Self.statusClasses.count { line(self[ServerStats.statusClass + i], "", texts[texts.classLabels[i]]) }
            case .failures: line(self[ServerStats.failures])
            case .activeRequests: line(self[ServerStats.active])
            case .openConnections: line(self[ServerStats.openConnections])
            case .ejections: line(self[ServerStats.ejections])
            case .requestDuration:
                var cumulative = 0
                for i in 0..<ServerStats.bucketBounds.count {
                    cumulative += self[ServerStats.latencyBuckets + i]
                    line(cumulative, "_bucket", texts[texts.boundLabels[i]])
                }
                cumulative += self[ServerStats.latencyBuckets + ServerStats.bucketBounds.count]
                line(cumulative, "_bucket", texts[texts.infinityLabel])
                out.append(name); out.append(literal: "_sum{"); out.append(labels); out.append(literal: "} ")
                out.append("\(Double(self[ServerStats.latencySumMicros]) / 1_000_000)"); out.newline()
                line(cumulative, "_count")
            }
        }
    }

    /// The label sets and names of one scrape, made once into one buffer and referred to by
    /// ranges, so that writing a line copies bytes and touches no reference count.
    struct LabelTexts {
        private(set) var bytes: [UInt8] = []
        private(set) var classLabels: [Range<Int>] = []
        private(set) var boundLabels: [Range<Int>] = []
        private(set) var infinityLabel: Range<Int> = 0..<0
        /// Valid inside `withBytes` only.
        private var view = UnsafeBufferPointer<UInt8>(start: nil, count: 0)

        init() {
            classLabels = Counters.statusClasses.map { add(",class=\"\($0)\"") }
            boundLabels = ServerStats.bucketBounds.map { add(",le=\"\($0)\"") }
            infinityLabel = add(",le=\"+Inf\"")
        }

        mutating func add(_ text: String) -> Range<Int> {
            let start = bytes.count
            bytes.append(contentsOf: text.utf8)
            return start..<bytes.count
        }

        subscript(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: view[range]) }

        /// Runs `body` with the texts readable through the subscript.
        func withBytes<R>(_ body: (LabelTexts) -> R) -> R {
            let storage = bytes
            return storage.withUnsafeBufferPointer { buffer in
                var readable = self
                readable.view = buffer
                return body(readable)
            }
        }
    }

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

    /// What a scrape is written from, copied on the control thread: the published snapshot,
    /// the counters, and the small sections read from the control plane's own state, already
    /// as text. The reply thread writes the rest while changes go on.
    struct MetricsSource: Sendable {
        let includeServers: Bool
        let serverHistograms: Bool
        let snapshot: RoutingSnapshot
        let stats: StatsCopy
        let generation: UInt64
        let guardTripCounts: [String: Int]
        /// Reported load and DNS names (with the per-server series), then the process's own metrics.
        let tail: String
    }

    static func metricsSource(control: ControlPlane, servers includeServers: Bool = true) -> MetricsSource {
        let stats = control.collectStats()
        var tail = ""
        if includeServers {
            tail += serverLoadMetrics(control: control)
            tail += resolutionMetrics(control: control)
        }
        tail += processMetrics(control: control, stats: stats)
        return MetricsSource(includeServers: includeServers, serverHistograms: control.config.metrics.serverHistograms,
                             snapshot: control.currentSnapshot, stats: stats, generation: control.state.generation,
                             guardTripCounts: control.guardTripCounts, tail: tail)
    }

    /// A scrape written on the reply thread: 200 with the text, gzip-coded when the client
    /// takes gzip (as Prometheus does); else (the text did not fit in memory) `failure`'s
    /// answer, in the listener's own form.
    static func scrapeReply(_ source: MetricsSource, gzip: Bool, failure: (AdminError) -> RenderedReply) -> RenderedReply {
        let text: Data
        do { text = try metrics(source) } catch { return failure(error) }
        var reply = RenderedReply(status: 200, body: text, contentType: "text/plain; version=0.0.4", headers: [("Vary", "Accept-Encoding")])
        if gzip, let coded = Gzip.compress(text) {
            reply.body = coded
            reply.headers.append(("Content-Encoding", "gzip"))
        }
        return reply
    }

    /// Prometheus text: per service, per pool (the sum of its servers) and per server, each
    /// with responses by class, failures, active requests and a latency histogram; then the
    /// process's own metrics. The observability listener serves the same text.
    /// Throws (500) only when the text does not fit in memory.
    static func metrics(_ source: MetricsSource) throws(AdminError) -> Data {
        let stats = source.stats, snapshot = source.snapshot, includeServers = source.includeServers
        func header(_ name: String, _ type: String, _ help: String) -> String { metricHeader(name, type, help) }
        var out = header(AdminMetric.generation, "gauge", "Runtime state generation.")
        out += "\(AdminMetric.generation) \(source.generation)\n"
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
            out += "\(AdminMetric.canaryGuardTrips){service=\"\(route.name)\"} \(source.guardTripCounts[route.name] ?? 0)\n"
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
        // one buffer sized like the last scrape, each label set made once (`LabelTexts`).
        let text = MetricsText(reserving: lastScrapeBytes.load(ordering: .relaxed))
        text.append(out)
        let serverHistograms = source.serverHistograms
        var texts = LabelTexts()
        var serverLabels: [Range<Int>] = []
        if includeServers {
            for pool in snapshot.pools {
                for server in pool.servers { serverLabels.append(texts.add("pool=\"\(pool.name)\",server=\"\(server.name)\"")) }
            }
        }
        var groups: [(header: String, family: AdminMetric.Family, name: Range<Int>, entities: [(labels: Range<Int>, counters: Counters)])] = []
        for level in AdminMetric.Level.allCases where includeServers || level != .upstream {
            var entities: [(labels: Range<Int>, counters: Counters)] = []
            let what: String
            switch level {
            case .service:
                what = "service"
                for route in snapshot.services {
                    entities.append((texts.add("service=\"\(route.name)\""), Counters(stats.services, index: route.statsID)))
                }
            case .pool:
                what = "pool"
                for pool in snapshot.pools {
                    // One version label per pool (its current one), so the series stay as many as the pools.
                    let labels = "pool=\"\(pool.name)\"" + (pool.version.map { ",version=\"\($0)\"" } ?? "")
                    entities.append((texts.add(labels), Counters(sum: pool.servers.map { Counters(stats.servers, index: $0.id) })))
                }
            case .upstream:
                what = "upstream server"
                var k = 0
                for pool in snapshot.pools {
                    for server in pool.servers {
                        entities.append((serverLabels[k], Counters(stats.servers, index: server.id)))
                        k += 1
                    }
                }
            }
            // One group per metric family, as the exposition format requires.
            for family in families where family.family.isReported(by: level) {
                if level == .upstream && family.family == .requestDuration && !serverHistograms { continue }
                let name = AdminMetric.name(level, family.family)
                groups.append((header(name, family.type, "\(family.help), by \(what)."), family.family, texts.add(name), entities))
            }
        }
        let perServerFamilies: [(name: String, help: String, value: (ServerSnapshot) -> Int)] = includeServers ? [
            (AdminMetric.serverHealthy, "Whether active health checks find each server up (1) or down/pending (0).", { $0.healthy ? 1 : 0 }),
            (AdminMetric.serverEffectiveWeight, "The weight balancing uses now (0 when drained or down; scaled by slow start and reported load).", { $0.weight }),
            (AdminMetric.serverReady, "Whether each server takes new requests (1) or drains/is in maintenance (0).", { $0.state == .ready ? 1 : 0 }),
        ] : []
        let perServerNames = perServerFamilies.map { texts.add($0.name) }
        texts.withBytes { texts in
            for group in groups {
                text.append(group.header)
                for entity in group.entities {
                    entity.counters.write(group.family, name: group.name, labels: entity.labels, in: texts, to: text)
                }
            }
            for (family, name) in zip(perServerFamilies, perServerNames) {
                text.append(header(family.name, "gauge", family.help))
                var k = 0
                for pool in snapshot.pools {
                    for server in pool.servers {
                        text.append(texts[name]); text.append(byte: UInt8(ascii: "{")); text.append(texts[serverLabels[k]])
                        text.append(literal: "} "); text.append(family.value(server)); text.newline()
                        k += 1
                    }
                }
            }
        }
        text.append(source.tail)
        lastScrapeBytes.store(text.count, ordering: .relaxed)
        return try text.takeData()
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

/// Prometheus text being written into one malloc'd buffer, which grows with `realloc` (no
/// copy for a large one) and becomes the answer's `Data` without a copy.
final class MetricsText {
    private var base: UnsafeMutablePointer<UInt8>?
    private(set) var count = 0
    private var capacity: Int
    /// Memory ran out: nothing more is appended, and `takeData` refuses (a scrape with holes
    /// in it would be served as if whole).
    private var failed = false

    /// - Parameter expected: the size of the last scrape.
    init(reserving expected: Int = 0) {
        capacity = max(1 << 20, expected + expected / 8)
        base = malloc(capacity)?.assumingMemoryBound(to: UInt8.self)
        failed = base == nil
    }

    deinit { free(base) }

    /// Room for `more` bytes, or false from the first time memory ran out.
    @inline(__always) private func reserve(_ more: Int) -> Bool {
        if count + more <= capacity, !failed { return true }
        if failed { return false }
        let (doubled, overflow) = capacity.multipliedReportingOverflow(by: 2)
        let wanted = max(overflow ? Int.max : doubled, count + more)
        var target = wanted
        var grown = realloc(base, target)
        if grown == nil {
            target = count + more
            grown = realloc(base, target)
        }
        // A failed realloc leaves the old block as it was (freed by deinit).
        guard let grown else {
            failed = true
            return false
        }
        base = grown.assumingMemoryBound(to: UInt8.self)
        capacity = target
        return true
    }

    @inline(__always) func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, bytes.count > 0, reserve(bytes.count), let base else { return }
        (base + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    func append(_ text: String) {
        var text = text
        text.withUTF8 { append($0) }
    }

    @inline(__always) func append(literal: StaticString) {
        // withUTF8Buffer: a one-character literal has no pointer of its own (utf8Start traps).
        literal.withUTF8Buffer { append($0) }
    }

    @inline(__always) func append(byte: UInt8) {
        guard reserve(1), let base else { return }
        base[count] = byte
        count += 1
    }

    func append(_ value: Int) {
        JSONBytes.withDecimal(value) { append($0) }
    }

    @inline(__always) func newline() { append(byte: UInt8(ascii: "\n")) }

    /// The text as `Data`, which takes the buffer over.
    func takeData() throws(AdminError) -> Data {
        if failed {
            throw AdminError(500, "out of memory", "the metrics text did not fit in memory after \(count) bytes; scrape with servers=off, or try again")
        }
        guard let base, count > 0 else { return Data() }
        self.base = nil
        return Data(bytesNoCopy: base, count: count, deallocator: .free)
    }
}
