import ArgumentParser
import Foundation
import Glibc
import SwitchyardConsole

/// `switchyard console`: the deploy console's server (API and web UI).
struct ConsoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Run the deploy console: the shared server where rollouts run, report, are controlled and remembered.",
        discussion: """
            Without options it runs on the embedded default: SQLite in .switchyard/console.sqlite, listening on \
            http://127.0.0.1:9900. The first admin token comes from $SWITCHYARD_CONSOLE_ADMIN_TOKEN. See docs/console.md.
            """)

    @Option(name: .shortAndLong, help: "The console's configuration (YAML); every key is optional.") var config: String?
    @Option(help: "HOST:PORT to listen on (port 0 picks a free port and prints it).") var listen: String?
    @Option(help: "sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE.") var database: String?
    @Option(help: "Where the rollouts the console runs keep their working files.") var dataDir: String?
    @Option(help: "A plan the console may run and watches (repeatable; added to the configuration's plans).") var plan: [String] = []
    @Flag(help: .hidden) var exitWithParent = false

    func run() throws {
        var settings = ConsoleConfiguration()
        if let config {
            do { settings = try ConsoleConfiguration.load(path: config) } catch { fail("the console's configuration is invalid:\n\(error)", code: 2) }
        }
        if let listen {
            guard let (host, port) = ConsoleConfiguration.parseListen(listen) else { fail("--listen \(listen) is not HOST:PORT (e.g. 127.0.0.1:9900)", code: 2) }
            settings.listenHost = host
            settings.listenPort = port
        }
        if let database { settings.database = database }
        if let dataDir { settings.dataDirectory = dataDir }
        settings.plans += plan
        if exitWithParent {
            // `switchyard demo` starts the console: it stops (gracefully) when the demo goes, even on SIGKILL.
            let parent = getppid()
            Thread.detachNewThread {
                while getppid() == parent { usleep(250_000) }
                kill(getpid(), SIGTERM)
            }
        }
        ConsoleServer.release = Switchyard.release
        signal(SIGPIPE, SIG_IGN)
        let finished = DispatchSemaphore(value: 0)
        let chosen = settings
        let shownDatabase = chosen.database.hasPrefix("sqlite") ? chosen.database : "postgres"
        let failure = ConsoleFailure()
        Task {
            do {
                let server = try await ConsoleServer(configuration: chosen)
                try await server.run { url in
                    FileHandle.standardOutput.write(Data("switchyard console: listening on \(url) (database \(shownDatabase))\n".utf8))
                }
            } catch {
                failure.message = "\(error)"
            }
            finished.signal()
        }
        finished.wait()
        if let message = failure.message { fail(message, code: 2) }
    }
}

private final class ConsoleFailure: @unchecked Sendable {
    var message: String?
}
