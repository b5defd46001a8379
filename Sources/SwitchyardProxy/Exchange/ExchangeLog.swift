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
        var version: String? = nil
        if let balancer {
            pool = balancer.pool.name
            version = balancer.pool.version
            if let server = currentServer { upstreamAddress = server.address.description }
        }
        let upstreamMicros: Int64? = upstreamHeadMicros > 0 && upstreamStartMicros > 0 ? upstreamHeadMicros - upstreamStartMicros : nil
        let entry = AccessLogEntry(
            requestID: UnsafeBufferPointer(start: scratch + Scratch.requestID, count: requestIDLength),
            client: UnsafeBufferPointer(start: clientIP, count: clientIPLength),
            host: UnsafeBufferPointer(start: scratch + Scratch.logHost, count: logHostLength),
            method: logMethod, path: logPath, status: complete ? status : (status == 0 ? 499 : status),
            bytes: bytesSent, requestBytes: requestHeadBytes + request.absorbed, durationMicros: durationMicros,
            service: logService, pool: pool, version: version, route: routeReason,
            upstream: upstreamAddress, upstreamStatus: upstreamStatus, upstreamMicros: upstreamMicros,
            retries: max(0, attempts - 1), complete: complete, tls: tlsDescription)
        AccessLogLine.append(entry, to: &worker.logBuffer, scratch: worker.logLineScratch)
        if worker.logBuffer.count > 64 * 1024 { worker.flushLog() }
    }

    /// Forgets what the previous exchange on this connection left for the access log.
    /// - Parameter headBytes: the size of the new request's head (what arrived, for a head that failed to parse).
    @inline(__always)
    func resetExchangeLog(headBytes: Int) {
        routeReason = nil
        upstreamStatus = 0
        requestHeadBytes = headBytes
        // The rest is written only when the access log is on.
        guard worker.settings.logRequests else { return }
        upstreamStartMicros = 0
        upstreamHeadMicros = 0
        logHostLength = 0
        logService = nil
    }
}
