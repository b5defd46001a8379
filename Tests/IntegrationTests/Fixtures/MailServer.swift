import Foundation
import Glibc

/// A real SMTP server (Python's aiosmtpd, Debian's python3-aiosmtpd) on a loopback port that
/// requires STARTTLS with `certificate`, and a login (`user`, `password`) over TLS. Each
/// message it accepts is parsed by Python's email package and appended as a JSON line to
/// mail.jsonl: envelope, decoded headers and body, the raw message, and whether TLS and the
/// login were in place. Stopped by PID with the lab.
final class MailServer {
    let port: UInt16
    let log: String
    let pid: pid_t
    private var stopped = false

    /// How the server speaks TLS.
    enum TLSMode: String { case starttls, implicit, none }

    /// - Parameters:
    ///   - mechanisms: the logins offered (aiosmtpd offers PLAIN and LOGIN).
    ///   - tls: how the server speaks TLS: STARTTLS (required), implicit (TLS from the first byte,
    ///     as on port 465), or none (it offers its login in clear).
    init(directory: String, certificate: String, key: String, user: String, password: String, mechanisms: [String] = ["PLAIN", "LOGIN"],
         tls: TLSMode = .starttls) throws {
        let script = """
            import email, email.policy, json, signal, ssl, sys
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import AuthResult, LoginPassword
            port, cert, key, log, user, password, offered, mode = sys.argv[1:9]
            starttls, implicit = mode == 'starttls', mode == 'implicit'
            offered = offered.split(',')
            class Handler:
                async def handle_DATA(self, server, session, envelope):
                    raw = envelope.original_content or envelope.content
                    msg = email.message_from_bytes(raw, policy=email.policy.default)
                    # aiosmtpd sets session.ssl after STARTTLS only; an implicit listener is TLS throughout.
                    record = {'from': envelope.mail_from, 'to': envelope.rcpt_tos, 'tls': session.ssl is not None or implicit,
                              'authenticated': bool(session.authenticated),
                              'headers': {k.lower(): str(v) for k, v in msg.items()}, 'body': msg.get_content(),
                              'raw': raw.decode('utf-8', 'replace')}
                    with open(log, 'a') as f:
                        f.write(json.dumps(record) + '\\n')
                    return '250 OK'
            def authenticator(server, session, envelope, mechanism, data):
                ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
                return AuthResult(success=ok, handled=False)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            excluded = [m for m in ['PLAIN', 'LOGIN'] if m not in offered]
            # aiosmtpd's auth_require_tls knows STARTTLS only: with implicit TLS the login is over TLS anyway.
            controller = Controller(Handler(), hostname='127.0.0.1', port=int(port), tls_context=context if starttls else None,
                                    ssl_context=context if implicit else None,
                                    require_starttls=starttls, authenticator=authenticator, auth_required=True, auth_require_tls=starttls,
                                    auth_exclude_mechanism=excluded)
            controller.start()
            open(log + '.ready', 'w').write('ready')
            signal.sigwait([signal.SIGTERM, signal.SIGINT])
            controller.stop()
            """
        try script.write(toFile: "\(directory)/smtp_server.py", atomically: true, encoding: .utf8)
        port = freePort()
        log = "\(directory)/mail.jsonl"
        // Debian's python3, where python3-aiosmtpd installs (another python3 may come first on PATH).
        pid = try spawn("/usr/bin/python3", ["\(directory)/smtp_server.py", "\(port)", certificate, key, log, user, password, mechanisms.joined(separator: ","),
                                                  tls.rawValue],
                        stdout: "\(directory)/smtp.out", stderr: "\(directory)/smtp.err")
        do { _ = try waitForFile(log + ".ready", timeout: 20) } catch {
            let err = (try? String(contentsOfFile: "\(directory)/smtp.err", encoding: .utf8)) ?? ""
            stop()
            throw HarnessError("the SMTP server did not start: \(err)")
        }
    }

    /// The messages accepted so far, oldest first.
    var messages: [[String: Any]] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    /// Waits until `count` messages arrived (the rollout's last notifications are sent as it exits).
    func waitForMessages(_ count: Int, timeout: Double = 15) -> [[String: Any]] {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end && messages.count < count { usleep(50_000) }
        return messages
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    deinit { stop() }
}
