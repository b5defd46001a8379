import Foundation
import SwitchyardConfig
import SwitchyardRouting

/// The admin API's request bodies, decoded from JSON and validated with the same field rules
/// as the configuration file. Everything here is pure: it sees bytes and returns typed
/// requests or an `AdminError` (400) that names the field and says what to write.
public enum AdminBody {
    /// The largest body the admin API reads.
    public static let maxBytes = 64 * 1024

    /// A JSON object; an empty body is an empty object.
    public static func object(from bytes: [UInt8]) throws(AdminError) -> [String: Any] {
        if bytes.isEmpty { return [:] }
        guard bytes.count <= maxBytes else {
            throw AdminError(413, "body too large", "admin request bodies are at most \(maxBytes) bytes")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)), let dict = object as? [String: Any] else {
            throw AdminError(400, "invalid JSON", "the body must be a JSON object")
        }
        return dict
    }

    // MARK: Field types

    /// A JSON number that is not `true` or `false`. (Foundation bridges 0 and 1 to Bool, so
    /// `is Bool` cannot tell them apart; the boxed type can.)
    static func number(_ value: Any?) -> NSNumber? {
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else { return nil }
        return number
    }

    /// A whole number within `range` (JSON numbers only: no strings, booleans or fractions).
    public static func wholeNumber(_ value: Any?, _ range: ClosedRange<Int>) -> Int? {
        guard let number = number(value) else { return nil }
        let d = number.doubleValue
        // Compared as doubles first, so that no conversion below can trap.
        guard d.isFinite, d == d.rounded(), d >= Double(range.lowerBound), d <= Double(range.upperBound) else { return nil }
        return Int(d)
    }

    /// A canary weight: "5%", "0.25%", or a number of percent (5, 0.25); basis points.
    public static func weight(_ value: Any?) throws(AdminError) -> Int {
        if let text = value as? String, let bp = BasisPoints.parse(text) { return bp }
        if let number = number(value) {
            let percent = number.doubleValue
            if percent.isFinite, percent >= 0, percent <= 100 {
                let bp = Int((percent * 100).rounded())
                if (0...BasisPoints.whole).contains(bp) { return bp }
            }
        }
        throw AdminError(400, "invalid weight", "weight is a percentage from 0% to 100% in 0.01% steps, e.g. \"5%\" or \"0.25%\"; 0 removes the canary")
    }

    /// A duration such as "30s" of at least `minimumMilliseconds`.
    public static func duration(_ value: Any?, field: String, minimumMilliseconds: Int64, example: String) throws(AdminError) -> Duration {
        guard let text = value as? String else {
            throw AdminError(400, "invalid \(field)", "\(field) is a duration such as \(example)")
        }
        if DurationText.isTooLong(text) {
            throw AdminError(400, "invalid \(field)", "\(field) \"\(text)\" is too long; the longest duration accepted is \(DurationText.maximumDescription)")
        }
        guard let d = DurationText.parse(text), d.milliseconds >= minimumMilliseconds else {
            throw AdminError(400, "invalid \(field)", "\(field) is a duration of at least \(minimumMilliseconds)ms such as \(example)")
        }
        return d
    }

    static func name(_ value: Any?, field: String) throws(AdminError) -> String {
        guard let text = value as? String, FieldRules.isValidName(text) else {
            throw AdminError(400, "invalid \(field)", "\(field) uses \(FieldRules.nameRule)")
        }
        return text
    }

    static func serverState(_ value: Any?) throws(AdminError) -> ServerState {
        guard let text = value as? String, let state = ServerState(rawValue: text) else {
            throw AdminError(400, "invalid state", "state must be ready, drain or maint")
        }
        return state
    }

    // MARK: Requests

    /// `PUT /v1/services/S/canary`.
    public struct CanaryChange {
        /// Absent: keep the current canary pool.
        public var pool: String?
        public var weight: Int
        /// `nil`: keep the current sticky setting; `.some(nil)`: none; otherwise the new key.
        public var sticky: StickyKey??
        /// `nil`: keep the current guard; `.some(nil)`: disarm; otherwise the new guard.
        public var guardrail: CanaryGuard??

        public init(_ body: [String: Any]) throws(AdminError) {
            weight = try AdminBody.weight(body["weight"])
            sticky = try Self.sticky(body)
            guardrail = try Self.guardrail(body)
            if let p = body["pool"] { pool = try AdminBody.name(p, field: "pool") }
        }

        static func sticky(_ body: [String: Any]) throws(AdminError) -> StickyKey?? {
            guard body.keys.contains("sticky") else { return nil }
            if body["sticky"] is NSNull { return .some(nil) }
            let usage = "sticky is {\"cookie\": NAME}, {\"header\": NAME}, {\"client_ip\": true} or null; names use \(FieldRules.fieldNameRule)"
            guard let s = body["sticky"] as? [String: Any], s.count == 1 else { throw AdminError(400, "invalid sticky", usage) }
            if let name = s["cookie"] as? String, FieldRules.isValidFieldName(name) { return .some(.cookie(name)) }
            if let name = s["header"] as? String, FieldRules.isValidFieldName(name) { return .some(.header(name)) }
            if s["client_ip"] as? Bool == true { return .some(.clientIP) }
            throw AdminError(400, "invalid sticky", usage)
        }

        static func guardrail(_ body: [String: Any]) throws(AdminError) -> CanaryGuard?? {
            guard body.keys.contains("guard") else { return nil }
            if body["guard"] is NSNull { return .some(nil) }
            let usage = "guard is {\"max_error_rate\": \"20%\", \"min_requests\": 20, \"window\": \"10s\"} or null"
            guard let g = body["guard"] as? [String: Any], Set(g.keys).isSubset(of: ["max_error_rate", "min_requests", "window"]) else {
                throw AdminError(400, "invalid guard", usage)
            }
            guard let rateText = g["max_error_rate"] as? String, let rate = BasisPoints.parse(rateText), rate > 0 else {
                throw AdminError(400, "invalid guard", "max_error_rate is a percentage above 0%; \(usage)")
            }
            var result = CanaryGuard(maxErrorRate: rate, minRequests: CanaryGuard.defaultMinRequests,
                                     windowMilliseconds: CanaryGuard.defaultWindowMilliseconds)
            if let m = g["min_requests"] {
                guard let n = AdminBody.wholeNumber(m, 1...1_000_000) else {
                    throw AdminError(400, "invalid guard", "min_requests is a whole number from 1 to 1000000; \(usage)")
                }
                result.minRequests = n
            }
            if let w = g["window"] {
                do throws(AdminError) {
                    result.windowMilliseconds = try AdminBody.duration(w, field: "window", minimumMilliseconds: 100, example: "10s").milliseconds
                } catch {
                    throw AdminError(400, "invalid guard", "\(error.detail); \(usage)")
                }
            }
            return .some(result)
        }
    }

    /// `PUT /v1/services/S/rules`.
    public static func rules(_ body: [String: Any]) throws(AdminError) -> [RouteRule] {
        let usage = "rules is a list of {\"header\"|\"cookie\": NAME, \"value\": V, \"pool\": P}"
        guard let items = body["rules"] as? [[String: Any]] else { throw AdminError(400, "invalid rules", usage) }
        var rules: [RouteRule] = []
        for (i, item) in items.enumerated() {
            guard let v = item["value"] as? String, FieldRules.isValidFieldValue(v) else {
                throw AdminError(400, "invalid rule", "rules[\(i)].value: give the value to match, \(FieldRules.fieldValueRule)")
            }
            let pool = try name(item["pool"], field: "rules[\(i)].pool")
            let header = item["header"], cookie = item["cookie"]
            guard (header == nil) != (cookie == nil) else {
                throw AdminError(400, "invalid rule", "rules[\(i)]: give exactly one of header or cookie")
            }
            guard let n = (header ?? cookie) as? String, FieldRules.isValidFieldName(n) else {
                throw AdminError(400, "invalid rule", "rules[\(i)].\(header != nil ? "header" : "cookie"): names use \(FieldRules.fieldNameRule)")
            }
            rules.append(RouteRule(kind: header != nil ? .header : .cookie, name: n, value: v, pool: pool))
        }
        return rules
    }

    /// `POST /v1/services/S/flip`: the pool to make active, or nil for the standby.
    public static func flipTarget(_ body: [String: Any]) throws(AdminError) -> String? {
        guard let to = body["to"] else { return nil }
        return try name(to, field: "to")
    }

    /// `PUT /v1/pools/P/servers/S`.
    public struct ServerChange {
        public var weight: Int?
        public var state: ServerState?

        public init(_ body: [String: Any]) throws(AdminError) {
            if let w = body["weight"] {
                guard let n = AdminBody.wholeNumber(w, 0...ServerConfig.maxWeight) else {
                    throw AdminError(400, "invalid weight", "weight must be a whole number from 0 to \(ServerConfig.maxWeight)")
                }
                weight = n
            }
            if let s = body["state"] { state = try AdminBody.serverState(s) }
            if weight == nil && state == nil { throw AdminError(400, "nothing to change", "give weight and/or state") }
        }
    }

    /// `POST /v1/pools/P/servers`.
    public struct NewServer {
        public var name: String
        public var address: SocketAddress
        public var weight: Int
        public var state: ServerState

        public init(_ body: [String: Any]) throws(AdminError) {
            guard body["name"] != nil, let addressText = body["address"] as? String else {
                throw AdminError(400, "missing fields", "give name and address: {\"name\": \"b3\", \"address\": \"10.0.0.3:8000\", \"weight\": 100}")
            }
            name = try AdminBody.name(body["name"], field: "name")
            guard let parsed = SocketAddress(parsing: addressText) else {
                throw AdminError(400, "invalid address", "\"\(addressText)\" is not IPv4:port, [IPv6]:port or localhost:port")
            }
            address = parsed
            weight = 100
            if let w = body["weight"] {
                guard let n = AdminBody.wholeNumber(w, 0...ServerConfig.maxWeight) else {
                    throw AdminError(400, "weight out of range", "weight must be a whole number from 0 to \(ServerConfig.maxWeight)")
                }
                weight = n
            }
            state = try body["state"].map { (s: Any) throws(AdminError) in try AdminBody.serverState(s) } ?? .ready
        }
    }

    /// `PUT /v1/pools/P/version`: the version label, or nil to clear it (`""` or `null`).
    public static func poolVersion(_ body: [String: Any]) throws(AdminError) -> String? {
        let usage = "give {\"version\": \"v2.4.1\"}: \(FieldRules.versionRule); \"\" or null clears the label"
        guard let value = body["version"] else { throw AdminError(400, "missing version", usage) }
        if value is NSNull { return nil }
        guard let text = value as? String else { throw AdminError(400, "invalid version", usage) }
        if text.isEmpty { return nil }
        guard FieldRules.isValidVersion(text) else {
            throw AdminError(400, "invalid version", "version \"\(text.prefix(140))\" is not a valid label; \(usage)")
        }
        return text
    }

    /// `POST /v1/lock`.
    public struct LockRequest {
        public var owner: String
        public var reason: String
        public var ttl: Duration
        /// The service to lock; nil for the proxy-wide lock.
        public var service: String?

        public init(_ body: [String: Any]) throws(AdminError) {
            guard let owner = body["owner"] as? String, !owner.isEmpty, owner.utf8.count <= 256 else {
                throw AdminError(400, "missing owner", "give the owner: {\"owner\": \"deploy-42\", \"ttl\": \"10m\", \"reason\": \"...\"}")
            }
            self.owner = owner
            guard let reason = (body["reason"] ?? "") as? String, reason.utf8.count <= 4096 else {
                throw AdminError(400, "invalid reason", "reason is text of at most 4096 bytes")
            }
            self.reason = reason
            ttl = try AdminBody.duration(body["ttl"] ?? "10m", field: "ttl", minimumMilliseconds: 1, example: "30s, 10m or 1h")
            if let s = body["service"], !(s is NSNull) {
                // Service names are checked against the configuration (404 for an unknown one).
                guard let name = s as? String, !name.isEmpty, name.utf8.count <= 256 else {
                    throw AdminError(400, "invalid service", "service is the name of a configured service, or null for the proxy-wide lock")
                }
                service = name
            }
        }
    }
}
