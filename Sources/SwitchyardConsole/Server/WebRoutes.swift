import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension ConsoleServer {
    /// The web console: static files embedded in the binary (no build step, nothing to install).
    func addWebRoutes(to router: Router<ConsoleContext>) {
        router.get("/") { _, _ in Self.page("index.html") }
        router.get("ui/{file}") { _, context in Self.page(context.parameters.get("file") ?? "") }
    }

    static func page(_ name: String) -> Response {
        guard let file = WebAssets.files[name] else {
            return Response(status: .notFound, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "not found\n")))
        }
        return Response(status: .ok, headers: [.contentType: file.type, .cacheControl: "no-cache",
                                               .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
                                               HTTPField.Name("X-Content-Type-Options")!: "nosniff"],
                        body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
    }
}

/// The web console's files.
enum WebAssets {
    struct File { var type: String; var bytes: [UInt8] }
    static let files: [String: File] = [
        "index.html": File(type: "text/html; charset=utf-8", bytes: Array(PackageResources.index_html)),
    ]
}
