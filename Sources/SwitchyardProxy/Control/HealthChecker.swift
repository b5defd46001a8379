import CLibevent
import COpenSSL
import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardRouting

/// What health checks need from the control plane, and tell it.
protocol HealthCheckHost: AnyObject {
    var config: SwitchyardConfig { get }
    /// TLS client contexts of pools that talk TLS to their servers.
    var upstreamTLS: [String: TLSClientContext] { get }
    /// The servers the runtime state has, whatever their health.
    func snapshotIgnoringHealth() -> RoutingSnapshot
    /// A server went up or down, or what it reports changed its weight.
    func healthChanged()
    /// A server passed enough checks to come (back) into rotation.
    func serverCameUp(pool: String, server: String)
}

/// Active health checks, run on the control thread with libevent's HTTP client: workers
/// never wait for a check. `fall` failures in a row take a server out of rotation, `rise`
/// passes bring it back; each transition publishes a new snapshot and is logged.
final class HealthChecker {
    /// What the checks know about one server.
    final class ServerHealth {
        let pool: String
        let server: String
        var address: SocketAddress
        var connection: OpaquePointer?
        /// In rotation as far as health is concerned.
        var healthy: Bool
        /// Added or undrained and not yet passed `rise` checks.
        var pending: Bool
        var passes = 0
        var failures = 0
        var lastResult = "not checked yet"
        var lastCheck: Date?
        var inFlight = false
        /// Why the check in flight failed, once libevent has said (kept apart from `lastResult`,
        /// which describes the last finished check).
        var pendingError: String?
        /// What the instance reported in `X-Switchyard-Load` (shares 0...1, weight in percent).
        var reportedCPU: Double?
        var reportedMemory: Double?
        var reportedWeight: Int?
        weak var checker: HealthChecker?

        init(pool: String, server: String, address: SocketAddress, healthy: Bool) {
            self.pool = pool
            self.server = server
            self.address = address
            self.healthy = healthy
            self.pending = !healthy
        }

        var key: String { "\(pool)/\(server)" }
        var status: String { healthy ? "up" : (pending ? "pending" : "down") }
    }

    private unowned let host: HealthCheckHost
    private let base: OpaquePointer
    private(set) var servers: [String: ServerHealth] = [:]
    private var timers: [OpaquePointer] = []
    private var timerContexts: [PoolTimer] = []

    final class PoolTimer {
        let pool: String
        weak var checker: HealthChecker?
        init(pool: String, checker: HealthChecker) { self.pool = pool; self.checker = checker }
    }

    init(host: HealthCheckHost, base: OpaquePointer) {
        self.host = host
        self.base = base
    }

    /// Servers health checks keep out of rotation.
    var down: Set<String> { Set(servers.values.filter { !$0.healthy }.map(\.key)) }

    /// Matches the checked servers to the configuration and runtime state: new servers of a
    /// checked pool start pending (out of rotation until they pass `rise` checks), except at
    /// start-up, where servers are assumed up and checked at once.
    func sync(startup: Bool) {
        for timer in timers { event_free(timer) }
        timers.removeAll()
        timerContexts.removeAll()
        var wanted: Set<String> = []
        let snapshot = host.snapshotIgnoringHealth()
        for pool in host.config.pools {
            guard let health = pool.health, let live = snapshot.pools.first(where: { $0.name == pool.name }) else { continue }
            for server in live.servers {
                let key = "\(pool.name)/\(server.name)"
                wanted.insert(key)
                if let existing = servers[key] {
                    if existing.address != server.address {
                        if let c = existing.connection { evhttp_connection_free(c) }
                        existing.connection = nil
                        existing.address = server.address
                    }
                } else {
                    let entry = ServerHealth(pool: pool.name, server: server.name, address: server.address, healthy: startup)
                    entry.checker = self
                    servers[key] = entry
                }
            }
            let context = PoolTimer(pool: pool.name, checker: self)
            timerContexts.append(context)
            let timer = event_new(base, -1, EventFlags.persist, healthTimerCallback, Unmanaged.passUnretained(context).toOpaque())!
            var tv = timeval(milliseconds: health.interval.milliseconds)
            event_add(timer, &tv)
            timers.append(timer)
            runChecks(pool: pool.name) // at once, not one interval later
        }
        for (key, entry) in servers where !wanted.contains(key) {
            if let c = entry.connection { evhttp_connection_free(c) }
            servers[key] = nil
        }
    }

