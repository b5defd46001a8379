import CLibevent
import Foundation
import Glibc
import SwitchyardConfig
import SwitchyardRouting

/// Runs the data plane: one worker thread per core, each with its own event loop and
/// listening sockets, plus the control loop on the calling thread (signals, publishing
/// routing snapshots).
public final class ProxyServer {
    public let config: SwitchyardConfig
    let workerCount: Int
    private var workers: [Worker] = []
    /// Runtime state, snapshots, the admin API's operations.
    public let control: ControlPlane
    private var admin: AdminServer?
    private var accessLog: AccessLog?
    private var controlBase: OpaquePointer?
    private var signalEvents: [OpaquePointer] = []
    /// The addresses actually bound (port 0 in the configuration is resolved here).
    public private(set) var boundAddresses: [SocketAddress] = []

    /// Loads the saved runtime state (if `state_file` is set) on top of `config`.
    /// - Parameter configPath: the file `config` came from; SIGHUP and `POST /v1/reload` read it again.
    public init(config: SwitchyardConfig, configPath: String? = nil) throws {
        self.config = config
        workerCount = config.workers ?? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        control = try ControlPlane(config: config)
        control.configPath = configPath
    }

    /// Binds, starts the workers and blocks until SIGTERM/SIGINT has drained them.
    /// - Parameter readyFile: written (atomically) with one bound address per line once every worker accepts.
    public func run(readyFile: String? = nil) throws {
        signal(SIGPIPE, SIG_IGN)
        // A parent may have left these blocked (the mask is inherited); we must see them.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&stopSignals, s) }
        pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
        evthread_use_pthreads()

        switch config.accessLog {
        case .off: accessLog = nil
        case .stdout: accessLog = try AccessLog(path: nil)
        case .file(let path): accessLog = try AccessLog(path: path)
        }

        for note in control.restoreNotes {
            FileHandle.standardError.write(Data("switchyard: state file: \(note)\n".utf8))
        }
        let snapshot = control.snapshot()
        let settings = WorkerSettings(config: config, workerCount: workerCount)
        for index in 0..<workerCount {
            workers.append(Worker(index: index, settings: settings, snapshot: snapshot,
                                  slot: SnapshotSlot(snapshot), accessLog: accessLog))
        }

        // Worker 0 binds first; when the configuration says port 0 the others reuse the port it got.
        for listener in config.listeners {
            var address = listener.bind
            for worker in workers {
                let fd: Int32
                do { fd = try Sockets.listen(on: address) } catch {
                    throw ProxyError("cannot listen on \(address): \(error); is another process using the port?")
                }
                if address.port == 0 { address.port = Self.localPort(fd) }
                worker.addListener(fd: fd)
            }
            boundAddresses.append(address)
        }

        control.workers = workers
        control.persist()
        let base = event_base_new()!
        controlBase = base
        if let adminConfig = config.admin {
            admin = try AdminServer(control: control, base: base, config: adminConfig)
        }
        control.startHealthChecks(base: base)

        let finished = DispatchGroup()
        for worker in workers {
            finished.enter()
            let thread = Thread {
                worker.run()
                finished.leave()
            }
            thread.name = "switchyard-worker-\(worker.index)"
            thread.stackSize = 1 << 20
            thread.start()
        }

        let context = Unmanaged.passUnretained(self).toOpaque()
        let hangup = event_new(base, SIGHUP, EventFlags.signal | EventFlags.persist, serverSignalCallback, context)!
        event_add(hangup, nil)
        signalEvents.append(hangup)
        for signalNumber in [SIGTERM, SIGINT] {
            let event = event_new(base, signalNumber, EventFlags.signal | EventFlags.persist, serverSignalCallback, context)!
            event_add(event, nil)
            signalEvents.append(event)
        }
        if let readyFile { try writeReadyFile(readyFile) }
        let names = boundAddresses.map(\.description).joined(separator: ", ")
        FileHandle.standardError.write(Data("switchyard: listening on \(names) with \(workerCount) worker(s)\n".utf8))

        event_base_dispatch(base)

        // Graceful stop: workers stop accepting, finish in-flight requests, close idle connections.
        for worker in workers { worker.requestStop() }
        let deadline = DispatchTime.now() + .milliseconds(Int(config.shutdownTimeout.milliseconds))
        if finished.wait(timeout: deadline) == .timedOut {
            FileHandle.standardError.write(Data("switchyard: shutdown_timeout reached; closing remaining connections\n".utf8))
            for worker in workers { worker.requestForcedStop() }
            finished.wait()
        }
        admin?.close()
        control.health?.stop()
        for event in signalEvents { event_free(event) }
        event_base_free(base)
        accessLog?.close()
        FileHandle.standardError.write(Data("switchyard: stopped\n".utf8))
    }

    fileprivate func onSignal(_ number: Int32) {
        if number == SIGHUP {
            do {
                let (generation, notes) = try control.reload(reset: false, actor: Actor(user: "SIGHUP", label: nil))
                var message = "switchyard: SIGHUP: configuration reloaded (generation \(generation))\n"
                for note in notes { message += "switchyard: reload: \(note)\n" }
                FileHandle.standardError.write(Data(message.utf8))
            } catch {
                FileHandle.standardError.write(Data("switchyard: SIGHUP: \(error.error): \(error.detail)\n".utf8))
            }
            return
        }
        let name = number == SIGTERM ? "SIGTERM" : "SIGINT"
        FileHandle.standardError.write(Data("switchyard: \(name) received; draining connections\n".utf8))
        if let controlBase { event_base_loopbreak(controlBase) }
    }

    private func writeReadyFile(_ path: String) throws {
        let text = boundAddresses.map(\.description).joined(separator: "\n") + "\n"
        let temporary = path + ".tmp"
        try text.write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, path) == 0 else { throw ProxyError("cannot write ready file \(path)") }
    }

    static func localPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }
}

private let serverSignalCallback: event_callback_fn = { fd, _, context in
    Unmanaged<ProxyServer>.fromOpaque(context!).takeUnretainedValue().onSignal(fd)
}
