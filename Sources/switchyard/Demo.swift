import ArgumentParser
import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardProxy

/// The demo configuration, also shipped as `conf/demo.yaml` (a test keeps the two equal).
let demoConfiguration = """
# Switchyard demo: one listener in front of two demo app instances, "blue" and "green".
# Blue is active, green is the standby and takes a 25% canary. `switchyard demo` starts the
# apps itself; operate it with `switchyard ctl --admin /tmp/switchyard-demo.sock ...`.
workers: auto
listeners:
  - bind: 127.0.0.1:8080
pools:
  blue:
    servers:
      - { name: blue, address: 127.0.0.1:9001 }
  green:
    servers:
      - { name: green, address: 127.0.0.1:9002 }
services:
  web:
    active: blue
    standby: green
    canary: { pool: green, weight: 25% }
access_log: /tmp/switchyard-demo-access.log
admin: { socket: /tmp/switchyard-demo.sock }
limits: { max_header_bytes: 16384, max_headers: 100, max_connections: 10000 }
timeouts: { client_header: 10s, client_idle: 60s, upstream_connect: 2s, upstream_response: 30s, upstream_idle: 60s }

"""

/// The demo's rollout plan, registered in the demo's console: a canary of the `web` service to
/// the green pool, whose instance the start hook restarts at the new version.
func demoPlan(directory: String) -> String {
    """
    # The plan `switchyard demo` registers in its console. Versions containing "bad" answer 500
    # to everything but /health, so the analysis rolls them back.
    service: web
    environments:
      - name: prod
        admin: unix:///tmp/switchyard-demo.sock
        strategy: canary
        steps: [ {weight: 10%}, {pause: 10s}, {weight: 50%}, {pause: 10s} ]
        guard: { max_error_rate: 50%, min_requests: 10, window: 5s }
    analysis:
      interval: 5s
      min_requests: 5
      max_error_rate: 5%
      failure_limit: 1
    hooks:
      start: [ "\(directory)/start.sh {pool} {version}" ]
    history: \(directory)/history.sqlite

    """
}

