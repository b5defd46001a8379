import Foundation
import Testing
import SwitchyardAdminAPI

@Suite("Admin answers as JSON")
struct AdminJSONTests {
    /// What the proxy builds, and numbers read back from a JSON file (the audit trail's).
    static var sample: [String: Any] { [
        "generation": UInt64(7), "workers": 2, "ratio": 0.97, "whole": 2.0, "big": Int64(1) << 40,
        "on": true, "off": false, "none": NSNull(), "empty": [String: Any](), "nothing": [Any](),
        "text": "quote \" backslash \\ newline \n tab \t bell \u{7} é / ok",
        "services": ["web": ["active": "blue", "standby": NSNull(), "rules": [["pool": "green", "value": "always"]]]],
        "counts": [1, 2, 3], "names": ["b", "a"],
        "parsed": (try? JSONSerialization.jsonObject(with: Data(#"{"flag": true, "n": 3, "x": 1.5}"#.utf8))) ?? [:],
    ] }

    @Test func readsBackAsJSONSerializationWritesIt() throws {
        let ours = try JSONSerialization.jsonObject(with: AdminJSON.data(Self.sample)) as? NSDictionary
        let theirs = try JSONSerialization.jsonObject(with: JSONSerialization.data(withJSONObject: Self.sample, options: [.sortedKeys])) as? NSDictionary
        #expect(ours != nil && ours == theirs, "\(String(decoding: AdminJSON.data(Self.sample), as: UTF8.self))")
        let parsed = (ours?["parsed"] as? [String: Any]) ?? [:]
        #expect(String(decoding: try JSONSerialization.data(withJSONObject: parsed, options: [.sortedKeys]), as: UTF8.self)
                == #"{"flag":true,"n":3,"x":1.5}"#, "a boolean read from a file stays a boolean")
    }

    @Test func textIsSortedAndIndentedLikeJSONSerialization() {
        let text = String(decoding: AdminJSON.data(["b": ["y": 1, "x": [true]], "a": "z"] as [String: Any]), as: UTF8.self)
        #expect(text == "{\n  \"a\" : \"z\",\n  \"b\" : {\n    \"x\" : [\n      true\n    ],\n    \"y\" : 1\n  }\n}\n", "\(text)")
    }

    @Test func integersAreWrittenAsDecimalAtEveryWidth() {
        let values: [Any] = [0, 7, -7, 10, -10, 1_000_000, Int.max, Int.min, Int64.max, Int64.min, UInt64.max, UInt64(1) << 63]
        let text = String(decoding: AdminJSON.data(values), as: UTF8.self)
        let expected = "[\n" + ["0", "7", "-7", "10", "-10", "1000000", "\(Int.max)", "\(Int.min)", "\(Int64.max)", "\(Int64.min)",
                                 "\(UInt64.max)", "9223372036854775808"].map { "  " + $0 }.joined(separator: ",\n") + "\n]\n"
        #expect(text == expected, "\(text)")
    }

    @Test func stringsAreEscapedOnlyWhereJSONNeedsIt() throws {
        for text in ["plain", "", "é and 中文", "quote \" here", "back\\slash", "control \u{1} \u{1f}", "line\nbreak", "tab\tand\rreturn",
                     String(repeating: "long-name-", count: 50)] {
            let written = AdminJSON.data(["k": text])
            let back = try JSONSerialization.jsonObject(with: written) as? [String: String]
            #expect(back?["k"] == text, "\(String(decoding: written, as: UTF8.self))")
        }
        let plain = String(decoding: AdminJSON.data(["k": "é-plain"]), as: UTF8.self)
        #expect(plain == "{\n  \"k\" : \"é-plain\"\n}\n", "\(plain)")
    }
}
