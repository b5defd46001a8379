import Foundation
import Glibc
import Testing

@Suite("Pool versions", .serialized)
struct PoolVersionTests {
    /// The lines of the access log, parsed (waits for the workers' 100 ms hand-over).
    static func logLines(_ path: String, atLeast count: Int) throws -> [[String: Any]] {
        let end = Date().addingTimeInterval(10)
        var lines: [[String: Any]] = []
        repeat {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            lines = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            if lines.count >= count { return lines }
            usleep(50_000)
        } while Date() < end
        throw HarnessError("\(path) has \(lines.count) lines, expected at least \(count)")
    }

    func metrics(_ s: TwoServiceScenario) throws -> String { try curl(["--unix-socket", s.socketPath, "http://x/metrics"]).output }

    func pools(_ s: TwoServiceScenario) throws -> [String: [String: Any]] { try s.status()["pools"] as? [String: [String: Any]] ?? [:] }

    @Test func aVersionShowsInStatusMetricsCtlAndTheAccessLog() throws {
        let s = try TwoServiceScenario(accessLog: true)
        let admin = s.admin
        #expect(try admin.call("PUT", "/v1/pools/shop-green/version", body: #"{"version": "v2.4.1+build.7"}"#).status == 200)
        #expect(try s.ctl(["version", "shop-blue", "v2.4.0"]).status == 0)
        let status = try pools(s)
        #expect(status["shop-green"]?["version"] as? String == "v2.4.1+build.7")
        #expect(status["shop-blue"]?["version"] as? String == "v2.4.0")
        #expect(status["api-blue"]?["version"] is NSNull)

        // Traffic to the new version: the log line names it, and so do the pool's metrics.
        #expect(try admin.call("POST", "/v1/services/shop/flip").status == 200)
        #expect(try s.servedBy(host: "shop.test") == "shop-green")
        #expect(try s.servedBy(host: "api.test") == "api-blue")
        let lines = try Self.logLines(s.logPath, atLeast: 2)
        let shopLine = try #require(lines.first { $0["service"] as? String == "shop" })
        #expect(shopLine["pool"] as? String == "shop-green" && shopLine["version"] as? String == "v2.4.1+build.7")
        #expect(shopLine["route"] as? String == "active" && shopLine["host"] as? String == "shop.test")
        let apiLine = try #require(lines.first { $0["service"] as? String == "api" })
        #expect(apiLine["pool"] as? String == "api-blue" && apiLine["version"] is NSNull)
        let text = try metrics(s)
        #expect(text.contains(#"switchyard_pool_responses_total{pool="shop-green",version="v2.4.1+build.7",class="2xx"} 1"#), "\(text)")
        #expect(text.contains(#"switchyard_pool_responses_total{pool="api-blue",class="2xx"} 1"#))
        #expect(!text.contains(#"version="v2.4.1+build.7",version"#))
        let printed = try s.ctl(["status"]).output
        #expect(printed.contains("shop-green       v2.4.1+build.7") && printed.contains("api-blue         -"), "\(printed)")

        // Clearing: null or "" (and the ctl flag); the label leaves the metrics.
        #expect(try admin.call("PUT", "/v1/pools/shop-green/version", body: #"{"version": null}"#).status == 200)
        #expect(try pools(s)["shop-green"]?["version"] is NSNull)
        #expect(try metrics(s).contains(#"switchyard_pool_responses_total{pool="shop-green",class="2xx"} 1"#))
        #expect(try admin.call("PUT", "/v1/pools/shop-blue/version", body: #"{"version": ""}"#).status == 200)
        #expect(try s.ctl(["version", "api-blue", "--clear"]).status == 0)
        #expect(try s.ctl(["version", "api-blue"]).status == 64) // bad usage: neither a version nor --clear
        let audit = try admin.call("GET", "/v1/audit").json["entries"] as? [[String: Any]] ?? []
        let first = try #require(audit.first { $0["action"] as? String == "version" })
        #expect(first["target"] as? String == "pool shop-green")
        #expect((first["before"] as? [String: Any])?["version"] is NSNull)
        #expect((first["after"] as? [String: Any])?["version"] as? String == "v2.4.1+build.7")
    }

    @Test func versionsAreCheckedLockedAndKept() throws {
        let s = try TwoServiceScenario()
        let admin = s.admin
        for bad in [#"{"version": "-rc1"}"#, #"{"version": "a b"}"#, #"{"version": "v1/2"}"#, #"{"version": 7}"#, #"{}"#,
                    #"{"version": "\#(String(repeating: "v", count: 129))"}"#] {
            let refused = try admin.call("PUT", "/v1/pools/shop-blue/version", body: bad)
            #expect(refused.status == 400, "\(bad): \(refused.status)")
            #expect(AdminSocket.detail(refused).contains("letters, digits"), "\(bad): \(AdminSocket.detail(refused))")
        }
        #expect(try admin.call("PUT", "/v1/pools/nope/version", body: #"{"version": "v1"}"#).status == 404)
        #expect(try admin.call("PUT", "/v1/pools/shop-blue/version", body: #"{"version": "\#(String(repeating: "v", count: 128))"}"#).status == 200)

        // A pool's version is covered by the locks of the services that route to it.
        let token = try #require(try admin.call("POST", "/v1/lock", body: #"{"owner": "deploy-shop", "service": "shop"}"#).json["token"] as? String)
        #expect(try admin.call("PUT", "/v1/pools/shop-green/version", body: #"{"version": "v2"}"#).status == 423)
        #expect(try admin.call("PUT", "/v1/pools/shop-green/version", body: #"{"version": "v2"}"#, token: token).status == 200)
        #expect(try admin.call("PUT", "/v1/pools/api-green/version", body: #"{"version": "v9"}"#).status == 200)

        // Kept across a restart and a reload that resets the routing.
        try s.restart()
        #expect(try pools(s)["shop-green"]?["version"] as? String == "v2")
        #expect(try admin.call("POST", "/v1/reload?reset=true", token: token).status == 200)
        #expect(try pools(s)["api-green"]?["version"] as? String == "v9")
    }
}