    /// A server that was drained (or just added) must pass its checks before it takes traffic again.
    func markPending(pool: String, server: String) {
        guard let entry = servers["\(pool)/\(server)"] else { return }
        entry.healthy = false
        entry.pending = true
        entry.passes = 0
        check(entry)
    }

    fileprivate func runChecks(pool: String) {
        for entry in servers.values where entry.pool == pool { check(entry) }
    }

    private func check(_ entry: ServerHealth) {
        guard !entry.inFlight, let health = host.config.pool(named: entry.pool)?.health else { return }
        if entry.connection == nil {
            if let tls = host.upstreamTLS[entry.pool] {
                // A TLS pool is checked over TLS, verified like its traffic.
                guard let ssl = tls.session(fd: -1, host: entry.address.host),
                      let bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                               Int32(BEV_OPT_CLOSE_ON_FREE.rawValue | BEV_OPT_DEFER_CALLBACKS.rawValue)) else {
                    record(entry, passed: false, result: "cannot start TLS")
                    return
                }
                entry.connection = evhttp_connection_base_bufferevent_new(base, nil, bev, entry.address.host, entry.address.port)
            } else {
                entry.connection = evhttp_connection_base_new(base, nil, entry.address.host, entry.address.port)
            }
            var tv = timeval(milliseconds: health.timeout.milliseconds)
            evhttp_connection_set_timeout_tv(entry.connection, &tv)
            evhttp_connection_set_retries(entry.connection, 0)
        }
        guard let connection = entry.connection else { record(entry, passed: false, result: "cannot create a connection"); return }
        // The request holds the entry until its callback runs.
        let context = Unmanaged.passRetained(entry).toOpaque()
        guard let request = evhttp_request_new(healthResponseCallback, context) else {
            Unmanaged<ServerHealth>.fromOpaque(context).release()
            return
        }
        evhttp_request_set_error_cb(request, healthErrorCallback)
        evhttp_add_header(evhttp_request_get_output_headers(request), "Host", entry.address.description)
        evhttp_add_header(evhttp_request_get_output_headers(request), "User-Agent", "switchyard-health-check")
        entry.inFlight = true
        entry.pendingError = nil
        if evhttp_make_request(connection, request, EVHTTP_REQ_GET, health.path) != 0 {
            entry.inFlight = false
            record(entry, passed: false, result: "cannot send the check")
        }
    }

    fileprivate func completed(_ entry: ServerHealth, status: Int, load: String? = nil) {
        entry.inFlight = false
        guard let health = host.config.pool(named: entry.pool)?.health else { return }
        if status > 0 {
            let before = (entry.reportedCPU, entry.reportedWeight)
            Self.parseLoad(load, into: entry)
            if health.adaptWeight && (before.0 != entry.reportedCPU || before.1 != entry.reportedWeight) {
                host.healthChanged() // the effective weight may have changed
            }
        }
        if status == 0 {
            record(entry, passed: false, result: entry.pendingError ?? "no response (refused, reset or timed out)")
        } else {
            record(entry, passed: health.expect.contains(status), result: "status \(status)")
        }
    }

    fileprivate func failed(_ entry: ServerHealth, reason: String) {
        entry.pendingError = reason
    }

    private func record(_ entry: ServerHealth, passed: Bool, result: String) {
        guard let health = host.config.pool(named: entry.pool)?.health else { return }
        entry.lastCheck = Date()
        entry.lastResult = result
        if passed {
            entry.passes += 1
            entry.failures = 0
            if !entry.healthy && entry.passes >= health.rise {
                entry.healthy = true
                entry.pending = false
                host.serverCameUp(pool: entry.pool, server: entry.server)
                transition(entry, "UP after \(entry.passes) passing check(s)")
            }
        } else {
            entry.failures += 1
            entry.passes = 0
            if entry.healthy && entry.failures >= health.fall {
                entry.healthy = false
                transition(entry, "DOWN after \(entry.failures) failed check(s) (\(result))")
            }
        }
    }

    private func transition(_ entry: ServerHealth, _ what: String) {
        logToStandardError("switchyard: health: \(entry.key) is \(what)", level: what.hasPrefix("DOWN") ? .warning : .info,
                           fields: ["server": entry.key])
        host.healthChanged()
    }

    /// Takes what the instance reported (see `ReportedLoad`); a missing header clears earlier reports.
    static func parseLoad(_ text: String?, into entry: ServerHealth) {
        let load = ReportedLoad.parse(text)
        entry.reportedCPU = load.cpu
        entry.reportedMemory = load.memory
        entry.reportedWeight = load.weightPercent
    }

    /// The percent of its weight a server should get from what it reports (100 when nothing applies).
    func loadPercent(pool: String, server: String) -> Int {
        guard let entry = servers["\(pool)/\(server)"], let health = host.config.pool(named: pool)?.health,
              health.adaptWeight else { return 100 }
        let load = ReportedLoad(cpu: entry.reportedCPU, memory: entry.reportedMemory, weightPercent: entry.reportedWeight)
        return WeightScaling.loadPercent(load, overloadCPU: health.overloadCPU)
    }

    /// What status shows of one server's checks: a copy, so that it can be written on
    /// another thread while the checks go on.
    struct CheckView: Sendable {
        let status: String
        let lastResult: String
        let lastCheck: Date?
        let passes: Int
        let failures: Int
        let reportedCPU: Double?
        let reportedMemory: Double?
        let reportedWeight: Int?

        func json(dates: ISO8601DateFormatter) -> [String: Any] {
            var load: [String: Any] = [:]
            if let v = reportedCPU { load["cpu"] = v }
            if let v = reportedMemory { load["memory"] = v }
            if let v = reportedWeight { load["weight_percent"] = v }
            return ["status": status, "last_result": lastResult, "reported_load": load,
                    "last_check": lastCheck.map { dates.string(from: $0) } ?? NSNull(),
                    "consecutive_passes": passes, "consecutive_failures": failures]
        }
    }

    /// The views of the checked servers of `pools`, by "pool/server".
    func views(pools: Set<String>) -> [String: CheckView] {
        servers.filter { pools.contains($0.value.pool) }.mapValues { entry in
            CheckView(status: entry.status, lastResult: entry.lastResult, lastCheck: entry.lastCheck,
                      passes: entry.passes, failures: entry.failures, reportedCPU: entry.reportedCPU,
                      reportedMemory: entry.reportedMemory, reportedWeight: entry.reportedWeight)
        }
    }

    func stop() {
        for timer in timers { event_free(timer) }
        timers.removeAll()
        for entry in servers.values { if let c = entry.connection { evhttp_connection_free(c) } }
        servers.removeAll()
    }
}

