import COpenSSL
import Foundation
import Glibc
import SwitchyardConfig

/// The TLS side of one listener: one SSL_CTX per certificate (the first is the default),
/// chosen per connection by SNI. Shared by all workers: OpenSSL contexts are thread-safe
/// for creating connections.
final class TLSServerContext: @unchecked Sendable {
    /// TLS 1.2 ciphers (TLS 1.3 uses OpenSSL's default suites): forward secrecy and AEAD only.
    static let cipherList = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

    let contexts: [OpaquePointer]
    /// The listener's session ticket keys (kept across certificate reloads).
    let ticketKeys: UnsafeMutablePointer<sy_ticket_keys>
    private let certificates: [OpaquePointer]
    private let table: UnsafeMutablePointer<sy_sni_table>
    private let alpn: UnsafeMutablePointer<sy_alpn_list>

    var defaultContext: OpaquePointer { contexts[0] }

    /// When each loaded certificate expires: its file and notAfter in seconds since the Unix epoch.
    struct Expiry: Sendable {
        var file: String
        var notAfter: Double
    }
    /// The certificates this context serves, in the configuration's order.
    let expiries: [Expiry]

    /// Loads every certificate and key; throws with the problems `check` would print.
    /// - Parameter requireClientCertificate: with `client_ca`, refuse clients without a certificate
    ///   (listeners); when false, a certificate is asked for but optional (the admin listener,
    ///   where a bearer token also authenticates).
    init(config: TLSListenerConfig, listener: String, requireClientCertificate: Bool = true,
         ticketKeys existing: UnsafeMutablePointer<sy_ticket_keys>? = nil) throws {
        let problems = Self.check(config, listener: listener)
        if let error = problems.first(where: { !$0.hasPrefix("warning") }) { throw ProxyError(error) }
        guard let keys = existing ?? sy_ticket_keys_new() else { throw ProxyError("cannot make session ticket keys") }
        ticketKeys = keys
        var contexts: [OpaquePointer] = []
        var certificates: [OpaquePointer] = []
        let wire = config.alpn.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        alpn = .allocate(capacity: 1)
        let wireBytes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, wire.count))
        wireBytes.initialize(from: wire, count: wire.count)
        alpn.pointee = sy_alpn_list(wire: wireBytes, length: UInt32(wire.count))
        for certificate in config.certificates {
            guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw ProxyError("SSL_CTX_new failed") }
            _ = sy_ssl_ctx_set_min_proto_version(ctx, config.minVersion == "1.3" ? sy_tls1_3() : sy_tls1_2())
            SSL_CTX_set_cipher_list(ctx, Self.cipherList)
            // Partial writes with a buffer that may move: the data plane retries from its own buffers.
            _ = sy_ssl_ctx_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS))
            SSL_CTX_set_options(ctx, sy_server_options())
            guard SSL_CTX_use_certificate_chain_file(ctx, certificate.cert) == 1,
                  SSL_CTX_use_PrivateKey_file(ctx, certificate.key, SSL_FILETYPE_PEM) == 1,
                  SSL_CTX_check_private_key(ctx) == 1, let x509 = SSL_CTX_get0_certificate(ctx) else {
                throw ProxyError("\(listener): cannot load \(certificate.cert) with \(certificate.key): \(Self.lastError())")
            }
            sy_ssl_ctx_use_alpn(ctx, alpn)
            sy_ssl_ctx_use_ticket_keys(ctx, keys)
            if let clientCA = config.clientCA {
                // mTLS: no certificate, or one not signed by this CA, fails the handshake.
                guard SSL_CTX_load_verify_locations(ctx, clientCA, nil) == 1 else {
                    throw ProxyError("\(listener): cannot load client_ca \(clientCA): \(Self.lastError())")
                }
                SSL_CTX_set_verify(ctx, requireClientCertificate ? sy_verify_required() : sy_verify_optional(), nil)
                SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(clientCA))
                let sessionContext = Array("switchyard".utf8)
                SSL_CTX_set_session_id_context(ctx, sessionContext, UInt32(sessionContext.count))
            }
            contexts.append(ctx)
            certificates.append(x509)
        }
        table = .allocate(capacity: 1)
        let ctxArray = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: contexts.count)
        let certArray = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: certificates.count)
        for i in 0..<contexts.count { ctxArray[i] = contexts[i]; certArray[i] = certificates[i] }
        table.pointee = sy_sni_table(contexts: ctxArray, certificates: certArray, count: Int32(contexts.count))
        for ctx in contexts { sy_ssl_ctx_use_sni_table(ctx, table) }
        self.contexts = contexts
        self.certificates = certificates
        let now = Date().timeIntervalSince1970
        expiries = zip(config.certificates, certificates).map { Expiry(file: $0.cert, notAfter: now + Double(sy_x509_seconds_left($1))) }
    }

    /// What `switchyard check` reports about a listener's certificates: files readable, key
    /// matching the certificate, not expired; a warning when one expires within 14 days.
    static func check(_ config: TLSListenerConfig, listener: String) -> [String] {
        var problems: [String] = []
        if let clientCA = config.clientCA {
            if let file = fopen(clientCA, "r") {
                let ca = PEM_read_X509(file, nil, nil, nil)
                fclose(file)
                if let ca { X509_free(ca) } else { problems.append("\(listener).tls.client_ca: \(clientCA) holds no PEM certificate") }
            } else {
                problems.append("\(listener).tls.client_ca: cannot read \(clientCA): \(String(cString: strerror(errno)))")
            }
        }
        for (i, c) in config.certificates.enumerated() {
            let at = "\(listener).tls.certificates[\(i)]"
            let line = config.lines[c.cert].map { " (line \($0))" } ?? ""
            guard let certFile = fopen(c.cert, "r") else {
                problems.append("\(at).cert\(line): cannot read \(c.cert): \(String(cString: strerror(errno)))"); continue
            }
            let certificate = PEM_read_X509(certFile, nil, nil, nil)
            fclose(certFile)
            guard let certificate else { problems.append("\(at).cert\(line): \(c.cert) holds no PEM certificate"); continue }
            defer { X509_free(certificate) }
            guard let keyFile = fopen(c.key, "r") else {
                problems.append("\(at).key: cannot read \(c.key): \(String(cString: strerror(errno)))"); continue
            }
            let key = PEM_read_PrivateKey(keyFile, nil, nil, nil)
            fclose(keyFile)
            guard let key else { problems.append("\(at).key: \(c.key) holds no PEM private key"); continue }
            defer { EVP_PKEY_free(key) }
            if X509_check_private_key(certificate, key) != 1 {
                problems.append("\(at).key: \(c.key) does not match the certificate \(c.cert); give the key the certificate was issued for")
            }
            let days = sy_x509_days_left(certificate)
            if days < 0 {
                problems.append("\(at).cert\(line): \(c.cert) has expired; renew it")
            } else if days < 14 {
                problems.append("warning: \(at).cert: \(c.cert) expires in \(days) day(s)")
            }
        }
        return problems
    }

    static func lastError() -> String {
        var text = [CChar](repeating: 0, count: 256)
        let code = ERR_get_error()
        if code == 0 { return "unknown OpenSSL error" }
        ERR_error_string_n(code, &text, text.count)
        return String(cString: text)
    }
}

