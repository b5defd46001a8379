import Foundation
import Glibc

/// Debian's `prometheus` and `promtool` (installed by scripts/deps).
enum PrometheusTools {
    static let prometheus = "/usr/bin/prometheus"
    static let promtool = "/usr/bin/promtool"

    /// Throws, naming what to install, when the binaries are missing.
    static func require() throws {
        for tool in [prometheus, promtool] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw HarnessError("\(tool) is missing: run scripts/deps (it installs Debian's prometheus package)")
        }
    }
}

/// One target Prometheus scrapes: a job name, a host:port, and optionally a bearer token file.
struct ScrapeTarget {
    let job: String
    let address: String
    var tokenFile: String? = nil
}

/// A real Prometheus server on a free loopback port, with its own temporary storage, scraping
/// `targets` every second and evaluating `ruleFiles` every second. Stopped by PID at the end.
/// Never the system service: the binary is started directly.
final class PrometheusServer {
    let process: ManagedProcess
    let port: UInt16
    let directory: String

    init(directory: String, targets: [ScrapeTarget], ruleFiles: [String] = []) throws {
        try PrometheusTools.require()
        self.directory = directory
        var config = "global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }\n"
        if !ruleFiles.isEmpty {
            config += "rule_files:\n" + ruleFiles.map { "  - \($0)\n" }.joined()
        }
        config += "scrape_configs:\n"
        for (job, group) in Dictionary(grouping: targets, by: \.job).sorted(by: { $0.key < $1.key }) {
            config += "  - job_name: \(job)\n"
            if let token = group.first?.tokenFile { config += "    authorization: { credentials_file: \(token) }\n" }
            config += "    static_configs: [ { targets: [\(group.map { "\"\($0.address)\"" }.joined(separator: ", "))] } ]\n"
        }
        let configPath = "\(directory)/prometheus.yml"
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let checked = try run(PrometheusTools.promtool, ["check", "config", configPath])
        guard checked.status == 0 else { throw HarnessError("the generated Prometheus configuration is refused: \(checked.output)\(checked.error)") }
        // Prometheus cannot take port 0: a port that was free a moment ago, tried a few times.
        var started: (ManagedProcess, UInt16)?
        var lastError = ""
        for attempt in 0..<3 {
            let candidate = freePort()
            let p = try ManagedProcess(executable: PrometheusTools.prometheus, [
                "--config.file=\(configPath)", "--storage.tsdb.path=\(directory)/prometheus-data-\(attempt)",
                "--web.listen-address=127.0.0.1:\(candidate)", "--log.level=warn",
            ], directory: directory, label: "prometheus-\(attempt)")
            let end = Date().addingTimeInterval(30)
            var ready = false
            while Date() < end, p.isRunning {
                if let r = try? curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(candidate)/-/ready"]), r.output == "200" {
                    ready = true
                    break
                }
                usleep(100_000)
            }
            if ready { started = (p, candidate); break }
            lastError = p.stderr
            p.stop()
        }
        guard let started else { throw HarnessError("Prometheus did not become ready: \(lastError)") }
        process = started.0
        port = started.1
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// GET on the HTTP API; the decoded `data` of a success, or a thrown error with Prometheus' own message.
    func api(_ path: String, _ parameters: [(String, String)] = []) throws -> Any {
        var arguments = ["-G", "\(url)\(path)"]
        for (name, value) in parameters { arguments += ["--data-urlencode", "\(name)=\(value)"] }
        let r = try curl(arguments)
        guard let object = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any] else {
            throw HarnessError("Prometheus \(path): not JSON: \(r.output)\(r.error)")
        }
        guard object["status"] as? String == "success" else {
            throw HarnessError("\(object["errorType"] as? String ?? "error"): \(object["error"] as? String ?? "\(object)")")
        }
        return object["data"] ?? NSNull()
    }

    /// One sample of an instant query's result: its labels and value (NaN and infinities as Double).
    struct Sample {
        let labels: [String: String]
        let value: Double
    }

    /// An instant query (`/api/v1/query`): the vector's samples, or a scalar as one sample.
    func query(_ expression: String) throws -> [Sample] {
        guard let data = try api("/api/v1/query", [("query", expression)]) as? [String: Any] else {
            throw HarnessError("query \(expression): no data")
        }
        func number(_ pair: Any?) -> Double {
            guard let pair = pair as? [Any], pair.count == 2, let text = pair.last as? String else { return .nan }
            switch text {
            case "+Inf": return .infinity
            case "-Inf": return -.infinity
            default: return Double(text) ?? .nan
            }
        }
        switch data["resultType"] as? String {
        case "vector":
            return ((data["result"] as? [[String: Any]]) ?? []).map {
                Sample(labels: ($0["metric"] as? [String: String]) ?? [:], value: number($0["value"]))
            }
        case "scalar":
            return [Sample(labels: [:], value: number(data["result"]))]
        default:
            throw HarnessError("query \(expression): unexpected result type \(data["resultType"] ?? "none")")
        }
    }

    /// Values of `label` on series matching `selector` (`/api/v1/label/NAME/values`).
    func labelValues(_ label: String, matching selector: String) throws -> [String] {
        (try api("/api/v1/label/\(label)/values", [("match[]", selector)]) as? [String]) ?? []
    }

    /// The loaded rule groups (`/api/v1/rules`): every rule with its name, query, health, state and last error.
    func rules() throws -> [[String: Any]] {
        let data = try api("/api/v1/rules") as? [String: Any]
        return ((data?["groups"] as? [[String: Any]]) ?? []).flatMap { ($0["rules"] as? [[String: Any]]) ?? [] }
    }

    /// Waits until `condition` holds, polling every 200 ms; throws naming `what` on timeout.
    func waitFor(_ what: String, timeout: Double = 20, _ condition: () throws -> Bool) throws {
        let end = Date().addingTimeInterval(timeout)
        var lastError: Error?
        while Date() < end {
            do { if try condition() { return } } catch { lastError = error }
            usleep(200_000)
        }
        throw HarnessError("Prometheus: timed out after \(timeout)s waiting for \(what)\(lastError.map { " (last error: \($0))" } ?? "")")
    }

    func stop() { process.stop() }
    deinit { stop() }
}
