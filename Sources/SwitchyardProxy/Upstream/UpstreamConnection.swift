import CLibevent
import COpenSSL
import Glibc

/// One TCP connection to an upstream server. While a request uses it, events go to the
/// client connection that owns the exchange; while it is idle in the worker's pool, it
/// only watches for the server closing it and for its idle timeout.
final class UpstreamConnection: DeadlineHolder {
    /// Strong, and a `let`: Swift reads the worker's pools and lists through it without
    /// reference counting (through an unowned(unsafe) one it retained them at every use).
    /// The worker outlives its connections; a connection lets it go when it is freed.
    let worker: Worker
    let fd: Int32
    let serverID: Int
    /// Read and write interest in the socket.
    var events = SocketEvents()
    private(set) var connected: Bool
    /// The TLS session for pools with `tls` (nil for plain HTTP).
    private var ssl: OpaquePointer?
    private var handshaking = false
    /// Connected, and (for TLS) the handshake is done: the request may be sent.
    var ready: Bool { connected && !handshaking }
    /// Whether this connection has carried a request before (a failure on it may be a
    /// stale keep-alive connection, which is safe to retry).
    var hasServedRequest = false
    var inBuffer: IOBuffer?
    /// The client connection using it, `nil` while idle.
    unowned(unsafe) var owner: ClientConnection?
    private var closed = false

    var deadline = DeadlineLinks<UpstreamConnection>()

    enum TimeoutKind { case connect, response, idle }
    private(set) var timeoutKind: TimeoutKind = .connect

    private init(worker: Worker, fd: Int32, serverID: Int, connected: Bool) {
        self.worker = worker
        self.fd = fd
        self.serverID = serverID
        self.connected = connected
    }

    /// Opens a connection to the server. Throws when the connect failed at once.
    static func open(worker: Worker, serverID: Int, address: Sockets.Address, tls: TLSClientContext? = nil, host: String = "",
                     owner: ClientConnection) throws(Sockets.Failure) -> UpstreamConnection {
        let (fd, connected) = try Sockets.connect(to: address)
        let connection = UpstreamConnection(worker: worker, fd: fd, serverID: serverID, connected: connected)
        if let tls {
            connection.ssl = tls.session(fd: fd, host: host)
            // One read takes every record the socket holds instead of a header, then a record.
            if let ssl = connection.ssl { SSL_set_read_ahead(ssl, 1) }
            connection.handshaking = true
        }
        // The connection keeps itself alive until `close()`; libevent holds only this pointer.
        let context = Unmanaged.passRetained(connection).toOpaque()
        connection.events = SocketEvents(base: worker.base, fd: fd, onRead: upstreamReadCallback, onWrite: upstreamWriteCallback, context: context)
        connection.owner = owner
        worker.count(serverID, ServerStats.openConnections)
        if !connected || connection.handshaking {
            connection.wantWrite(true)
            connection.setDeadline(kind: .connect, after: worker.settings.upstreamConnectMs)
        }
        return connection
    }

    // MARK: TLS

    /// Drives the client handshake; tells the owner when the request can go, or why it failed.
    private func continueHandshake() {
        guard let ssl, let owner else { return }
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            handshaking = false
            clearDeadline()
            owner.upstreamWritable(self)
            return
        }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ: wantWrite(false)
        case SSL_ERROR_WANT_WRITE: wantWrite(true)
        default:
            let verify = SSL_get_verify_result(ssl)
            let reason = verify != Int(X509_V_OK) ? String(cString: X509_verify_cert_error_string(verify)) : TLSServerContext.lastError()
            ERR_clear_error()
            owner.upstreamTLSFailed(self, reason: reason)
        }
    }

    /// Reads from the server (see `SocketIO` for the result).
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

    /// Bytes TLS holds (decrypted, or records read ahead) that epoll will not announce.
    var hasPendingTLSData: Bool { ssl.map { SSL_has_pending($0) == 1 } ?? false }

    // MARK: Event interest

    func wantRead(_ on: Bool) {
        let was = events.reading
        events.wantRead(on)
        if on && !was && hasPendingTLSData { events.announceRead() }
    }

    func wantWrite(_ on: Bool) { events.wantWrite(on) }

    // MARK: Timers (the worker's `upstreamDeadlines`)

    func setDeadline(kind: TimeoutKind, after ms: Int64) {
        // A closed connection is about to be freed: the worker's list must not keep it.
        guard !closed else { return }
        timeoutKind = kind
        worker.upstreamDeadlines.set(self, after: ms)
    }

    func clearDeadline() { worker.upstreamDeadlines.clear(self) }

    func deadlinePassed() {
        guard !closed else { return }
        if let owner { owner.upstreamTimedOut(self, kind: timeoutKind) } else { worker.removeIdleConnection(self); close() }
    }

    // MARK: Events

    fileprivate func onReadable() {
        if handshaking && connected { continueHandshake(); return }
        guard let owner else {
            // Idle: the server closed the connection or sent something unasked. Either way it is done.
            worker.removeIdleConnection(self)
            close()
            return
        }
        owner.upstreamReadable(self)
    }

    fileprivate func onWritable() {
        guard let owner else { wantWrite(false); return }
        if !connected {
            let error = Sockets.pendingError(fd)
            if error != 0 { owner.upstreamConnectFailed(self, errorCode: error); return }
            connected = true
            if !handshaking { clearDeadline() }
        }
        if handshaking { continueHandshake(); return }
        owner.upstreamWritable(self)
    }

    /// Puts the connection in the worker's pool for the next request.
    func park() {
        owner = nil
        hasServedRequest = true
        if let b = inBuffer { worker.buffers.give(b); inBuffer = nil }
        wantWrite(false)
        wantRead(true)
        setDeadline(kind: .idle, after: worker.settings.upstreamIdleMs)
        worker.parkIdleConnection(self)
    }

    /// Closes the socket and frees the events; the connection then releases itself.
    func close() {
        guard !closed else { return }
        closed = true
        owner = nil
        worker.count(serverID, ServerStats.openConnections, -1)
        if let b = inBuffer { worker.buffers.give(b); inBuffer = nil }
        events.free()
        clearDeadline()
        if let ssl { SSL_free(ssl) }
        ssl = nil
        Glibc.close(fd)
        worker.retire(self)
        Unmanaged.passUnretained(self).release()
    }
}

private let upstreamReadCallback: event_callback_fn = { _, _, context in
    Unmanaged<UpstreamConnection>.fromOpaque(context!)._withUnsafeGuaranteedRef { c in
        let worker = c.worker
        c.onReadable()
        worker.releaseRetired()
    }
}

private let upstreamWriteCallback: event_callback_fn = { _, _, context in
    Unmanaged<UpstreamConnection>.fromOpaque(context!)._withUnsafeGuaranteedRef { c in
        let worker = c.worker
        c.onWritable()
        worker.releaseRetired()
    }
}
