import CLibevent
import Glibc
import Synchronization
import SwitchyardConfig
import SwitchyardHTTP
import SwitchyardRouting

/// Settings every worker reads; fixed for the worker's life.
struct WorkerSettings: Sendable {
    var limits: HTTPLimits
    var maxConnections: Int
    var bufferSize: Int
    var clientHeaderMs: Int64
    var clientIdleMs: Int64
    var upstreamConnectMs: Int64
    var upstreamResponseMs: Int64
    var upstreamIdleMs: Int64
    var tunnelDrainMs: Int64
    var logRequests: Bool

    init(config: SwitchyardConfig, workerCount: Int) {
        limits = HTTPLimits(maxRequestLine: config.limits.maxRequestLine,
                            maxHeaderBytes: config.limits.maxHeaderBytes,
                            maxHeaders: config.limits.maxHeaders)
        maxConnections = max(1, (config.limits.maxConnections + workerCount - 1) / workerCount)
        // Room for the largest accepted head plus what the proxy adds to it.
        bufferSize = max(16384, config.limits.maxHeaderBytes + 2048)
        clientHeaderMs = config.timeouts.clientHeader.milliseconds
        clientIdleMs = config.timeouts.clientIdle.milliseconds
        upstreamConnectMs = config.timeouts.upstreamConnect.milliseconds
        upstreamResponseMs = config.timeouts.upstreamResponse.milliseconds
        upstreamIdleMs = config.timeouts.upstreamIdle.milliseconds
        tunnelDrainMs = config.timeouts.tunnelDrain.milliseconds
        logRequests = config.accessLog != .off
    }
}

/// A routing snapshot as the control plane hands it to the workers.
struct Publication: Sendable {
    let snapshot: RoutingSnapshot
    /// The snapshot published before it: a worker that has it may look at `changedPools` only.
    let previous: RoutingSnapshot?
    /// The pools that differ from `previous`'s (nil after a reload that moved pools): a worker
    /// that has `previous` looks at only these.
    let changedPools: [Int]?

    init(_ snapshot: RoutingSnapshot, previous: RoutingSnapshot? = nil, changedPools: [Int]? = nil) {
        self.snapshot = snapshot
        self.previous = previous
        self.changedPools = changedPools
    }
}

/// The newest publication for one worker, written by the control plane and read by the
/// worker when it is woken. The lock is taken once per published change, never per request.
///
/// A worker never frees a snapshot: freeing one of thousands of pools takes hundreds of
/// microseconds between two requests. What it is done with it hands back here (`retire`),
/// and the control thread frees it (`takeRetired`).
final class SnapshotSlot: Sendable {
    let slot: Mutex<Publication>
    private let retired = Mutex<[RoutingSnapshot]>([])

    /// On the worker: snapshots it no longer routes with.
    func retire(_ snapshots: [RoutingSnapshot]) { retired.withLock { $0 += snapshots } }

    /// On the control thread: the retired snapshots, to be let go of there.
    func takeRetired() -> [RoutingSnapshot] {
        retired.withLock { list in
            defer { list = [] }
            return list
        }
    }

    init(_ snapshot: RoutingSnapshot) { slot = Mutex(Publication(snapshot)) }
    /// Stores `publication` and returns the one it replaces, for the caller to let go of
    /// (and so free the snapshots it holds) once no worker waits for it.
    func exchange(_ publication: Publication) -> Publication {
        slot.withLock { current in
            defer { current = publication }
            return current
        }
    }
    func load() -> Publication { slot.withLock { $0 } }
}

/// One data-plane thread: its own event base, its own listening sockets (SO_REUSEPORT),
/// its own connection pools and balancer state. Nothing here is shared with other workers
/// except the snapshot slot and a few atomics the control plane reads.
final class Worker: @unchecked Sendable {
    let index: Int
    let base: OpaquePointer
    let settings: WorkerSettings
    let buffers: BufferPool
    /// The states of exchanges in progress (`ExchangeState`).
    let exchanges = ExchangePool()
    /// The one timer for every connection's deadline, and the deadlines by kind of connection.
    let deadlineTimer = DeadlineTimer()
    let clientDeadlines: DeadlineQueue<ClientConnection>
    let upstreamDeadlines: DeadlineQueue<UpstreamConnection>
    /// Where an accepted client's address is formatted before the connection keeps it.
    let addressScratch = UnsafeMutablePointer<UInt8>.allocate(capacity: ClientConnection.Scratch.clientIPCapacity)
    /// Where a response head and body are put together into one TLS record (`SocketIO.transmit`).
    let tlsRecordScratch = UnsafeMutableRawPointer.allocate(byteCount: SocketIO.recordCoalesceLimit, alignment: 16)
    let requestHead: HTTPHead
    let responseHead: HTTPHead
    let accessLog: AccessLog?

