import CLibevent
import COpenSSL
import Glibc
import SwitchyardHTTP
import SwitchyardRouting

/// Relaying the upstream's response to the client: heads (interim ones at once), bodies, backpressure.
extension ClientConnection {
    var responseLimits: HTTPLimits {
        HTTPLimits(maxRequestLine: worker.settings.bufferSize - 2048, maxHeaderBytes: worker.settings.bufferSize - 2048, maxHeaders: 256)
    }

    func handleResponseBytes() {
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
                upstreamStatus = head.statusCode
                if worker.settings.logRequests { upstreamHeadMicros = monotonicMicroseconds() }
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
    func writeHead(_ head: HTTPHead, source: UnsafeMutablePointer<UInt8>, dechunk: Bool, tunnel: Bool) -> Bool {
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


    // MARK: Client side output

    /// Writes the pending response head and body bytes to the client.
    func pushToClient() {
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
            if fromHead > 0 { outBuffer?.consume(fromHead) }
            let fromBody = n - fromHead
            if fromBody > 0 {
                source?.consume(fromBody)
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

    func blockedOnClient() {
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
}
