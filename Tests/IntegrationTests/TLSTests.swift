import Foundation
import Glibc
import Testing

@Suite("TLS termination", .serialized)
struct TLSTests {
    @Test func terminatesTLSWithSNIAndForwardsAsHTTPS() throws {
        let s = Scenario()
        let pki = try TestPKI(directory: s.directory, names: ["site", "api"])
        let app = try s.upstream("app")
        let port = freePort()
        _ = try s.startProxy(pki.tlsListener(port: port, ["site", "api"]) + """
            pools: { app: { servers: [{ address: \(app.address) }] } }
            services: { web: { active: app } }
            access_log: \(s.directory)/access.log
            timeouts: { client_header: 1s }
            admin: { socket: \(s.directory)/admin.sock }

            """)
        func fetch(_ host: String, _ path: String = "/", _ extra: [String] = []) throws -> (status: Int32, output: String, error: String) {
            try curl(["-v", "--cacert", pki.ca, "--resolve", "\(host):\(port):127.0.0.1"] + extra + ["https://\(host):\(port)\(path)"])
        }
        // SNI picks the certificate by name, wildcards included; anything else gets the default.
        #expect(try fetch("site.test").error.contains("subject: CN=site.test"))
        #expect(try fetch("api.test").error.contains("subject: CN=api.test"))
        #expect(try fetch("v2.api.test").error.contains("subject: CN=api.test"))
        #expect(try curl(["-v", "-k", "https://127.0.0.1:\(port)/"]).error.contains("subject: CN=site.test"))
        let headers = try fetch("site.test", "/headers")
        #expect(headers.output.contains("X-Forwarded-Proto: https"))
        #expect(headers.error.contains("ALPN: server accepted http/1.1"))
        // Bodies both ways through TLS, bigger than the buffers; keep-alive reuse on one TLS connection.
        let file = "\(s.directory)/body.bin"
        FileManager.default.createFile(atPath: file, contents: Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }))
        let echoed = "\(s.directory)/echoed.bin"
        #expect(try fetch("site.test", "/echo", ["--data-binary", "@\(file)", "-o", echoed]).status == 0)
        #expect(FileManager.default.contentsEqual(atPath: file, andPath: echoed))
        let two = try curl(["-v", "--cacert", pki.ca, "--resolve", "site.test:\(port):127.0.0.1",
                            "https://site.test:\(port)/a", "https://site.test:\(port)/b"])
        #expect(two.output == "app GET /a\napp GET /b\n")
        #expect(two.error.contains("Re-using existing connection"))
        // The access log records the TLS version and cipher.
        usleep(300_000)
        let log = try String(contentsOfFile: "\(s.directory)/access.log", encoding: .utf8)
        #expect(log.contains(#""tls":"TLSv1.3""#))
    }

    /// Thousands of pipelined requests, each in a TLS record of its own, sent at once: more
    /// than the connection's buffer holds, so reading stops and resumes while TLS holds records
    /// it read ahead, which epoll never announces. Every request is answered, in order.
    @Test func pipelinedRequestsOverTLSAreAllAnsweredAcrossReadAhead() throws {
        let s = Scenario()
        let (pki, port) = try Self.siteProxy(s)
        // One thread: an OpenSSL connection must not be read and written at once. Each batch's
        // requests go out before any answer is read, far more than the proxy's buffer holds,
        // and their answers fit in the socket buffers.
        let script = """
            import socket, ssl, sys
            count, batch = int(sys.argv[3]), 500
            context = ssl.create_default_context(cafile=sys.argv[1])
            client = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))), server_hostname="site.test")
            client.settimeout(20)
            received = bytearray()
            try:
                for start in range(0, count, batch):
                    for i in range(start, min(count, start + batch)):
                        client.sendall(b"GET /r%d HTTP/1.1\\r\\nHost: site.test\\r\\nX-Padding: %s\\r\\n\\r\\n" % (i, b"p" * 64))
                    while received.count(b"app GET /r") < min(count, start + batch):
                        chunk = client.recv(65536)
                        if not chunk: break
                        received.extend(chunk)
            except Exception as e:
                print("stopped:", e, file=sys.stderr)
            answers = [int(line.split(b"/r")[1]) for line in received.split(b"\\n") if line.startswith(b"app GET /r")]
            print(len(answers), answers == list(range(len(answers))))
            """
        try script.write(toFile: "\(s.directory)/pipeline.py", atomically: true, encoding: .utf8)
        for _ in 0..<3 {
            let r = try run("/usr/bin/python3", ["\(s.directory)/pipeline.py", pki.ca, "\(port)", "3000"])
            #expect(r.output.trimmingCharacters(in: .whitespacesAndNewlines) == "3000 True", "\(r.output)\(r.error)")
        }
    }

    @Test func oldVersionsAndBadHandshakesAreRefusedAndCounted() throws {
        let s = Scenario()
        let pki = try TestPKI(directory: s.directory, names: ["site", "api"])
        let app = try s.upstream("app")
        let port = freePort()
        _ = try s.startProxy(pki.tlsListener(port: port, ["site"]) + """
            pools: { app: { servers: [{ address: \(app.address) }] } }
            services: { web: { active: app } }
            access_log: off
            timeouts: { client_header: 1s }
            admin: { socket: \(s.directory)/admin.sock }

            """)
        let old = try run("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_1"])
        #expect(old.status != 0)
        #expect(try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", pki.ca, "--tls-max", "1.2",
                          "--resolve", "site.test:\(port):127.0.0.1", "https://site.test:\(port)/"]).output == "200") // 1.2 works
        // Plain HTTP to a TLS port, and a client that stalls mid-handshake: closed, counted, no harm.
        let plain = try RawClient(port: port)
        plain.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(plain.isClosedByPeer())
        let stalled = try RawClient(port: port)
        stalled.send([0x16, 0x03, 0x01])
        #expect(stalled.isClosedByPeer(timeout: 4))
        let metrics = try curl(["--unix-socket", "\(s.directory)/admin.sock", "http://x/metrics"]).output
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("switchyard_tls_handshake_failures_total ") } ?? ""
        #expect((Int(line.split(separator: " ").last ?? "") ?? 0) >= 3, "\(line)")
        #expect(try curl(["-s", "--cacert", pki.ca, "--resolve", "site.test:\(port):127.0.0.1", "https://site.test:\(port)/"]).output == "app GET /\n")
    }

    @Test func checkValidatesCertificates() throws {
        let dir = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pki = try TestPKI(directory: dir, names: ["site", "api"], expired: ["old"])
        func check(_ certificates: String) throws -> (status: Int32, output: String, error: String) {
            let path = "\(dir)/c.yaml"
            try """
            listeners:
              - bind: 127.0.0.1:8443
                tls:
                  certificates:
            \(certificates)
            pools: { app: { servers: [{ address: 127.0.0.1:9001 }] } }
            services: { web: { active: app } }
            """.write(toFile: path, atomically: true, encoding: .utf8)
            return try run(switchyardBinary, ["check", "--config", path])
        }
        #expect(try check("        - { cert: \(pki.cert("site")), key: \(pki.key("site")) }").status == 0)
        let mismatch = try check("        - { cert: \(pki.cert("site")), key: \(pki.key("api")) }")
        #expect(mismatch.status == 1)
        #expect(mismatch.error.contains("does not match the certificate"))
        let expired = try check("        - { cert: \(pki.cert("old")), key: \(pki.key("old")) }")
        #expect(expired.status == 1)
        #expect(expired.error.contains("has expired"))
        let missing = try check("        - { cert: \(dir)/nope.pem, key: \(pki.key("site")) }")
        #expect(missing.status == 1)
        #expect(missing.error.contains("cannot read \(dir)/nope.pem"))
        let version = try check("        - { cert: \(pki.cert("site")), key: \(pki.key("site")) }\n      min_version: \"1.1\"")
        #expect(version.status == 1)
        #expect(version.error.contains("min_version: \"1.1\" is not supported"))
    }

    @Test func reloadSwapsCertificatesWithoutTouchingEstablishedConnections() throws {
        let s = Scenario()
        var pki = try TestPKI(directory: s.directory, names: ["site"])
        let app = try s.upstream("app")
        let port = freePort()
        let socket = "\(s.directory)/admin.sock"
        _ = try s.startProxy(pki.tlsListener(port: port, ["site"]) + """
            pools: { app: { servers: [{ address: \(app.address) }] } }
            services: { web: { active: app } }
            access_log: off
            admin: { socket: \(socket) }

            """)
        func serial() throws -> String {
            let hello = try run("/bin/sh", ["-c", "openssl s_client -connect 127.0.0.1:\(port) -servername site.test </dev/null 2>/dev/null | openssl x509 -noout -serial"])
            return hello.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let before = try serial()
        #expect(before.hasPrefix("serial="))
        // A TLS keep-alive connection held open across the reload (Python's ssl module).
        let go = "\(s.directory)/go"
        let script = """
        import socket, ssl, os, time, sys
        ctx = ssl.create_default_context(cafile="\(pki.ca)")
        c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", \(port))), server_hostname="site.test")
        def ask(path):
            c.sendall(b"GET " + path + b" HTTP/1.1\\r\\nHost: site.test\\r\\n\\r\\n")
            data = b""
            while b"\\r\\n\\r\\n" not in data or not data.split(b"\\r\\n\\r\\n", 1)[1].endswith(b"\\n"): data += c.recv(4096)
            return data.split(b"\\r\\n\\r\\n", 1)[1].decode()
        print("first", ask(b"/one").strip(), flush=True)
        while not os.path.exists("\(go)"): time.sleep(0.05)
        print("second", ask(b"/two").strip(), flush=True)
        """
        try script.write(toFile: "\(s.directory)/held.py", atomically: true, encoding: .utf8)
        let held = try spawn("/usr/bin/env", ["python3", "\(s.directory)/held.py"], stdout: "\(s.directory)/held.out", stderr: "\(s.directory)/held.err")
        _ = try waitForFile("\(s.directory)/held.out")
        // New certificate files (a new key and serial) in the same place, then a reload.
        pki = try TestPKI(directory: s.directory, names: ["site"])
        let (status, body) = try curl(["--unix-socket", socket, "-X", "POST", "-w", "\n%{http_code}", "http://x/v1/reload"]).output
            .split(separator: "\n").last.map { (String($0), "") } ?? ("", "")
        #expect(status == "200", "\(body)")
        FileManager.default.createFile(atPath: go, contents: nil)
        var exitStatus: Int32 = 0
        waitpid(held, &exitStatus, 0)
        let out = try String(contentsOfFile: "\(s.directory)/held.out", encoding: .utf8)
        #expect(out.contains("first app GET /one"))
        #expect(out.contains("second app GET /two"), "the connection held across the reload: \(out)")
        let after = try serial()
        #expect(after.hasPrefix("serial=") && after != before, "new handshakes get the new certificate")

        // A key that does not match: the reload is refused and the current certificate stays.
        try FileManager.default.removeItem(atPath: pki.key("site"))
        try FileManager.default.copyItem(atPath: "\(s.directory)/ca.key", toPath: pki.key("site"))
        let refused = try curl(["--unix-socket", socket, "-X", "POST", "-w", "\n%{http_code}", "http://x/v1/reload"]).output
        #expect(refused.hasSuffix("400"))
        #expect(refused.contains("invalid certificates"))
        #expect(try serial() == after)
    }

    @Test func clientCertificatesAreRequiredWithClientCA() throws {
        let s = Scenario()
        let pki = try TestPKI(directory: s.directory, names: ["site", "client"])
        let app = try s.upstream("app")
        let port = freePort()
        _ = try s.startProxy(pki.tlsListener(port: port, ["site"], extra: "      client_ca: \(pki.ca)\n") + """
            pools: { app: { servers: [{ address: \(app.address) }] } }
            services: { web: { active: app } }
            access_log: off

            """)
        let base = ["-s", "--cacert", pki.ca, "--resolve", "site.test:\(port):127.0.0.1"]
        let without = try curl(base + ["https://site.test:\(port)/"])
        #expect(without.status != 0) // handshake refused without a client certificate
        let with = try curl(base + ["--cert", pki.cert("client"), "--key", pki.key("client"), "https://site.test:\(port)/"])
        #expect(with.output == "app GET /\n")
        // A certificate from another CA is refused too.
        let other = try TestPKI(directory: makeTemporaryDirectory(), names: ["stranger"])
        defer { try? FileManager.default.removeItem(atPath: other.directory) }
        let stranger = try curl(base + ["--cert", other.cert("stranger"), "--key", other.key("stranger"), "https://site.test:\(port)/"])
        #expect(stranger.status != 0)
    }

    /// A Python HTTPS upstream with `cert`/`key`; answers "tls upstream N" (N: its connection count).
    func startTLSUpstream(_ s: Scenario, cert: String, key: String) throws -> (pid: pid_t, port: UInt16) {
        let port = freePort()
        let script = """
        import http.server, ssl, threading
        connections = 0
        lock = threading.Lock()
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def setup(self):
                global connections
                with lock: connections += 1; self.number = connections
                super().setup()
            def do_GET(self):
                body = ("tls upstream %d\\n" % self.number).encode()
                self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            def log_message(self, *args): pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", \(port)), H)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain("\(cert)", "\(key)")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        print("ready", flush=True)
        server.serve_forever()
        """
        let path = "\(s.directory)/tls-upstream-\(port).py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let out = "\(s.directory)/tls-upstream-\(port).out"
        let pid = try spawn("/usr/bin/env", ["python3", path], stdout: out, stderr: out + ".err")
        _ = try waitForFile(out)
        return (pid, port)
    }

    @Test func talksTLSToUpstreamsWithVerification() throws {
        let s = Scenario()
        let pki = try TestPKI(directory: s.directory, names: ["site"])
        let other = try TestPKI(directory: makeTemporaryDirectory(), names: ["x"])
        defer { try? FileManager.default.removeItem(atPath: other.directory) }
        let upstream = try startTLSUpstream(s, cert: pki.cert("site"), key: pki.key("site"))
        defer { kill(upstream.pid, SIGKILL); waitpid(upstream.pid, nil, 0) }
        let proxy = try s.startProxy("""
            pools:
              good: { tls: { ca: \(pki.ca), server_name: site.test }, health: { path: /healthz, interval: 200ms, rise: 1, fall: 1 },
                      servers: [{ name: g, address: 127.0.0.1:\(upstream.port) }] }
              wrongca: { tls: { ca: \(other.ca), server_name: site.test }, servers: [{ name: w, address: 127.0.0.1:\(upstream.port) }] }
              checked: { tls: { ca: \(other.ca), server_name: site.test }, health: { path: /healthz, interval: 200ms, rise: 1, fall: 1 },
                         servers: [{ name: c, address: 127.0.0.1:\(upstream.port) }] }
              noverify: { tls: { verify: false }, servers: [{ address: 127.0.0.1:\(upstream.port) }] }
            services:
              good: { match: { path_prefix: /good }, active: good }
              wrongca: { match: { path_prefix: /wrongca }, active: wrongca }
              noverify: { match: { path_prefix: /noverify }, active: noverify }
            access_log: off
            admin: { socket: \(s.directory)/admin.sock }

            """, workers: 1)
        // Verified, and the TLS connection is reused for the next request (keep-alive pool).
        let c = try RawClient(port: proxy.port)
        c.send("GET /good HTTP/1.1\r\nHost: t\r\n\r\n")
        let first = try c.readResponse()
        #expect(first.status == 200)
        c.send("GET /good HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try c.readResponse().bodyText == first.bodyText) // same upstream connection number
        // A certificate from another CA fails verification: 502 naming the cause.
        let refused = try curl(["-s", "-w", "\n%{http_code}", "\(proxy.url)/wrongca"]).output
        #expect(refused.hasSuffix("502"))
        #expect(refused.contains("TLS to upstream 127.0.0.1:\(upstream.port) failed: certificate verify failed") ||
                refused.contains("unable to get local issuer certificate"), "\(refused)")
        #expect(try curl(["-s", "\(proxy.url)/noverify"]).output.hasPrefix("tls upstream"))
        // Health checks of a TLS pool go over TLS, verified the same way.
        func health(_ pool: String) throws -> [String: Any] {
            let text = try curl(["--unix-socket", "\(s.directory)/admin.sock", "http://x/v1/status"]).output
            let status = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            let server = (((status?["pools"] as? [String: Any])?[pool] as? [String: Any])?["servers"] as? [[String: Any]])?.first
            return server?["health"] as? [String: Any] ?? [:]
        }
        let end = Date().addingTimeInterval(4)
        while Date() < end, try health("checked")["status"] as? String != "down" || health("good")["last_result"] as? String != "status 200" {
            usleep(100_000)
        }
        #expect(try health("good")["status"] as? String == "up")
        #expect(try health("good")["last_result"] as? String == "status 200")
        #expect(try health("checked")["status"] as? String == "down") // its certificate does not verify
    }

    @Test func tcpAdminOverTLSTakesATokenOrAClientCertificate() throws {
        let s = Scenario()
        let pki = try TestPKI(directory: s.directory, names: ["admin", "operator"])
        try "pipeline 0123456789abcdef0123\n".write(toFile: "\(s.directory)/tokens", atomically: true, encoding: .utf8)
        let app = try s.upstream("app")
        let port = freePort()
        _ = try s.startProxy("""
            pools: { app: { servers: [{ address: \(app.address) }] } }
            services: { web: { active: app } }
            access_log: off
            admin:
              tcp: 127.0.0.1:\(port)
              tokens_file: \(s.directory)/tokens
              tls: { certificates: [{ cert: \(pki.cert("admin")), key: \(pki.key("admin")) }], client_ca: \(pki.ca) }

            """)
        let base = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", pki.ca, "--resolve", "admin.test:\(port):127.0.0.1"]
        let url = "https://admin.test:\(port)"
        #expect(try curl(base + ["\(url)/v1/status"]).output == "401")
        #expect(try curl(base + ["-H", "Authorization: Bearer 0123456789abcdef0123", "\(url)/v1/status"]).output == "200")
        #expect(try curl(base + ["--cert", pki.cert("operator"), "--key", pki.key("operator"), "-X", "POST",
                                 "-H", "Content-Type: application/json", "\(url)/v1/lock", "-d", #"{"owner": "ops"}"#]).output == "200")
        let audit = try curl(["-s", "--cacert", pki.ca, "--resolve", "admin.test:\(port):127.0.0.1",
                              "--cert", pki.cert("operator"), "--key", pki.key("operator"), "\(url)/v1/audit"]).output
        #expect(audit.contains(#""actor" : "cert:operator.test""#))
        // Plain HTTP to the TLS admin port gets nowhere.
        #expect(try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "http://127.0.0.1:\(port)/v1/status"]).output != "200")
    }

    /// A browser presents a client certificate by itself, so names are given roles, and a
    /// change must look like it came from a program, not from another site's page.
    @Test func clientCertificateRolesAndCrossSiteRequests() throws {
        let s = Scenario()
        let pki = try TestPKI(directory: s.directory, names: ["admin", "deployer", "grafana", "stranger"])
        let app = try s.upstream("app")
        let port = freePort()
        _ = try s.startProxy("""
            pools: { app: { servers: [{ address: \(app.address) }] }, other: { servers: [{ address: \(app.address) }] } }
            services: { web: { active: app, standby: other } }
            access_log: off
            admin:
              tcp: 127.0.0.1:\(port)
              tls: { certificates: [{ cert: \(pki.cert("admin")), key: \(pki.key("admin")) }], client_ca: \(pki.ca) }
              client_roles: { operate: [deployer.test], read: [grafana.test] }

            """)
        func call(_ who: String, _ extra: [String]) throws -> String {
            try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", pki.ca, "--resolve", "admin.test:\(port):127.0.0.1",
                      "--cert", pki.cert(who), "--key", pki.key(who)] + extra).output
        }
        let url = "https://admin.test:\(port)"
        let json = ["-H", "Content-Type: application/json"]
        #expect(try call("grafana", ["\(url)/v1/status"]) == "200")
        #expect(try call("grafana", ["-X", "POST", "\(url)/v1/services/web/flip"]) == "403")
        #expect(try call("stranger", ["\(url)/v1/status"]) == "403")
        // Cross-site shapes are refused even for an operator's certificate.
        #expect(try call("deployer", ["-X", "POST", "-H", "Content-Type: text/plain", "-d", "{}", "\(url)/v1/services/web/flip"]) == "415")
        #expect(try call("deployer", ["-X", "POST", "-d", "{}", "\(url)/v1/services/web/flip"]) == "415") // curl's form type
        #expect(try call("deployer", json + ["-X", "POST", "-H", "Origin: https://evil.example", "-d", "{}", "\(url)/v1/services/web/flip"]) == "403")
        #expect(try call("deployer", json + ["-X", "POST", "-H", "Sec-Fetch-Site: cross-site", "-d", "{}", "\(url)/v1/services/web/flip"]) == "403")
        #expect(try call("deployer", json + ["-X", "POST", "-H", "Origin: https://admin.test:\(port)", "-d", "{}", "\(url)/v1/services/web/flip"]) == "200")
        // client_roles without client_ca is a configuration problem.
        let bad = "\(s.directory)/bad.yaml"
        try """
            listeners: [{ bind: 127.0.0.1:1 }]
            pools: { app: { servers: [{ address: 127.0.0.1:2 }] } }
            services: { web: { active: app } }
            admin: { socket: \(s.directory)/a.sock, client_roles: { operate: [x] } }
            """.write(toFile: bad, atomically: true, encoding: .utf8)
        let checked = try run(switchyardBinary, ["check", "--config", bad])
        #expect(checked.status == 1 && checked.error.contains("admin.client_roles"), "\(checked)")
    }

    /// A proxy terminating TLS for site.test, on a free port, in front of one upstream.
    static func siteProxy(_ s: Scenario, listenerExtra: String = "") throws -> (pki: TestPKI, port: UInt16) {
        let pki = try TestPKI(directory: s.directory, names: ["site"])
        let app = try s.upstream("app")
        let port = freePort()
        _ = try s.startProxy(pki.tlsListener(port: port, ["site"], extra: listenerExtra) + """
            pools: { app: { servers: [{ address: \(app.address) }] } }
            services: { web: { active: app } }
            access_log: off

            """)
        return (pki, port)
    }

    @Test func sessionsResumeAndTicketKeysRotate() throws {
        let s = Scenario()
        let (pki, port) = try Self.siteProxy(s, listenerExtra: "      session_ticket_rotation: 1s\n")
        let session = "\(s.directory)/session.pem"
        func handshake(_ args: [String]) throws -> String {
            try run("/bin/sh", ["-c", "openssl s_client -connect 127.0.0.1:\(port) -servername site.test -tls1_2 -CAfile \(pki.ca) "
                                + args.joined(separator: " ") + " </dev/null 2>/dev/null"]).output
        }
        #expect(try handshake(["-sess_out", session]).contains("New, TLSv1.2"))
        #expect(try handshake(["-sess_in", session]).contains("Reused, TLSv1.2"))   // resumed with the ticket
        usleep(2_600_000) // two rotations: the ticket's key is gone
        #expect(try handshake(["-sess_in", session]).contains("New, TLSv1.2"))
    }

    /// TLS 1.3 tickets are single use for clients (OpenSSL's, wrk's): a resumed session must
    /// come with a new ticket, or the client's next connection is a full handshake. Before the
    /// proxy renewed tickets on resumption, every other connection of a client was a full one.
    @Test func aResumedTLS13SessionGetsAFreshTicket() throws {
        let s = Scenario()
        let (pki, port) = try Self.siteProxy(s)
        let first = "\(s.directory)/first.pem", second = "\(s.directory)/second.pem"
        /// A TLS 1.3 handshake that stays a second, long enough for the tickets sent after it.
        func handshake(_ args: String) throws -> String {
            try run("/bin/sh", ["-c", "sleep 1 | openssl s_client -connect 127.0.0.1:\(port) -servername site.test -tls1_3 -CAfile \(pki.ca) -msg \(args) 2>&1"]).output
        }
        #expect(try handshake("-sess_out \(first)").contains("New, TLSv1.3"))
        let resumed = try handshake("-sess_in \(first) -sess_out \(second)")
        #expect(resumed.contains("Reused, TLSv1.3"), "\(resumed)")
        #expect(resumed.contains("NewSessionTicket"), "the resumed session carries a new ticket: \(resumed)")
        #expect(try handshake("-sess_in \(second)").contains("Reused, TLSv1.3"), "and the client resumes again with it")
    }

    @Test func reloadAppliesNewUpstreamTLSSettings() throws {
        let s = Scenario()
        let pki = try TestPKI(directory: s.directory, names: ["site"])
        let other = try TestPKI(directory: makeTemporaryDirectory(), names: ["x"])
        defer { try? FileManager.default.removeItem(atPath: other.directory) }
        let upstream = try startTLSUpstream(s, cert: pki.cert("site"), key: pki.key("site"))
        defer { kill(upstream.pid, SIGKILL); waitpid(upstream.pid, nil, 0) }
        let socket = "\(s.directory)/admin.sock"
        let proxy = try s.startProxy("""
            pools: { app: { tls: { ca: \(other.ca), server_name: site.test }, servers: [{ address: 127.0.0.1:\(upstream.port) }] } }
            services: { web: { active: app } }
            access_log: off
            admin: { socket: \(socket) }

            """)
        #expect(try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(proxy.url)/"]).output == "502")
        let fixed = try String(contentsOfFile: proxy.configPath, encoding: .utf8).replacingOccurrences(of: other.ca, with: pki.ca)
        try fixed.write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
        #expect(try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket, "-X", "POST", "http://x/v1/reload"]).output == "200")
        #expect(try curl(["-s", "\(proxy.url)/"]).output.hasPrefix("tls upstream"))
    }
}
