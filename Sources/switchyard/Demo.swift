import ArgumentParser
import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardProxy

/// The demo configuration, also shipped as `conf/demo.yaml` (a test keeps the two equal).
let demoConfiguration = """
# Switchyard demo: one listener in front of two demo app instances, "blue" and "green",
# weighted 3:1 with smooth weighted round robin. `switchyard demo` starts the apps itself.
workers: auto
listeners:
  - bind: 127.0.0.1:8080
pools:
  app:
    balance: round_robin
    servers:
      - { name: blue, address: 127.0.0.1:9001, weight: 300 }
      - { name: green, address: 127.0.0.1:9002, weight: 100 }
services:
  web:
    active: app
access_log: stdout
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
        for server in config.pools[0].servers {
            let app = Process()
            app.executableURL = URL(fileURLWithPath: executable)
            app.arguments = ["demo-app", "--name", server.name, "--listen", server.address.description, "--exit-with-parent"]
            do { try app.run() } catch { fail("cannot start demo app \(server.name): \(error)") }
            apps.append(app)
        }
        defer { for app in apps where app.isRunning { kill(app.processIdentifier, SIGTERM) } }
        usleep(200_000)
        for (app, server) in zip(apps, config.pools[0].servers) where !app.isRunning {
            fail("demo app \(server.name) exited; is \(server.address) already in use?")
        }
        FileHandle.standardError.write(Data("""
            switchyard demo: apps blue (127.0.0.1:9001, weight 300) and green (127.0.0.1:9002, weight 100)
            try:  curl -s http://127.0.0.1:8080/    (three of four answers come from blue)
            stop: Ctrl-C

            """.utf8))
        do { try ProxyServer(config: config).run() } catch { fail("\(error)") }
    }
}
