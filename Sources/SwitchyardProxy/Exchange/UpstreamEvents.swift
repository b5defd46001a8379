import CLibevent
import COpenSSL
import Glibc
import SwitchyardHTTP
import SwitchyardRouting

/// What the upstream connection reports, and the retries it may lead to (`RetryPolicy`).
extension ClientConnection {
    // MARK: Upstream side

    /// Writes the request head and any ready body bytes to the upstream.
    func sendToUpstream() {
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
    func connectionFailed(detail: String, status: Int) {
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

    func upstreamFailed(_ connection: UpstreamConnection, errorCode: Int32) {
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
    func sendAgainOnFreshConnection() {
        releaseUpstream(reuse: false)
        _ = pickServer()
        upstreamHeadSent = 0
        request.sent = 0
        connectUpstream(allowReuse: false)
    }

    /// The upstream closed its side (or failed) while this exchange used it.
    func upstreamEnded(reason: String?) {
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
}
