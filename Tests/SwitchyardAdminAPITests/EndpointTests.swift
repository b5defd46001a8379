import Foundation
import Testing
import Yams
import SwitchyardAdminAPI

/// The endpoint table: the same endpoints as docs/openapi.yaml, and a router that finds them.
@Suite("Admin endpoints")
struct EndpointTests {
    /// The repository's docs directory, found from this file.
    static let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs")

    /// The operations of docs/openapi.yaml: "METHOD /path" to its operationId and summary.
    func openAPIOperations() throws -> [String: (id: String?, summary: String?)] {
        let text = try String(contentsOf: Self.docs.appendingPathComponent("openapi.yaml"), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any], "openapi.yaml is not a mapping")
        let paths = try #require(document["paths"] as? [String: Any], "openapi.yaml has no paths")
        var out: [String: (id: String?, summary: String?)] = [:]
        for (path, item) in paths {
            let operations = try #require(item as? [String: Any], "\(path) is not a mapping")
            for (method, operation) in operations where ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(method) {
                let fields = operation as? [String: Any]
                out["\(method.uppercased()) \(path)"] = (fields?["operationId"] as? String, fields?["summary"] as? String)
            }
        }
        return out
    }

    @Test func openAPIDescribesExactlyTheEndpointTable() throws {
        let documented = try openAPIOperations()
        let table = Dictionary(AdminAPI.endpoints.map { ("\($0.method) \($0.pattern)", $0) }, uniquingKeysWith: { a, _ in a })
        let missingFromDocs = Set(table.keys).subtracting(documented.keys)
        let missingFromTable = Set(documented.keys).subtracting(table.keys)
        #expect(missingFromDocs.isEmpty, "in the endpoint table but not in docs/openapi.yaml: \(missingFromDocs.sorted())")
        #expect(missingFromTable.isEmpty, "in docs/openapi.yaml but not in the endpoint table: \(missingFromTable.sorted())")
        for (key, endpoint) in table {
            guard let doc = documented[key] else { continue }
            #expect(doc.id == endpoint.id.rawValue, "\(key): operationId \(doc.id ?? "none"), table \(endpoint.id.rawValue)")
            #expect(doc.summary == endpoint.summary, "\(key): summary differs from the table's")
        }
    }

    @Test func tableListsEveryEndpointOnce() {
        #expect(AdminAPI.endpoints.map(\.id).sorted { $0.rawValue < $1.rawValue }
                == AdminEndpoint.ID.allCases.sorted { $0.rawValue < $1.rawValue })
        let keys = AdminAPI.endpoints.map { "\($0.method) \($0.pattern)" }
        #expect(Set(keys).count == keys.count, "a method and path appear twice: \(keys)")
        for id in AdminEndpoint.ID.allCases {
            #expect(AdminAPI.endpoint(id).id == id)
            #expect(!AdminAPI.endpoint(id).summary.isEmpty)
        }
    }

    @Test func routerFindsEndpointsAndTheirParameters() {
        #expect(AdminAPI.route(method: "GET", path: "/v1/status") == .endpoint(.status, parameters: [:]))
        #expect(AdminAPI.route(method: "GET", path: "/metrics") == .endpoint(.metrics, parameters: [:]))
        #expect(AdminAPI.route(method: "POST", path: "/v1/services/web/flip") == .endpoint(.flip, parameters: ["service": "web"]))
        #expect(AdminAPI.route(method: "PUT", path: "/v1/services/web/canary") == .endpoint(.setCanary, parameters: ["service": "web"]))
        #expect(AdminAPI.route(method: "PUT", path: "/v1/pools/blue/servers/b1")
                == .endpoint(.setServer, parameters: ["pool": "blue", "server": "b1"]))
        #expect(AdminAPI.route(method: "DELETE", path: "/v1/pools/blue/servers/b1")
                == .endpoint(.removeServer, parameters: ["pool": "blue", "server": "b1"]))
        #expect(AdminAPI.route(method: "POST", path: "/v1/pools/blue/servers") == .endpoint(.addServer, parameters: ["pool": "blue"]))
        #expect(AdminAPI.route(method: "DELETE", path: "/v1/lock") == .endpoint(.unlock, parameters: [:]))
        // Parameters are taken as sent; a name that looks like a literal is still a name.
        #expect(AdminAPI.route(method: "POST", path: "/v1/services/status/flip") == .endpoint(.flip, parameters: ["service": "status"]))
        #expect(AdminAPI.route(method: "POST", path: "/v1/services/a%2Fb/flip") == .endpoint(.flip, parameters: ["service": "a%2Fb"]))
        // Empty segments do not count, as before the table existed.
        #expect(AdminAPI.route(method: "GET", path: "//v1//status/") == .endpoint(.status, parameters: [:]))
    }

    @Test func unknownPathsAreNotFoundAndKnownOnesListTheirMethods() {
        for path in ["/", "", "/v1", "/v1/statuses", "/V1/status", "/v1/services/web", "/v1/services/web/flip/now",
                     "/v1/services/web/unknown", "/v1/pools/blue", "/v1/pools/blue/servers/b1/x", "/metrics/x"] {
            #expect(AdminAPI.route(method: "GET", path: path) == .notFound, "\(path)")
            #expect(AdminAPI.allowedMethods(path: path).isEmpty, "\(path)")
        }
        #expect(AdminAPI.route(method: "GET", path: "/v1/services/web/flip") == .methodNotAllowed(allowed: ["POST"]))
        #expect(AdminAPI.route(method: "TRACE", path: "/v1/status") == .methodNotAllowed(allowed: ["GET"]))
        #expect(AdminAPI.route(method: "HEAD", path: "/metrics") == .methodNotAllowed(allowed: ["GET"]))
        #expect(AdminAPI.route(method: "POST", path: "/v1/services/web/canary") == .methodNotAllowed(allowed: ["PUT"]))
        #expect(AdminAPI.route(method: "GET", path: "/v1/lock") == .methodNotAllowed(allowed: ["POST", "DELETE"]))
        #expect(AdminAPI.route(method: "POST", path: "/v1/pools/p/servers/s") == .methodNotAllowed(allowed: ["PUT", "DELETE"]))
        #expect(AdminAPI.route(method: "PUT", path: "/v1/pools/p/servers") == .methodNotAllowed(allowed: ["POST"]))
        #expect(AdminAPI.allowedMethods(path: "/v1/lock") == ["POST", "DELETE"])
        #expect(AdminAPI.allowedMethods(path: "/v1/reload") == ["POST"])
        #expect(AdminAPI.allowedMethods(path: "/v1/audit") == ["GET"])
        // Every path of the table takes exactly the methods the table gives it.
        for endpoint in AdminAPI.endpoints {
            let path = endpoint.path(endpoint.parameterNames.map { "x-\($0)" })
            let methods = AdminAPI.endpoints.filter { $0.pattern == endpoint.pattern }.map(\.method)
            #expect(AdminAPI.allowedMethods(path: path) == methods, "\(endpoint.pattern)")
        }
    }

    @Test func builtPathsRouteBackToTheirEndpoint() {
        #expect(AdminAPI.endpoint(.setServer).path("blue", "b1") == "/v1/pools/blue/servers/b1")
        #expect(AdminAPI.endpoint(.status).path() == "/v1/status")
        for endpoint in AdminAPI.endpoints {
            let values = endpoint.parameterNames.map { "\($0)-1.a:b_c~" }
            let expected = Dictionary(uniqueKeysWithValues: zip(endpoint.parameterNames, values))
            #expect(AdminAPI.route(method: endpoint.method, path: endpoint.path(values)) == .endpoint(endpoint.id, parameters: expected))
        }
        // Whatever a caller passes stays one segment: no other path, no query.
        let odd = AdminAPI.endpoint(.flip).path("a/b?c=d#e f%")
        #expect(odd == "/v1/services/a%2Fb%3Fc%3Dd%23e%20f%25/flip")
        #expect(AdminAPI.route(method: "POST", path: odd) == .endpoint(.flip, parameters: ["service": "a%2Fb%3Fc%3Dd%23e%20f%25"]))
        #expect(AdminAPI.endpoint(.flip).path("ü") == "/v1/services/%C3%BC/flip")
    }
}
