import CLibevent
import Glibc
import Synchronization
import SwitchyardConfig
import SwitchyardHTTP
import SwitchyardRouting

/// Counters per server and service, request ids and the access log buffer of one worker.
extension Worker {
    // MARK: Counters (worker thread)

    @inline(__always) func count(_ serverID: Int, _ field: Int, _ delta: Int = 1) {
        stats[serverID * ServerStats.stride + field] &+= delta
    }

    func recordResponse(serverID: Int, status: Int, durationMicros: Int64) {
        ServerStats.record(into: &stats, at: serverID * ServerStats.stride, status: status, durationMicros: durationMicros)
    }

    @inline(__always) func countService(_ index: Int, _ field: Int, _ delta: Int = 1) {
        serviceStats[index * ServerStats.stride + field] &+= delta
    }

    func recordServiceResponse(_ index: Int, status: Int, durationMicros: Int64) {
        ServerStats.record(into: &serviceStats, at: index * ServerStats.stride, status: status, durationMicros: durationMicros)
    }


    // MARK: Request ids

    /// Writes a new request id (16 hex digits: a per-worker random prefix and a counter).
    func generateRequestID(into out: UnsafeMutablePointer<UInt8>) -> Int {
        requestCounter &+= 1
        var w = ByteWriter(base: out, capacity: 16)
        w.append(hex: UInt64(requestIDPrefix), width: 8)
        w.append(hex: requestCounter, width: 8)
        return 16
    }

    // MARK: Access log

    func flushLog() {
        guard let accessLog, !logBuffer.isEmpty else { return }
        accessLog.submit(logBuffer)
        logBuffer.removeAll(keepingCapacity: true)
    }
}
