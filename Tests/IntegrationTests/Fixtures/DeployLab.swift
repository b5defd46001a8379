import Foundation
import Glibc
import Testing

/// Environments for rollouts: each a real `switchyard run` with an admin socket and health
/// checked pools whose instances (demo apps) are started by the plan's own hook scripts,
/// so a rollout really replaces processes. Everything is stopped by PID at the end.
final class DeployLab {
    let directory = makeTemporaryDirectory()
    var proxies: [String: Proxy] = [:]
    var loads: [pid_t] = []
    var background: [ManagedProcess] = []
    var receiver: ManagedProcess?
    var receiverPort: UInt16 = 0

    init() throws {
        for sub in ["run", "ports"] { try FileManager.default.createDirectory(atPath: "\(directory)/\(sub)", withIntermediateDirectories: true) }
        // (Re)starts the instances of ENV/POOL (or one SERVER) at VERSION. Versions name their
        // behaviour: *bad* answers 500 to everything but /health, *flaky* to 30%, *slow* waits 300ms.
        let start = """
            #!/bin/sh
            dir=\(directory); env=$1; pool=$2; version=$3; only=$4
            extra=""
            case $version in *bad*) extra="--error-rate 100%";; *flaky*) extra="--error-rate 30%";; *slow*) extra="--delay 300ms";; esac
            while read name port; do
              [ -n "$only" ] && [ "$only" != "$name" ] && continue
              pidfile=$dir/run/$env-$pool-$name.pid
              if [ -f $pidfile ]; then
                old=$(cat $pidfile); kill $old 2>/dev/null
                # Gone, or a zombie nobody reaps (its port is free either way).
                i=0; while [ -d /proc/$old ] && ! grep -q '^State:.*Z' /proc/$old/status 2>/dev/null && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.02; done
              fi
              rm -f $dir/run/$env-$pool-$name.ready
              log=$dir/run/$env-$pool-$name.log
              \(switchyardBinary) demo-app --name $name-$version --listen 127.0.0.1:$port --ready-file $dir/run/$env-$pool-$name.ready $extra </dev/null >$log 2>&1 &
              pid=$!
              echo $pid > $pidfile
              # A loaded machine can take seconds to start a process; one that exited says why.
              i=0
              while [ ! -f $dir/run/$env-$pool-$name.ready ]; do
                kill -0 $pid 2>/dev/null || { echo "$name exited: $(cat $log)"; exit 1; }
                i=$((i+1)); [ $i -gt 1200 ] && { echo "$name did not start within 60s: $(cat $log)"; exit 1; }
                sleep 0.05
              done
              echo "started $name-$version on port $port"
            done < $dir/ports/$env-$pool
            """
        try writeExecutable(start, to: "\(directory)/start.sh")
    }

    /// A proxy for `name` with the given pools (server count each); `active`'s instances start at `version`.
    /// With `proxies` above 1, the environment has that many proxies in front of the same
    /// pools and instances, each with its own admin socket and state: `name`, then
    /// `name-b`, `name-c`... (`proxyNames`). `web` is the default service; `otherServices`
    /// adds more (their instances are started with start.sh by the test).
    @discardableResult
    func environment(_ name: String, pools: [(String, Int)], active: String, standby: String?, version: String = "v1",
                     preview: Bool = false, adminExtra: String = "", proxies count: Int = 1,
                     otherServices: String = "") throws -> Proxy {
        let envDir = "\(directory)/\(name)"
        try FileManager.default.createDirectory(atPath: envDir, withIntermediateDirectories: true)
        var config = "pools:\n"
        for (pool, count) in pools {
            var ports = ""
            config += "  \(pool):\n    health: { path: /health, interval: 100ms, timeout: 100ms, rise: 2, fall: 2 }\n    servers:\n"
            for i in 1...count {
                let port = freePort()
                ports += "\(pool.prefix(1))\(i) \(port)\n"
                config += "      - { name: \(pool.prefix(1))\(i), address: 127.0.0.1:\(port) }\n"
            }
            try ports.write(toFile: "\(directory)/ports/\(name)-\(pool)", atomically: true, encoding: .utf8)
        }
        config += "services:\n  web:\n    active: \(active)\n"
        if let standby { config += "    standby: \(standby)\n" }
        if preview {
            try "letmein\n".write(toFile: "\(envDir)/preview.token", atomically: true, encoding: .utf8)
            config += "    preview: { header: X-Preview, value_file: \(envDir)/preview.token }\n"
        }
        // More services in YAML (indented under `services:`), e.g. one with `match: { path_prefix: /api }`.
        config += otherServices
        let started = try run("/bin/sh", ["\(directory)/start.sh", name, active, version])
        guard started.status == 0 else { throw HarnessError("start.sh failed: \(started.output)") }
        var first: Proxy?
        for proxyName in Self.proxyNames(name, count: count) {
            let proxyDir = "\(directory)/\(proxyName)"
            try FileManager.default.createDirectory(atPath: proxyDir, withIntermediateDirectories: true)
            let own = config + "admin:\n  socket: \(proxyDir)/admin.sock\n\(adminExtra)state_file: \(proxyDir)/state.json\naccess_log: off\n"
            let proxy = try Proxy(directory: proxyDir, config: own)
            proxies[proxyName] = proxy
            if first == nil { first = proxy }
        }
        // Let the first health checks pass before anything is measured.
        usleep(400_000)
        guard let first else { throw HarnessError("an environment needs a proxy") }
        return first
    }

