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
final class ClientConnection: DeadlineHolder {
    /// Strong, and a `let`: Swift reads the worker's pools and lists through it without
    /// reference counting (through an unowned(unsafe) one it retained them at every use).
    /// The worker outlives its connections; a connection lets it go when it is freed.
    let worker: Worker
    let fd: Int32
    /// Links in the worker's list of live connections.
    var next: ClientConnection?
    unowned(unsafe) var previous: ClientConnection?

    /// The TLS session on a TLS listener (nil for plain HTTP).
    var ssl: OpaquePointer?
    var handshaking = false
    let tls: TLSServerContext?
    /// Read and write interest in the socket.
    var events = SocketEvents()
    var closed = false

    /// Bytes from the client: request heads, bodies, pipelined requests.
    var inBuffer: IOBuffer?
    /// Bytes the proxy itself writes to the client: response heads and its own answers.
    var outBuffer: IOBuffer?
    /// The client's address as text, for `X-Forwarded-For`, sticky assignment and the log:
    /// kept for the connection's life (formatting it again per request would cost more).
    let clientIP: UnsafeMutablePointer<UInt8>
    var clientIPLength = 0
    /// The exchange in progress (see `ExchangeState`); nil between exchanges.
    private(set) var exchange: ExchangePool.Slot?
    /// What the exchange's fields read: `exchange`, or between exchanges the pool's state at
    /// initial values (never written: a write takes a state first).
    private(set) var current: ExchangePool.Slot

    /// Where each part of `scratch` starts: the request id, a fresh
    /// sticky cookie value, the `Set-Cookie` line for a client that has no cookie yet, and
    /// the request's `Host` for the access log (cut at 256 bytes: host names are at most 253).
    enum Scratch {
        static let clientIPCapacity = 64
        static let requestID = 0, requestIDCapacity = 256
        static let cookieValue = requestID + requestIDCapacity
        static let setCookie = cookieValue + StickyCookie.valueLength, setCookieCapacity = StickyCookie.maxLineLength
        static let logHost = setCookie + setCookieCapacity, logHostCapacity = 256
        static let size = logHost + logHostCapacity
    }

    /// The most 1xx heads relayed in one exchange.
    static let maxInterimResponses = 16

    enum Phase { case idle, head, exchange, tunnel, lingering }
    var phase: Phase = .idle
    /// What the parser already checked of an incomplete head (a slow client's is not re-read).
    var headScan = HeadScan()
    var keepAlive = true
    var clientEOF = false
    var driving = false

    var deadline = DeadlineLinks<ClientConnection>()
    enum TimeoutKind { case idle, header, body, send, linger }
    var timeoutKind: TimeoutKind = .idle

    init(worker: Worker, fd: Int32, peer: inout sockaddr_storage, tls: TLSServerContext? = nil) {
        self.worker = worker
        self.fd = fd
        self.tls = tls
        current = worker.exchanges.idle
        // Formatted on the worker's scratch, then kept at its own length ("127.0.0.1" takes
        // malloc's smallest block instead of a 64-byte one).
        let length = Sockets.formatIP(&peer, into: worker.addressScratch, capacity: Scratch.clientIPCapacity)
        clientIP = .allocate(capacity: max(length, 1))
        clientIP.update(from: worker.addressScratch, count: length)
        clientIPLength = length
    }

    deinit {
        // Nothing should take a state after `close()`; if something did, the slot goes back.
        releaseExchange()
        clientIP.deallocate()
    }

    /// Takes a state from the worker's pool for the exchange (its first write does).
    @inline(never)
    func takeExchange() {
        let taken = worker.exchanges.take()
        exchange = taken
        current = taken
    }

    /// The current exchange's scratch text (see `Scratch`).
    var scratch: UnsafeMutablePointer<UInt8> {
        if exchange == nil { takeExchange() }
        return current.pointee.scratch
    }

    /// Ends the exchange's hold on its state: the head buffer goes back to the worker, and
    /// the state to the pool with every field at its initial value.
    func releaseExchange() {
        guard let exchange else { return }
        if let head = exchange.pointee.upstreamHead { worker.buffers.give(head) }
        self.exchange = nil
        current = worker.exchanges.idle
        worker.exchanges.give(exchange)
    }

