import Foundation
import Glibc
import SwitchyardAdminAPI

/// The process's own metrics in `GET /metrics`: the release, CPU, memory and descriptors
/// (read from /proc/self, named as Prometheus' client libraries name them), client connections
/// per worker, the access log's losses, reloads, name-resolution outcomes and readiness.
extension AdminServer {
    static func processMetrics(control: ControlPlane, stats: StatsCopy) -> String {
        func header(_ name: String, _ type: String, _ help: String) -> String { "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        let observed = control.observed
        var out = header(AdminMetric.buildInfo, "gauge", "Always 1; the version label is the release of the binary.")
        out += "\(AdminMetric.buildInfo){version=\"\(labelValue(observed.version))\"} 1\n"
        out += header(AdminMetric.ready, "gauge", "Whether the proxy takes traffic (1) or is starting or draining (0).")
        out += "\(AdminMetric.ready) \(observed.phase == .serving ? 1 : 0)\n"

        let process = ProcessSample.read()
        if let cpu = process.cpuSeconds {
            out += header(AdminMetric.processCPUSeconds, "counter", "Total user and system CPU time spent in seconds.")
            out += "\(AdminMetric.processCPUSeconds) \(cpu)\n"
        }
        if let rss = process.residentBytes {
            out += header(AdminMetric.processResidentMemory, "gauge", "Resident memory size in bytes.")
            out += "\(AdminMetric.processResidentMemory) \(rss)\n"
        }
        if let virtual = process.virtualBytes {
            out += header(AdminMetric.processVirtualMemory, "gauge", "Virtual memory size in bytes.")
            out += "\(AdminMetric.processVirtualMemory) \(virtual)\n"
        }
        if let open = process.openFDs {
            out += header(AdminMetric.processOpenFDs, "gauge", "Number of open file descriptors.")
            out += "\(AdminMetric.processOpenFDs) \(open)\n"
        }
        if let max = process.maxFDs {
            out += header(AdminMetric.processMaxFDs, "gauge", "Maximum number of open file descriptors.")
            out += "\(AdminMetric.processMaxFDs) \(max)\n"
        }
        if let start = process.startTime {
            out += header(AdminMetric.processStartTime, "gauge", "Start time of the process since unix epoch in seconds.")
            out += "\(AdminMetric.processStartTime) \(start)\n"
        }

        out += header(AdminMetric.clientConnections, "gauge", "Open client connections, by worker.")
        for (worker, count) in stats.clientConnections.enumerated() {
            out += "\(AdminMetric.clientConnections){worker=\"\(worker)\"} \(count)\n"
        }
        out += header(AdminMetric.accessLogDroppedLines, "counter", "Access-log lines dropped because the writer fell behind.")
        out += "\(AdminMetric.accessLogDroppedLines) \(control.accessLog?.droppedLines.load(ordering: .relaxed) ?? 0)\n"
        out += header(AdminMetric.accessLogWriteErrors, "counter", "Access-log writes that failed (the rest of that batch was lost).")
        out += "\(AdminMetric.accessLogWriteErrors) \(control.accessLog?.writeErrors.load(ordering: .relaxed) ?? 0)\n"

        out += header(AdminMetric.reloads, "counter", "Configuration reloads (SIGHUP or POST /v1/reload), by outcome.")
        out += "\(AdminMetric.reloads){outcome=\"success\"} \(observed.reloadSuccesses)\n"
        out += "\(AdminMetric.reloads){outcome=\"failure\"} \(observed.reloadFailures)\n"
        out += header(AdminMetric.lastReloadTime, "gauge", "When the last reload was tried, in seconds since the Unix epoch (0: never).")
        out += "\(AdminMetric.lastReloadTime) \(observed.lastReloadAt ?? 0)\n"
        out += header(AdminMetric.lastReloadSuccessTime, "gauge", "When the last successful reload happened, in seconds since the Unix epoch (0: never).")
        out += "\(AdminMetric.lastReloadSuccessTime) \(observed.lastReloadSucceededAt ?? 0)\n"
        out += header(AdminMetric.lastReloadSuccess, "gauge", "Whether the last reload succeeded (1) or failed (0); 1 before any reload.")
        out += "\(AdminMetric.lastReloadSuccess) \(observed.lastReloadSucceeded ? 1 : 0)\n"

        out += header(AdminMetric.dnsOutcomes, "counter", "Resolutions of all server names together, by outcome.")
        out += "\(AdminMetric.dnsOutcomes){outcome=\"success\"} \(observed.dnsSuccesses)\n"
        out += "\(AdminMetric.dnsOutcomes){outcome=\"failure\"} \(observed.dnsFailures)\n"

        out += header(AdminMetric.certificateExpiry, "gauge", "When each served TLS certificate expires, in seconds since the Unix epoch.")
        for (listener, expiries) in control.servedCertificates.sorted(by: { $0.key < $1.key }) {
            for expiry in expiries {
                out += "\(AdminMetric.certificateExpiry){listener=\"\(labelValue(listener))\",file=\"\(labelValue(expiry.file))\"} \(expiry.notAfter)\n"
            }
        }
        let locks = control.activeLocks
        out += header(AdminMetric.lockSince, "gauge", "When each deploy lock held now was taken, in seconds since the Unix epoch (service empty: proxy-wide).")
        for lock in locks {
            out += "\(AdminMetric.lockSince){service=\"\(labelValue(lock.service ?? ""))\",owner=\"\(labelValue(lock.owner))\"} \(lock.since.timeIntervalSince1970)\n"
        }
        out += header(AdminMetric.lockExpiry, "gauge", "When each deploy lock held now expires unless renewed, in seconds since the Unix epoch.")
        for lock in locks {
            out += "\(AdminMetric.lockExpiry){service=\"\(labelValue(lock.service ?? ""))\",owner=\"\(labelValue(lock.owner))\"} \(lock.expires.timeIntervalSince1970)\n"
        }
        return out
    }

    /// A label value in the exposition format: backslash, quote and newline escaped.
    static func labelValue(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// CPU, memory, descriptors and start time of this process, from /proc/self (Linux). A value
/// that cannot be read is nil and its metric left out.
struct ProcessSample {
    var cpuSeconds: Double?
    var residentBytes: Int?
    var virtualBytes: Int?
    var openFDs: Int?
    var maxFDs: Int?
    var startTime: Double?

    static func read() -> ProcessSample {
        var sample = ProcessSample()
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        // Fields after the command name, which is in parentheses and may hold spaces: the
        // first one here is field 3 (state) of proc(5).
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            func field(_ number: Int) -> Substring? {
                let index = number - 3
                return index >= 0 && index < fields.count ? fields[index] : nil
            }
            if ticks > 0, let user = field(14).flatMap({ Double($0) }), let system = field(15).flatMap({ Double($0) }) {
                sample.cpuSeconds = (user + system) / ticks
            }
            if let virtual = field(23).flatMap({ Int($0) }) { sample.virtualBytes = virtual }
            if let pages = field(24).flatMap({ Int($0) }), pageSize > 0 {
                let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
                if !overflow { sample.residentBytes = bytes }
            }
            if ticks > 0, let started = field(22).flatMap({ Double($0) }), let boot = bootTime() {
                sample.startTime = boot + started / ticks
            }
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            sample.openFDs = entries.count
        }
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 { sample.maxFDs = Int(clamping: limit.rlim_cur) }
        return sample
    }

    /// The system's boot time (`btime` in /proc/stat), in seconds since the Unix epoch.
    static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst("btime ".count).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
