import Foundation
import Glibc
import Testing

/// A throwaway CA and certificates, made with the openssl command for each test.
struct TestPKI {
    let directory: String
    var ca: String { "\(directory)/ca.pem" }
    func cert(_ name: String) -> String { "\(directory)/\(name).pem" }
    func key(_ name: String) -> String { "\(directory)/\(name).key" }

    /// - Parameter loopback: names whose certificates also hold IP:127.0.0.1 (for servers reached by address).
    init(directory: String, names: [String], expired: [String] = [], loopback: Set<String> = []) throws {
        self.directory = directory
        func openssl(_ args: [String]) throws {
            let r = try run("/usr/bin/openssl", args)
            if r.status != 0 { throw HarnessError("openssl \(args.joined(separator: " ")): \(r.error)") }
        }
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(directory)/ca.key",
                     "-out", ca, "-subj", "/CN=Switchyard Test CA", "-days", "30"])
        for name in names + expired {
            try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key(name),
                         "-out", "\(directory)/\(name).csr", "-subj", "/CN=\(name).test"])
            try "subjectAltName=DNS:\(name).test,DNS:*.\(name).test\(loopback.contains(name) ? ",IP:127.0.0.1" : "")\n".write(toFile: "\(directory)/\(name).ext", atomically: true, encoding: .utf8)
            try openssl(["x509", "-req", "-in", "\(directory)/\(name).csr", "-CA", ca, "-CAkey", "\(directory)/ca.key", "-CAcreateserial",
                         "-days", expired.contains(name) ? "-1" : "30", "-extfile", "\(directory)/\(name).ext", "-out", cert(name)])
        }
    }

    /// A TLS listener item on 127.0.0.1:`port`, to put before the rest of a scenario's configuration
    /// (the harness's own listener list comes first).
    func tlsListener(port: UInt16, _ names: [String], extra: String = "") -> String {
        "  - bind: 127.0.0.1:\(port)\n" + listenerTLS(names, extra: extra)
    }

    func listenerTLS(_ names: [String], extra: String = "") -> String {
        "    tls:\n      certificates:\n" + names.map { "        - { cert: \(cert($0)), key: \(key($0)) }\n" }.joined() + extra
    }
}
