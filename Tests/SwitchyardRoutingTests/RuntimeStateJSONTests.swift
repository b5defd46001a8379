import Foundation
import Testing
@testable import SwitchyardConfig
@testable import SwitchyardRouting

@Suite("Runtime state as JSON")
struct RuntimeStateJSONTests {
    func state() throws -> RuntimeState {
        let yaml = """
        listeners: [{ bind: 127.0.0.1:1 }]
        pools:
          blue: { servers: [{ name: b1, address: 127.0.0.1:2 }, { name: b2, address: 127.0.0.1:3 }] }
          green: { servers: [{ name: g1, address: 127.0.0.1:4 }] }
        services:
          web: { active: blue, standby: green, canary: { pool: green, weight: 5%, sticky: { cookie: sw } } }
        """
        var state = RuntimeState(config: try ConfigLoader.parse(yaml: yaml, file: "t"), generation: 42)
        state.servers["blue"]?["b2"] = RuntimeState.Server(weight: 0, state: .drain)
        state.servers["green"]?["g1"]?.removed = true
        // Names the file's rules would refuse, to check the escaping anyway.
        state.servers["green"]?["odd \"name\" \\ \u{1}é"] = RuntimeState.Server(weight: 7, state: .maint, address: "10.0.0.9:80")
        state.versions["blue"] = "v1.2"
        return state
    }

    @Test func whatIsWrittenReadsBackAsTheSameState() throws {
        let original = try state()
        var bytes: [UInt8] = []
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try RuntimeStateJSON.append(original, to: &bytes, encoder: encoder)
        let decoded = try JSONDecoder().decode(RuntimeState.self, from: Data(bytes))
        #expect(decoded == original)
        // Byte for byte what the encoder itself writes with sorted keys.
        #expect(String(decoding: bytes, as: UTF8.self) == String(decoding: try encoder.encode(original), as: UTF8.self))
    }

    /// Kept JSON is written again only while its pool or service is the same: after each
    /// change the bytes are still exactly the encoder's.
    @Test func keptPoolsAndServicesAreWrittenAsTheEncoderWritesThemAfterEveryChange() throws {
        var state = try state()
        for name in ["api", "Zeta", "a-b", "a.b", "a_b", "A1", "z9:x"] {
            state.services[name] = RuntimeState.Service(active: "blue", standby: "green", canary: nil, rules: [])
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let kept = RuntimeStateJSON.Kept()
        func check(_ what: String) throws {
            var bytes: [UInt8] = []
            try RuntimeStateJSON.append(state, to: &bytes, encoder: encoder, kept: kept)
            #expect(String(decoding: bytes, as: UTF8.self) == String(decoding: try encoder.encode(state), as: UTF8.self), "\(what)")
            #expect(try JSONDecoder().decode(RuntimeState.self, from: Data(bytes)) == state, "\(what)")
        }
        try check("first")
        try check("unchanged")
        state.services["api"]?.active = "green"
        try check("a flip")
        state.services["web"]?.canary = nil
        try check("a canary ended")
        state.services["Zeta"] = nil
        try check("a service gone")
        state.services["new"] = RuntimeState.Service(active: "green", canary: nil, rules: [])
        try check("a service added")
        state.services["Zeta"] = RuntimeState.Service(active: "blue", standby: "green", canary: nil, rules: [])
        try check("a service back")
        state.servers["blue"]?["b1"]?.state = .drain
        try check("a server drained")
        state.servers["blue"]?["b9"] = RuntimeState.Server(weight: 3, state: .ready, address: "10.0.0.1:80")
        try check("a server added")
        state.servers["green"] = nil
        try check("a pool gone")

        // History: arrays of services by name, the same way.
        let history = EncodedValues<[RuntimeState.Service]>()
        var entries: [String: [RuntimeState.Service]] = ["web": [state.services["web"]!], "api": []]
        for step in 0..<4 {
            var bytes: [UInt8] = []
            try history.appendObject(entries, to: &bytes, encoder: encoder)
            #expect(String(decoding: bytes, as: UTF8.self) == String(decoding: try encoder.encode(entries), as: UTF8.self), "step \(step)")
            entries["api", default: []].append(RuntimeState.Service(active: step % 2 == 0 ? "blue" : "green", canary: nil, rules: []))
        }
        var empty: [UInt8] = []
        try history.appendObject([:], to: &empty, encoder: encoder)
        #expect(String(decoding: empty, as: UTF8.self) == "{}")
    }
}
