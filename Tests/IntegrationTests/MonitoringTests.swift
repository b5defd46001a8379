import Foundation
import Glibc
import Testing
import Yams

/// The monitoring that ships in conf/: the Prometheus alert rules (promtool's own checks and
/// unit tests), and the Grafana dashboard and the alerts evaluated by a real Prometheus that
/// scrapes a real proxy (its observability listener) and a real console while traffic, a
/// failing canary, a reload and rollouts go through them.
@Suite("Monitoring: Prometheus rules and the Grafana dashboard", .serialized)
struct MonitoringTests {
    static let alertsPath = packageRoot.appendingPathComponent("conf/prometheus/switchyard-alerts.yml").path
    static let alertTestsPath = packageRoot.appendingPathComponent("conf/prometheus/switchyard-alerts.test.yml").path
    static let examplePath = packageRoot.appendingPathComponent("conf/prometheus/prometheus.example.yml").path
    static let dashboardPath = packageRoot.appendingPathComponent("conf/grafana/switchyard.json").path

    // MARK: Reading the files

    static func yaml(_ path: String) throws -> [String: Any] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard let document = try Yams.load(yaml: text) as? [String: Any] else { throw HarnessError("\(path): not a YAML mapping") }
        return document
    }

    /// The alerts of the rules file: name and expression, in file order.
    static func alertRules() throws -> [(name: String, expression: String)] {
        let groups = (try yaml(alertsPath)["groups"] as? [[String: Any]]) ?? []
        return groups.flatMap { ($0["rules"] as? [[String: Any]]) ?? [] }.compactMap { rule in
            guard let name = rule["alert"] as? String, let expression = rule["expr"] as? String else { return nil }
            return (name, expression)
        }
    }

    static func dashboard() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: dashboardPath))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw HarnessError("\(dashboardPath): not a JSON object") }
        return object
    }

    /// Every panel, rows' nested panels included.
    static func panels(_ dashboard: [String: Any]) -> [[String: Any]] {
        let top = (dashboard["panels"] as? [[String: Any]]) ?? []
        return top.flatMap { [$0] + (($0["panels"] as? [[String: Any]]) ?? []) }
    }

    /// One PromQL expression of the dashboard, with where it comes from for messages.
    struct DashboardExpression {
        let place: String
        let expression: String
    }

    static func panelExpressions(_ dashboard: [String: Any]) -> [DashboardExpression] {
        panels(dashboard).filter { $0["type"] as? String != "row" }.flatMap { panel in
            ((panel["targets"] as? [[String: Any]]) ?? []).map {
                DashboardExpression(place: "panel \"\(panel["title"] as? String ?? "?")\" target \($0["refId"] as? String ?? "?")",
                                    expression: $0["expr"] as? String ?? "")
            }
        }
    }

    static func annotationExpressions(_ dashboard: [String: Any]) -> [DashboardExpression] {
        (((dashboard["annotations"] as? [String: Any])?["list"] as? [[String: Any]]) ?? []).compactMap { annotation in
            guard let expression = annotation["expr"] as? String else { return nil }
            return DashboardExpression(place: "annotation \"\(annotation["name"] as? String ?? "?")\"", expression: expression)
        }
    }

    /// The query variables in dashboard order: name and `label_values(SELECTOR, LABEL)` parts.
    static func queryVariables(_ dashboard: [String: Any]) throws -> [(name: String, selector: String, label: String)] {
        let list = ((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]]) ?? []
        return try list.filter { $0["type"] as? String == "query" }.map { variable in
            let name = variable["name"] as? String ?? "?"
            let query = (variable["query"] as? [String: Any])?["query"] as? String ?? variable["query"] as? String ?? ""
            guard query.hasPrefix("label_values("), query.hasSuffix(")"), let comma = query.lastIndex(of: ",") else {
                throw HarnessError("variable \(name): \(query) is not label_values(SELECTOR, LABEL)")
            }
            let selector = String(query[query.index(query.startIndex, offsetBy: "label_values(".count)..<comma]).trimmingCharacters(in: .whitespaces)
            let label = String(query[query.index(after: comma)..<query.index(before: query.endIndex)]).trimmingCharacters(in: .whitespaces)
            return (name, selector, label)
        }
    }

    /// Grafana's built-in variables, at values that fit a test run of a minute.
    static let builtIns: [String: String] = ["__rate_interval": "1m", "__interval": "15s", "__range": "1h"]

    /// `expression` with `$name` and `${name}` replaced from `values`.
    static func substitute(_ expression: String, _ values: [String: String]) -> String {
        var text = expression
        for (name, value) in values.sorted(by: { $0.key.count > $1.key.count }) {
            text = text.replacingOccurrences(of: "${\(name)}", with: value).replacingOccurrences(of: "$\(name)", with: value)
        }
        return text
    }

    /// A regular expression matching exactly `values` in a PromQL string, as Grafana writes a
    /// multi-value variable (regex characters escaped).
    static func alternation(_ values: [String]) -> String {
        let special = Set("\\.+*?()|[]{}^$")
        let escaped = values.map { value in value.map { special.contains($0) ? "\\\\\($0)" : String($0) }.joined() }
        return "(" + escaped.joined(separator: "|") + ")"
    }

    /// The series selectors of an expression (Switchyard's and the process's metrics, and `up`).
    static func selectors(_ expression: String) -> [String] {
        guard let regex = try? NSRegularExpression(pattern: #"\b(?:switchyard|process)_[A-Za-z0-9_]*(?:\{[^}]*\})?|\bup\{[^}]*\}"#) else { return [] }
        let range = NSRange(expression.startIndex..., in: expression)
        var found: [String] = []
        for match in regex.matches(in: expression, range: range) {
            guard let r = Range(match.range, in: expression) else { continue }
            let selector = String(expression[r])
            if !found.contains(selector) { found.append(selector) }
        }
        return found
    }

    // MARK: promtool

    @Test func theAlertRulesPassPromtoolAndTheirUnitTestsShowEachAlertFiringAndNot() throws {
        try PrometheusTools.require()
        let checked = try run(PrometheusTools.promtool, ["check", "rules", Self.alertsPath])
        #expect(checked.status == 0, "promtool check rules: \(checked.output)\(checked.error)")

        let tested = try run(PrometheusTools.promtool, ["test", "rules", Self.alertTestsPath])
        #expect(tested.status == 0, "promtool test rules: \(tested.output)\(tested.error)")
        #expect(tested.output.contains("SUCCESS"), "\(tested.output)")

        // Every alert of the file has a test where it fires and one where it does not.
        let alerts = try Self.alertRules()
        #expect(alerts.count >= 8, "\(alerts.map(\.name))")
        let tests = (try Self.yaml(Self.alertTestsPath)["tests"] as? [[String: Any]]) ?? []
        let cases = tests.flatMap { ($0["alert_rule_test"] as? [[String: Any]]) ?? [] }
        for alert in alerts {
            let mine = cases.filter { $0["alertname"] as? String == alert.name }
            #expect(mine.contains { !(($0["exp_alerts"] as? [Any]) ?? []).isEmpty }, "no test shows \(alert.name) firing")
            #expect(mine.contains { (($0["exp_alerts"] as? [Any]) ?? []).isEmpty }, "no test shows \(alert.name) not firing")
        }

        // The example configuration is valid, rule file included (with a token file where it names one).
        let scratch = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let token = "\(scratch)/console.token"
        try "viewer-token-for-the-check".write(toFile: token, atomically: true, encoding: .utf8)
        let example = try String(contentsOfFile: Self.examplePath, encoding: .utf8)
        #expect(example.contains("/etc/prometheus/switchyard-console.token"))
        try example.replacingOccurrences(of: "/etc/prometheus/switchyard-console.token", with: token)
            .write(toFile: "\(scratch)/prometheus.yml", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: Self.alertsPath, toPath: "\(scratch)/switchyard-alerts.yml")
        let config = try run(PrometheusTools.promtool, ["check", "config", "\(scratch)/prometheus.yml"])
        #expect(config.status == 0, "promtool check config: \(config.output)\(config.error)")
        #expect(config.output.contains("SUCCESS: \(alerts.count) rules found"), "\(config.output)")
    }

    // MARK: The dashboard's shape

    @Test func theDashboardIsAnImportableGrafanaDashboardOnADatasourceVariable() throws {
        let dashboard = try Self.dashboard()
        #expect(dashboard["uid"] as? String == "switchyard-fleet")
        #expect((dashboard["schemaVersion"] as? Int ?? 0) >= 36)
        #expect(dashboard["id"] is NSNull, "an exported dashboard has id null")
        let inputs = (dashboard["__inputs"] as? [[String: Any]]) ?? []
        #expect(inputs.contains { $0["name"] as? String == "DS_PROMETHEUS" && $0["pluginId"] as? String == "prometheus" })
        let variables = ((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]]) ?? []
        let datasource = variables.first { $0["name"] as? String == "datasource" }
        #expect(datasource?["type"] as? String == "datasource" && datasource?["query"] as? String == "prometheus")
        for name in ["job", "instance", "service", "pool"] {
            #expect(variables.contains { $0["name"] as? String == name && $0["type"] as? String == "query" }, "variable \(name)")
        }

        var ids = Set<Int>()
        let panels = Self.panels(dashboard)
        #expect(panels.count >= 40)
        for panel in panels {
            let title = panel["title"] as? String ?? "?"
            let id = try #require(panel["id"] as? Int, "panel \(title) has no id")
            #expect(ids.insert(id).inserted, "panel id \(id) (\(title)) is used twice")
            let grid = (panel["gridPos"] as? [String: Int]) ?? [:]
            #expect(["h", "w", "x", "y"].allSatisfy { grid[$0] != nil } && (grid["x"] ?? 0) + (grid["w"] ?? 0) <= 24, "panel \(title): gridPos \(grid)")
            if panel["type"] as? String == "row" { continue }
            #expect((panel["datasource"] as? [String: String])?["uid"] == "${datasource}", "panel \(title) does not use the datasource variable")
            let targets = (panel["targets"] as? [[String: Any]]) ?? []
            #expect(!targets.isEmpty, "panel \(title) has no query")
            for target in targets {
                #expect((target["datasource"] as? [String: String])?["uid"] == "${datasource}", "panel \(title): a target without the datasource variable")
                #expect(!(target["expr"] as? String ?? "").isEmpty && target["refId"] is String, "panel \(title): a target without expr or refId")
            }
        }
        let annotations = Self.annotationExpressions(dashboard)
        #expect(annotations.contains { $0.expression.contains("switchyard_rollouts_total") }, "deploy annotations come from the console's rollouts")
        #expect(annotations.contains { $0.expression.contains("switchyard_generation") })
    }

    // MARK: Against a real fleet

    /// A deployment report as a runner sends it (`POST /api/v1/reports`), one environment.
    static func report(service: String, version: String, outcome: String, started: Date, ended: Date?, steps: [(Date, String)]) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        func time(_ date: Date) -> String { formatter.string(from: date) }
        let end = ended.map { ",\"ended_at\":\"\(time($0))\"" } ?? ""
        let stepRows = steps.enumerated().map { index, step in
            "{\"local_id\":\(index + 1),\"deployment\":1,\"time\":\"\(time(step.0))\",\"kind\":\"\(step.1)\",\"detail\":\"\(step.1)\"}"
        }.joined(separator: ",")
        return """
        {"run":"\(UUID().uuidString.lowercased())","service":"\(service)","version":"\(version)","actor":"monitoring-test","host":"ci","pid":\(getpid()),
         "plan_path":"deploy/\(service).yaml","environments":["prod"],
         "rollout":{"started_at":"\(time(started))"\(end),"outcome":"\(outcome)","environment":"prod","heartbeat_at":"\(time(Date()))"},
         "deployments":[{"local_id":1,"environment":"prod","version":"\(version)","strategy":"canary","actor":"monitoring-test",
                         "started_at":"\(time(started))"\(end),"outcome":"\(outcome)","pool":"canary","previous_pool":"stable","previous_version":"v1"}],
         "steps":[\(stepRows)],"hooks":[],"events":[],"control_results":[],"locks":[],"controls_after":0}
        """
    }

    @Test func everyDashboardPanelAndAlertExpressionEvaluatesOnARealProxyAndConsole() throws {
        try PrometheusTools.require()
        let s = Scenario()
        // stable: by DNS name, health checked, reporting its load; canary: half its answers 500;
        // broken: every answer 500.
        let dns = try DNSServer(directory: s.directory, names: ["stable.test": ["127.0.0.1"]])
        defer { dns.stop() }
        let stable = try s.upstream("stable", ["--load", "cpu=40%, memory=30%"])
        let canary = try s.upstream("canary", ["--error-rate", "50%"])
        let broken = try s.upstream("broken", ["--always-status", "500"])
        let observability = freePort()
        let socket = "\(s.directory)/admin.sock"
        // A TLS listener, for the certificate's expiry.
        let pki = try TestPKI(directory: s.directory, names: ["site"])
        let proxy = try s.startProxy(pki.tlsListener(port: freePort(), ["site"]) + """
            observability: { bind: 127.0.0.1:\(observability) }
            resolvers: [\(dns.address)]
            resolve: { interval: 1s, timeout: 250ms }
            pools:
              stable:
                health: { path: /health, interval: 1s, rise: 1 }
                servers: [{ name: s1, address: stable.test:\(stable.port) }]
              canary: { servers: [{ name: c1, address: \(canary.address) }] }
              broken: { servers: [{ name: x1, address: \(broken.address) }] }
            services:
              web: { active: stable }
              api: { active: broken, match: { path_prefix: /api } }
            access_log: off
            admin: { socket: \(socket) }
            """)
        let console = try ConsoleProcess(directory: s.directory)
        defer { console.stop() }
        let viewer = try #require(try console.call("POST", "/api/v1/tokens", body: #"{"name":"prometheus","role":"viewer"}"#).json["token"] as? String)
        let tokenFile = "\(s.directory)/console.token"
        try viewer.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        guard let consoleAddress = console.url.split(separator: "/").last.map(String.init) else { throw HarnessError("console url \(console.url)") }

        let prometheus = try PrometheusServer(directory: s.directory, targets: [
            ScrapeTarget(job: "switchyard", address: "127.0.0.1:\(observability)"),
            ScrapeTarget(job: "switchyard-console", address: consoleAddress, tokenFile: tokenFile),
        ], ruleFiles: [Self.alertsPath])
        defer { prometheus.stop() }
        try prometheus.waitFor("both targets up") {
            try prometheus.query(#"up{job=~"switchyard|switchyard-console"} == 1"#).count == 2
        }

        // A rollout's doings: version labels, a canary with a guard, traffic, a reload.
        func admin(_ method: String, _ path: String, _ body: String) throws {
            let r = try curl(["--unix-socket", socket, "-X", method, "-d", body, "-w", "\n%{http_code}", "http://switchyard\(path)"])
            guard r.output.hasSuffix("200") else { throw HarnessError("admin \(method) \(path): \(r.output)\(r.error)") }
        }
        try admin("PUT", "/v1/pools/stable/version", #"{"version": "v1"}"#)
        try admin("PUT", "/v1/pools/canary/version", #"{"version": "v2"}"#)
        try admin("PUT", "/v1/services/web/canary", #"{"pool": "canary", "weight": "30%", "guard": {"max_error_rate": "40%", "min_requests": 20, "window": "10s"}}"#)
        let started = Date()
        let web = try spawn("/usr/bin/wrk", ["-t1", "-c4", "-d3s", proxy.url + "/"], stdout: "\(s.directory)/wrk-web.out", stderr: "\(s.directory)/wrk-web.err")
        let api = try spawn("/usr/bin/wrk", ["-t1", "-c2", "-d3s", proxy.url + "/api/x"], stdout: "\(s.directory)/wrk-api.out", stderr: "\(s.directory)/wrk-api.err")
        for pid in [web, api] {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        proxy.process.signal(SIGHUP)

        // The console's rollouts: one rolled back, one promoted, one running.
        let now = Date()
        for body in [
            Self.report(service: "web", version: "v2", outcome: "rolled_back", started: now.addingTimeInterval(-90), ended: now.addingTimeInterval(-30),
                        steps: [(now.addingTimeInterval(-90), "weight"), (now.addingTimeInterval(-60), "analysis")]),
            Self.report(service: "web", version: "v1", outcome: "promoted", started: now.addingTimeInterval(-400), ended: now.addingTimeInterval(-100),
                        steps: [(now.addingTimeInterval(-400), "weight"), (now.addingTimeInterval(-300), "weight"), (now.addingTimeInterval(-200), "analysis")]),
            Self.report(service: "api", version: "v7", outcome: "running", started: now.addingTimeInterval(-20), ended: nil,
                        steps: [(now.addingTimeInterval(-20), "weight")]),
        ] {
            let reported = try console.call("POST", "/api/v1/reports", body: body)
            #expect(reported.status == 200, "report: \(reported.text)")
        }

        // Prometheus has seen all of it: the guard's trip, the reload, the rollouts, and a few scrapes since.
        try prometheus.waitFor("the guard trip, the reload and the rollouts in Prometheus", timeout: 30) {
            let trips = try prometheus.query(#"switchyard_canary_guard_trips_total{service="web"} > 0"#)
            let reloads = try prometheus.query(#"switchyard_reloads_total{outcome="success"} > 0"#)
            let rollouts = try prometheus.query(#"switchyard_rollouts_total"#)
            return !trips.isEmpty && !reloads.isEmpty && rollouts.count >= 2
        }
        // A deploy lock held (after the reload, which a lock would refuse), for the lock's alert.
        try admin("POST", "/v1/lock", #"{"owner": "ci", "service": "web", "ttl": "10m", "reason": "rollout"}"#)
        try prometheus.waitFor("the lock in Prometheus", timeout: 30) {
            !(try prometheus.query(#"switchyard_lock_since_timestamp_seconds{service="web"}"#)).isEmpty
        }
        while Date().timeIntervalSince(started) < 6 { usleep(200_000) }

        var failures: [String] = []
        func evaluate(_ place: String, _ expression: String, mustReturnSeries: Bool) {
            do {
                let samples = try prometheus.query(expression)
                if mustReturnSeries {
                    if samples.isEmpty {
                        let empty = Self.selectors(expression).filter { ((try? prometheus.query($0)) ?? []).isEmpty }
                        failures.append("\(place): no series for\n\(expression)\n  selectors with no series: \(empty)")
                    } else if !samples.contains(where: { $0.value.isFinite }) {
                        failures.append("\(place): only NaN or infinite values for\n\(expression)")
                    }
                }
            } catch {
                failures.append("\(place): \(error)\n\(expression)")
            }
        }

        // The dashboard: every variable has values; every panel and annotation returns series,
        // with each variable at All as `.*` and as the alternation of its real values.
        let dashboard = try Self.dashboard()
        let variables = try Self.queryVariables(dashboard)
        var everything = Self.builtIns
        var real = Self.builtIns
        for variable in variables {
            everything[variable.name] = ".*"
            let values = try prometheus.labelValues(variable.label, matching: Self.substitute(variable.selector, real))
            if values.isEmpty { failures.append("variable \(variable.name): no values for \(variable.selector)") }
            real[variable.name] = Self.alternation(values)
        }
        let expressions = Self.panelExpressions(dashboard) + Self.annotationExpressions(dashboard)
        #expect(expressions.count >= 60)
        for item in expressions {
            #expect(Self.substitute(item.expression, everything).range(of: #"\$[A-Za-z_{]"#, options: .regularExpression) == nil,
                    "\(item.place): an unknown variable in \(item.expression)")
            evaluate("\(item.place) (variables at .*)", Self.substitute(item.expression, everything), mustReturnSeries: true)
            evaluate("\(item.place) (variables at their values \(real.filter { !$0.key.hasPrefix("__") }))", Self.substitute(item.expression, real), mustReturnSeries: true)
        }

        // The alerts: each expression parses and runs, and each series it reads exists.
        let alerts = try Self.alertRules()
        for alert in alerts {
            evaluate("alert \(alert.name)", alert.expression, mustReturnSeries: false)
            for selector in Self.selectors(alert.expression) {
                evaluate("alert \(alert.name), selector \(selector)", selector, mustReturnSeries: true)
            }
        }
        #expect(failures.isEmpty, "\(failures.count) expression(s) failed:\n\(failures.joined(separator: "\n\n"))")

        // Prometheus loaded the same alerts, evaluates them without error, and the failing
        // canary and the failing service show: the guard's alert fires, the 5xx one is pending.
        var states: [String: [[String: Any]]] = [:]
        try prometheus.waitFor("the canary guard's alert firing and the 5xx alert pending for api") {
            let rules = try prometheus.rules()
            states = Dictionary(grouping: rules, by: { $0["name"] as? String ?? "" })
            let trip = (states["SwitchyardCanaryGuardTripped"]?.first?["alerts"] as? [[String: Any]]) ?? []
            let errors = (states["SwitchyardServiceHighErrorRatio"]?.first?["alerts"] as? [[String: Any]]) ?? []
            return trip.contains { $0["state"] as? String == "firing" && ($0["labels"] as? [String: String])?["service"] == "web" }
                && errors.contains { $0["state"] as? String == "pending" && ($0["labels"] as? [String: String])?["service"] == "api" }
        }
        #expect(Set(states.keys) == Set(alerts.map(\.name)))
        for (name, rules) in states {
            #expect(rules.first?["health"] as? String == "ok", "alert \(name): \(rules.first?["lastError"] ?? "")")
        }
    }
}