private let healthTimerCallback: event_callback_fn = { _, _, context in
    let timer = Unmanaged<HealthChecker.PoolTimer>.fromOpaque(context!).takeUnretainedValue()
    timer.checker?.runChecks(pool: timer.pool)
}

private let healthResponseCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { request, context in
    let entry = Unmanaged<HealthChecker.ServerHealth>.fromOpaque(context!).takeRetainedValue()
    let status = request.map { Int(evhttp_request_get_response_code($0)) } ?? 0
    var load: String? = nil
    if let request, status > 0, let value = evhttp_find_header(evhttp_request_get_input_headers(request), "X-Switchyard-Load") {
        load = String(cString: value)
    }
    entry.checker?.completed(entry, status: status, load: load)
}

private let healthErrorCallback: @convention(c) (evhttp_request_error, UnsafeMutableRawPointer?) -> Void = { error, context in
    let entry = Unmanaged<HealthChecker.ServerHealth>.fromOpaque(context!).takeUnretainedValue()
    let reason: String
    switch error {
    case EVREQ_HTTP_TIMEOUT: reason = "timeout"
    case EVREQ_HTTP_EOF: reason = "connection closed"
    case EVREQ_HTTP_INVALID_HEADER: reason = "invalid response"
    case EVREQ_HTTP_BUFFER_ERROR: reason = "connection refused or reset"
    default: reason = "request failed"
    }
    entry.checker?.failed(entry, reason: reason)
}
