import Foundation
import Glibc
import Testing

/// End-to-end tests: the real `switchyard` binary, real demo-app upstreams, real sockets.
/// Serialized: the machine has two cores, and timing-sensitive cases stay honest that way.
@Suite("Proxy end to end", .serialized)
struct ProxyTests {
    @Test func forwardsWithForwardingHeadersAndRequestIDs() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]))

        let r = try curl(["-i", "-H", "Connection: x-secret", "-H", "X-Secret: 1", "-H", "Keep-Alive: 5",
                          "-H", "X-Forwarded-For: 203.0.113.9", "-H", "X-Forwarded-Proto: https", "\(proxy.url)/headers"])
        #expect(r.status == 0)
        let received = r.output
        #expect(received.contains("X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n"))
        #expect(received.contains("X-Forwarded-Proto: http\r\n"))
        #expect(!received.contains("X-Forwarded-Proto: https"))
        #expect(received.contains("X-Forwarded-Host: 127.0.0.1:\(proxy.port)\r\n"))
        #expect(!received.contains("X-Secret"))
        #expect(!received.contains("Keep-Alive"))
        // The generated id is sent upstream and echoed to the client.
        let echoed = received.split(separator: "\r\n").first { $0.hasPrefix("X-Request-Id: ") }
        #expect(echoed != nil)
        let id = echoed!.dropFirst("X-Request-Id: ".count)
        #expect(received.components(separatedBy: "X-Request-Id: \(id)").count == 3) // response header + upstream's view

        // A client's own request id is kept.
        let own = try curl(["-i", "-H", "X-Request-Id: my-id-123", "\(proxy.url)/"])
        #expect(own.output.contains("X-Request-Id: my-id-123"))
    }

    @Test func weightedRoundRobinSplitsByWeight() throws {
        let s = Scenario()
        let blue = try s.upstream("blue"), green = try s.upstream("green")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 300), (green.address, 100), ("127.0.0.1:9", 0)]), workers: 1)
        let client = try RawClient(port: proxy.port)
        var counts: [String: Int] = [:]
        for _ in 0..<80 {
            client.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            let r = try client.readResponse()
            counts[r.header("X-Served-By") ?? "?", default: 0] += 1
        }
        #expect(counts == ["blue": 60, "green": 20]) // the weight-0 server gets nothing
    }

    @Test func leastRequestAvoidsBusyServer() throws {
        let s = Scenario()
        let blue = try s.upstream("blue"), green = try s.upstream("green")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100), (green.address, 100)], balance: "least_request"), workers: 1)
        // Hold green busy with slow requests, then see where quick requests go.
        var slow: [RawClient] = []
        var busy = ""
        for _ in 0..<6 {
            let c = try RawClient(port: proxy.port)
            c.send("GET /sleep/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
            slow.append(c)
        }
        usleep(200_000)
        let quick = try RawClient(port: proxy.port)
        var counts: [String: Int] = [:]
        for _ in 0..<10 {
            quick.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            counts[try quick.readResponse().header("X-Served-By") ?? "?", default: 0] += 1
        }
        for c in slow { busy += (try c.readResponse().header("X-Served-By") ?? "") + " " }
        // Six slow requests split 3/3 (or close); quick ones must not pile onto a busier server.
        #expect(counts.values.reduce(0, +) == 10)
        #expect(busy.split(separator: " ").count == 6)
    }

    @Test func keepAliveReusesUpstreamConnectionsAndPipelines() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]), workers: 1)
        // Separate client connections, one after the other, share one upstream connection.
        var ids = Set<String>()
        for _ in 0..<5 {
            let c = try RawClient(port: proxy.port)
            c.send("GET /conn HTTP/1.1\r\nHost: t\r\n\r\n")
            ids.insert(try c.readResponse().bodyText)
        }
        #expect(ids.count == 1)

        // Three pipelined requests in one write are answered in order on the same connection.
        let c = try RawClient(port: proxy.port)
        c.send("GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\nGET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        #expect(try c.readResponse().bodyText == "blue GET /a\n")
        #expect(try c.readResponse().bodyText == "blue GET /b\n")
        let last = try c.readResponse()
        #expect(last.bodyText == "blue GET /c\n")
        #expect(last.header("Connection") == "close")
        #expect(c.isClosedByPeer())

        // HTTP/1.0: closed after the response unless keep-alive is asked for.
        let old = try RawClient(port: proxy.port)
        old.send("GET /x HTTP/1.0\r\n\r\n")
        #expect(try old.readResponse().status == 200)
        #expect(old.isClosedByPeer())
        let kept = try RawClient(port: proxy.port)
        kept.send("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let r = try kept.readResponse()
        #expect(r.header("Connection") == "keep-alive")
        kept.send("GET /y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try kept.readResponse().bodyText == "blue GET /y\n")
    }

    @Test func largeAndChunkedBodiesStreamBothWays() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]))
        let file = "\(s.directory)/upload.bin"
        var data = [UInt8](repeating: 0, count: 5_000_000)
        for i in 0..<data.count { data[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        FileManager.default.createFile(atPath: file, contents: Data(data))

        let echoed = "\(s.directory)/echoed.bin"
        let plain = try curl(["--data-binary", "@\(file)", "-o", echoed, "\(proxy.url)/echo"])
        #expect(plain.status == 0)
        #expect(FileManager.default.contentsEqual(atPath: file, andPath: echoed))

        let chunked = try curl(["-T", file, "-H", "Transfer-Encoding: chunked", "-o", echoed, "\(proxy.url)/echo"])
        #expect(chunked.status == 0)
        #expect(FileManager.default.contentsEqual(atPath: file, andPath: echoed))

        let down = try curl(["-o", echoed, "-w", "%{size_download}", "\(proxy.url)/chunked/3000000"])
        #expect(down.output == "3000000")

        // Trailers pass through a chunked response.
        let raw = try RawClient(port: proxy.port)
        raw.send("GET /chunked/10 HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n")
        var text = ""
        while !text.contains("0\r\nX-Checksum: done\r\n\r\n") { guard raw.fill() else { break }; text = String(decoding: raw.buffer, as: UTF8.self) }
        #expect(text.contains("0\r\nX-Checksum: done\r\n\r\n"))

        // An HTTP/1.0 client gets the chunked response without chunk framing, delimited by close.
        let old = try RawClient(port: proxy.port)
        old.send("GET /chunked/70000 HTTP/1.0\r\n\r\n")
        let r = try old.readResponse()
        #expect(r.header("Transfer-Encoding") == nil)
        #expect(r.body.count == 70000)
    }

    @Test func expectContinueIsRelayed() throws {
        // Like most servers: 100 Continue, then the final answer only once the whole body is in.
        let upstream = ScriptedUpstream { fd, _ in
            while let head = ScriptedUpstream.readHead(fd) {
                if head.lowercased().contains("expect: 100-continue") { ScriptedUpstream.write(fd, "HTTP/1.1 100 Continue\r\n\r\n") }
                var body = [UInt8](repeating: 0, count: 5)
                guard recv(fd, &body, 5, Int32(MSG_WAITALL)) == 5 else { return }
                ScriptedUpstream.write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + String(decoding: body, as: UTF8.self))
            }
        }
        defer { upstream.stop() }
        let s = Scenario()
        let proxy = try s.startProxy(simpleConfig([(upstream.address, 100)]))
        // A client that waits for 100 Continue before sending its body (as curl does, up to a timeout).
        let c = try RawClient(port: proxy.port, timeout: 3)
        c.send("POST /continue HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        let interim = try c.readResponse(stopAtInformational: true)
        #expect(interim.status == 100)
        c.send("hello")
        let final = try c.readResponse()
        #expect(final.status == 200)
        #expect(final.bodyText == "hello")
        // The connection stays usable for the next request.
        c.send("POST /again HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nworld")
        #expect(try c.readResponse().bodyText == "world")
    }

    @Test func upgradeBecomesATunnel() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]))
        let c = try RawClient(port: proxy.port)
        c.send("GET /upgrade HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        let r = try c.readResponse()
        #expect(r.status == 101)
        #expect(r.header("Upgrade") == "websocket")
        #expect(r.header("Connection")?.lowercased() == "upgrade")
        for message in ["ping", String(repeating: "z", count: 100_000)] {
            c.send(message)
            while c.buffer.count < message.utf8.count { guard c.fill() else { break } }
            #expect(String(decoding: c.buffer, as: UTF8.self) == message)
            c.buffer.removeAll()
        }
        // Without Upgrade asked for, a 101 from an upstream is refused... and a plain request still works.
        let plain = try RawClient(port: proxy.port)
        plain.send("GET /upgrade HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try plain.readResponse().status == 426)
    }

    @Test func upstreamFailuresGiveCleanErrors() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        // A dead port first: refused connections are retried on the live server.
        let proxy = try s.startProxy(simpleConfig([("127.0.0.1:1", 100), (blue.address, 100)],
                                                  extra: "timeouts: { upstream_response: 1s }\n"))
        for _ in 0..<6 {
            let r = try curl(["-o", "/dev/null", "-w", "%{http_code}", "\(proxy.url)/"])
            #expect(r.output == "200")
        }
        // Killed mid-response: the client sees a truncated transfer, never a complete one.
        let mid = try curl(["-o", "/dev/null", "\(proxy.url)/close-mid"])
        #expect(mid.status == 18) // curl: partial file
        // A hanging upstream: 504 after upstream_response.
        let started = Date()
        let hang = try RawClient(port: proxy.port)
        hang.send("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        let timedOut = try hang.readResponse()
        #expect(timedOut.status == 504)
        #expect(timedOut.bodyText.contains("upstream_response"))
        #expect(Date().timeIntervalSince(started) < 5)
        // Malformed responses become 502 naming the cause.
        for bad in ["both-lengths", "two-lengths", "bare-lf", "header"] {
            let c = try RawClient(port: proxy.port)
            c.send("GET /bad/\(bad) HTTP/1.1\r\nHost: t\r\n\r\n")
            let r = try c.readResponse()
            #expect(r.status == 502, "bad response \(bad)")
            #expect(r.bodyText.contains("invalid response"))
            #expect(r.bodyText.contains(r.header("X-Request-Id") ?? "missing"))
        }
        // A body delimited by close is passed on, and the client connection is closed after it.
        let delimited = try RawClient(port: proxy.port)
        delimited.send("GET /close-delimited HTTP/1.1\r\nHost: t\r\n\r\n")
        let d = try delimited.readResponse()
        #expect(d.bodyText == "blue body delimited by close\n")
    }

    @Test func staleKeepAliveConnectionIsRetriedOnAFreshOne() throws {
        let s = Scenario()
        // Each upstream connection serves one request, then drops the next one unanswered.
        let blue = try s.upstream("blue", ["--drop-after", "1"])
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]), workers: 1)
        let client = try RawClient(port: proxy.port)
        for i in 0..<4 {
            client.send("GET /get\(i) HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try client.readResponse().bodyText == "blue GET /get\(i)\n")
            // PUT is idempotent: sent again on a fresh connection (a POST would get 502; see HardeningTests).
            client.send("PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\npayload")
            #expect(try client.readResponse().bodyText == "payload") // a small body is kept for the retry too
        }
        usleep(100_000)
        #expect(blue.requestsSeen.filter { $0.hasPrefix("DROPPED") }.count >= 7)
    }

    @Test func noServerGives502Or503() throws {
        let s = Scenario()
        let dead = try s.startProxy(simpleConfig([("127.0.0.1:1", 100), ("127.0.0.1:2", 100)]))
        let refused = try curl(["-i", "\(dead.url)/"])
        #expect(refused.output.hasPrefix("HTTP/1.1 502"))
        #expect(refused.output.contains("could not connect to upstream"))
        #expect(refused.output.contains("Connection refused"))
        dead.stop()

        let s2 = Scenario()
        let none = try s2.startProxy(simpleConfig([("127.0.0.1:1", 0)]))
        let unavailable = try curl(["-i", "\(none.url)/"])
        #expect(unavailable.output.hasPrefix("HTTP/1.1 503"))
        #expect(unavailable.output.contains("no server available in pool app"))
    }

    @Test func unmatchedRequestGets404() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy("""
            pools: { app: { servers: [{ address: \(blue.address) }] } }
            services: { web: { match: { hosts: [app.example.com], path_prefix: /api }, active: app } }
            access_log: off

            """)
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: app.example.com", "\(proxy.url)/api/x"]).output == "200")
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: other.example.com", "\(proxy.url)/api/x"]).output == "404")
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: app.example.com", "\(proxy.url)/"]).output == "404")
    }

    @Test func slowClientKeepsMemoryBounded() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]), workers: 1)
        let before = proxy.rssKiB
        let c = try RawClient(port: proxy.port, timeout: 20)
        // A proxy that buffered instead of applying backpressure would grow by about this much.
        let total = 64_000_000
        c.send("GET /bytes/\(total) HTTP/1.1\r\nHost: t\r\n\r\n")
        sleep(2) // read nothing: the proxy must stop reading from the upstream, not buffer
        let during = proxy.rssKiB
        #expect(during - before < 20_000, "RSS grew from \(before) to \(during) KiB with a stalled client")
        var received = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while received < total + 100 {
            let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += n
            if received > total { break }
        }
        #expect(received > total) // whole body plus head
    }

    @Test func gracefulStopFinishesInFlightRequests() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: "shutdown_timeout: 10s\n"))
        let busy = try RawClient(port: proxy.port)
        busy.send("GET /sleep/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        let idle = try RawClient(port: proxy.port)
        idle.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        _ = try idle.readResponse()
        usleep(300_000)
        proxy.process.signal(SIGTERM)
        #expect(idle.isClosedByPeer(timeout: 3)) // idle keep-alive connection closed at once
        let r = try busy.readResponse()
        #expect(r.status == 200)
        #expect(r.header("Connection") == "close")
        #expect(proxy.process.waitForExit(timeout: 10) == 0)
        #expect(throws: (any Error).self) { try RawClient(port: proxy.port) } // no longer accepting
    }

    @Test func accessLogWritesOneJSONLinePerRequest() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let logPath = "\(s.directory)/access.log"
        let config = simpleConfig([(blue.address, 100)]).replacingOccurrences(of: "access_log: off", with: "access_log: \(logPath)")
        let proxy = try s.startProxy(config)
        _ = try curl(["-H", "X-Request-Id: log-test-1", "\(proxy.url)/some/path?q=1"])
        usleep(400_000) // workers hand lines over every 100 ms
        let text = try String(contentsOfFile: logPath, encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.contains("log-test-1") })
        let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        #expect(json["method"] as? String == "GET")
        #expect(json["path"] as? String == "/some/path")
        #expect(json["status"] as? Int == 200)
        #expect(json["client"] as? String == "127.0.0.1")
        #expect(json["pool"] as? String == "app")
        #expect(json["upstream"] as? String == blue.address)
        #expect((json["bytes"] as? Int ?? 0) > 0)
        #expect(json["duration_ms"] != nil && json["time"] != nil)
    }
}
