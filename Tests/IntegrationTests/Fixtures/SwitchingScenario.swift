import Foundation
import Glibc
import Testing

/// A proxy with blue and green pools, an admin socket and a state file.
final class SwitchingScenario {
    let scenario = Scenario()
    let blue: Upstream
    let green: Upstream
    /// A second blue server, so one can drain while the pool keeps serving.
    let blue2: Upstream?
    var proxy: Proxy { scenario.proxy }
    var socket: String { "\(scenario.directory)/admin.sock" }
    var stateFile: String { "\(scenario.directory)/state.json" }
    let serviceExtra: String

    /// Extra lines inside `admin:` (indented by four spaces).
    let adminExtra: String

    init(serviceExtra: String = "", workers: Int = 2, secondBlue: Bool = false, adminExtra: String = "") throws {
        self.adminExtra = adminExtra
        blue = try scenario.upstream("blue")
        green = try scenario.upstream("green")
        blue2 = secondBlue ? try scenario.upstream("blue2") : nil
        self.serviceExtra = serviceExtra
        _ = try scenario.startProxy(configText, workers: workers)
    }

    var configText: String {
        """
        pools:
          blue: { servers: [{ name: b1, address: \(blue.address) }\(blue2.map { ", { name: b2, address: \($0.address) }" } ?? "")] }
          green: { servers: [{ name: g1, address: \(green.address) }] }
        services:
          web:
            active: blue
            standby: green
        \(serviceExtra)
        access_log: off
        admin:
          socket: \(socket)
        \(adminExtra)
        state_file: \(stateFile)

        """
    }

    /// Calls the admin API with curl; returns (HTTP status, JSON body).
    @discardableResult
    func admin(_ method: String, _ path: String, body: String? = nil, headers: [String] = []) throws -> (Int, [String: Any]) {
        var args = ["--unix-socket", socket, "-X", method, "-w", "\n%{http_code}"]
        for h in headers { args += ["-H", h] }
        if let body { args += ["-d", body] }
        let r = try curl(args + ["http://switchyard\(path)"])
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? 0
        let text = lines.dropLast().joined(separator: "\n")
        let json = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
        return (status, json)
    }

    /// A change over the admin socket without spawning a process (for load tests); returns the status.
    @discardableResult
    func quickAdmin(_ method: String, _ path: String, body: String = "") -> Int {
        guard let fd = try? AdminSocket.connect(socket) else { return 0 }
        defer { Glibc.close(fd) }
        let request = Array("\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var response = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += chunk[0..<n]
        }
        let line = String(decoding: response.prefix(16), as: UTF8.self)
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    func ctl(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        try run(switchyardBinary, ["ctl"] + arguments + ["--admin", socket])
    }

    /// The name of the instance that answered, over a keep-alive connection.
    func servedBy(_ client: RawClient, headers: String = "") throws -> String {
        client.send("GET / HTTP/1.1\r\nHost: t\r\n\(headers)\r\n")
        return try client.readResponse().header("X-Served-By") ?? "?"
    }
}
