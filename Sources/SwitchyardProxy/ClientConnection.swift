import CLibevent
import COpenSSL
import Glibc
import SwitchyardHTTP
import SwitchyardRouting

/// One client connection and the exchange in progress on it.
///
/// Bytes move between sockets and fixed buffers with one `recv` and one `writev` per
/// direction in the common case; events are added and removed only when a side cannot
/// keep up (backpressure), so a keep-alive request costs no `epoll_ctl`.
final class ClientConnection {
    unowned(unsafe) let worker: Worker
    let fd: Int32
    /// Links in the worker's list of live connections.
    var next: ClientConnection?
    unowned(unsafe) var previous: ClientConnection?

    /// The TLS session on a TLS listener (nil for plain HTTP).
    private var ssl: OpaquePointer?
    private var handshaking = false
    private let tls: TLSServerContext?
    private var readEvent: OpaquePointer!
    private var writeEvent: OpaquePointer!
    private var reading = false
    private var writing = false
    private var closed = false

    /// Bytes from the client: request heads, bodies, pipelined requests.
    private var inBuffer: IOBuffer?
    /// Bytes the proxy itself writes to the client: response heads and its own answers.
    private var outBuffer: IOBuffer?
    /// The request head as sent upstream, kept until the response starts (for a retry).
    private var upstreamHead: IOBuffer?
    private var upstreamHeadSent = 0

    /// Per-connection text the proxy writes into heads and the log, laid out by `Scratch`.
    private let scratch: UnsafeMutablePointer<UInt8>
    private var clientIPLength = 0
    private var requestIDLength = 0
    private var setCookieLength = 0

    /// Where each part of `scratch` starts: the client IP as text, the request id, a fresh
    /// sticky cookie value, and the `Set-Cookie` line for a client that has no cookie yet.
    private enum Scratch {
        static let clientIP = 0, clientIPCapacity = 64
        static let requestID = clientIP + clientIPCapacity, requestIDCapacity = 256
        static let cookieValue = requestID + requestIDCapacity
        static let setCookie = cookieValue + StickyCookie.valueLength, setCookieCapacity = StickyCookie.maxLineLength
        static let size = setCookie + setCookieCapacity
    }

    enum Phase { case idle, head, exchange, tunnel, lingering }
    private var phase: Phase = .idle
    /// What the parser already checked of an incomplete head (a slow client's is not re-read).
    private var headScan = HeadScan()
    private var keepAlive = true
    private var clientEOF = false
    private var driving = false

    // The exchange in progress.
    private var upstream: UpstreamConnection?
    private var method: HTTPMethod = .get
    private var version: HTTPVersion = .http11
    private var isUpgrade = false
    private var request = BodyWindow()
    private var response = BodyWindow()
    private var responseHeadDone = false
    private var upstreamReusable = false
    private var requestBytesCommitted = false
    private var status = 0
    /// 1xx heads relayed in this exchange.
    private var interimResponses = 0
    static let maxInterimResponses = 16
    private var poolIndex = -1
    /// The service of the exchange (its `statsID`), counted while it is active.
    private var serviceIndex = -1
    /// The balancer of the pool this exchange uses, kept so a snapshot change mid-exchange
    /// cannot make the exchange count against the wrong pool.
    private var balancer: PoolBalancer?
    /// The server in use, by its stable id; its position in the pool when it was picked is
    /// only a hint, since servers added or removed meanwhile move positions.
    private var serverID = -1
    private var serverPositionHint = -1
    private var countedActive = false
    private var triedServers: UInt64 = 0
    private var attempts = 0
    private var retriedStale = false
    /// The current server's outcome was already reported to outlier detection.
    private var outcomeRecorded = false
    /// The exchange ended early because of the upstream (not the client).
    private var upstreamFault = false
    private var bytesSent = 0
    private var startMicros: Int64 = 0
    private var logMethod = ""
    private var logPath = ""
    private var exchangeLogged = true

    private var deadline = Deadline()
    enum TimeoutKind { case idle, header, body, send, linger }
    private var timeoutKind: TimeoutKind = .idle

    init(worker: Worker, fd: Int32, peer: inout sockaddr_storage, tls: TLSServerContext? = nil) {
        self.worker = worker
        self.fd = fd
        self.tls = tls
        scratch = .allocate(capacity: Scratch.size)
        clientIPLength = Sockets.formatIP(&peer, into: scratch + Scratch.clientIP, capacity: Scratch.clientIPCapacity)
    }

    deinit { scratch.deallocate() }