    /// The proxies of an environment of `count`: "prod", "prod-b", "prod-c"...
    static func proxyNames(_ name: String, count: Int) -> [String] {
        (0..<max(1, count)).map { $0 == 0 ? name : "\(name)-\(String(UnicodeScalar(UInt8(97 + min($0, 25)))))" }
    }

    func admin(_ name: String) -> String { "unix://\(directory)/\(name)/admin.sock" }

    /// The plan's `admin:` list for an environment of `count` proxies.
    func admins(_ name: String, count: Int) -> String {
        "[ " + Self.proxyNames(name, count: count).map { "\"\(admin($0))\"" }.joined(separator: ", ") + " ]"
    }

    /// The admin socket of the proxy named `name` (for `switchyard ctl --admin`).
    func socket(_ name: String) -> String { "\(directory)/\(name)/admin.sock" }

    /// `switchyard ctl --admin SOCKET ARGS` on the proxy named `name`.
    @discardableResult
    func ctl(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        try switchyard(["ctl", "--admin", socket(name)] + arguments)
    }

    /// The audit trail of the proxy named `name`, oldest first.
    func audit(_ name: String) throws -> [[String: Any]] {
        let r = try ctl(name, ["audit", "--json", "--limit", "500"])
        return (try JSONSerialization.jsonObject(with: Data(r.output.utf8))) as? [[String: Any]] ?? []
    }

    /// A plan with one canary environment, prod, and the start hook.
    func prodCanaryPlan(steps: String, extra: String = "", history: String = "history.sqlite") -> String {
        """
        service: web
        environments:
          - { name: prod, admin: "\(admin("prod"))", strategy: canary, steps: \(steps) }
        \(DeployTests.analysis)
        hooks:
          start: [ "\(directory)/start.sh {env} {pool} {version}" ]
        history: \(directory)/\(history)
        \(extra)
        """
    }

    func writePlan(_ yaml: String, name: String = "plan.yaml") throws -> String {
        let path = "\(directory)/\(name)"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// wrk against the proxy `name` (at `path`) until `stopLoad` (or the lab's end); its report
    /// goes to wrk-NAME.out (wrk-NAME-api.out for path /api).
    ///
    /// Paced by default: each connection waits 1 ms between requests (under 1,000 requests a
    /// second each), plenty for analysis and for catching a failed request while traffic moves,
    /// and it leaves CPU for the proxies and runners of the tests running beside it on a small
    /// machine. An unpaced wrk per environment starved the proxies' admin sockets there.
    func startLoad(_ name: String, connections: Int = 4, paced: Bool = true, path: String = "/") throws {
        // Longer than any test: stopLoad ends it (a fixed 120 s once ended mid-rollout on a slow
        // machine, and analysis then waited for traffic that never came).
        var arguments = ["-t1", "-c\(connections)", "-d900s"]
        if paced {
            // wrk's delay() runs between requests on a connection, in milliseconds.
            try "function delay()\n  return 1\nend\n".write(toFile: "\(directory)/paced.lua", atomically: true, encoding: .utf8)
            arguments += ["-s", "\(directory)/paced.lua"]
        }
        let suffix = path.split(separator: "/").joined(separator: "-")
        let out = "\(directory)/wrk-\(name)\(suffix.isEmpty ? "" : "-" + suffix).out"
        guard let proxy = proxies[name] else { throw HarnessError("no proxy \(name) in the lab") }
        loads.append(try spawn("/usr/bin/wrk", arguments + [proxy.url + path], stdout: out, stderr: out + ".err"))
        usleep(300_000)
    }

    /// Stops every load generator (wrk prints its report on SIGINT) and returns the reports by environment.
    func stopLoad() -> [String] {
        for pid in loads { kill(pid, SIGINT) }
        for pid in loads { var status: Int32 = 0; waitpid(pid, &status, 0) }
        loads.removeAll()
        let reports = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix("wrk-") && $0.hasSuffix(".out") }
        return reports.sorted().compactMap { try? String(contentsOfFile: "\(directory)/\($0)", encoding: .utf8) }
    }

