import CLibevent
import COpenSSL
import Glibc
import SwitchyardHTTP
import SwitchyardRouting

/// Counting and logging each exchange once, however it ended.
extension ClientConnection {
    // MARK: Access log

    func logExchange(complete: Bool) {
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