/// TLS to one pool's servers: one client SSL_CTX (verification, CA, client certificate).
final class TLSClientContext: @unchecked Sendable {
    let context: OpaquePointer
    let config: UpstreamTLSConfig

    init(config: UpstreamTLSConfig, pool: String) throws {
        self.config = config
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw ProxyError("SSL_CTX_new failed") }
        _ = sy_ssl_ctx_set_min_proto_version(ctx, sy_tls1_2())
        _ = sy_ssl_ctx_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS))
        if config.verify {
            let loaded = config.ca.map { SSL_CTX_load_verify_locations(ctx, $0, nil) } ?? SSL_CTX_set_default_verify_paths(ctx)
            guard loaded == 1 else {
                throw ProxyError("pools.\(pool).tls.ca: cannot load \(config.ca ?? "the system CAs"): \(TLSServerContext.lastError())")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        if let cert = config.clientCert, let key = config.clientKey {
            guard SSL_CTX_use_certificate_chain_file(ctx, cert) == 1, SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1,
                  SSL_CTX_check_private_key(ctx) == 1 else {
                throw ProxyError("pools.\(pool).tls: cannot load client_cert \(cert) with client_key \(key): \(TLSServerContext.lastError())")
            }
        }
        context = ctx
    }

    /// A client session for `host` (the server's IP when no server_name is configured).
    func session(fd: Int32, host: String) -> OpaquePointer? {
        guard let ssl = SSL_new(context) else { return nil }
        if fd >= 0 { SSL_set_fd(ssl, fd) }
        SSL_set_connect_state(ssl)
        if let name = config.serverName {
            _ = sy_ssl_set_sni(ssl, name)
            if config.verify { SSL_set1_host(ssl, name) }
        } else if config.verify {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
        }
        return ssl
    }
}