    func start() {
        // The connection keeps itself alive until `close()`; libevent holds only this pointer.
        let context = Unmanaged.passRetained(self).toOpaque()
        readEvent = event_new(worker.base, fd, EventFlags.read | EventFlags.persist, clientReadCallback, context)
        writeEvent = event_new(worker.base, fd, EventFlags.write | EventFlags.persist, clientWriteCallback, context)
        deadline.event = event_new(worker.base, -1, 0, clientTimerCallback, context)
        wantRead(true)
        setDeadline(.header, after: worker.settings.clientHeaderMs) // also bounds a stalled handshake
        if let tls, let session = SSL_new(tls.defaultContext) {
            ssl = session
            SSL_set_fd(session, fd)
            SSL_set_accept_state(session)
            handshaking = true
        }
    }

    // MARK: TLS

    private func continueHandshake() {
        guard let ssl else { return }
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            handshaking = false
            wantWrite(false)
            onReadable() // the client may have sent its request with the last handshake bytes
            return
        }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ: wantWrite(false)
        case SSL_ERROR_WANT_WRITE: wantWrite(true)
        default:
            worker.tlsHandshakeFailures += 1
            ERR_clear_error()
            close()
        }
    }

    /// Reads from the client (see `SocketIO` for the result).
    @inline(__always)
    private func receive(_ p: UnsafeMutablePointer<UInt8>, _ n: Int) -> Int {
        let r = SocketIO.receive(fd: fd, ssl: ssl, into: p, count: n)
        if r == SocketIO.againWhenWritable { wantWrite(true); return SocketIO.again }
        return r
    }

    @inline(__always)
    private func transmit(_ vectors: inout (iovec, iovec), _ count: Int32) -> Int {
        SocketIO.transmit(fd: fd, ssl: ssl, &vectors, count: count)
    }

    /// "TLSv1.3 TLS_AES_128_GCM_SHA256" for the access log, nil for plain HTTP.
    private var tlsDescription: (version: String, cipher: String)? {
        guard let ssl, let cipher = SSL_get_current_cipher(ssl) else { return nil }
        return (String(cString: SSL_get_version(ssl)), String(cString: SSL_CIPHER_get_name(cipher)))
    }

    // MARK: Event interest and timers

    private func wantRead(_ on: Bool) {
        guard on != reading, !closed else { return }
        reading = on
        if on { event_add(readEvent, nil) } else { event_del(readEvent) }
    }

    private func wantWrite(_ on: Bool) {
        guard on != writing, !closed else { return }
        writing = on
        if on { event_add(writeEvent, nil) } else { event_del(writeEvent) }
    }

    /// Sets the one deadline this connection has.
    private func setDeadline(_ kind: TimeoutKind, after ms: Int64) {
        timeoutKind = kind
        deadline.set(after: ms)
    }

    private func clearDeadline() { deadline.clear() }

    fileprivate func onTimer() {
        guard !closed, deadline.fire() else { return }
        if handshaking { worker.tlsHandshakeFailures += 1 } // a client that stalled mid-handshake
        switch timeoutKind {
        case .idle, .linger, .send:
            close()
        case .body:
            if phase == .exchange && !request.ended {
                if responseHeadDone { abortExchange() }
                else { failExchange(status: 408, detail: "the request body stalled for longer than the client_idle timeout") }
            }
        case .header:
            if phase == .head {
                respondLocal(status: 408, detail: "the request head did not arrive within the client_header timeout", close: true)
            } else {
                close()
            }
        }
    }

    // MARK: Client socket

    fileprivate func onReadable() {
        if phase == .lingering { drainLingering(); return }
        if handshaking { continueHandshake(); return }
        repeat {
            let buffer: IOBuffer
            if let b = inBuffer { buffer = b } else { buffer = worker.buffers.take(); inBuffer = buffer }
            if buffer.writable == 0 { makeRoom() }
            if buffer.writable == 0 { wantRead(false); return }
            let n = receive(buffer.writePointer, buffer.writable)
            if n > 0 {
                buffer.writeIndex += n
                drive()
            } else if n == 0 {
                onClientEOF()
                return
            } else {
                if n == -2 { close() }
                return
            }
            // TLS may hold decrypted bytes that epoll will never announce.
        } while !closed && ssl != nil && reading && SSL_pending(ssl) > 0
    }

    fileprivate func onWritable() {
        if handshaking { continueHandshake(); return }
        pushToClient()
    }

    /// Frees space in the input buffer: forgets request bytes kept for a retry (which
    /// then becomes impossible) and moves unread bytes to the front.
    private func makeRoom() {
        guard let buffer = inBuffer else { return }
        if (phase == .exchange || phase == .tunnel) && request.sent > 0 { commitRequestBytes() }
        if buffer.readIndex > 0 { buffer.compact() }
    }

    private func commitRequestBytes() {
        guard let buffer = inBuffer, request.sent > 0 else { return }
        buffer.consume(request.sent)
        request.ready -= request.sent
        request.sent = 0
        requestBytesCommitted = true
    }

    private func updateClientReading() {
        if clientEOF || closed || phase == .lingering { return }
        guard let buffer = inBuffer else { wantRead(true); return }
        if buffer.writable == 0 { makeRoom() }
        wantRead(buffer.writable > 0)
    }

    private func onClientEOF() {
        clientEOF = true
        wantRead(false)
        switch phase {
        case .idle, .head, .lingering:
            close()
        case .exchange:
            // A client may half-close after sending its request; finish the answer if the request is whole.
            if !request.ended { abortExchange() }
        case .tunnel:
            if request.pending == 0 { close() }
        }
    }

    /// Processes whatever the input buffer holds, as far as the current phase allows.
    private func drive() {
        if driving { return }
        driving = true
        defer { driving = false }
        while !closed {
            switch phase {
            case .idle, .head:
                guard let buffer = inBuffer, buffer.readable > 0 else {
                    if let b = inBuffer, phase == .idle { worker.buffers.give(b); inBuffer = nil }
                    return
                }
                if phase == .idle {
                    phase = .head
                    headScan = HeadScan()
                    setDeadline(.header, after: worker.settings.clientHeaderMs)
                }
                let result = HTTPParser.parseRequest(UnsafeRawBufferPointer(start: buffer.readPointer, count: buffer.readable),
                                                     into: worker.requestHead, limits: worker.settings.limits, scan: &headScan)
                switch result {
                case .incomplete:
                    if buffer.writable == 0 { buffer.compact() }
                    return
                case .failure(let error):
                    request = BodyWindow()
                    startMicros = monotonicMicroseconds()
                    logMethod = "-"; logPath = "-"
                    requestIDLength = worker.generateRequestID(into: scratch + Scratch.requestID)
                    respondLocal(status: error.status, detail: error.reasonText, close: true)
                    return
                case .complete:
                    startExchange()
                    if phase != .idle { return }
                }
            case .exchange:
                guard let buffer = inBuffer else { return }
                if !request.ended && !request.absorb(buffer) {
                    if responseHeadDone { abortExchange() }
                    else { failExchange(status: 400, detail: "invalid chunked request body (\(request.failure!))") }
                    return
                }
                if request.pending > 0 { sendToUpstream() }
                watchRequestBody()
                updateClientReading()
                return
            case .tunnel:
                if let buffer = inBuffer { _ = request.absorb(buffer) }
                sendToUpstream()
                updateClientReading()
                return
            case .lingering:
                return
            }
        }
    }

    // MARK: Starting an exchange

    private func startExchange() {
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
        if worker.settings.logRequests {
            logMethod = String(decoding: UnsafeBufferPointer(start: source + Int(head.methodStart), count: Int(head.methodLength)), as: UTF8.self)
            logPath = String(decoding: UnsafeBufferPointer(start: source + path.start, count: path.length), as: UTF8.self)
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
        worker.countService(serviceIndex, ServerStats.active)
        // A fresh sticky id, used only if the service sticks by cookie and the client has none.
        let freshCookie = scratch + Scratch.cookieValue
        if snapshot.services[service].sticksByCookie { StickyCookie.writeValue(worker.random.next(), into: freshCookie) }
        let choice = snapshot.choosePool(service: service, head: head, source: source,
                                         clientIP: UnsafeBufferPointer(start: scratch + Scratch.clientIP, count: clientIPLength),
                                         freshCookieValue: UnsafeBufferPointer(start: freshCookie, count: StickyCookie.valueLength),
                                         random: &worker.random)
        setCookieLength = 0
        if choice.setsStickyCookie, let name = snapshot.services[service].stickyCookieName {
            setCookieLength = StickyCookie.writeSetCookieLine(name: name, value: UnsafeBufferPointer(start: freshCookie, count: StickyCookie.valueLength),
                                                              into: scratch + Scratch.setCookie, capacity: Scratch.setCookieCapacity)
        }
        poolIndex = choice.pool
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
                clientAddress: UnsafeBufferPointer(start: scratch + Scratch.clientIP, count: clientIPLength),
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
            failExchange(status: 400, detail: "invalid chunked request body (\(request.failure!))")
            return
        }
        watchRequestBody()
        connectUpstream(allowReuse: true)
    }

    /// While the request body is still arriving, a client that stops sending is timed out
    /// (client_idle, reset by every byte it sends).
    private func watchRequestBody() {
        if !request.ended {
            setDeadline(.body, after: worker.settings.clientIdleMs)
        } else if timeoutKind == .body {
            clearDeadline()
        }
    }

    /// Retries stop once the request has been going for longer than upstream_response.
    private var withinDeadline: Bool {
        (monotonicMicroseconds() - startMicros) / 1000 < worker.settings.upstreamResponseMs
    }

    /// The server this exchange uses, looked up by id (nil once the pool no longer has it).
    private var currentServer: ServerSnapshot? { balancer?.server(withID: serverID, hint: serverPositionHint) }

    /// The current server's address, for messages.
    private var upstreamText: String { currentServer?.address.description ?? "(a server removed meanwhile)" }

    private func pickServer() -> Bool {
        guard let balancer, let index = balancer.pick(excluding: triedServers) else { return false }
        serverPositionHint = index
        serverID = balancer.serverID(at: index)
        if index < 64 { triedServers |= 1 << UInt64(index) }
        return true
    }

    private func connectUpstream(allowReuse: Bool) {
        attempts += 1
        outcomeRecorded = false
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
            connectionFailed(detail: "could not connect to upstream \(upstreamText) (\(String(cString: strerror(error.code))))",
                             status: 502)
        }
    }

    // MARK: Upstream side

    /// Writes the request head and any ready body bytes to the upstream.
    private func sendToUpstream() {
        guard let connection = upstream, connection.ready else { return }
        var vectors = (iovec(), iovec())
        var count: Int32 = 0
        var headPart = 0
        if let head = upstreamHead, upstreamHeadSent < head.writeIndex {
            headPart = head.writeIndex - upstreamHeadSent
            vectors.0 = iovec(iov_base: UnsafeMutableRawPointer(head.base + upstreamHeadSent), iov_len: headPart)
            count = 1
        }
        let bodyPart = request.pending
        if bodyPart > 0, let buffer = inBuffer {
            let v = iovec(iov_base: UnsafeMutableRawPointer(buffer.readPointer + request.sent), iov_len: bodyPart)
            if count == 0 { vectors.0 = v } else { vectors.1 = v }
            count += 1
        }
        if count == 0 { connection.wantWrite(false); return }
        let n = connection.transmit(&vectors, count)
        if n < 0 {
            let e = errno
            if n == -1 {
                connection.wantWrite(true)
                connection.setDeadline(kind: .response, after: worker.settings.upstreamResponseMs)
                return
            }
            upstreamFailed(connection, errorCode: e)
            return
        }
        var written = n
        let fromHead = min(written, headPart)
        upstreamHeadSent += fromHead
        written -= fromHead
        request.sent += written
        if phase == .tunnel { commitRequestBytes() }
        let done = n == headPart + bodyPart
        connection.wantWrite(!done)
        if phase == .exchange && !responseHeadDone {
            // Waiting for the response starts when the whole request is out; until then a
            // slow upload is the client's business (timed by client_idle), not the upstream's.
            if done && request.ended { connection.setDeadline(kind: .response, after: worker.settings.upstreamResponseMs) }
            else if done { connection.clearDeadline() }
        }
        if written > 0 { updateClientReading() }
        if phase == .tunnel && clientEOF && request.pending == 0 { close() }
    }

    func upstreamWritable(_ connection: UpstreamConnection) {
        sendToUpstream()
    }

    func upstreamConnectFailed(_ connection: UpstreamConnection, errorCode: Int32) {
        connectionFailed(detail: "could not connect to upstream \(upstreamText) (\(String(cString: strerror(errorCode))))",
                         status: 502)
    }

    /// A connection attempt failed before anything was sent: try another server.
    private func connectionFailed(detail: String, status: Int) {
        releaseUpstream(reuse: false)
        if serverID >= 0 && !outcomeRecorded {
            worker.recordOutcome(serverID: serverID, failed: true)
            outcomeRecorded = true
        }
        // Nothing was sent: safe to try another server, within the pool's retries and the deadline.
        if RetryPolicy.afterConnectFailure(attempts: attempts, retries: balancer?.pool.retries ?? 0, withinDeadline: withinDeadline) == .tryAnotherServer,
           pickServer() {
            upstreamHeadSent = 0
            request.sent = 0
            connectUpstream(allowReuse: true)
            return
        }
        failExchange(status: status, detail: detail)
    }

    func upstreamTimedOut(_ connection: UpstreamConnection, kind: UpstreamConnection.TimeoutKind) {
        let seconds = Double(kind == .connect ? worker.settings.upstreamConnectMs : worker.settings.upstreamResponseMs) / 1000
        switch kind {
        case .connect:
            connectionFailed(detail: "upstream \(upstreamText) did not accept the connection within \(seconds)s (upstream_connect)",
                             status: 504)
        case .response, .idle:
            if phase == .tunnel { close(); return }
            if responseHeadDone { abortExchange(); return }
            failExchange(status: 504, detail: "upstream \(upstreamText) did not respond within \(seconds)s (upstream_response)")
        }
    }

    private func upstreamFailed(_ connection: UpstreamConnection, errorCode: Int32) {
        if !connection.connected {
            upstreamConnectFailed(connection, errorCode: errorCode)
            return
        }
        upstreamEnded(reason: String(cString: strerror(errorCode)))
    }

    func upstreamReadable(_ connection: UpstreamConnection) {
        if !connection.connected {
            let e = Sockets.pendingError(connection.fd)
            if e != 0 { upstreamConnectFailed(connection, errorCode: e); return }
        }
        repeat {
            let buffer: IOBuffer
            if let b = connection.inBuffer { buffer = b } else { buffer = worker.buffers.take(); connection.inBuffer = buffer }
            if buffer.writable == 0 { buffer.compact() }
            if buffer.writable == 0 { connection.wantRead(false); return }
            let n = connection.receive(buffer.writePointer, buffer.writable)
            if n > 0 {
                buffer.writeIndex += n
                if phase == .exchange {
                    connection.setDeadline(kind: .response, after: worker.settings.upstreamResponseMs)
                }
                handleResponseBytes()
            } else if n == 0 {
                upstreamEnded(reason: nil)
                return
            } else {
                if n == -2 { upstreamFailed(connection, errorCode: errno) }
                return
            }
            // TLS may hold decrypted bytes that epoll will never announce.
        } while upstream === connection && connection.hasPendingTLSData
    }

    /// The TLS handshake with the upstream failed (e.g. its certificate did not verify).
    func upstreamTLSFailed(_ connection: UpstreamConnection, reason: String) {
        connectionFailed(detail: "TLS to upstream \(upstreamText) failed: \(reason)", status: 502)
    }

    /// Sends the request from its start on a new connection, to another server when the pool
    /// has one that was not tried (else to the same server).
    private func sendAgainOnFreshConnection() {
        releaseUpstream(reuse: false)
        _ = pickServer()
        upstreamHeadSent = 0
        request.sent = 0
        connectUpstream(allowReuse: false)
    }

    /// The upstream closed its side (or failed) while this exchange used it.
    private func upstreamEnded(reason: String?) {
        guard let connection = upstream else { return }
        if phase == .tunnel {
            response.endAtClose()
            connection.wantRead(false)
            if response.pending == 0 && (outBuffer?.isEmpty ?? true) { close() }
            return
        }
        if !responseHeadDone {
            let partial = (connection.inBuffer?.readable ?? 0) > 0
            let what = reason.map { "reset the connection (\($0))" } ?? "closed the connection"
            let decision = RetryPolicy.afterConnectionLost(RetryPolicy.Attempt(
                method: method, attempts: attempts, retries: balancer?.pool.retries ?? 0, withinDeadline: withinDeadline,
                reusedConnection: connection.hasServedRequest, alreadyResent: retriedStale, wroteRequest: upstreamHeadSent > 0,
                requestBytesCommitted: requestBytesCommitted, requestComplete: request.ended, partialResponse: partial))
            if decision == .resendOnFreshConnection {
                // The server closed a reused keep-alive connection just as the request went out.
                retriedStale = true
                sendAgainOnFreshConnection()
                return
            }
            if serverID >= 0 && !outcomeRecorded {
                worker.recordOutcome(serverID: serverID, failed: true)
                outcomeRecorded = true
            }
            if decision == .tryAnotherServer {
                sendAgainOnFreshConnection()
                return
            }
            upstreamFault = true
            failExchange(status: 502, detail: "upstream \(upstreamText) \(what) before a complete response head")
            return
        }
        if response.mode == .untilClose && reason == nil {
            response.endAtClose()
            upstreamReusable = false
            connection.wantRead(false)
            pushToClient()
            return
        }
        // The body was cut short: close the client connection so it cannot mistake it for complete.
        upstreamFault = true
        abortExchange()
    }

    private var responseLimits: HTTPLimits {
        HTTPLimits(maxRequestLine: worker.settings.bufferSize - 2048, maxHeaderBytes: worker.settings.bufferSize - 2048, maxHeaders: 256)
    }

    private func handleResponseBytes() {
        guard let connection = upstream, let buffer = connection.inBuffer else { return }
        if phase == .tunnel {
            _ = response.absorb(buffer)
            pushToClient()
            return
        }
        while !responseHeadDone {
            let result = HTTPParser.parseResponse(UnsafeRawBufferPointer(start: buffer.readPointer, count: buffer.readable),
                                                  into: worker.responseHead, limits: responseLimits)
            switch result {
            case .incomplete:
                if buffer.writable == 0 { buffer.compact() }
                if buffer.writable == 0 {
                    failExchange(status: 502, detail: "upstream \(upstreamText) sent a response head that is too large")
                }
                return
            case .failure(let error):
                failExchange(status: 502, detail: "upstream \(upstreamText) sent an invalid response (\(error.reasonText))")
                return
            case .complete:
                let head = worker.responseHead
                if head.statusCode == 101 {
                    if isUpgrade { startTunnel(); return }
                    failExchange(status: 502, detail: "upstream \(upstreamText) switched protocols without being asked")
                    return
                }
                if head.statusCode < 200 {
                    // Interim answers (100 Continue, 103 Early Hints) go to the client at once: a client
                    // waiting for 100 Continue sends its body only then. A peer that keeps sending them
                    // is cut off, and a head that does not fit whole is never written in part.
                    interimResponses += 1
                    if interimResponses > Self.maxInterimResponses {
                        failExchange(status: 502, detail: "upstream \(upstreamText) sent more than \(Self.maxInterimResponses) interim (1xx) responses")
                        return
                    }
                    if version == .http11 && !writeHead(head, source: buffer.readPointer, dechunk: false, tunnel: false) {
                        abortExchange()
                        return
                    }
                    buffer.consume(head.headLength)
                    pushToClient()
                    if closed { return }
                    continue
                }
                commitRequestBytes()
                status = head.statusCode
                upstreamReusable = head.wantsKeepAlive
                let framing = head.responseFraming(requestMethod: method)
                let dechunk = framing == .chunked && version == .http10
                if framing == .untilClose || dechunk || !request.ended { keepAlive = false }
                response = BodyWindow(framing: framing, dechunk: dechunk)
                if !writeHead(head, source: buffer.readPointer, dechunk: dechunk, tunnel: false) {
                    failExchange(status: 502, detail: "response head from upstream \(upstreamText) too large to forward")
                    return
                }
                buffer.consume(head.headLength)
                responseHeadDone = true
            }
        }
        if !response.absorb(buffer) { abortExchange(); return }
        if response.ended && buffer.readable > response.ready { upstreamReusable = false }
        pushToClient()
    }

    /// Appends a response head for the client to the output buffer.
    @discardableResult
    private func writeHead(_ head: HTTPHead, source: UnsafeMutablePointer<UInt8>, dechunk: Bool, tunnel: Bool) -> Bool {
        let out = outBuffer ?? worker.buffers.take()
        outBuffer = out
        if out.writable < out.capacity / 2 { out.compact() }
        var w = ByteWriter(base: out.writePointer, capacity: out.writable)
        HeadWriter.writeClientResponse(head, source: source, clientVersion: version, keepAlive: keepAlive,
                                       dechunk: dechunk, tunnel: tunnel,
                                       requestID: UnsafeBufferPointer(start: scratch + Scratch.requestID, count: requestIDLength),
                                       extraLines: UnsafeBufferPointer(start: scratch + Scratch.setCookie, count: setCookieLength),
                                       into: &w)
        if w.overflowed { return false }
        out.writeIndex += w.count
        return true
    }

    private func startTunnel() {
        guard let connection = upstream, let buffer = connection.inBuffer else { return }
        let head = worker.responseHead
        commitRequestBytes()
        status = 101
        writeHead(head, source: buffer.readPointer, dechunk: false, tunnel: true)
        buffer.consume(head.headLength)
        responseHeadDone = true
        upstreamReusable = false
        phase = .tunnel
        connection.clearDeadline()
        clearDeadline()
        request = BodyWindow.tunnel()
        response = BodyWindow.tunnel()
        if let input = inBuffer { _ = request.absorb(input) }
        _ = response.absorb(buffer)
        sendToUpstream()
        pushToClient()
    }

    // MARK: Client side output

    /// Writes the pending response head and body bytes to the client.
    private func pushToClient() {
        if closed { return }
        var vectors = (iovec(), iovec())
        var count: Int32 = 0
        var headPart = 0
        if let out = outBuffer, out.readable > 0 {
            headPart = out.readable
            vectors.0 = iovec(iov_base: UnsafeMutableRawPointer(out.readPointer), iov_len: headPart)
            count = 1
        }
        let source = upstream?.inBuffer
        var bodyPart = 0
        if let source, response.ready > 0 {
            bodyPart = response.ready
            let v = iovec(iov_base: UnsafeMutableRawPointer(source.readPointer), iov_len: bodyPart)
            if count == 0 { vectors.0 = v } else { vectors.1 = v }
            count += 1
        }
        if count > 0 {
            let n = transmit(&vectors, count)
            if n < 0 {
                if n == -1 { blockedOnClient(); return }
                close() // the client is gone
                return
            }
            bytesSent += n
            let fromHead = min(n, headPart)
            if fromHead > 0 { outBuffer!.consume(fromHead) }
            let fromBody = n - fromHead
            if fromBody > 0 {
                source!.consume(fromBody)
                response.ready -= fromBody
            }
            if n < headPart + bodyPart { blockedOnClient(); return }
        }
        wantWrite(false)
        if timeoutKind == .send { clearDeadline() }
        if phase == .tunnel {
            if response.ended { close(); return }
            upstream?.wantRead(true)
            return
        }
        if responseHeadDone && response.ended {
            finishExchange()
        } else {
            upstream?.wantRead(true)
        }
    }

    private func blockedOnClient() {
        wantWrite(true)
        if phase != .tunnel { setDeadline(.send, after: worker.settings.clientIdleMs) }
        if let connection = upstream, let source = connection.inBuffer {
            if source.writable == 0 { source.compact() }
            if source.writable == 0 {
                connection.wantRead(false)
                connection.clearDeadline()
            }
        }
    }

    // MARK: Ending an exchange

    /// Answers with the proxy's own short plain-text response (errors, 404, 503).
    private func failExchange(status: Int, detail: String) {
        if responseHeadDone && status >= 500 { abortExchange(); return }
        releaseUpstream(reuse: false)
        respondLocal(status: status, detail: detail, close: !request.ended)
    }

    private func respondLocal(status: Int, detail: String, close: Bool) {
        if close { keepAlive = false }
        if phase != .exchange { phase = .exchange; exchangeLogged = false }
        self.status = status
        responseHeadDone = true
        response = BodyWindow()
        if let head = upstreamHead { worker.buffers.give(head); upstreamHead = nil }
        let out = outBuffer ?? worker.buffers.take()
        outBuffer = out
        out.compact()
        var w = ByteWriter(base: out.writePointer, capacity: out.writable)
        HeadWriter.writeErrorResponse(status: status, detail: detail,
                                      requestID: UnsafeBufferPointer(start: scratch + Scratch.requestID, count: requestIDLength),
                                      close: !keepAlive, into: &w)
        // An answer that does not fit whole (the client is not reading what went before) is not
        // written in part: a fragment would desynchronise the client's stream.
        if w.overflowed { abortExchange(); return }
        out.writeIndex += w.count
        if request.ended, let input = inBuffer {
            // The body (if any) is here already: skip it so the next request parses.
            input.consume(request.ready)
            request.ready = 0
            request.sent = 0
        }
        pushToClient()
    }

    private func releaseUpstream(reuse: Bool) {
        if countedActive {
            balancer?.requestFinished(serverID: serverID, hint: serverPositionHint)
            worker.count(serverID, ServerStats.active, -1)
            countedActive = false
        }
        guard let connection = upstream else { return }
        upstream = nil
        if reuse { connection.park() } else { connection.close() }
    }

    private func finishExchange() {
        logExchange(complete: true)
        let reuse = upstreamReusable && request.ended && request.pending == 0 &&
            upstreamHeadSent == (upstreamHead?.writeIndex ?? 0) && (upstream?.inBuffer?.readable ?? 0) == 0
        releaseUpstream(reuse: reuse)
        if let head = upstreamHead { worker.buffers.give(head); upstreamHead = nil }
        if let out = outBuffer { worker.buffers.give(out); outBuffer = nil }
        if !keepAlive || clientEOF || !request.ended || worker.stopping {
            closeGracefully()
            return
        }
        phase = .idle
        request = BodyWindow()
        response = BodyWindow()
        setDeadline(.idle, after: worker.settings.clientIdleMs)
        updateClientReading()
        if let input = inBuffer, input.readable > 0 { drive() }
        else if let input = inBuffer { worker.buffers.give(input); inBuffer = nil }
    }

    /// Ends an exchange that cannot be answered properly any more (the response already
    /// started, or the client went away): the client connection is closed at once.
    private func abortExchange() {
        logExchange(complete: false)
        close()
    }

    /// The server this connection tunnels to, while it is a tunnel.
    var tunnelServerID: Int? { phase == .tunnel && serverID >= 0 ? serverID : nil }

    /// Worker is stopping: finish the current exchange, then close.
    /// - Parameter closeIdle: close idle keep-alive connections now (SIGTERM). Otherwise
    ///   (after a takeover) an idle connection waits up to 2 s for its next request, which is
    ///   answered with Connection: close: closing under a client that is sending fails its request.
    func stopGracefully(closeIdle: Bool) {
        keepAlive = false
        if phase == .lingering { close(); return }
        let idle = phase == .idle || (phase == .head && (inBuffer?.readable ?? 0) == 0)
        guard idle else { return }
        if closeIdle { close() } else { setDeadline(.idle, after: 2000) }
    }

    /// Shuts down our side and discards what the client still sends for a moment, so that
    /// an error response is not destroyed by a reset when the client has unread bytes.
    private func closeGracefully() {
        if let ssl { SSL_shutdown(ssl) } // close_notify, best effort: the socket is non-blocking
        if clientEOF { close(); return }
        phase = .lingering
        shutdown(fd, Int32(SHUT_WR))
        wantWrite(false)
        wantRead(true)
        if let b = inBuffer { worker.buffers.give(b); inBuffer = nil }
        setDeadline(.linger, after: 2000)
    }

    private func drainLingering() {
        var discard = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let n = withUnsafeMutableBytes(of: &discard) { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 { return }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        close()
    }

    /// Closes the connection now, with its upstream if an exchange was in progress.
    func abort() { logExchange(complete: false); close() }

    private func close() {
        guard !closed else { return }
        if phase == .exchange || phase == .tunnel { logExchange(complete: phase == .tunnel) }
        releaseUpstream(reuse: false)
        closed = true
        for buffer in [inBuffer, outBuffer, upstreamHead] { if let buffer { worker.buffers.give(buffer) } }
        inBuffer = nil; outBuffer = nil; upstreamHead = nil
        event_free(readEvent)
        event_free(writeEvent)
        event_free(deadline.event)
        if let ssl { SSL_free(ssl) }
        ssl = nil
        Glibc.close(fd)
        worker.unlink(self)
        worker.retire(self)
        Unmanaged.passUnretained(self).release()
    }

    // MARK: Access log

    private func logExchange(complete: Bool) {
        guard !exchangeLogged else { return }
        exchangeLogged = true
        let durationMicros = monotonicMicroseconds() - startMicros
        if serverID >= 0 {
            worker.recordResponse(serverID: serverID, status: complete ? status : 0, durationMicros: durationMicros)
            if !outcomeRecorded {
                worker.recordOutcome(serverID: serverID, failed: complete ? status >= 500 : upstreamFault)
            }
        }
        if serviceIndex >= 0 {
            worker.countService(serviceIndex, ServerStats.active, -1)
            worker.recordServiceResponse(serviceIndex, status: complete ? status : 0, durationMicros: durationMicros)
        }
        guard worker.settings.logRequests else { return }
        var pool = "", upstreamAddress = ""
        if let balancer {
            pool = balancer.pool.name
            if let server = currentServer { upstreamAddress = server.address.description }
        }
        AccessLogLine.append(to: &worker.logBuffer,
                             requestID: UnsafeBufferPointer(start: scratch + Scratch.requestID, count: requestIDLength),
                             client: UnsafeBufferPointer(start: scratch + Scratch.clientIP, count: clientIPLength),
                             method: logMethod, path: logPath,
                             status: complete ? status : (status == 0 ? 499 : status),
                             bytes: bytesSent, durationMicros: durationMicros,
                             pool: pool, upstream: upstreamAddress, complete: complete, tls: tlsDescription)
        if worker.logBuffer.count > 64 * 1024 { worker.flushLog() }
    }
}

/// The path "/", for targets that have none of their own.
/// Read-only after its one initialisation, so workers share it safely.
nonisolated(unsafe) private let rootPath: UnsafeBufferPointer<UInt8> = {
    let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
    p.initialize(to: UInt8(ascii: "/"))
    return UnsafeBufferPointer(start: p, count: 1)
}()

private let clientReadCallback: event_callback_fn = { _, _, context in
    Unmanaged<ClientConnection>.fromOpaque(context!)._withUnsafeGuaranteedRef { c in
        let worker = c.worker
        c.onReadable()
        worker.releaseRetired()
    }
}

private let clientWriteCallback: event_callback_fn = { _, _, context in
    Unmanaged<ClientConnection>.fromOpaque(context!)._withUnsafeGuaranteedRef { c in
        let worker = c.worker
        c.onWritable()
        worker.releaseRetired()
    }
}

private let clientTimerCallback: event_callback_fn = { _, _, context in
    Unmanaged<ClientConnection>.fromOpaque(context!)._withUnsafeGuaranteedRef { c in
        let worker = c.worker
        c.onTimer()
        worker.releaseRetired()
    }
}
