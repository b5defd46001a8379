import CLibevent
import COpenSSL
import Glibc
import SwitchyardHTTP
import SwitchyardRouting

/// An upgraded connection (WebSocket): a two-way byte tunnel once the upstream answers 101.
extension ClientConnection {
    func startTunnel() {
        guard let connection = upstream, let buffer = connection.inBuffer else { return }
        let head = worker.responseHead
        commitRequestBytes()
        status = 101
        upstreamStatus = 101
        if worker.settings.logRequests { upstreamHeadMicros = monotonicMicroseconds() }
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
}
