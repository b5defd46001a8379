import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwitchyardConsoleAPI

extension ConsoleServer {
    /// The change feed: everything that changes (rollouts, their events, controls), as a long
    /// poll for scripts and `deploy status --watch`, and as server-sent events for the browser.
    /// Both read the feed table, so every instance on one PostgreSQL streams the same feed.
    func addFeedRoutes(to router: Router<ConsoleContext>) {
        let api = router.group("api/v1")

        api.get("events") { request, context in
            _ = try context.require(.read)
            let query = request.uri.queryParameters
            let rollout = try Self.integer(query.get("rollout"), name: "rollout", range: 1...Int.max)
            let wait = Double(try Self.integer(query.get("wait"), name: "wait", range: 0...60) ?? 0)
            struct Answer: Encodable { var events: [FeedEntry]; var last: Int }
            // Without `after`, start from now: nothing old, just where to go on from.
            guard let after = try Self.integer(query.get("after"), name: "after", range: 0...Int.max) else {
                return JSONBody.response(Answer(events: [], last: try await self.rollouts.lastFeedID()))
            }
            let deadline = Date().addingTimeInterval(wait)
            while true {
                let entries = try await self.rollouts.feed(after: after, rollout: rollout)
                if !entries.isEmpty || Date() >= deadline {
                    return JSONBody.response(Answer(events: entries, last: entries.last?.id ?? after))
                }
                try await Task.sleep(for: .milliseconds(250))
            }
        }

        api.get("events/stream") { request, context in
            _ = try context.require(.read)
            let query = request.uri.queryParameters
            let rollout = try Self.integer(query.get("rollout"), name: "rollout", range: 1...Int.max)
            var start = request.headers[ConsoleHeaders.lastEventID].flatMap { Int($0) }
            if start == nil { start = try Self.integer(query.get("after"), name: "after", range: 0...Int.max) }
            let from: Int
            if let start { from = start } else { from = try await self.rollouts.lastFeedID() }
            let store = self.rollouts
            let body = ResponseBody { writer in
                var last = from
                var quiet = 0
                try await writer.write(ByteBuffer(string: "retry: 2000\n: switchyard console feed\n\n"))
                while !Task.isCancelled {
                    let entries: [FeedEntry]
                    do { entries = try await store.feed(after: last, rollout: rollout, limit: 200) } catch {
                        // The database is away: say so as a comment and keep the stream.
                        try await writer.write(ByteBuffer(string: ": database unavailable, retrying\n\n"))
                        try await Task.sleep(for: .seconds(2))
                        continue
                    }
                    for entry in entries {
                        let data = String(decoding: (try? ConsoleJSON.encoder.encode(entry)) ?? Data("{}".utf8), as: UTF8.self)
                        try await writer.write(ByteBuffer(string: "id: \(entry.id)\nevent: \(entry.topic)\ndata: \(data)\n\n"))
                        last = entry.id
                    }
                    if entries.isEmpty {
                        quiet += 1
                        // A comment every 15 s keeps proxies and browsers from closing an idle stream.
                        if quiet % 50 == 0 { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
                        try await Task.sleep(for: .milliseconds(300))
                    } else {
                        quiet = 0
                    }
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store", ConsoleHeaders.accelBuffering: "no"], body: body)
        }
    }
}
