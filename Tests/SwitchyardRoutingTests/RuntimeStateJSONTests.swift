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
        #expect(bytes == Array(try encoder.encode(original)), "\(String(decoding: bytes, as: UTF8.self))")
    }

    /// A pool's kept JSON is written again only while its servers are the same: after each
    /// change the bytes are still exactly the encoder's.
    @Test func keptPoolsAreWrittenAsTheEncoderWritesThemAfterEveryChange() throws {
        var state = try state()
        state.servers["green"]?["odd \"name\" \\ \u{1}é"] = nil // kept JSON is for checked (ASCII) names
        for name in ["api", "Zeta", "a-b", "a.b", "a_b", "A1", "z9:x"] {
            state.servers[name] = ["s1": RuntimeState.Server(weight: 1, state: .ready)]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let kept = RuntimeStateJSON.Kept()
        func check(_ what: String) throws {
            var bytes: [UInt8] = []
            try RuntimeStateJSON.append(state, to: &bytes, encoder: encoder, kept: kept)
            #expect(bytes == Array(try encoder.encode(state)), "\(what): \(String(decoding: bytes, as: UTF8.self))")
            #expect(try JSONDecoder().decode(RuntimeState.self, from: Data(bytes)) == state, "\(what)")
        }
        try check("first")
        try check("unchanged")
        state.servers["blue"]?["b1"]?.state = .drain
        try check("a server drained")
        state.servers["blue"]?["b1"]?.weight = 0
        try check("a weight")
        state.servers["blue"]?["b9"] = RuntimeState.Server(weight: 3, state: .ready, address: "10.0.0.1:80")
        try check("a server added")
        state.servers["blue"]?["b9"]?.removed = true
        try check("a server removed")
        state.servers["Zeta"] = nil
        try check("a pool gone")
        state.servers["Zeta"] = ["s1": RuntimeState.Server(weight: 2, state: .maint)]
        try check("a pool back, different")
        state.services["web"]?.active = "green"
        try check("a flip")
    }
}
