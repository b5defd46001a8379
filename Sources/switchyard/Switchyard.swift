import ArgumentParser
import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardDemo
import SwitchyardProxy

@main
struct Switchyard: ParsableCommand {
    /// `switchyard ctl --admin PATH status` reads naturally, but ArgumentParser accepts a
    /// subcommand's options only after its name: move the shared ctl options there.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "ctl" {
            let shared: Set<String> = ["--admin", "--actor", "--lock-token", "--if-match"]
            var moved: [String] = []
            let i = 1
            while i < arguments.count, arguments[i].hasPrefix("--") {
                let name = String(arguments[i].split(separator: "=", maxSplits: 1)[0])
                guard shared.contains(name) else { break }
                let takesNext = !arguments[i].contains("=") && i + 1 < arguments.count
                moved += arguments[i...(takesNext ? i + 1 : i)]
                arguments.removeSubrange(i...(takesNext ? i + 1 : i))
            }
            arguments += moved
        }
        main(arguments)
    }

    /// Printed by `switchyard version`. (No `--version` flag: `deploy run --version V` names the release.)
    static let release = "0.2.0"

    static let configuration = CommandConfiguration(
        commandName: "switchyard",
        abstract: "A reverse-proxy traffic switcher: weighted pools, blue/green and canary routing.",
        subcommands: [Run.self, Check.self, Ctl.self, Deploy.self, ConsoleCommand.self, VersionCommand.self, HistoryCommand.self, Demo.self, DemoAppCommand.self])
}

/// Prints a problem for the operator and exits with `code`.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("switchyard: \(message)\n".utf8))
    exit(code)
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy with a configuration file.")

    @Option(name: .shortAndLong, help: "The YAML configuration file.")
    var config: String

    @Option(help: "Write the bound listener addresses here once every worker accepts (port 0 resolved).")
    var readyFile: String?

    @Flag(help: "Take the listening sockets over from the Switchyard running with the same takeover_socket (binary upgrade).")
    var takeover = false

    func run() throws {
        let loaded: SwitchyardConfig
        do { loaded = try ConfigLoader.load(path: config) } catch { fail("configuration is invalid:\n\(error)") }
        ProcessLog.use(loaded.logFormat)
        do {
            let server = try ProxyServer(config: loaded, configPath: config)
            server.version = Switchyard.release
            try server.run(readyFile: readyFile, takeover: takeover)
        } catch {
            ProcessLog.write("switchyard: \(error)", level: .error)
            Glibc.exit(1)
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a configuration file (like nginx -t); exit 0 when valid, 1 with each problem otherwise.")

    @Option(name: .shortAndLong, help: "The YAML configuration file.")
    var config: String

    func run() throws {
        do {
            let loaded = try ConfigLoader.load(path: config)
            // Certificates are files the YAML only names: read and check them too.
            var tlsErrors = 0
            for listener in loaded.listeners {
                guard let tls = listener.tls else { continue }
                for problem in ProxyServer.checkTLS(tls, listener: "listeners \(listener.bind)") {
                    FileHandle.standardError.write(Data("\(config): \(problem)\n".utf8))
                    if !problem.hasPrefix("warning") { tlsErrors += 1 }
                }
            }
            if tlsErrors > 0 {
                FileHandle.standardError.write(Data("\(config): configuration is invalid (\(tlsErrors) problem(s))\n".utf8))
                throw ExitCode(1)
            }
            let servers = loaded.pools.reduce(0) { $0 + $1.servers.count + $1.namedServers.count }
            print("\(config): configuration is valid (\(loaded.listeners.count) listener(s), \(loaded.pools.count) pool(s), \(servers) server(s), \(loaded.services.count) service(s))")
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            FileHandle.standardError.write(Data("\(config): configuration is invalid (\(error.problems.count) problem(s))\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct DemoAppCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-app",
        abstract: "Run the demo upstream: a whoami-style app that answers with its name.")

    @Option(help: "The name the app answers with.")
    var name: String = "demo"

    @Option(help: "Address to listen on (port 0 picks a free port).")
    var listen: String = "127.0.0.1:9001"

    @Option(help: "Write the bound port here once listening.")
    var readyFile: String?

    @Option(help: "Append each request line received to this file.")
    var requestLog: String?

    @Option(help: "Close each connection without answering once it has served this many requests (for tests).")
    var dropAfter: Int?

    @Option(help: "Answer every request with this status (a failing instance).")
    var alwaysStatus: Int?

    @Option(help: "Report this load in X-Switchyard-Load on every response, e.g. \"cpu=95%, memory=40%\".")
    var load: String?

    @Option(help: "Answer this share of requests (all but /health) with 500, e.g. 30% (a bad release).")
    var errorRate: String?

    @Option(help: "Wait this long before each answer (all but /health), e.g. 300ms (a slow release).")
    var delay: String?

    @Flag(help: "Exit when the parent process exits (used by `switchyard demo`).")
    var exitWithParent = false

    func run() throws {
        guard let address = SocketAddress(parsing: listen, allowsAnyPort: true), address.family == .ipv4 else {
            fail("--listen \(listen) is not an IPv4 address:port")
        }
        let app: DemoApp
        do { app = try DemoApp(name: name, host: address.host, port: address.port, requestLogPath: requestLog, dropAfter: dropAfter, alwaysStatus: alwaysStatus) }
        catch { fail("\(error)") }
        app.load = load
        if let errorRate {
            guard let bp = BasisPoints.parse(errorRate) else { fail("--error-rate \(errorRate) is not a percentage such as 30%") }
            app.errorShare = Double(bp) / Double(BasisPoints.whole)
        }
        if let delay {
            guard let d = DurationText.parse(delay) else { fail("--delay \(delay) is not a duration such as 300ms") }
            app.delayMilliseconds = Int(d.milliseconds)
        }
        if let readyFile {
            try "\(app.port)\n".write(toFile: readyFile + ".tmp", atomically: false, encoding: .utf8)
            rename(readyFile + ".tmp", readyFile)
        }
        if exitWithParent {
            let parent = getppid()
            Thread.detachNewThread {
                while getppid() == parent { usleep(250_000) }
                Glibc.exit(0)
            }
        }
        app.serve()
    }
}
