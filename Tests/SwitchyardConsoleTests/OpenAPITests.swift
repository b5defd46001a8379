import Foundation
import Hummingbird
import Testing
import Yams
@testable import SwitchyardConsole

/// docs/console-openapi.yaml describes exactly the routes the console registers.
@Suite struct OpenAPITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func everyRegisteredRouteIsDocumentedAndNothingElse() async throws {
        let directory = NSTemporaryDirectory() + "console-openapi-\(UUID().uuidString)"
        var configuration = ConsoleConfiguration()
        configuration.database = "sqlite:\(directory)/console.sqlite"
        configuration.dataDirectory = directory
        let server = try await ConsoleServer(configuration: configuration, environment: [:])
        let registered = Set(server.makeRouter().routes.map { route -> String in
            let path = "\(route.path)".split(separator: "/").map { part in
                part.hasPrefix(":") ? "{\(part.dropFirst())}" : String(part)
            }.joined(separator: "/")
            return "\(route.method.rawValue) /\(path)"
        })
        await server.database.shutdown()

        let text = try String(contentsOf: Self.root.appendingPathComponent("docs/console-openapi.yaml"), encoding: .utf8)
        let spec = try #require(try Yams.load(yaml: text) as? [String: Any])
        let paths = try #require(spec["paths"] as? [String: Any])
        var documented: Set<String> = []
        for (path, item) in paths {
            for method in ((item as? [String: Any]) ?? [:]).keys where ["get", "post", "put", "patch", "delete"].contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        #expect(registered.subtracting(documented).isEmpty, "registered but not documented: \(registered.subtracting(documented).sorted())")
        #expect(documented.subtracting(registered).isEmpty, "documented but not registered: \(documented.subtracting(registered).sorted())")
        #expect(registered.count > 20)
    }
}
