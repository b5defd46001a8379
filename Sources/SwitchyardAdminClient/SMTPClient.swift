import COpenSSL
import Foundation
import Glibc

/// A small blocking SMTP client (RFC 5321) for the orchestrator's mail notifications: EHLO,
/// STARTTLS (or TLS from the start), AUTH PLAIN or LOGIN, one message to its recipients.
/// TLS is OpenSSL's, verifying the server's certificate and name as the HTTP client does.
/// Errors name the step and the server's answer, never the password.
public enum SMTPClient {
    public enum Security: Sendable { case starttls, implicit, none }

    public struct Server: Sendable {
        public var host: String
        public var port: UInt16
        public var security: Security
        /// The CA bundle that signed the server's certificate (default: the system's).
        public var ca: String?
        public init(host: String, port: UInt16, security: Security, ca: String?) {
            self.host = host; self.port = port; self.security = security; self.ca = ca
        }
    }

    public struct Login: Sendable {
        public var username: String
        public var password: String
        public init(username: String, password: String) { self.username = username; self.password = password }
    }

    /// Why a message was not sent; `permanent` when the server refused it for good (5xx),
    /// which trying again does not change.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
        public var permanent: Bool
    }

    /// A server's reply: its code and text lines.
    struct Reply { var code: Int; var lines: [String]; var text: String { lines.joined(separator: " / ") } }

    /// Sends `message` (headers and body, lines ending in CRLF, without the final dot) from
    /// `from` to `to`, within `timeout` seconds.
    public static func send(server: Server, login: Login?, from: String, to: [String], message: Data, helo: String,
                            timeout: Double = 30) throws(Failure) {
        let deadline = Date().addingTimeInterval(timeout)
        let where_ = "\(server.host):\(server.port)"
        let connection: HTTPClient.Connection
        do {
            connection = try HTTPClient.Connection.open(.tcp(host: server.host, port: server.port, tls: server.security == .implicit, ca: server.ca),
                                                        deadline: deadline)
        } catch {
            // The client's error names the host and port already.
            throw Failure(description: "SMTP: \(error.description)", permanent: false)
        }
        defer { connection.close() }
        var session = Session(connection: connection, server: where_)
        let greeting = try session.read()
        try session.expect(greeting, 220, "greeting")
        var capabilities = try session.hello(helo)
        if server.security == .starttls {
            guard capabilities.contains(where: { $0.uppercased() == "STARTTLS" }) else {
                throw Failure(description: "SMTP \(where_) does not offer STARTTLS; the message was not sent in clear (set tls: none only for a trusted local relay)",
                              permanent: true)
            }
            try session.command("STARTTLS", 220, "STARTTLS")
            do { try connection.startTLS(host: server.host, ca: server.ca) } catch {
                throw Failure(description: "SMTP \(where_): \(error.description)", permanent: false)
            }
            session.buffer = Data()
            capabilities = try session.hello(helo)
        }
        if let login {
            let mechanisms = capabilities.first { $0.uppercased().hasPrefix("AUTH ") || $0.uppercased().hasPrefix("AUTH=") }
                .map { $0.dropFirst(5).uppercased().split(separator: " ").map(String.init) } ?? []
            if mechanisms.contains("PLAIN") {
                let token = Data(([0] + Array(login.username.utf8) + [0] + Array(login.password.utf8))).base64EncodedString()
                try session.command("AUTH PLAIN \(token)", 235, "login (AUTH PLAIN)")
            } else if mechanisms.contains("LOGIN") {
                try session.command("AUTH LOGIN", 334, "login (AUTH LOGIN)")
                try session.command(Data(login.username.utf8).base64EncodedString(), 334, "login (AUTH LOGIN user name)")
                try session.command(Data(login.password.utf8).base64EncodedString(), 235, "login (AUTH LOGIN password)")
            } else {
                throw Failure(description: "SMTP \(where_) offers no login Switchyard speaks (it offers: \(mechanisms.isEmpty ? "none" : mechanisms.joined(separator: " ")); Switchyard speaks PLAIN and LOGIN)",
                              permanent: true)
            }
        }
        try session.command("MAIL FROM:<\(from)>", 250, "sender <\(from)>")
        var refused: [String] = []
        for address in to {
            let reply = try session.send("RCPT TO:<\(address)>")
            if reply.code != 250 && reply.code != 251 { refused.append("<\(address)>: \(reply.code) \(reply.text)") }
        }
        if refused.count == to.count {
            throw Failure(description: "SMTP \(where_) refused every recipient: \(refused.joined(separator: "; "))", permanent: true)
        }
        try session.command("DATA", 354, "DATA")
        try session.write(dotStuffed(message) + Data(".\r\n".utf8))
        let accepted = try session.read()
        try session.expect(accepted, 250, "the message")
        _ = try? session.send("QUIT")
        if !refused.isEmpty {
            throw Failure(description: "SMTP \(where_) delivered to the others but refused: \(refused.joined(separator: "; "))", permanent: true)
        }
    }

    /// The message as DATA carries it: CRLF line ends, a dot doubled at the start of a line,
    /// and a final CRLF.
    public static func dotStuffed(_ message: Data) -> Data {
        var out = Data()
        out.reserveCapacity(message.count + 64)
        var atLineStart = true
        var previous: UInt8 = 0
        for byte in message {
            if byte == UInt8(ascii: "\n") && previous != UInt8(ascii: "\r") { out.append(UInt8(ascii: "\r")) }
            if atLineStart && byte == UInt8(ascii: ".") { out.append(UInt8(ascii: ".")) }
            out.append(byte)
            atLineStart = byte == UInt8(ascii: "\n")
            previous = byte
        }
        if !atLineStart { out.append(contentsOf: Array("\r\n".utf8)) }
        return out
    }

    struct Session {
        let connection: HTTPClient.Connection
        let server: String
        var buffer = Data()

        init(connection: HTTPClient.Connection, server: String) { self.connection = connection; self.server = server }

        func write(_ data: Data) throws(Failure) {
            do { try connection.write(data) } catch { throw Failure(description: "SMTP \(server): \(error.description)", permanent: false) }
        }

        /// One reply, every line of it (`250-...` lines continue, `250 ...` ends it).
        mutating func read() throws(Failure) -> Reply {
            var lines: [String] = []
            while true {
                while buffer.firstIndex(of: UInt8(ascii: "\n")) == nil {
                    guard buffer.count < 64 * 1024 else { throw Failure(description: "SMTP \(server): a reply line longer than 64 KiB", permanent: false) }
                    let more: Data
                    do { more = try connection.readSome() } catch { throw Failure(description: "SMTP \(server): \(error.description)", permanent: false) }
                    guard !more.isEmpty else {
                        throw Failure(description: "SMTP \(server): the server closed the connection (or did not answer in time)", permanent: false)
                    }
                    buffer.append(more)
                }
                guard let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) else { continue }
                var line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer = Data(buffer[buffer.index(after: newline)...])
                if line.hasSuffix("\r") { line.removeLast() }
                let bytes = Array(line.utf8)
                guard bytes.count >= 3, let code = Int(String(decoding: bytes.prefix(3), as: UTF8.self)) else {
                    throw Failure(description: "SMTP \(server): not an SMTP reply: \(line.prefix(80))", permanent: false)
                }
                lines.append(String(decoding: bytes.dropFirst(4), as: UTF8.self))
                if bytes.count == 3 || bytes[3] != UInt8(ascii: "-") { return Reply(code: code, lines: lines) }
            }
        }

        mutating func send(_ command: String) throws(Failure) -> Reply {
            try write(Data((command + "\r\n").utf8))
            return try read()
        }

        /// Sends `command` and requires `code`. Errors name `step`, never the command (it may hold a secret).
        mutating func command(_ command: String, _ code: Int, _ step: String) throws(Failure) {
            let reply = try send(command)
            try expect(reply, code, step)
        }

        func expect(_ reply: Reply, _ code: Int, _ step: String) throws(Failure) {
            guard reply.code != code else { return }
            let what = [530, 534, 535, 538].contains(reply.code) && step.hasPrefix("login")
                ? "refused the login (check the user name and password)" : "refused \(step)"
            throw Failure(description: "SMTP \(server) \(what): \(reply.code) \(reply.text)", permanent: (500..<600).contains(reply.code))
        }

        /// EHLO, and the extensions the server lists.
        mutating func hello(_ name: String) throws(Failure) -> [String] {
            let reply = try send("EHLO \(name)")
            try expect(reply, 250, "EHLO")
            return Array(reply.lines.dropFirst())
        }
    }
}

/// HMAC-SHA256 through OpenSSL, for signed webhooks.
public enum MessageSignature {
    public static func hmacSHA256(key: Data, message: Data) -> Data {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let keyBytes = [UInt8](key), messageBytes = [UInt8](message)
        _ = keyBytes.withUnsafeBytes { k in
            messageBytes.withUnsafeBytes { m in
                HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self), m.count, &out, &length)
            }
        }
        return Data(out.prefix(Int(length)))
    }

    public static func hex(_ data: Data) -> String { data.map { String(format: "%02x", $0) }.joined() }
}
