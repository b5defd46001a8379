import Foundation
import Glibc
import Testing

/// The whole status and a scrape grow with the configuration (megabytes at thousands of
/// servers). They are written on a thread of their own, so that a change sent meanwhile is
/// answered without waiting for them.
@Suite("Large replies beside changes", .serialized)
struct LargeReplyTests {
    /// 400 services with a blue and a green pool of five servers each: 4,000 servers.
    static func largeConfig(upstream: String, directory: String) -> String {
        var lines = ["admin: { socket: \(directory)/admin.sock }", "state_file: \(directory)/state.json", "access_log: off", "pools:"]
        for k in 0..<400 {
            for pool in ["blue", "green"] {
                lines.append("  s\(k)-\(pool):")
                lines.append("    servers:")
                for i in 0..<5 { lines.append("      - { name: \(pool.prefix(1))\(i), address: \(upstream) }") }
            }
        }
        lines.append("services:")
        for k in 0..<400 { lines.append("  s\(k): { match: { hosts: [s\(k).example] }, active: s\(k)-blue, standby: s\(k)-green }") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A request on a connection of its own, sent without waiting for the answer.
    final class PendingRequest {
        let fd: Int32

        init(socket path: String, _ method: String, _ target: String) throws {
            fd = try AdminSocket.connect(path)
            let request = Array("\(method) \(target) HTTP/1.1\r\nHost: switchyard\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".utf8)
            guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else {
                throw HarnessError("send: \(String(cString: strerror(errno)))")
            }
        }

        deinit { close(fd) }

        /// Whether any of the answer has arrived (without waiting).
        var answered: Bool {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return poll(&entry, 1, 0) == 1
        }

        /// The whole answer: its status and its text, read until the proxy closes.
        func answer() throws -> (status: Int, text: String) {
            var tv = timeval(tv_sec: 60, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var response = [UInt8]()
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                response += chunk[0..<n]
            }
            let text = String(decoding: response, as: UTF8.self)
            let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
            return (status, text)
        }
    }

    @Test func aChangeIsAnsweredWhileStatusesAndScrapesAreStillBeingWritten() throws {
        let scenario = Scenario()
        let upstream = try scenario.upstream("app")
        _ = try scenario.startProxy(Self.largeConfig(upstream: upstream.address, directory: scenario.directory), workers: 1)
        let admin = AdminSocket(path: "\(scenario.directory)/admin.sock")
        let before = try admin.call("GET", "/v1/status?view=summary")
        let generation = try #require(before.json["generation"] as? Int)

        // Several seconds of writing queued up ahead of the change.
        let reads = try (0..<6).map { try PendingRequest(socket: admin.path, "GET", $0 % 2 == 0 ? "/v1/status" : "/metrics") }
        usleep(50_000)
        let flip = try admin.call("POST", "/v1/services/s399/flip")
        #expect(flip.status == 200, "\(flip.json)")
        let waiting = reads.filter { !$0.answered }.count
        #expect(waiting > 0, "the change was answered only after every status and scrape sent before it")

        for (index, read) in reads.enumerated() {
            let (status, text) = try read.answer()
            #expect(status == 200, "\(text.prefix(300))")
            if index % 2 == 0 {
                // Written from the state as it was when the status was asked for.
                #expect(text.contains("\"generation\" : \(generation)"), "\(text.prefix(300))")
                #expect(text.contains("\"s399-green\""))
            } else {
                #expect(text.contains("switchyard_generation \(generation)\n"), "\(text.prefix(300))")
                #expect(text.contains(#"switchyard_upstream_responses_total{pool="s399-green",server="g4",class="5xx"} 0"#))
            }
        }
        let after = try admin.call("GET", "/v1/status?service=s399")
        #expect(after.json["generation"] as? Int == generation + 1, "\(after.json)")
    }

    @Test func clientsThatLeaveBeforeTheirStatusIsWrittenHarmNothing() throws {
        let scenario = Scenario()
        let upstream = try scenario.upstream("app")
        _ = try scenario.startProxy(Self.largeConfig(upstream: upstream.address, directory: scenario.directory), workers: 1)
        let admin = AdminSocket(path: "\(scenario.directory)/admin.sock")
        for _ in 0..<3 {
            let leaving = try (0..<4).map { try PendingRequest(socket: admin.path, "GET", $0 % 2 == 0 ? "/v1/status" : "/metrics") }
            usleep(20_000)
            _ = leaving // closed here, before their answers are written
        }
        #expect(try admin.call("POST", "/v1/services/s1/flip").status == 200)
        let status = try admin.call("GET", "/v1/status")
        #expect(status.status == 200 && (status.json["pools"] as? [String: Any])?.count == 800, "\(status.json.keys)")
        #expect(scenario.proxy.process.isRunning)
        let response = try curl(["-H", "Host: s1.example", scenario.proxy.url + "/"])
        #expect(response.status == 0, "\(response.error)")
    }

    /// Past 16 waiting, the answer is 503 with Retry-After; `switchyard ctl` (and so the
    /// orchestrator and the console, which share its client) asks again after that long.
    @Test func pastSixteenWaitingRepliesTheAnswerIsRetryLaterAndClientsRetry() throws {
        let scenario = Scenario()
        let upstream = try scenario.upstream("app")
        _ = try scenario.startProxy(Self.largeConfig(upstream: upstream.address, directory: scenario.directory), workers: 1)
        let admin = AdminSocket(path: "\(scenario.directory)/admin.sock")
        let reads = try (0..<40).map { _ in try PendingRequest(socket: admin.path, "GET", "/v1/status") }
        usleep(20_000)
        let ctl = try run(switchyardBinary, ["ctl", "--admin", admin.path, "status"])
        #expect(ctl.status == 0 && ctl.output.contains("s399"), "\(ctl.output.prefix(300))\(ctl.error)")
        let answers = try reads.map { try $0.answer() }
        let busy = answers.filter { $0.status == 503 }
        #expect(answers.filter { $0.status == 200 }.count >= 16, "\(answers.map(\.status))")
        #expect(!busy.isEmpty, "40 statuses at once were all queued: \(answers.map(\.status))")
        #expect(busy.allSatisfy { $0.text.contains("Retry-After: 1\r\n") && $0.text.contains("retry shortly") }, "\(busy.first?.text ?? "")")
        #expect(try admin.call("GET", "/v1/status?view=summary").status == 200, "the queue drains and status answers again")
    }
}
