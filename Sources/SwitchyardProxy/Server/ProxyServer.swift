import CLibevent
import COpenSSL
import Foundation
import Glibc
import SwitchyardAdminAPI
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
    private var takeoverServer: TakeoverServer?
    /// Set when a new process has taken over: the drain keeps idle connections for one more request.
    private var handedOver = false
    /// Session ticket keys per TLS listener, with the timers that rotate them.
    private var ticketRotations: [(keys: UnsafeMutablePointer<sy_ticket_keys>, every: Duration)] = []
    private var ticketTimers: [OpaquePointer] = []
    /// Every listening socket of every worker, with its bound address (handed over on takeover).
    private var listenerFDs: [(address: SocketAddress, fd: Int32)] = []
    /// The binary to start on SIGUSR2 (resolved at start, so an upgraded file on disk is used).
    private let executablePath: String
    private var accessLog: AccessLog?
    private var controlBase: OpaquePointer?
    private var signalEvents: [OpaquePointer] = []
    /// The addresses actually bound (port 0 in the configuration is resolved here).
    public private(set) var boundAddresses: [SocketAddress] = []
    /// The read-only listener of `/metrics`, `/ready` and `/live` (`observability`).
    private var observability: ObservabilityServer?
    /// The release of the binary, reported as `switchyard_build_info{version}`.
    public var version: String {
        get { control.observed.version }
        set { control.observed.version = newValue }
    }

    /// Loads the saved runtime state (if `state_file` is set) on top of `config`.
    /// - Parameter configPath: the file `config` came from; SIGHUP and `POST /v1/reload` read it again.
    public init(config: SwitchyardConfig, configPath: String? = nil) throws {
        self.config = config
        workerCount = config.workers ?? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        control = try ControlPlane(config: config)
        control.configPath = configPath
        let argument0 = CommandLine.arguments.first ?? "switchyard"
        executablePath = argument0.hasPrefix("/") ? argument0 : FileManager.default.currentDirectoryPath + "/" + argument0
    }

    /// Binds, starts the workers and blocks until SIGTERM/SIGINT has drained them.
    /// - Parameter readyFile: written (atomically) with one bound address per line once every worker accepts.
    /// - Parameter takeover: take the listening sockets of the Switchyard running with the same
    ///   `takeover_socket` instead of binding; it drains and exits once this one serves.
    public func run(readyFile: String? = nil, takeover: Bool = false) throws {
        ProcessLog.use(config.logFormat)
        signal(SIGPIPE, SIG_IGN)
        // logrotate's SIGUSR1 must never stop the proxy, even before the control loop handles it.
        signal(SIGUSR1, SIG_IGN)
        // Every connection takes a descriptor: use all the hard limit allows.
        let openFiles = Sockets.raiseOpenFileLimit()
        if openFiles < UInt64(config.limits.maxConnections) {
            logToStandardError("switchyard: warning: the open-file limit (\(openFiles), the hard limit) is below limits.max_connections (\(config.limits.maxConnections)); at the limit new connections wait in the accept queue; raise it (LimitNOFILE= in systemd, ulimit -Hn)", level: .warning)
        }
        // A parent may have left these blocked (the mask is inherited); we must see them.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] { sigaddset(&stopSignals, s) }
        pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
        evthread_use_pthreads()

        switch config.accessLog {
        case .off: accessLog = nil
        case .stdout: accessLog = try AccessLog(path: nil)
        case .file(let path): accessLog = try AccessLog(path: path)
        }
        control.accessLog = accessLog

        for note in control.restoreNotes {
            logToStandardError("switchyard: state file: \(note)")
        }
        // Servers given by name serve from the first request on: resolve before the workers start.
        control.resolveNamesAtStart()
        let snapshot = control.snapshot()
        let settings = WorkerSettings(config: config, workerCount: workerCount)
        for index in 0..<workerCount {
            workers.append(Worker(index: index, settings: settings, snapshot: snapshot,
                                  slot: SnapshotSlot(snapshot), accessLog: accessLog))
        }

        var inherited: Takeover.Inherited? = nil
        if takeover {
            guard let path = config.takeoverSocket else {
                throw ProxyError("--takeover needs takeover_socket in the configuration (the same path the running process uses)")
            }
            inherited = try Takeover.receive(from: path)
        }
        var unused = inherited?.listeners ?? []
        for listener in config.listeners {
            var address = listener.bind
            let tls = try listener.tls.map { try TLSServerContext(config: $0, listener: "listeners \(listener.bind)") }
            if let tls, let config = listener.tls { ticketRotations.append((tls.ticketKeys, config.sessionTicketRotation)) }
            // Sockets handed over for this address are served as they are: their queues carry on.
            let handed = unused.filter { $0.address == address || (address.port == 0 && $0.address.host == address.host) }
            unused.removeAll { item in handed.contains { $0.fd == item.fd } }
            if let first = handed.first { address = first.address }
            for (i, item) in handed.enumerated() {
                workers[i % workers.count].addListener(fd: item.fd, tls: tls, address: item.address)
                listenerFDs.append((address, item.fd))
            }
            // Workers without one (or a first start) bind their own; with port 0 the others reuse worker 0's port.
            for worker in workers.dropFirst(min(handed.count, workers.count)) {
                let fd: Int32
                do { fd = try Sockets.listen(on: address) } catch {
                    throw ProxyError("cannot listen on \(address): \(error); is another process using the port?")
                }
                if address.port == 0 { address.port = Self.localPort(fd) }
                worker.addListener(fd: fd, tls: tls, address: address)
                listenerFDs.append((address, fd))
            }
            boundAddresses.append(address)
        }
        for item in unused { Glibc.close(item.fd) } // listeners the new configuration no longer has

        // TLS to upstreams: one client context per pool that asks for it.
        var upstreamTLS: [String: TLSClientContext] = [:]
        for pool in config.pools { if let tls = pool.tls { upstreamTLS[pool.name] = try TLSClientContext(config: tls, pool: pool.name) } }
        for worker in workers { worker.upstreamTLS = upstreamTLS }
        control.upstreamTLS = upstreamTLS
        control.workers = workers
        // The merged state is written at start; a failure here is reported, and every change is refused until it is fixed.
        do throws(AdminError) { try control.persist() } catch { logToStandardError("switchyard: warning: \(error.detail)") }
        // A reload reads the certificates again; the new ones serve new handshakes.
        let bound = boundAddresses
        let workerList = workers
        // TLS listeners and their ticket keys were set up in the same order.
        var keysByAddress: [SocketAddress: UnsafeMutablePointer<sy_ticket_keys>] = [:]
        for ((_, address), rotation) in zip(zip(config.listeners, bound).filter { $0.0.tls != nil }, ticketRotations) {
            keysByAddress[address] = rotation.keys
        }
        control.reloadCertificates = { [unowned control] fresh in
            var contexts: [SocketAddress: TLSServerContext] = [:]
            for (listener, address) in zip(fresh.listeners, bound) {
                guard let tls = listener.tls else { continue }
                // The same ticket keys: sessions from before the reload still resume.
                contexts[address] = try TLSServerContext(config: tls, listener: "listeners \(listener.bind)",
                                                         ticketKeys: keysByAddress[address])
            }
            // Pools' TLS to their servers: new connections use the new settings.
            var upstream: [String: TLSClientContext] = [:]
            for pool in fresh.pools { if let tls = pool.tls { upstream[pool.name] = try TLSClientContext(config: tls, pool: pool.name) } }
            control.upstreamTLS = upstream
            for worker in workerList {
                worker.tlsSlot.withLock { $0 = contexts }
                worker.upstreamTLSSlot.withLock { $0 = upstream }
                worker.notifySnapshot()
            }
            return contexts.count
        }
        let base = event_base_new()!
        controlBase = base
        if let adminConfig = config.admin {
            admin = try AdminServer(control: control, base: base, config: adminConfig, replace: takeover)
        }
        if let observabilityConfig = config.observability {
            observability = try ObservabilityServer(control: control, base: base, bind: observabilityConfig.bind)
        }
        if let path = config.takeoverSocket {
            takeoverServer = try TakeoverServer(path: path, base: base, listeners: listenerFDs) { [weak self] in
                self?.handedOver = true
                // The new process serves /ready now; this one stops answering there.
                self?.control.observed.phase = .draining
                self?.observability?.close()
                if let base = self?.controlBase { event_base_loopbreak(base) }
            }
        }
        control.startHealthChecks(base: base)
        control.startResolving(base: base)
        for rotation in ticketRotations {
            let timer = event_new(base, -1, EventFlags.persist, ticketRotationCallback, UnsafeMutableRawPointer(rotation.keys))!
            var tv = timeval(milliseconds: rotation.every.milliseconds)
            event_add(timer, &tv)
            ticketTimers.append(timer)
        }

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
        for signalNumber in [SIGHUP, SIGUSR1, SIGUSR2] {
            let event = event_new(base, signalNumber, EventFlags.signal | EventFlags.persist, serverSignalCallback, context)!
            event_add(event, nil)
            signalEvents.append(event)
        }
        for signalNumber in [SIGTERM, SIGINT] {
            let event = event_new(base, signalNumber, EventFlags.signal | EventFlags.persist, serverSignalCallback, context)!
            event_add(event, nil)
            signalEvents.append(event)
        }
        if let readyFile { try writeReadyFile(readyFile) }
        if let inherited {
            Takeover.announceReady(inherited)
            notifySystemd("MAINPID=\(getpid())\nREADY=1")
        } else {
            notifySystemd("READY=1")
        }
        let names = boundAddresses.map(\.description).joined(separator: ", ")
        logToStandardError("switchyard: listening on \(names) with \(workerCount) worker(s)")
        control.observed.phase = .serving

        event_base_dispatch(base)

        // Graceful stop: workers stop accepting, finish in-flight requests, close idle connections.
        control.observed.phase = .draining
        for worker in workers { worker.requestStop(soft: handedOver) }
        let deadline = DispatchTime.now() + .milliseconds(Int(config.shutdownTimeout.milliseconds))
        if !serveWhileDraining(base: base, finished: finished, until: deadline) {
            logToStandardError("switchyard: shutdown_timeout reached; closing remaining connections", level: .warning)
            for worker in workers { worker.requestForcedStop() }
            finished.wait()
        }
        admin?.close()
        observability?.close()
        takeoverServer?.close()
        control.health?.stop()
        for event in signalEvents { event_free(event) }
        event_base_free(base)
        accessLog?.close()
        logToStandardError("switchyard: stopped")
    }

    fileprivate func onSignal(_ number: Int32) {
        // Stopping: the control loop still serves the observability listener and the admin
        // API while connections drain, but nothing new starts.
        if control.observed.phase == .draining && (number == SIGHUP || number == SIGUSR2) {
            logToStandardError("switchyard: signal \(number) ignored: stopping", level: .warning)
            return
        }
        if number == SIGHUP {
            do {
                let (generation, notes) = try control.reload(reset: false, actor: Actor(user: "SIGHUP", label: nil))
                logToStandardError("switchyard: SIGHUP: configuration reloaded (generation \(generation))", fields: ["generation": "\(generation)"])
                for note in notes { logToStandardError("switchyard: reload: \(note)", level: .warning) }
            } catch {
                logToStandardError("switchyard: SIGHUP: \(error.error): \(error.detail)", level: .error)
            }
            return
        }
        if number == SIGUSR2 {
            startSuccessor()
            return
        }
        if number == SIGUSR1 {
            // logrotate: the file was moved away; lines go on to a new file at the same path.
            if case .file = config.accessLog { accessLog?.reopen() }
            else { logToStandardError("switchyard: SIGUSR1: the access log is not a file; nothing to reopen", level: .warning) }
            return
        }
        let name = number == SIGTERM ? "SIGTERM" : "SIGINT"
        guard control.observed.phase != .draining else { return }
        control.observed.phase = .draining
        logToStandardError("switchyard: \(name) received; draining connections")
        notifySystemd("STOPPING=1")
        if let controlBase { event_base_loopbreak(controlBase) }
    }

    /// Runs the control loop while the workers drain, so that `/ready` answers 503 and
    /// `/metrics` shows the drain (and the admin API keeps answering). Returns whether every
    /// worker finished before `deadline`.
    private func serveWhileDraining(base: OpaquePointer, finished: DispatchGroup, until deadline: DispatchTime) -> Bool {
        // A tick, so that the loop comes back to look at the workers at least every 50 ms.
        guard let tick = event_new(base, -1, EventFlags.persist, { _, _, _ in }, nil) else {
            return finished.wait(timeout: deadline) == .success
        }
        defer { event_free(tick) }
        var tv = timeval(milliseconds: 50)
        event_add(tick, &tv)
        while finished.wait(timeout: .now()) == .timedOut {
            if DispatchTime.now() >= deadline { return false }
            event_base_loop(base, Int32(EVLOOP_ONCE))
        }
        return true
    }

    /// SIGUSR2: start the binary on disk (possibly upgraded) with --takeover; it takes the
    /// listening sockets, and this process drains once it serves.
    private func startSuccessor() {
        guard config.takeoverSocket != nil, let configPath = control.configPath else {
            logToStandardError("switchyard: SIGUSR2: a binary upgrade needs takeover_socket and a configuration file; ignored", level: .warning)
            return
        }
        let child = Process()
        child.executableURL = URL(fileURLWithPath: executablePath)
        child.arguments = ["run", "--config", configPath, "--takeover"]
        do {
            try child.run()
            logToStandardError("switchyard: SIGUSR2: started \(executablePath) (pid \(child.processIdentifier)) to take over")
        } catch {
            logToStandardError("switchyard: SIGUSR2: cannot start \(executablePath): \(error); still serving", level: .error)
        }
    }

    private func writeReadyFile(_ path: String) throws {
        let text = boundAddresses.map(\.description).joined(separator: "\n") + "\n"
        let temporary = path + ".tmp"
        try text.write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, path) == 0 else { throw ProxyError("cannot write ready file \(path)") }
    }

    /// Problems with a TLS listener's certificate files (for `switchyard check`); lines starting
    /// with "warning" do not make the configuration invalid.
    public static func checkTLS(_ tls: TLSListenerConfig, listener: String) -> [String] {
        TLSServerContext.check(tls, listener: listener)
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

private let ticketRotationCallback: event_callback_fn = { _, _, context in
    _ = sy_ticket_keys_rotate(context!.assumingMemoryBound(to: sy_ticket_keys.self))
}

private let serverSignalCallback: event_callback_fn = { fd, _, context in
    Unmanaged<ProxyServer>.fromOpaque(context!).takeUnretainedValue().onSignal(fd)
}
