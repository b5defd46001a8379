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
}
