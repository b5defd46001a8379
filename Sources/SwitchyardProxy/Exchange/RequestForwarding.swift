import CLibevent
import COpenSSL
import Glibc
import SwitchyardHTTP
import SwitchyardRouting

/// Starting an exchange: routing the request, choosing a server, writing the head and body upstream.
extension ClientConnection {
    // MARK: Starting an exchange

    func startExchange() {
        let head = worker.requestHead
        let buffer = inBuffer!
        let source = UnsafePointer(buffer.readPointer)
        startMicros = monotonicMicroseconds()
        clearDeadline()
        phase = .exchange
        exchangeLogged = false
        method = head.method
        version = head.version
        isUpgrade = head.isUpgradeRequest
        keepAlive = keepAlive && head.wantsKeepAlive && !worker.stopping
        responseHeadDone = false
        upstreamReusable = false
        requestBytesCommitted = false
        status = 0
        interimResponses = 0
        bytesSent = 0
        attempts = 0
        triedServers = 0
        retriedStale = false
        outcomeRecorded = false
        upstreamFault = false
        serverPositionHint = -1
        serverID = -1
        poolIndex = -1
        serviceIndex = -1
        balancer = nil

        let idStore = scratch + Scratch.requestID
        if head.requestIDIndex >= 0 {
            let f = head.fields[head.requestIDIndex]
            let n = min(Int(f.valueLength), Scratch.requestIDCapacity)
            idStore.update(from: source + Int(f.valueStart), count: n)
            requestIDLength = n
        } else {
            requestIDLength = worker.generateRequestID(into: idStore)
        }

        let path = head.pathRange(source: source)
        resetExchangeLog(headBytes: head.headLength)
        if worker.settings.logRequests {
            logMethod = String(decoding: UnsafeBufferPointer(start: source + Int(head.methodStart), count: Int(head.methodLength)), as: UTF8.self)
            logPath = String(decoding: UnsafeBufferPointer(start: source + path.start, count: path.length), as: UTF8.self)
            if head.hostIndex >= 0 {
                let f = head.fields[head.hostIndex]
                logHostLength = min(Int(f.valueLength), Scratch.logHostCapacity)
                (scratch + Scratch.logHost).update(from: source + Int(f.valueStart), count: logHostLength)
            }
        }

        request = BodyWindow(framing: head.requestFraming)
        let snapshot = worker.snapshot
        var host = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
        if head.hostIndex >= 0 {
            let f = head.fields[head.hostIndex]
            host = UnsafeBufferPointer(start: source + Int(f.valueStart), count: Int(f.valueLength))
        }
        // An absolute-form target without a path is forwarded as "/", so it is routed as "/".
        let routedPath = path.length > 0 ? UnsafeBufferPointer(start: source + path.start, count: path.length) : rootPath
        guard let service = snapshot.route(host: host, path: routedPath) else {
            buffer.consume(head.headLength)
            failExchange(status: 404, detail: "no service matches this host and path")
            return
        }
        serviceIndex = snapshot.services[service].statsID
        if worker.settings.logRequests { logService = snapshot.services[service].name }
        worker.countService(serviceIndex, ServerStats.active)
        // A fresh sticky id, used only if the service sticks by cookie and the client has none.
        let freshCookie = scratch + Scratch.cookieValue
        if snapshot.services[service].sticksByCookie { StickyCookie.writeValue(worker.random.next(), into: freshCookie) }
        let choice = snapshot.choosePool(service: service, head: head, source: source,
                                         clientIP: UnsafeBufferPointer(start: clientIP, count: clientIPLength),
                                         freshCookieValue: UnsafeBufferPointer(start: freshCookie, count: StickyCookie.valueLength),
                                         random: &worker.random)
        setCookieLength = 0
        if choice.setsStickyCookie, let name = snapshot.services[service].stickyCookieName {
            setCookieLength = StickyCookie.writeSetCookieLine(name: name, value: UnsafeBufferPointer(start: freshCookie, count: StickyCookie.valueLength),
                                                              into: scratch + Scratch.setCookie, capacity: Scratch.setCookieCapacity)
        }
        poolIndex = choice.pool
        routeReason = choice.reason
        balancer = worker.balancers[poolIndex]
        guard pickServer() else {
            buffer.consume(head.headLength)
            failExchange(status: 503, detail: "no server available in pool \(snapshot.pools[poolIndex].name)")
            return
        }

        let headBuffer = upstreamHead ?? worker.buffers.take()
        upstreamHead = headBuffer
        headBuffer.reset()
        var w = ByteWriter(base: headBuffer.base, capacity: headBuffer.capacity)
        var fallbackHost: [UInt8] = []
        if head.hostIndex < 0 { fallbackHost = Array(upstreamText.utf8) }
        fallbackHost.withUnsafeBufferPointer { fallback in
            let info = ForwardingInfo(
                clientAddress: UnsafeBufferPointer(start: clientIP, count: clientIPLength),
                scheme: ssl == nil ? "http" : "https",
                requestID: UnsafeBufferPointer(start: idStore, count: requestIDLength),
                requestIDGenerated: head.requestIDIndex < 0,
                fallbackHost: fallback)
            HeadWriter.writeUpstreamRequest(head, source: source, info: info, into: &w)
        }
        buffer.consume(head.headLength)
        if w.overflowed {
            failExchange(status: 431, detail: "request header fields too large to forward")
            return
        }
        headBuffer.writeIndex = w.count
        upstreamHeadSent = 0
        if !request.absorb(buffer) {
            failExchange(status: 400, detail: "invalid chunked request body (\(request.failure.map { "\($0)" } ?? "invalid framing"))")
            return
        }
        watchRequestBody()
        connectUpstream(allowReuse: true)
    }

