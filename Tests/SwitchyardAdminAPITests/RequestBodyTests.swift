import Foundation
import Testing
import SwitchyardAdminAPI
import SwitchyardConfig
import SwitchyardRouting

/// Admin request bodies: every field is checked without trapping, whatever the JSON holds.
@Suite("Admin request bodies")
struct RequestBodyTests {
    func body(_ json: String) throws -> [String: Any] { try AdminBody.object(from: Array(json.utf8)) }

    /// The error `make` throws, or nil when it succeeds.
    func refused(_ make: () throws -> Void) -> AdminError? {
        do { try make(); return nil } catch { return error as? AdminError ?? AdminError(0, "not an AdminError", "\(error)") }
    }

    @Test func hugeAndOddNumbersAreRefused() throws {
        for weight in ["1e300", "-1e300", "1e20", "-0.01", "100.01", "\"99999999999999999999%\"", "\"-5%\"", "true", "\"5\"", "null"] {
            let b = try body(#"{"pool": "green", "weight": \#(weight)}"#)
            #expect(refused { _ = try AdminBody.CanaryChange(b) }?.status == 400, "weight \(weight)")
        }
        #expect(try AdminBody.CanaryChange(body(#"{"weight": 2.5}"#)).weight == 250)
        #expect(try AdminBody.CanaryChange(body(#"{"weight": "0.25%"}"#)).weight == 25)
        for weight in ["1e300", "99999999999999999999", "1001", "-1", "1.5", "\"5\"", "false"] {
            let b = try body(#"{"weight": \#(weight)}"#)
            #expect(refused { _ = try AdminBody.ServerChange(b) }?.status == 400, "server weight \(weight)")
            #expect(refused { _ = try AdminBody.NewServer(try! self.body(#"{"name": "a", "address": "127.0.0.1:1", "weight": \#(weight)}"#)) }?.status == 400)
        }
        #expect(try AdminBody.ServerChange(body(#"{"weight": 1000}"#)).weight == 1000)
        // 0 and 1 are numbers, true and false are not.
        #expect(try AdminBody.ServerChange(body(#"{"weight": 0}"#)).weight == 0)
        #expect(try AdminBody.ServerChange(body(#"{"weight": 1}"#)).weight == 1)
        #expect(refused { _ = try AdminBody.ServerChange(try self.body(#"{"weight": true}"#)) }?.status == 400)
        #expect(try AdminBody.CanaryChange(body(#"{"weight": 1}"#)).weight == 100)
        #expect(try AdminBody.CanaryChange(body(#"{"weight": 0}"#)).weight == 0)
        let guarded = try AdminBody.CanaryChange(body(#"{"weight": "5%", "guard": {"max_error_rate": "50%", "min_requests": 1}}"#))
        #expect(guarded.guardrail??.minRequests == 1)
    }

    @Test func durationsAreBounded() throws {
        for ttl in ["1e300s", "99999999999999999999h", "inf", "nan", "-5s", "0s", "1e3s", "", "10x"] {
            let b = try body(#"{"owner": "x", "ttl": "\#(ttl)"}"#)
            let error = refused { _ = try AdminBody.LockRequest(b) }
            #expect(error?.status == 400, "ttl \(ttl)")
            #expect(error?.detail.contains("ttl") == true)
        }
        #expect(try AdminBody.LockRequest(body(#"{"owner": "x", "ttl": "8784h"}"#)).ttl == .milliseconds(DurationText.maximumMilliseconds))
        #expect(try AdminBody.LockRequest(body(#"{"owner": "x"}"#)).ttl == .seconds(600))
        for window in ["1e300s", "50ms", "9999999h"] {
            let b = try body(#"{"weight": "5%", "guard": {"max_error_rate": "50%", "window": "\#(window)"}}"#)
            #expect(refused { _ = try AdminBody.CanaryChange(b) }?.status == 400, "window \(window)")
        }
        let b = try body(#"{"weight": "5%", "guard": {"max_error_rate": "50%", "min_requests": 1e300}}"#)
        #expect(refused { _ = try AdminBody.CanaryChange(b) }?.status == 400)
    }

    @Test func namesFollowTheConfigurationRules() throws {
        for name in ["a\r\nSet-Cookie: x=1", "a b", "", "a;b", "a=b", "é"] {
            let sticky = try JSONSerialization.data(withJSONObject: ["weight": "5%", "sticky": ["cookie": name]])
            let b = try AdminBody.object(from: Array(sticky))
            #expect(refused { _ = try AdminBody.CanaryChange(b) }?.status == 400, "cookie \(name.debugDescription)")
            let rule = try JSONSerialization.data(withJSONObject: ["rules": [["header": name, "value": "1", "pool": "green"]]])
            #expect(refused { _ = try AdminBody.rules(try! AdminBody.object(from: Array(rule))) }?.status == 400)
        }
        #expect(refused { _ = try AdminBody.rules(try self.body(#"{"rules": [{"header": "X", "value": "a\nb", "pool": "g"}]}"#)) }?.status == 400)
        #expect(refused { _ = try AdminBody.rules(try self.body(#"{"rules": [{"header": "X", "cookie": "c", "value": "1", "pool": "g"}]}"#)) }?.status == 400)
        #expect(refused { _ = try AdminBody.NewServer(try self.body(#"{"name": "b 3", "address": "127.0.0.1:1"}"#)) }?.status == 400)
        #expect(try AdminBody.CanaryChange(body(#"{"weight": "5%", "sticky": {"cookie": "sy-canary"}}"#)).sticky == .some(.cookie("sy-canary")))
        // The same names the configuration loader accepts.
        #expect(FieldRules.isValidFieldName("sy_canary.v2"))
        #expect(!FieldRules.isValidFieldName("a\r\n"))
    }

    @Test func bodiesMustBeSmallJSONObjects() {
        #expect(refused { _ = try AdminBody.object(from: Array("[1]".utf8)) }?.status == 400)
        #expect(refused { _ = try AdminBody.object(from: Array("{".utf8)) }?.status == 400)
        #expect(refused { _ = try AdminBody.object(from: [UInt8](repeating: 32, count: AdminBody.maxBytes + 1)) }?.status == 413)
        #expect((try? AdminBody.object(from: [])).map { $0.isEmpty } == true)
    }

    @Test func reportedLoadIgnoresWhatIsNotAPercentage() {
        #expect(ReportedLoad.parse("cpu=100000000000000000%, memory=99999999999999999999%") == ReportedLoad())
        #expect(ReportedLoad.parse("cpu=75%, memory=40.5%, weight=50%") == ReportedLoad(cpu: 0.75, memory: 0.405, weightPercent: 50))
        #expect(ReportedLoad.parse("cpu=-5%,weight=1e300%") == ReportedLoad())
        #expect(ReportedLoad.parse(nil) == ReportedLoad())
    }
}
