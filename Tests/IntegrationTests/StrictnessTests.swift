import Foundation
import Glibc
import Testing

/// Malformed and ambiguous requests sent over a real socket through the proxy: each gets
/// the right status, the connection is closed, and the upstream never sees a smuggled request.
@Suite("Strict parsing end to end", .serialized)
struct StrictnessTests {
    static let smuggle = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

    static let cases: [(String, String, Int)] = [
        ("CL and TE", "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggle, 400),
        ("TE and CL", "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggle, 400),
        ("two CL", "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 36\r\n\r\n" + smuggle, 400),
        ("TE not chunked last", "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggle, 400),
        ("TE unknown", "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: x-custom, chunked\r\n\r\n0\r\n\r\n" + smuggle, 501),
        ("TE obfuscated", "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggle, 400),
        ("obs-fold", "GET /a HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n" + smuggle, 400),
        ("bare CR", "GET /a HTTP/1.1\r\nHost: t\r\nX: a\rGET /smuggled HTTP/1.1\r\n\r\n", 400),
        ("bare LF", "GET /a HTTP/1.1\nHost: t\n\n" + smuggle, 400),
        ("NUL", "GET /a HTTP/1.1\r\nHost: t\r\nX: \u{0}\r\n\r\n", 400),
        ("bad name", "GET /a HTTP/1.1\r\nHost: t\r\nX(y): 1\r\n\r\n", 400),
        ("bad method", "G\u{1}T /a HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("bad target", "GET /a\u{7f} HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("bad chunk size", "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n" + smuggle, 400),
        ("overflowing chunk", "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n\r\n" + smuggle, 400),
        ("HTTP/2.0", "GET /a HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        ("no Host", "GET /a HTTP/1.1\r\n\r\n", 400),
        ("long line", "GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        ("big headers", "GET /a HTTP/1.1\r\nHost: t\r\nX: " + String(repeating: "v", count: 17000) + "\r\n\r\n", 431),
        ("many headers", "GET /a HTTP/1.1\r\nHost: t\r\n" + (0..<120).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431),
    ]

    @Test func malformedRequestsAreRefusedAndNeverSmuggled() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)]))
        for (name, input, expected) in Self.cases {
            let c = try RawClient(port: proxy.port)
            c.send(input)
            let r = try c.readResponse()
            #expect(r.status == expected, "\(name): got \(r.status)")
            #expect(r.header("Connection") == "close", "\(name)")
            #expect(r.bodyText.contains(r.header("X-Request-Id") ?? "no id"), "\(name): body names the request id")
            #expect(c.isClosedByPeer(), "\(name): connection must close")
        }
        // A valid chunked request with a following request is framed exactly.
        let c = try RawClient(port: proxy.port)
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try c.readResponse().bodyText == "hello")
        #expect(try c.readResponse().bodyText == "blue GET /next\n")
        usleep(200_000)
        let seen = blue.requestsSeen
        #expect(!seen.contains { $0.contains("/smuggled") }, "upstream saw: \(seen)")
        #expect(!seen.contains { $0.contains("/a") }, "no malformed request reaches the upstream: \(seen)")
        #expect(seen.contains("GET /next"))
    }

    @Test func slowHeaderTimesOutWith408() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: "timeouts: { client_header: 1s }\n"))
        let c = try RawClient(port: proxy.port)
        c.send("GET / HTTP/1.1\r\nHost: t\r\n")
        let r = try c.readResponse()
        #expect(r.status == 408)
        #expect(c.isClosedByPeer())
    }

    @Test func idleKeepAliveConnectionsCloseAfterClientIdleWhileBusyOnesStayOpen() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: "timeouts: { client_idle: 1s }\n"))
        let idle = try RawClient(port: proxy.port)
        idle.send("GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try idle.readResponse().status == 200)
        // A request every 300 ms moves the busy connection's deadline each time: it outlives
        // two idle timeouts, while the idle one is closed after about one.
        let busy = try RawClient(port: proxy.port)
        let started = Date()
        var answered = 0
        while Date().timeIntervalSince(started) < 2.5 {
            busy.send("GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try busy.readResponse().status == 200)
            answered += 1
            usleep(300_000)
        }
        #expect(answered >= 5)
        #expect(idle.isClosedByPeer(timeout: 1), "the idle connection outlived client_idle")
        #expect(busy.isClosedByPeer(timeout: 4), "the busy connection is closed once it idles")
    }

    @Test func stalledRequestBodyTimesOut() throws {
        let s = Scenario()
        let blue = try s.upstream("blue")
        let proxy = try s.startProxy(simpleConfig([(blue.address, 100)], extra: "timeouts: { client_idle: 1s, upstream_response: 30s }\n"))
        let started = Date()
        let c = try RawClient(port: proxy.port)
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part of it")
        // The echo app answers as the body streams, so the response may have started: then the
        // connection is closed; otherwise the client gets 408. Either way it ends within the timeout.
        #expect(c.isClosedByPeer(timeout: 5))
        #expect(Date().timeIntervalSince(started) < 4)
        let c2 = try RawClient(port: proxy.port)
        c2.send("POST /status/200 HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npart")
        let r = try c2.readResponse()
        // The status app reads the whole body before answering, so nothing started: 408.
        #expect(r.status == 408)
    }
}

@Suite("Command line")
struct CommandLineTests {
    @Test func checkAcceptsValidAndReportsProblems() throws {
        let dir = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = "\(dir)/good.yaml", bad = "\(dir)/bad.yaml"
        try """
        listeners: [{ bind: 127.0.0.1:8080 }]
        pools: { app: { servers: [{ address: 127.0.0.1:9001, weight: 10 }] } }
        services: { web: { active: app } }
        """.write(toFile: good, atomically: true, encoding: .utf8)
        try """
        listeners: [{ bind: 127.0.0.1:8080 }]
        pools:
          app:
            servers:
              - { address: 127.0.0.1:9001, weight: 5000 }
        services: { web: { active: green }, }
        colour: blue
        """.write(toFile: bad, atomically: true, encoding: .utf8)
        let ok = try run(switchyardBinary, ["check", "--config", good])
        #expect(ok.status == 0)
        #expect(ok.output.contains("configuration is valid"))
        let failed = try run(switchyardBinary, ["check", "--config", bad])
        #expect(failed.status == 1)
        #expect(failed.error.contains("\(bad):5:"))
        #expect(failed.error.contains("pools.app.servers[0].weight: 5000 is out of range"))
        #expect(failed.error.contains("services.web.active: names pool \"green\""))
        #expect(failed.error.contains("\(bad):7:1: colour: unknown key"))
        let missing = try run(switchyardBinary, ["check", "--config", "\(dir)/nope.yaml"])
        #expect(missing.status == 1)
        #expect(missing.error.contains("cannot read the file"))
    }

    @Test func demoConfigurationIsShippedInConf() throws {
        let embedded = try run(switchyardBinary, ["demo", "--print-config"]).output
        let shipped = try String(contentsOf: packageRoot.appendingPathComponent("conf/demo.yaml"), encoding: .utf8)
        #expect(embedded == shipped)
        #expect(try run(switchyardBinary, ["check", "--config", packageRoot.appendingPathComponent("conf/demo.yaml").path]).status == 0)
    }
}