    var snapshot: RoutingSnapshot
    let slot: SnapshotSlot
    /// Generation of the snapshot this worker routes with; the control plane waits on it.
    let acknowledgedGeneration = Atomic<UInt64>(0)
    let stopRequested = Atomic<Bool>(false)
    /// A stop after a takeover: idle keep-alive connections are not closed at once (their next
    /// request is answered with Connection: close) so no client request races a close.
    let softStop = Atomic<Bool>(false)
    let forcedStopRequested = Atomic<Bool>(false)
    /// Set once the event loop has returned: the control plane no longer waits for this
    /// worker's answers (its last counters stay in `statsSlot`).
    let exited = Atomic<Bool>(false)

    var balancers: [PoolBalancer] = []
    /// Resolved addresses, indexed by server id.
    var addresses: [Sockets.Address?] = []
    /// Idle keep-alive upstream connections, indexed by server id; most recently used last.
    var idle: [[UpstreamConnection]] = []
    /// Whether each server (by id) takes new requests; draining ones get no pooled connections.
    var serverReady: [Bool] = []
    /// When each server started draining (monotonic ms; `.max` while ready): its tunnels
    /// are closed `tunnel_drain` later.
    var drainingSince: [Int64] = []
    var drainCheck = PeriodicCheck()
    /// Passive outlier detection, this worker's view, by server id.
    var outliers = OutlierDetector()
    /// Where each server id sits now: (index of its balancer, index in the pool).
    var serverLocation: [(pool: Int, index: Int)?] = []
    var ejectionCheck = PeriodicCheck()
    /// `ServerStats.stride` counters per server id.
    var stats: [Int] = []
    /// The same counters per service, by the service's `statsID`.
    var serviceStats: [Int] = []
    /// The control plane asks for a copy of `stats` by raising `statsRequested`; the worker
    /// answers in `statsSlot` and acknowledges in `statsAnswered`.
    let statsRequested = Atomic<UInt64>(0)
    let statsAnswered = Atomic<UInt64>(0)
    let statsSlot = Mutex<StatsCopy>(StatsCopy())

    var listeners: [(fd: Int32, event: OpaquePointer)] = []
    /// TLS termination per listening socket (absent for plain HTTP).
    var listenerTLS: [Int32: TLSServerContext] = [:]
    /// The address each TLS listening socket serves, to match reloaded certificates to it.
    var listenerAddress: [Int32: SocketAddress] = [:]
    /// New certificates from a reload, by listener address; taken on the next wake-up. Only
    /// new handshakes use them: established connections keep their session.
    let tlsSlot = Mutex<[SocketAddress: TLSServerContext]?>(nil)
    /// TLS client contexts for pools that talk TLS to their servers, by pool name.
    var upstreamTLS: [String: TLSClientContext] = [:]
    /// Upstream TLS settings from a reload, taken on the next wake-up (new connections use them).
    let upstreamTLSSlot = Mutex<[String: TLSClientContext]?>(nil)
    /// TLS handshakes that failed or stalled (reported in metrics).
    var tlsHandshakeFailures = 0
    /// Accepts that failed for want of descriptors or memory (reported in metrics).
    var acceptErrors = 0
    /// Accept errors since the last log line, and when that line was written (monotonic ms).
    var acceptErrorsUnlogged = 0
    var acceptErrorLoggedAt: Int64 = .min
    /// Re-enables the listeners after an accept error made the worker pause.
    var acceptResumeEvent: OpaquePointer?
    var wakeEvent: OpaquePointer!
    var logFlushEvent: OpaquePointer?
    var shutdownEvent: OpaquePointer?

    /// Live client connections (an intrusive list, so adding and removing allocate nothing).
    var clients: ClientConnection?
    var clientCount = 0
    var stopping = false
    /// Listening is off while `max_connections` are open, or for a moment after accept failed.
    var acceptPaused = false
    var acceptBackingOff = false

