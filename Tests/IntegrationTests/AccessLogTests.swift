import Foundation
import Glibc
import Testing

@Suite("Access log", .serialized)
struct AccessLogTests {
    /// One service per way of choosing a pool, a pool whose first server refuses connections,
    /// and the access log in a file.
    final class RoutingScenario {
        let scenario = Scenario()
        let blue: Upstream, green: Upstream
        var proxy: Proxy { scenario.proxy }
        var logPath: String { "\(scenario.directory)/access.log" }

        init() throws {
            blue = try scenario.upstream("blue")
            green = try scenario.upstream("green")
            let tokenFile = "\(scenario.directory)/preview-token"
            try "s3cret\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            _ = try scenario.startProxy("""
                pools:
                  blue: { servers: [{ name: b1, address: \(blue.address) }] }
                  green: { servers: [{ name: g1, address: \(green.address) }] }
                  retrying: { retries: 2, servers: [{ name: dead, address: 127.0.0.1:\(freePort()), weight: 1000 }, { name: live, address: \(blue.address), weight: 1 }] }
                  gone: { servers: [{ name: dead, address: 127.0.0.1:\(freePort()) }] }
                services:
                  web:
                    active: blue
                    standby: green
                    match: { hosts: [web.test] }
                    preview: { header: X-Preview, value_file: \(tokenFile) }
                    rules: [{ header: X-Beta, value: "1", pool: green }]
                  split: { active: blue, canary: { pool: green, weight: 100% }, match: { hosts: [split.test] } }
                  sticky: { active: blue, canary: { pool: green, weight: 50%, sticky: { cookie: sw } }, match: { hosts: [sticky.test] } }
                  retry: { active: retrying, match: { hosts: [retry.test] } }
                  down: { active: gone, match: { hosts: [down.test] } }
                access_log: \(logPath)

                """, workers: 1)
        }

        /// Sends `request` and returns its access-log line (found by its request id).
        func line(_ id: String, _ request: String) throws -> [String: Any] {
            let client = try RawClient(port: proxy.port)
            // The id goes right after the request line (only that line ends in "HTTP/1.1").
            client.send(request.replacingOccurrences(of: "HTTP/1.1\r\n", with: "HTTP/1.1\r\nX-Request-Id: \(id)\r\n"))
            _ = try client.readResponse()
            let end = Date().addingTimeInterval(10)
            while Date() < end {
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                if let line = text.split(separator: "\n").first(where: { $0.contains("\"request_id\":\"\(id)\"") }) {
                    return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                }
                usleep(50_000)
            }
            throw HarnessError("no access-log line for \(id) in \(logPath)")
        }
    }

    @Test func eachLineSaysWhereTheRequestWentAndWhy() throws {
        let s = try RoutingScenario()
        let active = try s.line("active", "GET /a?q=1 HTTP/1.1\r\nHost: web.test\r\n\r\n")
        #expect(active["host"] as? String == "web.test" && active["service"] as? String == "web")
        #expect(active["pool"] as? String == "blue" && active["route"] as? String == "active")
        #expect(active["upstream_status"] as? Int == 200 && active["status"] as? Int == 200)
        #expect(active["retries"] as? Int == 0 && active["version"] is NSNull)
        #expect((active["upstream_ms"] as? Double).map { $0 >= 0 } == true)
        #expect(active["path"] as? String == "/a")

        let rule = try s.line("rule", "GET / HTTP/1.1\r\nHost: web.test\r\nX-Beta: 1\r\n\r\n")
        #expect(rule["pool"] as? String == "green" && rule["route"] as? String == "rule")
        let preview = try s.line("preview", "GET / HTTP/1.1\r\nHost: web.test\r\nX-Preview: s3cret\r\n\r\n")
        #expect(preview["pool"] as? String == "green" && preview["route"] as? String == "preview")
        let canary = try s.line("canary", "GET / HTTP/1.1\r\nHost: split.test\r\n\r\n")
        #expect(canary["pool"] as? String == "green" && canary["route"] as? String == "canary")
        let sticky = try s.line("sticky", "GET / HTTP/1.1\r\nHost: sticky.test\r\nCookie: sw=user-1\r\n\r\n")
        #expect(sticky["route"] as? String == "sticky" && ["blue", "green"].contains(sticky["pool"] as? String))
        let fresh = try s.line("fresh", "GET / HTTP/1.1\r\nHost: sticky.test\r\n\r\n")
        #expect(fresh["route"] as? String == "sticky") // assigned a cookie, kept from now on

        // The request's size on the wire: head and body (here chunked, framing included).
        let body = "POST /echo HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        let posted = try s.line("posted", body)
        #expect(posted["request_bytes"] as? Int == body.utf8.count + "X-Request-Id: posted\r\n".utf8.count, "\(posted)")

        // The upstream's own status, and the proxy's when no upstream answered.
        let failed = try s.line("failed", "GET /status/503 HTTP/1.1\r\nHost: web.test\r\n\r\n")
        #expect(failed["status"] as? Int == 503 && failed["upstream_status"] as? Int == 503)
        let retried = try s.line("retried", "GET / HTTP/1.1\r\nHost: retry.test\r\n\r\n")
        #expect(retried["retries"] as? Int == 1 && retried["upstream"] as? String == s.blue.address, "\(retried)")
        #expect(retried["upstream_status"] as? Int == 200)
        let down = try s.line("down", "GET / HTTP/1.1\r\nHost: down.test\r\n\r\n")
        #expect(down["status"] as? Int == 502 && down["upstream_status"] is NSNull && down["upstream_ms"] is NSNull)
        #expect(down["pool"] as? String == "gone" && down["route"] as? String == "active")
        let unknown = try s.line("unknown", "GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
        #expect(unknown["status"] as? Int == 404 && unknown["service"] is NSNull && unknown["route"] is NSNull)
        #expect(unknown["pool"] as? String == "" && unknown["host"] as? String == "nowhere.test")
    }

    @Test func oddAndLongValuesStayOneValidJSONLine() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let log = "\(s.directory)/access.log"
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]).replacingOccurrences(of: "access_log: off", with: """
            access_log: \(log)
            limits: { max_request_line: 65536, max_header_bytes: 131072 }
            """), workers: 1)
        // A path longer than the buffer a line is formatted in, and a request id that needs escaping.
        let longPath = "/" + String(repeating: "abcdefgh", count: 5000)
        let client = try RawClient(port: proxy.port)
        client.send("GET \(longPath) HTTP/1.1\r\nHost: t\r\nX-Request-Id: q\"b\\s\tx\r\n\r\n")
        _ = try client.readResponse() // whatever the upstream makes of such a path: the line is what counts
        client.send("GET /short HTTP/1.1\r\nHost: t\r\nX-Request-Id: short\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        let end = Date().addingTimeInterval(10)
        var lines: [Substring] = []
        while Date() < end {
            lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            if lines.count >= 2 { break }
            usleep(50_000)
        }
        let parsed = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(parsed.count == 2, "\(lines.map { $0.prefix(300) })")
        #expect(parsed.first?["path"] as? String == longPath)
        #expect(parsed.first?["request_id"] as? String == "q\"b\\s\tx")
        #expect(parsed.last?["path"] as? String == "/short")
    }

    @Test func sigusr1ReopensTheFileAndNoLineIsLostUnderLoad() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let log = "\(s.directory)/access.log", rotated = "\(s.directory)/access.log.1", socket = "\(s.directory)/admin.sock"
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]).replacingOccurrences(of: "access_log: off", with: """
            access_log: \(log)
            admin: { socket: \(socket) }
            """))
        let out = "\(s.directory)/wrk.out"
        let load = try spawn("/usr/bin/wrk", ["-t2", "-c20", "-d4s", proxy.url + "/"], stdout: out, stderr: out + ".err")
        usleep(1_500_000)
        // logrotate: move the file away, then tell the proxy.
        #expect(rename(log, rotated) == 0)
        proxy.process.signal(SIGUSR1)
        var status: Int32 = 0
        waitpid(load, &status, 0)
        let report = WrkReport(try String(contentsOfFile: out, encoding: .utf8))
        #expect(report.requests > 0 && report.failedRequests == 0, "\(report.text)")
        // A line after the rotation, to find in the new file.
        _ = try curl(["-H", "X-Request-Id: after-rotation", proxy.url + "/"])
        #expect(proxy.process.isRunning, "SIGUSR1 stopped the proxy: \(proxy.process.stderr)")
        usleep(500_000)
        let served = try #require((try AdminSocket(path: socket).call("GET", "/v1/status").json["services"] as? [String: Any])
            .flatMap { ($0["web"] as? [String: Any])?["traffic"] as? [String: Any] }?["requests"] as? Int)
        // Stopping flushes whatever the workers still hold.
        proxy.stop()
        func lines(_ path: String) throws -> [Substring] {
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        }
        let before = try lines(rotated), after = try lines(log)
        #expect(!before.isEmpty && !after.isEmpty, "old file \(before.count) lines, new file \(after.count)")
        // Every exchange the proxy counted has exactly one whole line, in one file or the other.
        #expect(before.count + after.count == served, "\(before.count) + \(after.count) lines for \(served) requests")
        let whole = (before + after).allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) is [String: Any] }
        #expect(whole, "a line was split or mangled")
        #expect(after.contains { $0.contains("after-rotation") })
        #expect(!before.contains { $0.contains("after-rotation") })
        #expect(s.proxy.process.stderr.contains("access log \(log) reopened"))
    }
}