    func start() {
        // The connection keeps itself alive until `close()`; libevent holds only this pointer.
        let context = Unmanaged.passRetained(self).toOpaque()
        events = SocketEvents(base: worker.base, fd: fd, onRead: clientReadCallback, onWrite: clientWriteCallback, context: context)
        wantRead(true)
        setDeadline(.header, after: worker.settings.clientHeaderMs) // also bounds a stalled handshake
        if let tls, let session = SSL_new(tls.defaultContext) {
            ssl = session
            SSL_set_fd(session, fd)
            // One read takes every record the socket holds instead of a header, then a record.
            SSL_set_read_ahead(session, 1)
            SSL_set_accept_state(session)
            handshaking = true
        }
    }

    // MARK: TLS

    func continueHandshake() {
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
    func receive(_ p: UnsafeMutablePointer<UInt8>, _ n: Int) -> Int {
        let r = SocketIO.receive(fd: fd, ssl: ssl, into: p, count: n)
        if r == SocketIO.againWhenWritable { wantWrite(true); return SocketIO.again }
        return r
    }

    @inline(__always)
    func transmit(_ vectors: inout (iovec, iovec), _ count: Int32) -> Int {
        SocketIO.transmit(fd: fd, ssl: ssl, &vectors, count: count, scratch: worker.tlsRecordScratch)
    }

    /// "TLSv1.3 TLS_AES_128_GCM_SHA256" for the access log, nil for plain HTTP.
    var tlsDescription: (version: String, cipher: String)? {
        guard let ssl, let cipher = SSL_get_current_cipher(ssl) else { return nil }
        return (String(cString: SSL_get_version(ssl)), String(cString: SSL_CIPHER_get_name(cipher)))
    }

    // MARK: Event interest and timers

    func wantRead(_ on: Bool) {
        let was = events.reading
        events.wantRead(on)
        // Records TLS read ahead while reading was off would wait for bytes that may never come.
        if on && !was, let ssl, SSL_has_pending(ssl) == 1 { events.announceRead() }
    }

    func wantWrite(_ on: Bool) { events.wantWrite(on) }

    /// Sets the one deadline this connection has.
    func setDeadline(_ kind: TimeoutKind, after ms: Int64) {
        // A closed connection is about to be freed: the worker's list must not keep it.
        guard !closed else { return }
        timeoutKind = kind
        worker.clientDeadlines.set(self, after: ms)
    }

    func clearDeadline() { worker.clientDeadlines.clear(self) }

    func deadlinePassed() {
        guard !closed else { return }
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

    func onReadable() {
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
        } while !closed && events.reading && ssl.map({ SSL_has_pending($0) == 1 }) == true
    }

    func onWritable() {
        if handshaking { continueHandshake(); return }
        pushToClient()
    }

    /// Frees space in the input buffer: forgets request bytes kept for a retry (which
    /// then becomes impossible) and moves unread bytes to the front.
    func makeRoom() {
        guard let buffer = inBuffer else { return }
        if (phase == .exchange || phase == .tunnel) && request.sent > 0 { commitRequestBytes() }
        if buffer.readIndex > 0 { buffer.compact() }
    }

    func commitRequestBytes() {
        guard let buffer = inBuffer, request.sent > 0 else { return }
        buffer.consume(request.sent)
        request.ready -= request.sent
        request.sent = 0
        requestBytesCommitted = true
    }

    func updateClientReading() {
        if clientEOF || closed || phase == .lingering { return }
        guard let buffer = inBuffer else { wantRead(true); return }
        if buffer.writable == 0 { makeRoom() }
        wantRead(buffer.writable > 0)
    }

    func onClientEOF() {
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
    func drive() {
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
                    resetExchangeLog(headBytes: buffer.readable)
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
                    else { failExchange(status: 400, detail: "invalid chunked request body (\(request.failure.map { "\($0)" } ?? "invalid framing"))") }
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

}

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
