import Foundation
import Glibc
import Testing

/// Seconds the threads of a process have been runnable: running on a CPU (user plus system
/// time) or waiting for one. A spinning thread is runnable all the time however busy the
/// machine is, where its CPU time alone shrinks when other processes compete for the cores.
/// Falls back to CPU time (utime + stime from /proc/PID/stat) without scheduler statistics.
func runnableSeconds(_ pid: pid_t) -> Double {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    var nanoseconds = 0.0
    var found = false
    for task in tasks {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8) else { continue }
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let running = Double(fields[0]), let waiting = Double(fields[1]) else { continue }
        nanoseconds += running + waiting
        found = true
    }
    if found { return nanoseconds / 1e9 }
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return 0 }
    // After the command name: utime and stime are the 12th and 13th fields.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Sends `text` a few bytes at a time with a pause after each piece, so the proxy reads the
/// pieces separately (Nagle's algorithm is turned off so they are not merged on the way).
func trickle(_ client: RawClient, _ text: String, piece: Int = 1, pauseMicros: UInt32 = 500) {
    var one: Int32 = 1
    setsockopt(client.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + piece)
        client.send(Array(bytes[offset..<end]))
        offset = end
        usleep(pauseMicros)
    }
}

@Suite("Descriptor limits and slow clients", .serialized)
struct LimitsTests {
    /// A slow client's head is parsed piece by piece (resuming where the last attempt stopped):
    /// pipelined requests still come apart right, and limits and strictness still apply.
    @Test func headsArrivingByteByByteAreParsedAndChecked() throws {
        let s = Scenario()
        let app = try s.upstream("app")
        let proxy = try s.startProxy(simpleConfig([(app.address, 1)], extra: "limits: { max_header_bytes: 1024 }\n"), workers: 1)

        // Two pipelined requests, one byte at a time, the second starting in the first's last read.
        let client = try RawClient(port: proxy.port)
        trickle(client, "GET /headers HTTP/1.1\r\nHost: slow.test\r\nX-Marker: first\r\n\r\n"
                        + "GET /status/201 HTTP/1.1\r\nHost: slow.test\r\nX-Marker: second\r\n\r\n")
        let first = try client.readResponse()
        #expect(first.status == 200)
        #expect(first.bodyText.contains("X-Marker: first") && !first.bodyText.contains("second"), "\(first.bodyText)")
        #expect(try client.readResponse().status == 201)
        // The same connection serves a third request sent at once.
        client.send("GET /headers HTTP/1.1\r\nHost: slow.test\r\nX-Marker: third\r\n\r\n")
        let third = try client.readResponse()
        #expect(third.status == 200 && third.bodyText.contains("X-Marker: third"))

        // Larger than max_header_bytes: the first 900 bytes at once, then a byte at a time.
        let big = "GET / HTTP/1.1\r\nHost: slow.test\r\nX-Pad: " + String(repeating: "p", count: 1100)
        let tooLarge = try RawClient(port: proxy.port)
        tooLarge.send(String(big.prefix(900)))
        trickle(tooLarge, String(big.dropFirst(900)))
        #expect(try tooLarge.readResponse().status == 431)

        // A bare LF or a NUL after a long valid prefix that arrived earlier is still refused.
        for bad in ["X-Late: a\nb\r\n\r\n", "X-Late: a\u{0}b\r\n\r\n"] {
            let c = try RawClient(port: proxy.port)
            c.send("GET / HTTP/1.1\r\nHost: slow.test\r\n" + (0..<10).map { "X-\($0): " + String(repeating: "v", count: 40) + "\r\n" }.joined())
            usleep(20_000)
            trickle(c, bad)
            #expect(try c.readResponse().status == 400, "\(bad.debugDescription)")
        }
        #expect(!app.requestsSeen.contains { $0.hasPrefix("GET / ") }, "refused heads must not reach the upstream")
    }

    /// Every accepted connection's address is written as text (for X-Forwarded-For and the
    /// access log); one, two and three-digit octets and zeros come out right.
    @Test func clientAddressesAreWrittenAsDottedQuads() throws {
        let s = Scenario()
        let app = try s.upstream("app")
        let proxy = try s.startProxy(simpleConfig([(app.address, 1)]), workers: 1)
        for source in ["127.0.0.1", "127.10.200.254", "127.0.100.9", "127.99.0.10"] {
            let r = try curl(["--interface", source, "\(proxy.url)/headers"])
            #expect(r.output.contains("X-Forwarded-For: \(source)\r\n"), "from \(source): \(r.output)\(r.error)")
        }
    }

