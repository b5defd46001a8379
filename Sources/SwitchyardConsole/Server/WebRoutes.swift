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
        guard let file = WebAssets.file(name) else {
            return Response(status: .notFound, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "not found\n")))
        }
        return Response(status: .ok, headers: [.contentType: file.type, .cacheControl: "no-cache",
                                               .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
                                               ConsoleHeaders.contentTypeOptions: "nosniff"],
                        body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
    }
}

/// The web console's files, embedded from Sources/SwitchyardConsole/Web (a flat folder). With
/// `SWITCHYARD_CONSOLE_WEB_DIR` set, they are read from that folder instead, so the UI can be
/// worked on without rebuilding the binary.
enum WebAssets {
    struct File { var type: String; var bytes: [UInt8] }

    static let developmentDirectory = ProcessInfo.processInfo.environment["SWITCHYARD_CONSOLE_WEB_DIR"]

    static func file(_ name: String) -> File? {
        guard let directory = developmentDirectory else { return files[name] }
        guard !name.contains("/"), !name.hasPrefix("."), let data = FileManager.default.contents(atPath: "\(directory)/\(name)") else { return nil }
        return File(type: type(of: name), bytes: Array(data))
    }

    static func type(of name: String) -> String {
        switch (name as NSString).pathExtension {
        case "html": return "text/html; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "js": return "text/javascript; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "json": return "application/json"
        default: return "text/plain; charset=utf-8"
        }
    }

    /// Every file of the folder: SwiftPM embeds each as `PackageResources.<name with underscores>`.
    static let files: [String: File] = {
        let embedded: [(name: String, bytes: [UInt8])] = [
            ("index.html", Array(PackageResources.index_html)),
            ("app.css", Array(PackageResources.app_css)),
            ("app.js", Array(PackageResources.app_js)),
            ("chart.js", Array(PackageResources.chart_js)),
            ("overview.js", Array(PackageResources.overview_js)),
            ("rollout.js", Array(PackageResources.rollout_js)),
            ("service.js", Array(PackageResources.service_js)),
            ("deploy.js", Array(PackageResources.deploy_js)),
            ("history.js", Array(PackageResources.history_js)),
            ("statistics.js", Array(PackageResources.statistics_js)),
            ("icon.svg", Array(PackageResources.icon_svg)),
        ]
        var out: [String: File] = [:]
        for file in embedded { out[file.name] = File(type: type(of: file.name), bytes: file.bytes) }
        return out
    }()
}