    var requestCounter: UInt64 = 0
    let requestIDPrefix: UInt32
    var random: SplitMix64
    /// Connections closed during the current callback. They are freed when the callback
    /// returns, so a connection never disappears while its own code is still on the stack.
    var closedConnections: [AnyObject] = []
    /// Access-log lines not yet handed to the writer thread.
    var logBuffer: [UInt8] = []
    /// Where one access-log line is formatted before it is appended to `logBuffer`.
    let logLineScratch = UnsafeMutablePointer<UInt8>.allocate(capacity: AccessLogLine.scratchCapacity)

    init(index: Int, settings: WorkerSettings, snapshot: RoutingSnapshot, slot: SnapshotSlot, accessLog: AccessLog?) {
        self.index = index
        self.settings = settings
        self.snapshot = snapshot
        self.slot = slot
        self.accessLog = accessLog
        guard let base = event_base_new() else { fatalError("event_base_new failed") }
        self.base = base
        clientDeadlines = DeadlineQueue(timer: deadlineTimer)
        upstreamDeadlines = DeadlineQueue(timer: deadlineTimer)
        buffers = BufferPool(bufferSize: settings.bufferSize)
        requestHead = HTTPHead(maxHeaders: settings.limits.maxHeaders)
        responseHead = HTTPHead(maxHeaders: 256)
        var seed: UInt64 = 0
        withUnsafeMutableBytes(of: &seed) { _ = sy_getrandom($0.baseAddress, 8) }
        random = SplitMix64(seed: seed ^ UInt64(index))
        requestIDPrefix = UInt32(truncatingIfNeeded: random.next())
        logBuffer.reserveCapacity(64 * 1024)
        let context = Unmanaged.passUnretained(self).toOpaque()
        drainCheck.event = event_new(base, -1, EventFlags.persist, workerDrainCheckCallback, context)
        ejectionCheck.event = event_new(base, -1, EventFlags.persist, workerEjectionCheckCallback, context)
        applySnapshot(Publication(snapshot))
        acknowledgedGeneration.store(snapshot.generation, ordering: .releasing)

        deadlineTimer.event = event_new(base, -1, 0, workerDeadlineCallback, context)
        buffers.trimTimer = event_new(base, -1, 0, workerBufferTrimCallback, context)
        acceptResumeEvent = event_new(base, -1, 0, workerAcceptResumeCallback, context)
        wakeEvent = event_new(base, -1, EventFlags.persist, workerWakeCallback, context)
        event_add(wakeEvent, nil)
        if accessLog != nil {
            logFlushEvent = event_new(base, -1, EventFlags.persist, workerLogFlushCallback, context)
            var tv = timeval(milliseconds: 100)
            event_add(logFlushEvent, &tv)
        }
    }

    deinit {
        addressScratch.deallocate()
        logLineScratch.deallocate()
        tlsRecordScratch.deallocate()
    }

    /// Starts accepting on an already-bound listening socket.
    func addListener(fd: Int32, tls: TLSServerContext? = nil, address: SocketAddress? = nil) {
        if let tls { listenerTLS[fd] = tls }
        if let address { listenerAddress[fd] = address }
        let event = event_new(base, fd, EventFlags.read | EventFlags.persist, workerAcceptCallback,
                              Unmanaged.passUnretained(self).toOpaque())!
        event_add(event, nil)
        listeners.append((fd, event))
    }

    /// Runs the event loop until the worker has stopped.
    func run() {
        event_base_dispatch(base)
        for up in idle.flatMap({ $0 }) { up.close() }
        idle.removeAll()
        // Outside any callback: the connections just closed hold the worker; let them go.
        releaseRetired()
        flushLog()
        statsSlot.withLock { $0 = statsCopy() }
        exited.store(true, ordering: .releasing)
    }

    /// This worker's counters as the control plane reads them.
    func statsCopy() -> StatsCopy {
        StatsCopy(servers: stats, services: serviceStats, tlsHandshakeFailures: tlsHandshakeFailures,
                  acceptErrors: acceptErrors, clientConnections: [clientCount])
    }

    // MARK: Control plane → worker (any thread)

    /// Wakes the worker to pick up the newest snapshot from its slot.
    func notifySnapshot() { event_active(wakeEvent, EV_READ, 0) }

    /// Asks for a copy of the counters (answered in `statsSlot` when `statsAnswered` reaches `round`).
    func requestStats(round: UInt64) {
        statsRequested.store(round, ordering: .releasing)
        event_active(wakeEvent, EV_READ, 0)
    }

