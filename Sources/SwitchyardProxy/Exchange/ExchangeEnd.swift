import CLibevent
import COpenSSL
import Glibc
import SwitchyardHTTP
import SwitchyardRouting

/// Ending an exchange: the proxy's own answers, keep-alive or close, graceful stop, lingering close.
extension ClientConnection {
    // MARK: Ending an exchange

    /// Answers with the proxy's own short plain-text response (errors, 404, 503).
    func failExchange(status: Int, detail: String) {
        if responseHeadDone && status >= 500 { abortExchange(); return }
        releaseUpstream(reuse: false)
        respondLocal(status: status, detail: detail, close: !request.ended)
    }

    func respondLocal(status: Int, detail: String, close: Bool) {
        if close { keepAlive = false }
        if phase != .exchange {
            // An answer without a request that started an exchange (a head that timed out):
            // its log line's duration counts from now, not from an unset start.
            phase = .exchange
            exchangeLogged = false
            if startMicros == 0 { startMicros = monotonicMicroseconds() }
        }
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

    func releaseUpstream(reuse: Bool) {
        if countedActive {
            balancer?.requestFinished(serverID: serverID, hint: serverPositionHint)
            worker.count(serverID, ServerStats.active, -1)
            countedActive = false
        }
        guard let connection = upstream else { return }
        upstream = nil
        if reuse { connection.park() } else { connection.close() }
    }

    func finishExchange() {
        logExchange(complete: true)
        let reuse = upstreamReusable && request.ended && request.pending == 0 &&
            upstreamHeadSent == (upstreamHead?.writeIndex ?? 0) && (upstream?.inBuffer?.readable ?? 0) == 0
        releaseUpstream(reuse: reuse)
        if let head = upstreamHead { worker.buffers.give(head); upstreamHead = nil }
        if let out = outBuffer { worker.buffers.give(out); outBuffer = nil }
        if !keepAlive || clientEOF || !request.ended || worker.stopping {
            // The client asked to close and sent nothing we have not read: closed at once, as
            // nginx does. Lingering (a wake-up, a read and a shutdown more per connection) is
            // for answers a client may still be sending into.
            if request.ended && !worker.stopping && (inBuffer?.readable ?? 0) == 0 {
                if let ssl { SSL_shutdown(ssl) }
                close()
                return
            }
            closeGracefully()
            return
        }
        phase = .idle
        releaseExchange()
        setDeadline(.idle, after: worker.settings.clientIdleMs)
        updateClientReading()
        if let input = inBuffer, input.readable > 0 { drive() }
        else if let input = inBuffer { worker.buffers.give(input); inBuffer = nil }
    }

    /// Ends an exchange that cannot be answered properly any more (the response already
    /// started, or the client went away): the client connection is closed at once.
    func abortExchange() {
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
    func closeGracefully() {
        if let ssl { SSL_shutdown(ssl) } // close_notify, best effort: the socket is non-blocking
        if clientEOF { close(); return }
        phase = .lingering
        shutdown(fd, Int32(SHUT_WR))
        wantWrite(false)
        wantRead(true)
        if let b = inBuffer { worker.buffers.give(b); inBuffer = nil }
        setDeadline(.linger, after: 2000)
    }

    func drainLingering() {
        var discard = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let n = withUnsafeMutableBytes(of: &discard) { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 { return }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        close()
    }

    /// Closes the connection now, with its upstream if an exchange was in progress.
    func abort() { logExchange(complete: false); close() }

    func close() {
        guard !closed else { return }
        if phase == .exchange || phase == .tunnel { logExchange(complete: phase == .tunnel) }
        releaseUpstream(reuse: false)
        closed = true
        for buffer in [inBuffer, outBuffer] { if let buffer { worker.buffers.give(buffer) } }
        inBuffer = nil; outBuffer = nil
        releaseExchange()
        events.free()
        clearDeadline()
        if let ssl { SSL_free(ssl) }
        ssl = nil
        Glibc.close(fd)
        worker.unlink(self)
        worker.retire(self)
        Unmanaged.passUnretained(self).release()
    }
}