/// The demo's start hook: (re)starts a pool's demo app at a version, as a real hook would a
/// container or a systemd unit.
func demoStartHook(executable: String, directory: String) -> String {
    """
    #!/bin/sh
    pool=$1; version=$2
    case $pool in blue) port=9001;; green) port=9002;; *) echo "no pool $pool"; exit 1;; esac
    extra=""; case $version in *bad*) extra="--error-rate 100%";; esac
    if [ -f \(directory)/run/$pool.pid ]; then
      kill $(cat \(directory)/run/$pool.pid) 2>/dev/null
      i=0; while [ $i -lt 50 ] && kill -0 $(cat \(directory)/run/$pool.pid) 2>/dev/null; do i=$((i+1)); sleep 0.05; done
    fi
    rm -f \(directory)/run/$pool.ready
    \(executable) demo-app --name $pool-$version --listen 127.0.0.1:$port --ready-file \(directory)/run/$pool.ready $extra </dev/null >/dev/null 2>&1 &
    echo $! > \(directory)/run/$pool.pid
    i=0; while [ ! -f \(directory)/run/$pool.ready ]; do i=$((i+1)); [ $i -gt 100 ] && { echo "$pool did not start"; exit 1; }; sleep 0.05; done
    echo "started $pool at $version"

    """
}

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start two demo app instances (blue, green), the proxy in front of them on 127.0.0.1:8080, and the deploy console on 127.0.0.1:9900.")

    @Flag(help: "Print the embedded demo configuration and exit.")
    var printConfig = false

    @Flag(help: "Do not start the deploy console.")
    var noConsole = false

    @Option(help: "Where the demo keeps its plan, hook, console database and histories.")
    var directory = "/tmp/switchyard-demo"

    func run() throws {
        if printConfig { print(demoConfiguration, terminator: ""); return }
        let config: SwitchyardConfig
        do { config = try ConfigLoader.parse(yaml: demoConfiguration, file: "<embedded demo>") }
        catch { fail("embedded demo configuration is invalid:\n\(error)") }

        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        do { try FileManager.default.createDirectory(atPath: "\(directory)/run", withIntermediateDirectories: true) }
        catch { fail("cannot create \(directory): \(error.localizedDescription)") }
        var apps: [Process] = []
        let servers = config.pools.flatMap(\.servers)
        for server in servers {
            let app = Process()
            app.executableURL = URL(fileURLWithPath: executable)
            app.arguments = ["demo-app", "--name", server.name, "--listen", server.address.description, "--exit-with-parent"]
            do { try app.run() } catch { fail("cannot start demo app \(server.name): \(error)") }
            apps.append(app)
            // The console's rollouts replace this instance through the start hook, which finds it here.
            try? "\(app.processIdentifier)\n".write(toFile: "\(directory)/run/\(server.name).pid", atomically: true, encoding: .utf8)
        }
        let directory = self.directory
        defer {
            for app in apps where app.isRunning { kill(app.processIdentifier, SIGTERM) }
            // Instances the start hook started in their place.
            for name in ["blue", "green"] {
                if let text = try? String(contentsOfFile: "\(directory)/run/\(name).pid", encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                    kill(pid, SIGTERM)
                }
            }
        }
        usleep(200_000)
        for (app, server) in zip(apps, servers) where !app.isRunning {
            fail("demo app \(server.name) exited; is \(server.address) already in use?")
        }
        var consoleLine = ""
        if !noConsole {
            // Canary analysis judges real traffic: a steady trickle, as users would send.
            Thread.detachNewThread { demoTraffic(port: 8080, perSecond: 20) }
            let console = startConsole(executable: executable)
            apps.append(console.process)
            consoleLine = """
                console: \(console.url)   (read without a login; admin token for changes: \(console.token))
                      deploy from it: curl -s -X POST -H "Authorization: Bearer \(console.token)" \(console.url)/api/v1/rollouts -d '{"service":"web","version":"v2"}'

                """
        }
        FileHandle.standardError.write(Data("""
            switchyard demo: blue (127.0.0.1:9001) is active; green (127.0.0.1:9002) is standby with a 25% canary
            \(consoleLine)try:  curl -s http://127.0.0.1:8080/    (about three of four answers come from blue)
                  switchyard ctl --admin /tmp/switchyard-demo.sock status
                  switchyard ctl --admin /tmp/switchyard-demo.sock flip web
                  switchyard ctl --admin /tmp/switchyard-demo.sock canary web --pool blue --weight 10%
            access log: /tmp/switchyard-demo-access.log
            stop: Ctrl-C

            """.utf8))
        do { try ProxyServer(config: config).run() } catch { fail("\(error)") }
    }

    /// Starts `switchyard console` with the demo's plan registered; it exits with the demo.
    func startConsole(executable: String) -> (process: Process, url: String, token: String) {
        let hook = "\(directory)/start.sh"
        do {
            try demoStartHook(executable: executable, directory: directory).write(toFile: hook, atomically: true, encoding: .utf8)
            chmod(hook, 0o755)
            try demoPlan(directory: directory).write(toFile: "\(directory)/plan.yaml", atomically: true, encoding: .utf8)
            try "listen: 127.0.0.1:9900\nanonymous_viewer: true\npoll_interval: 2s\n".write(toFile: "\(directory)/console.yaml", atomically: true, encoding: .utf8)
        } catch {
            fail("cannot write the demo's console files in \(directory): \(error.localizedDescription)")
        }
        let token = ProcessInfo.processInfo.environment["SWITCHYARD_CONSOLE_ADMIN_TOKEN"] ?? "demo-" + UUID().uuidString.lowercased().prefix(8)
        let console = Process()
        console.executableURL = URL(fileURLWithPath: executable)
        console.arguments = ["console", "--config", "\(directory)/console.yaml", "--database", "sqlite:\(directory)/console.sqlite",
                             "--data-dir", "\(directory)/console", "--plan", "\(directory)/plan.yaml", "--exit-with-parent"]
        var environment = ProcessInfo.processInfo.environment
        environment["SWITCHYARD_CONSOLE_ADMIN_TOKEN"] = String(token)
        console.environment = environment
        do { try console.run() } catch { fail("cannot start the console: \(error)") }
        return (console, "http://127.0.0.1:9900", String(token))
    }
}

/// Sends `perSecond` plain GET requests to the demo's listener, one connection each, for ever.
func demoTraffic(port: UInt16, perSecond: Int) {
    let request = Array("GET /demo-traffic HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n".utf8)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if fd >= 0 {
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if connected == 0, request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count {
                while buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
            }
            close(fd)
        }
        usleep(useconds_t(1_000_000 / max(1, perSecond)))
    }
}