    /// Asks the worker to stop gracefully: no new connections, finish what is in flight.
    /// - Parameter soft: keep idle keep-alive connections for their next request (takeover).
    func requestStop(soft: Bool = false) {
        softStop.store(soft, ordering: .relaxed)
        stopRequested.store(true, ordering: .releasing)
        event_active(wakeEvent, EV_READ, 0)
    }

    /// Asks the worker to close whatever is left and return (the drain deadline passed).
    func requestForcedStop() {
        forcedStopRequested.store(true, ordering: .releasing)
        event_active(wakeEvent, EV_READ, 0)
    }

    // MARK: On the worker thread

    func onWake() {
        let publication = slot.load()
        let newest = publication.snapshot
        // Handed back after the acknowledgement, with the publication's previous one, for the
        // control thread to free.
        var done: [RoutingSnapshot] = []
        if newest !== snapshot {
            done.append(snapshot)
            if let previous = publication.previous { done.append(previous) }
            applySnapshot(publication)
        }
        if let upstream = upstreamTLSSlot.withLock({ value -> [String: TLSClientContext]? in defer { value = nil }; return value }) {
            upstreamTLS = upstream
        }
        if let reloaded = tlsSlot.withLock({ value -> [SocketAddress: TLSServerContext]? in defer { value = nil }; return value }) {
            for (fd, address) in listenerAddress { if let tls = reloaded[address] { listenerTLS[fd] = tls } }
        }
        acknowledgedGeneration.store(newest.generation, ordering: .releasing)
        if !done.isEmpty { slot.retire(done) }
        let asked = statsRequested.load(ordering: .acquiring)
        if asked != statsAnswered.load(ordering: .relaxed) {
            let copy = statsCopy()
            statsSlot.withLock { $0 = copy }
            statsAnswered.store(asked, ordering: .releasing)
        }
        if stopRequested.load(ordering: .acquiring) && !stopping { beginStop() }
        if forcedStopRequested.load(ordering: .acquiring) { forceStop() }
    }

