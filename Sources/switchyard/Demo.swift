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
access_log: stdout
admin: { socket: /tmp/switchyard-demo.sock }
limits: { max_header_bytes: 16384, max_headers: 100, max_connections: 10000 }
timeouts: { client_header: 10s, client_idle: 60s, upstream_connect: 2s, upstream_response: 30s, upstream_idle: 60s }

"""

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start two demo app instances (blue, green) and the proxy in front of them on 127.0.0.1:8080.")

    @Flag(help: "Print the embedded demo configuration and exit.")
    var printConfig = false

    func run() throws {
        if printConfig { print(demoConfiguration, terminator: ""); return }
        let config: SwitchyardConfig
        do { config = try ConfigLoader.parse(yaml: demoConfiguration, file: "<embedded demo>") }
        catch { fail("embedded demo configuration is invalid:\n\(error)") }

        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var apps: [Process] = []
        let servers = config.pools.flatMap(\.servers)
        for server in servers {
            let app = Process()
            app.executableURL = URL(fileURLWithPath: executable)
            app.arguments = ["demo-app", "--name", server.name, "--listen", server.address.description, "--exit-with-parent"]
            do { try app.run() } catch { fail("cannot start demo app \(server.name): \(error)") }
            apps.append(app)
        }
        defer { for app in apps where app.isRunning { kill(app.processIdentifier, SIGTERM) } }
        usleep(200_000)
        for (app, server) in zip(apps, servers) where !app.isRunning {
            fail("demo app \(server.name) exited; is \(server.address) already in use?")
        }
        FileHandle.standardError.write(Data("""
            switchyard demo: blue (127.0.0.1:9001) is active; green (127.0.0.1:9002) is standby with a 25% canary
            try:  curl -s http://127.0.0.1:8080/    (about three of four answers come from blue)
                  switchyard ctl --admin /tmp/switchyard-demo.sock status
                  switchyard ctl --admin /tmp/switchyard-demo.sock flip web
                  switchyard ctl --admin /tmp/switchyard-demo.sock canary web --pool blue --weight 10%
            stop: Ctrl-C

            """.utf8))
        do { try ProxyServer(config: config).run() } catch { fail("\(error)") }
    }
}
