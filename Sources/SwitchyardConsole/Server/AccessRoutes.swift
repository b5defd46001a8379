import Foundation
import Hummingbird
import HTTPTypes
import SwitchyardConsoleAPI

struct SessionBody: Decodable { var token: String }
struct TokenBody: Decodable { var name: String; var role: String }

extension ConsoleServer {
    /// Health, browser sessions, tokens and the audit trail.
    func addAccessRoutes(to router: Router<ConsoleContext>) {
        let api = router.group("api/v1")

        // For load balancers and orchestrators: no credentials, no secrets.
        api.get("health") { _, _ in
            struct Health: Encodable { var status: String; var database: String; var instance: String; var version: String }
            do {
                _ = try await self.database.sql.raw("SELECT 1 AS one").first()
                return JSONBody.response(Health(status: "ok", database: self.database.dialect.rawValue, instance: self.supervisor.instance, version: ConsoleServer.release))
            } catch {
                var answer = APIError(.serviceUnavailable, "the database does not answer: \(UnavailableMiddleware.summary(error))")
                answer.headers[.retryAfter] = "2"
                throw answer
            }
        }

        api.get("session") { _, context in
            let caller = try context.require(.read)
            struct Session: Encodable { var actor: String; var role: String; var csrfToken: String?; var permissions: [String] }
            let permissions = [Role.Permission.read, .deploy, .control, .approve, .administer].filter { caller.role.allows($0) }.map(\.rawValue)
            return JSONBody.response(Session(actor: caller.name, role: caller.role.rawValue, csrfToken: caller.csrf, permissions: permissions))
        }

        // Logs in with a token: the answer sets an HttpOnly, SameSite=Strict cookie and carries
        // the CSRF token that unsafe requests of the session must send back.
        api.post("session") { request, context in
            let body = try await JSONBody.decode(SessionBody.self, from: request, context: context, limit: 4096)
            let middleware = AccessMiddleware(access: self.access, bootstrapDigest: self.bootstrapDigest, runnerDigest: nil, anonymousViewer: false)
            guard let caller = try await middleware.caller(token: body.token.trimmingCharacters(in: .whitespaces)) else {
                throw APIError(.unauthorized, "the token is not known or was revoked", field: "token")
            }
            let lifetime = self.configuration.sessionLifetime.seconds
            let (cookie, csrf) = try await self.access.openSession(for: caller, lifetime: lifetime)
            try await self.access.audit(caller, action: "login", target: "session", detail: nil, outcome: "ok")
            struct Session: Encodable { var actor: String; var role: String; var csrfToken: String }
            var response = JSONBody.response(Session(actor: caller.name, role: caller.role.rawValue, csrfToken: csrf))
            let secure = self.configuration.tlsCertificate != nil ? "; Secure" : ""
            response.headers[.setCookie] = "\(AccessMiddleware.sessionCookie)=\(cookie); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(Int(lifetime))\(secure)"
            return response
        }

        api.delete("session") { request, context in
            if let cookie = request.cookies[AccessMiddleware.sessionCookie]?.value { try await self.access.closeSession(cookie: cookie) }
            var response = Response(status: .noContent)
            response.headers[.setCookie] = "\(AccessMiddleware.sessionCookie)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
            return response
        }

        api.get("tokens") { _, context in
            _ = try context.require(.administer)
            return JSONBody.response(["tokens": try await self.access.tokens()])
        }

        // The secret is in this answer only; the console keeps its SHA-256.
        api.post("tokens") { request, context in
            let caller = try context.require(.administer)
            let body = try await JSONBody.decode(TokenBody.self, from: request, context: context, limit: 4096)
            guard Self.isName(body.name) else { throw APIError(.badRequest, "name must be 1 to 100 letters, digits or - _ .", field: "name") }
            guard !AccessStore.reservedNames.contains(body.name) else {
                throw APIError(.badRequest, "\(body.name) is the name of one of the console's own callers; choose another", field: "name")
            }
            guard let role = Role(rawValue: body.role) else {
                throw APIError(.badRequest, "role must be one of \(Role.allCases.map(\.rawValue).joined(separator: ", "))", field: "role")
            }
            guard !(try await self.access.tokenExists(name: body.name)) else { throw APIError(.conflict, "a token named \(body.name) exists (names stay taken after a revoke, so the audit trail stays clear); choose another name", field: "name") }
            let secret = try await self.access.createToken(name: body.name, role: role, by: caller.name)
            try await self.access.audit(caller, action: "create token", target: "token/\(body.name)", detail: role.rawValue, outcome: "ok")
            struct Created: Encodable { var name: String; var role: String; var token: String }
            return JSONBody.response(Created(name: body.name, role: role.rawValue, token: secret), status: .created)
        }

        api.delete("tokens/{name}") { _, context in
            let caller = try context.require(.administer)
            let name = context.parameters.get("name") ?? ""
            guard try await self.access.revokeToken(name: name) else { throw APIError(.notFound, "no live token named \(name.prefix(100))") }
            try await self.access.audit(caller, action: "revoke token", target: "token/\(name)", detail: nil, outcome: "ok")
            return Response(status: .noContent)
        }

        api.get("audit") { request, context in
            _ = try context.require(.read)
            let query = request.uri.queryParameters
            let limit = try Self.integer(query.get("limit"), name: "limit", range: 1...5000) ?? 200
            return JSONBody.response(["audit": try await self.access.auditTrail(target: query.get("target"), limit: limit)])
        }
    }

    /// The console's release, as `switchyard version` prints it.
    nonisolated(unsafe) public static var release = "dev"
}