    /// While the request body is still arriving, a client that stops sending is timed out
    /// (client_idle, reset by every byte it sends).
    func watchRequestBody() {
        if !request.ended {
            setDeadline(.body, after: worker.settings.clientIdleMs)
        } else if timeoutKind == .body {
            clearDeadline()
        }
    }

    /// Retries stop once the request has been going for longer than upstream_response.
    var withinDeadline: Bool {
        (monotonicMicroseconds() - startMicros) / 1000 < worker.settings.upstreamResponseMs
    }

    /// The server this exchange uses, looked up by id (nil once the pool no longer has it).
    var currentServer: ServerSnapshot? { balancer?.server(withID: serverID, hint: serverPositionHint) }

    /// The current server's address, for messages.
    var upstreamText: String { currentServer?.address.description ?? "(a server removed meanwhile)" }

    func pickServer() -> Bool {
        guard let balancer, let index = balancer.pick(excluding: triedServers) else { return false }
        serverPositionHint = index
        serverID = balancer.serverID(at: index)
        if index < 64 { triedServers |= 1 << UInt64(index) }
        return true
    }

    func connectUpstream(allowReuse: Bool) {
        attempts += 1
        outcomeRecorded = false
        if worker.settings.logRequests { upstreamStartMicros = monotonicMicroseconds() }
        balancer?.requestStarted(serverID: serverID, hint: serverPositionHint)
        worker.count(serverID, ServerStats.active)
        countedActive = true
        if allowReuse, let connection = worker.takeIdleConnection(serverID: serverID) {
            connection.owner = self
            connection.clearDeadline()
            upstream = connection
            sendToUpstream()
            return
        }
        guard let address = worker.addresses[serverID] else {
            failExchange(status: 502, detail: "upstream address \(upstreamText) is unusable")
            return
        }
        do {
            let tls = worker.upstreamTLS.isEmpty ? nil : balancer.flatMap { worker.upstreamTLS[$0.pool.name] }
            let connection = try UpstreamConnection.open(worker: worker, serverID: serverID, address: address, tls: tls,
                                                         host: tls == nil ? "" : currentServer?.address.host ?? "", owner: self)
            upstream = connection
            connection.wantRead(true)
            if connection.ready { sendToUpstream() }
        } catch {
            // Out of descriptors or memory here: the server is not at fault, so outlier detection
            // is not told and no other server is tried; the client may retry.
            if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.code) {
                // Not the server's answer either: the exchange is not counted against it (outlier
                // detection, its 5xx, the canary guard), only against the service.
                releaseUpstream(reuse: false)
                serverID = -1
                failExchange(status: 503, detail: "this proxy cannot open a connection to upstream \(upstreamText) (\(String(cString: strerror(error.code)))); raise its open-file limit (LimitNOFILE)")
                return
            }
            connectionFailed(detail: "could not connect to upstream \(upstreamText) (\(String(cString: strerror(error.code))))",
                             status: 502)
        }
    }
}

/// The path "/", for targets that have none of their own.
/// Read-only after its one initialisation, so workers share it safely.
nonisolated(unsafe) private let rootPath: UnsafeBufferPointer<UInt8> = {
    let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
    p.initialize(to: UInt8(ascii: "/"))
    return UnsafeBufferPointer(start: p, count: 1)
}()
