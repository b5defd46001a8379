import Foundation
import Glibc
import Testing

@Suite("Reload and resilience", .serialized)
struct ResilienceTests {
    @Test func reloadAppliesTheFileAndKeepsRuntimeChanges() throws {
        let s = try SwitchingScenario()
        let teal = try s.scenario.upstream("teal")
        // A tunnel and a keep-alive connection opened before the reload.
        let tunnel = try RawClient(port: s.proxy.port)
        tunnel.send("GET /upgrade HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        #expect(try tunnel.readResponse().status == 101)
        let kept = try RawClient(port: s.proxy.port)
        #expect(try s.servedBy(kept) == "blue")
        try s.admin("POST", "/v1/services/web/flip")           // runtime change: green active

        // The file gains a pool and a rule that uses it.
        let path = s.proxy.configPath
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "services:\n", with: "  teal: { servers: [{ name: t1, address: \(teal.address) }] }\nservices:\n")
        text = text.replacingOccurrences(of: "    standby: green\n", with: "    standby: green\n    rules: [{ header: X-Teal, value: yes, pool: teal }]\n")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let (status, body) = try s.admin("POST", "/v1/reload")
        #expect(status == 200, "\(body)")
        #expect(try s.servedBy(kept) == "green")                           // the flip survived the reload
        #expect(try s.servedBy(kept, headers: "X-Teal: yes\r\n") == "teal") // the file's new rule applies
        tunnel.send("after reload")
        while tunnel.buffer.count < 12 { guard tunnel.fill() else { break } }
        #expect(String(decoding: tunnel.buffer, as: UTF8.self) == "after reload")  // the tunnel is untouched

        // An invalid file is refused with its problems; the running configuration keeps serving.
        try (text + "bogus_key: 1\n").write(toFile: path, atomically: true, encoding: .utf8)
        let (refused, error) = try s.admin("POST", "/v1/reload")
        #expect(refused == 400)
        #expect((error["detail"] as? String)?.contains("bogus_key: unknown key") == true)
        #expect(try s.servedBy(kept, headers: "X-Teal: yes\r\n") == "teal")

        // SIGHUP reloads too; reset=true returns to the file's routing (blue active).
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        s.proxy.process.signal(SIGHUP)
        usleep(300_000)
        #expect(s.proxy.process.stderr.contains("SIGHUP: configuration reloaded"))
        #expect(try s.servedBy(kept) == "green")
        #expect(try s.admin("POST", "/v1/reload?reset=true").0 == 200)
        #expect(try s.servedBy(kept) == "blue")
    }
}
