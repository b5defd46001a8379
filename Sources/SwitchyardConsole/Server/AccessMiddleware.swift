import Foundation
import Hummingbird
import AsyncKit
import HTTPTypes
import NIOCore
import NIOPosix
import PostgresNIO
import SQLiteNIO

/// Finds who calls: a bearer token (from the token table, or the bootstrap admin token from
/// `SWITCHYARD_CONSOLE_ADMIN_TOKEN`), a browser session cookie (whose unsafe requests must
/// carry its CSRF token), or nobody (a viewer when the operator allows anonymous reading).
/// It only identifies; each route checks the permission it needs.
struct AccessMiddleware: RouterMiddleware {
    typealias Context = ConsoleContext
    let access: AccessStore
    let bootstrapDigest: String?
    /// The token of the rollouts this instance runs itself.
    let runnerDigest: String?
    let anonymousViewer: Bool

    static let sessionCookie = "switchyard_session"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            guard header.lowercased().hasPrefix("bearer ") else { throw APIError(.unauthorized, "Authorization must be Bearer TOKEN") }
            let token = String(header.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
            context.caller = try await caller(token: token)
            guard context.caller != nil else { throw APIError(.unauthorized, "the token is not known or was revoked") }
        } else if let cookie = request.cookies[Self.sessionCookie]?.value {
            if let caller = try await access.caller(session: cookie) {
                if ![.get, .head, .options].contains(request.method) {
                    guard let sent = request.headers[ConsoleHeaders.csrfToken], sent == caller.csrf else {
                        throw APIError(.forbidden, "this request came with the session cookie but without its X-CSRF-Token header; reload the page")
                    }
                }
                context.caller = caller
            } else if anonymousViewer {
                context.caller = Caller(name: "anonymous", role: .viewer, csrf: nil)
            }
        } else if anonymousViewer {
            context.caller = Caller(name: "anonymous", role: .viewer, csrf: nil)
        }
        return try await next(request, context)
    }

    func caller(token: String) async throws -> Caller? {
        let digest = AccessStore.digest(token)
        if let bootstrapDigest, digest == bootstrapDigest { return Caller(name: "admin", role: .admin, csrf: nil) }
        if let runnerDigest, digest == runnerDigest { return Caller(name: "console-runner", role: .deployer, csrf: nil) }
        return try await access.caller(token: token)
    }
}

/// Errors that are not the API's own: the database's (refused, away, pool exhausted) become
/// a 503 that says to retry; anything else is a 500 whose details stay in the console's log.
struct UnavailableMiddleware: RouterMiddleware {
    typealias Context = ConsoleContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPResponseError {
            throw error
        } catch {
            context.logger.error("\(request.method) \(request.uri.path): \(String(reflecting: error))")
            guard Self.isDatabaseError(error) else {
                throw APIError(.internalServerError, "the console failed on this request (\(Self.summary(error))); the details are in its log")
            }
            var answer = APIError(.serviceUnavailable, "the console's database did not answer (\(Self.summary(error))); retry shortly")
            answer.headers[.retryAfter] = "2"
            throw answer
        }
    }

    static func isDatabaseError(_ error: any Error) -> Bool {
        error is PSQLError || error is SQLiteError || error is ConnectionPoolError || error is ChannelError || error is IOError
            || error is PostgresError || error is NIOConnectionError
    }

    /// A short description without connection strings.
    static func summary(_ error: any Error) -> String {
        let text = "\(error)"
        return String(text.prefix(160))
    }
}