    /// A webhook receiver that appends each body as a line to `webhook.log`; it answers 500
    /// to the first `failFirst` requests to exercise the orchestrator's retries.
    func startReceiver(failFirst: Int = 0) throws -> String {
        let script = """
            import base64, http.server, json, sys
            count = 0
            class H(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    global count
                    count += 1
                    body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
                    if count <= \(failFirst):
                        self.send_response(500); self.end_headers(); return
                    with open(sys.argv[2], 'ab') as f:
                        f.write(self.path.encode() + b' ' + body + b'\\n')
                    with open(sys.argv[2] + '.jsonl', 'a') as f:
                        f.write(json.dumps({'path': self.path, 'headers': {k.lower(): v for k, v in self.headers.items()},
                                            'body': base64.b64encode(body).decode()}) + '\\n')
                    self.send_response(200); self.end_headers()
                def log_message(self, *a): pass
            s = http.server.HTTPServer(('127.0.0.1', 0), H)
            open(sys.argv[1] + '.tmp', 'w').write(str(s.server_port)); __import__('os').rename(sys.argv[1] + '.tmp', sys.argv[1])
            s.serve_forever()
            """
        try script.write(toFile: "\(directory)/receiver.py", atomically: true, encoding: .utf8)
        let pid = try spawn("/usr/bin/env", ["python3", "\(directory)/receiver.py", "\(directory)/receiver.port", "\(directory)/webhook.log"],
                            stdout: "\(directory)/receiver.out", stderr: "\(directory)/receiver.err")
        loads.append(pid) // stopped with the loads (SIGINT ends python too)
        receiverPort = UInt16(try waitForFile("\(directory)/receiver.port").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        return "http://127.0.0.1:\(receiverPort)/hooks/deploy"
    }

    /// Each request the receiver accepted: its path, lower-cased headers and exact body.
    var webhookRequests: [(path: String, headers: [String: String], body: Data)] {
        let text = (try? String(contentsOfFile: "\(directory)/webhook.log.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                  let body = (object["body"] as? String).flatMap({ Data(base64Encoded: $0) }) else { return nil }
            return (object["path"] as? String ?? "", object["headers"] as? [String: String] ?? [:], body)
        }
    }

    var webhookEvents: [[String: Any]] {
        let text = (try? String(contentsOfFile: "\(directory)/webhook.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let space = line.firstIndex(of: " ") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(line[line.index(after: space)...].utf8))) as? [String: Any]
        }
    }

    /// Runs `switchyard ARGS` to the end.
    func switchyard(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        try run(switchyardBinary, arguments)
    }

    /// Starts `switchyard deploy run` in the background (for controls and kills).
    func deployInBackground(_ plan: String, version: String) throws -> ManagedProcess {
        let p = try ManagedProcess(["deploy", "run", plan, "--version", version, "--json", "--actor", "test"], directory: directory,
                                   label: "deploy-\(background.count)")
        background.append(p)
        return p
    }

    /// Waits until the background rollout printed an event of `kind` (whose line contains `after`).
    func waitForEvent(_ p: ManagedProcess, _ kind: String, after: String = "", timeout: Double = 90) throws {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if p.stdout.split(separator: "\n").contains(where: { $0.contains("\"event\":\"\(kind)\"") && (after.isEmpty || $0.contains(after)) }) { return }
            if !p.isRunning { throw HarnessError("the rollout ended before \(kind): \(p.stdout)\(p.stderr)") }
            usleep(100_000)
        }
        throw HarnessError("no \(kind) event within \(timeout)s: \(p.stdout)")
    }

    func status(_ name: String) throws -> [String: Any] {
        let r = try switchyard(["ctl", "--admin", "\(directory)/\(name)/admin.sock", "status", "--json"])
        return (try JSONSerialization.jsonObject(with: Data(r.output.utf8))) as? [String: Any] ?? [:]
    }

    /// Every lock the proxy `name` holds (proxy-wide and per service), owners first.
    /// Throws when status has no lock list, so "no lock" cannot pass by a misread.
    func locks(_ name: String) throws -> [[String: Any]] {
        guard let locks = try status(name)["locks"] as? [[String: Any]] else { throw HarnessError("status of \(name) has no locks list") }
        return locks
    }

    func service(_ name: String) throws -> [String: Any] {
        ((try status(name))["services"] as? [String: Any])?["web"] as? [String: Any] ?? [:]
    }

    /// Who answers: the X-Served-By of `count` requests.
    func servedBy(_ name: String, count: Int = 20) throws -> [String] {
        var names: [String] = []
        for _ in 0..<count {
            let r = try curl(["-s", "-D", "-", "-o", "/dev/null", proxies[name]!.url + "/"])
            if let line = r.output.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("x-served-by:") }) {
                names.append(String(line.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces))
            }
        }
        return names
    }

    deinit {
        for pid in loads { kill(pid, SIGKILL); var s: Int32 = 0; waitpid(pid, &s, 0) }
        for p in background { p.stop() }
        for proxy in proxies.values { proxy.stop() }
        // The instances the hooks started, by the PIDs they recorded.
        for file in (try? FileManager.default.contentsOfDirectory(atPath: "\(directory)/run")) ?? [] where file.hasSuffix(".pid") {
            if let text = try? String(contentsOfFile: "\(directory)/run/\(file)", encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGKILL)
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

}