    func acceptConnections(_ listenFD: Int32) {
        for _ in 0..<64 {
            if clientCount >= settings.maxConnections {
                pauseAccepting()
                return
            }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sy_accept4(listenFD, $0, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
            if fd < 0 {
                let code = errno
                switch code {
                case EAGAIN, EWOULDBLOCK:
                    return
                case EINTR, ECONNABORTED, EPROTO, EPERM, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH:
                    continue // this one connection failed (Linux reports its network errors here); the next may not
                default:
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays queued, so the level-triggered
                    // listener would fire again at once and spin. Pause instead, until descriptors may be free.
                    backOffAccepting(errorCode: code)
                    return
                }
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let client = ClientConnection(worker: self, fd: fd, peer: &storage, tls: listenerTLS[listenFD])
            link(client)
            client.start()
        }
    }

    func pauseAccepting() {
        guard !acceptPaused else { return }
        acceptPaused = true
        updateListening()
    }

    /// How long accepting pauses after an accept error, and how often such errors are logged.
    static let acceptBackoffMs: Int64 = 100
    static let acceptErrorLogIntervalMs: Int64 = 10_000

    /// Accept failed for want of a resource (typically the open-file limit): stop listening
    /// for a moment, count it, and say so at most once per log interval.
    func backOffAccepting(errorCode: Int32) {
        acceptErrors += 1
        acceptErrorsUnlogged += 1
        let now = monotonicMilliseconds()
        if acceptErrorLoggedAt == .min || now - acceptErrorLoggedAt >= Self.acceptErrorLogIntervalMs {
            let times = acceptErrorsUnlogged == 1 ? "" : " (\(acceptErrorsUnlogged) times since the last report)"
            var hint = ""
            switch errorCode {
            case EMFILE:
                hint = "; the open-file limit is \(Sockets.openFileLimit().soft) and this worker has \(clientCount) client connections: raise the limit (LimitNOFILE= in systemd, ulimit -n) or lower limits.max_connections"
            case ENFILE:
                hint = "; the system-wide open-file limit is reached (sysctl fs.file-max)"
            case ENOBUFS, ENOMEM:
                hint = "; the system is short of memory for sockets"
            default:
                break
            }
            logToStandardError("switchyard: worker \(index): cannot accept connections: \(String(cString: strerror(errorCode)))\(times); pausing accept for \(Self.acceptBackoffMs) ms each time\(hint)")
            acceptErrorLoggedAt = now
            acceptErrorsUnlogged = 0
        }
        acceptBackingOff = true
        updateListening()
        var tv = timeval(milliseconds: Self.acceptBackoffMs)
        event_add(acceptResumeEvent, &tv)
    }

    func resumeAccepting() {
        acceptBackingOff = false
        updateListening()
    }

    /// Listeners are watched unless the worker stops, is full, or backs off after an accept error.
    var listening = true
    func updateListening() {
        let on = !stopping && !acceptPaused && !acceptBackingOff
        guard on != listening else { return }
        listening = on
        for l in listeners {
            if on { event_add(l.event, nil) } else { event_del(l.event) }
        }
    }

    func link(_ client: ClientConnection) {
        client.next = clients
        clients?.previous = client
        clients = client
        clientCount += 1
    }

    /// Called by a client connection when it closes.
    func unlink(_ client: ClientConnection) {
        if let p = client.previous { p.next = client.next } else { clients = client.next }
        client.next?.previous = client.previous
        client.next = nil
        client.previous = nil
        clientCount -= 1
        if acceptPaused && !stopping && clientCount < settings.maxConnections {
            acceptPaused = false
            updateListening()
        }
        if stopping && clientCount == 0 { event_base_loopexit(base, nil) }
    }

    func beginStop() {
        stopping = true
        event_del(acceptResumeEvent)
        for l in listeners {
            event_del(l.event)
            event_free(l.event)
            Glibc.close(l.fd)
        }
        listeners.removeAll()
        let soft = softStop.load(ordering: .relaxed)
        var c = clients
        while let client = c {
            c = client.next
            client.stopGracefully(closeIdle: !soft)
        }
        if clientCount == 0 { event_base_loopexit(base, nil) }
    }

    /// Deadline passed: close whatever is left.
    func forceStop() {
        var c = clients
        while let client = c {
            c = client.next
            client.abort()
        }
        event_base_loopexit(base, nil)
    }

    /// The deadline timer fired: tells every connection whose deadline passed, then arms the
    /// timer for the earliest deadline left.
    func expireDeadlines() {
        deadlineTimer.fired()
        let now = monotonicMilliseconds()
        clientDeadlines.expire(now: now)
        upstreamDeadlines.expire(now: now)
        let next = min(clientDeadlines.earliest, upstreamDeadlines.earliest)
        if next != .max { deadlineTimer.arm(due: next, now: monotonicMilliseconds()) }
    }

    /// Keeps a closing connection alive until the current callback has returned.
    func retire(_ connection: AnyObject) { closedConnections.append(connection) }

    /// Called by each callback trampoline as its last step.
    @inline(__always) func releaseRetired() {
        if !closedConnections.isEmpty { closedConnections.removeAll(keepingCapacity: true) }
    }

}

/// A persistent timer that is armed only while there is something to check.
struct PeriodicCheck {
    var event: OpaquePointer?
    var armed = false

    mutating func set(_ on: Bool, everyMilliseconds ms: Int64) {
        guard on != armed, let event else { return }
        armed = on
        if on {
            var tv = timeval(milliseconds: ms)
            event_add(event, &tv)
        } else {
            event_del(event)
        }
    }
}

private let workerWakeCallback: event_callback_fn = { _, _, context in
    let worker = Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue()
    worker.onWake()
    worker.releaseRetired()
}

private let workerDeadlineCallback: event_callback_fn = { _, _, context in
    guard let context else { return }
    let worker = Unmanaged<Worker>.fromOpaque(context).takeUnretainedValue()
    worker.expireDeadlines()
    worker.releaseRetired()
}

private let workerBufferTrimCallback: event_callback_fn = { _, _, context in
    guard let context else { return }
    Unmanaged<Worker>.fromOpaque(context).takeUnretainedValue().buffers.trim()
}

private let workerAcceptCallback: event_callback_fn = { fd, _, context in
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().acceptConnections(fd)
}

private let workerAcceptResumeCallback: event_callback_fn = { _, _, context in
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().resumeAccepting()
}

private let workerDrainCheckCallback: event_callback_fn = { _, _, context in
    let worker = Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue()
    worker.closeDrainedTunnels()
    worker.releaseRetired()
}

private let workerEjectionCheckCallback: event_callback_fn = { _, _, context in
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().returnEjectedServers()
}

private let workerLogFlushCallback: event_callback_fn = { _, _, context in
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().flushLog()
}