    /// At the open-file limit the proxy cannot open upstream connections either: that is the
    /// proxy's shortage, not the server's, so the answer is 503 and nobody is ejected.
    @Test func aShortageOfDescriptorsIsNotCountedAgainstTheServer() throws {
        let s = Scenario()
        let app = try s.upstream("app")
        let config = simpleConfig([(app.address, 1)]).replacingOccurrences(of: "    balance: round_robin\n",
            with: "    balance: round_robin\n    outlier_detection: { consecutive_failures: 3 }\n")
        let proxy = try s.startProxy(config, workers: 1, launcher: ["/usr/bin/prlimit", "--nofile=64:64"])
        var clients: [RawClient] = []
        for _ in 0..<70 { clients.append(try RawClient(port: proxy.port, timeout: 10)) }
        usleep(300_000)
        // Requests on accepted connections, each needing a new upstream connection.
        var statuses: [Int] = []
        for c in clients.prefix(8) {
            c.send("GET /sleep/10 HTTP/1.1\r\nHost: t\r\n\r\n")
            statuses.append((try? c.readResponse().status) ?? 0)
        }
        #expect(statuses.contains(503), "\(statuses)")
        #expect(!statuses.contains(502), "\(statuses)")
        usleep(200_000)
        #expect(!proxy.process.stderr.contains("ejected"), "\(proxy.process.stderr)")
        clients.removeAll()
    }

    /// The harness's children start with the standard streams only: sockets that tests running
    /// beside them hold open would otherwise count against the limits these tests set.
    @Test func spawnedProcessesInheritNothingButTheStandardStreams() throws {
        let held = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) // not close-on-exec
        defer { close(held) }
        #expect(held > 2)
        let listed = try run("/bin/sh", ["-c", "ls /proc/$$/fd"])
        #expect(listed.output.split(separator: "\n") == ["0", "1", "2"], "\(listed.output)")
    }

    /// At the open-file limit accept fails with EMFILE while connections wait in the queue; the
    /// listener must not spin on them: the worker pauses, counts, logs once, and serves again later.
    @Test func acceptAtTheOpenFileLimitBacksOffAndRecovers() throws {
        let s = Scenario()
        let app = try s.upstream("app")
        let socket = "\(s.directory)/admin.sock"
        // Soft 32, hard 64: the proxy raises the soft limit to the hard one at start.
        let proxy = try s.startProxy(simpleConfig([(app.address, 1)], extra: "admin: { socket: \(socket) }\n"),
                                     workers: 1, launcher: ["/usr/bin/prlimit", "--nofile=32:64"])
        let limits = (try? String(contentsOfFile: "/proc/\(proxy.process.pid)/limits", encoding: .utf8)) ?? ""
        let openFiles = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") } ?? ""
        #expect(openFiles.split(separator: " ", omittingEmptySubsequences: true).prefix(5).suffix(2) == ["64", "64"],
                "the soft open-file limit should be raised to the hard limit: \(openFiles)")
        #expect(proxy.process.stderr.contains("open-file limit (64, the hard limit) is below limits.max_connections"))
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "\(proxy.url)/"]).output == "200")

        // More connections than descriptors: the rest wait in the accept queue.
        var clients: [RawClient] = []
        for _ in 0..<90 { clients.append(try RawClient(port: proxy.port)) }
        let logged = "cannot accept connections: Too many open files"
        for _ in 0..<200 where !proxy.process.stderr.contains(logged) { usleep(10_000) }
        #expect(proxy.process.stderr.contains(logged), "stderr: \(proxy.process.stderr)")

        // A listener that fires again at once keeps a thread runnable all the time; pausing it
        // costs next to nothing.
        let before = runnableSeconds(proxy.process.pid)
        let start = Date()
        usleep(1_500_000)
        let perSecond = (runnableSeconds(proxy.process.pid) - before) / Date().timeIntervalSince(start)
        #expect(perSecond < 0.3, "the proxy was runnable \(perSecond) s per second at the open-file limit")

        clients.removeAll() // closes them
        var status = ""
        for _ in 0..<50 {
            status = try curl(["-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "\(proxy.url)/"]).output
            if status == "200" { break }
            usleep(100_000)
        }
        #expect(status == "200", "requests should be served again once descriptors are free")

        let metrics = try curl(["--unix-socket", socket, "http://x/metrics"]).output
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("switchyard_accept_errors_total ") }
        let errors = line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        // About ten pauses a second for 1.5 s; the exact count depends on the machine.
        #expect(errors >= 3, "metrics: \(line ?? "no switchyard_accept_errors_total")")
        let lines = proxy.process.stderr.components(separatedBy: logged).count - 1
        #expect(lines >= 1 && lines <= 2, "the accept error should be logged once per interval, not per event:\n\(proxy.process.stderr)")
    }
}
