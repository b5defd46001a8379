import Foundation
import Hummingbird
import NIOCore
import HTTPTypes
import SwitchyardConsoleAPI

/// The context of one API request: who calls, once the access middleware has looked.
public struct ConsoleContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var caller: Caller?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        caller = nil
    }

    /// Reports carry hook output; 16 MiB is far above any real one and bounds memory.
    public var maxUploadSize: Int { 16 << 20 }

    public var requestDecoder: JSONDecoder { ConsoleJSON.decoder }
    public var responseEncoder: JSONEncoder { ConsoleJSON.encoder }

    /// The caller, if allowed `permission`; else a 401 or 403 that says what is missing.
    func require(_ permission: Role.Permission) throws -> Caller {
        guard let caller else {
            throw APIError(.unauthorized, "sign in: send Authorization: Bearer TOKEN (or log in through the web console)")
        }
        guard caller.role.allows(permission) else {
            throw APIError(.forbidden, "\(caller.name) has the role \(caller.role.rawValue), which may not \(permission.rawValue); ask an admin for a token with a role that may")
        }
        return caller
    }
}

/// An API error: its status and `{"error": ..., "field": ...}`.
public struct APIError: HTTPResponseError {
    public var status: HTTPResponse.Status
    public var message: String
    public var field: String?
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ message: String, field: String? = nil) {
        self.status = status
        self.message = message
        self.field = field
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = JSONBody.response(ConsoleErrorBody(error: message, field: field), status: status)
        for field in headers { response.headers.append(field) }
        return response
    }
}

/// JSON answers in the console's encoding (snake_case, sorted keys).
enum JSONBody {
    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? ConsoleJSON.encoder.encode(value)) ?? Data(#"{"error":"the answer could not be encoded"}"#.utf8)
        return Response(status: status, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Decodes a request body, naming what was wrong in a 400.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, context: ConsoleContext, limit: Int = 1 << 20) async throws -> T {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: limit) } catch {
            throw APIError(.contentTooLarge, "the request body is larger than \(limit) bytes")
        }
        guard buffer.readableBytes > 0 else { throw APIError(.badRequest, "the request needs a JSON body") }
        do {
            return try ConsoleJSON.decoder.decode(T.self, from: Data(buffer.readableBytesView))
        } catch let DecodingError.keyNotFound(key, context) {
            throw APIError(.badRequest, "missing field \(path(context.codingPath + [key]))", field: path(context.codingPath + [key]))
        } catch let DecodingError.typeMismatch(type, context) {
            throw APIError(.badRequest, "field \(path(context.codingPath)) must be \(describe(type))", field: path(context.codingPath))
        } catch let DecodingError.valueNotFound(type, context) {
            throw APIError(.badRequest, "field \(path(context.codingPath)) must be \(describe(type)), not null", field: path(context.codingPath))
        } catch {
            throw APIError(.badRequest, "the body is not valid JSON")
        }
    }

    /// Decodes a body when there is one (by length or chunked), else nil.
    static func decodeOptional<T: Decodable>(_ type: T.Type, from request: Request, context: ConsoleContext) async throws -> T? {
        let length = request.headers[.contentLength]
        if (length == nil || length == "0") && request.headers[.transferEncoding] == nil { return nil }
        return try await decode(type, from: request, context: context)
    }

    static func path(_ keys: [any CodingKey]) -> String {
        keys.map { key in key.intValue.map { "[\($0)]" } ?? snake(key.stringValue) }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }

    static func snake(_ name: String) -> String {
        var out = ""
        for c in name {
            if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
        }
        return out
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is [String].Type: return "a list of strings"
        default: return "\(type)"
        }
    }
}

/// Header names the console uses beyond HTTPTypes' own. Built from literals that are valid
/// field names; the fallback only keeps the code free of force unwraps.
enum ConsoleHeaders {
    static let csrfToken = HTTPField.Name("X-CSRF-Token") ?? .cacheControl
    static let lastEventID = HTTPField.Name("Last-Event-ID") ?? .cacheControl
    static let accelBuffering = HTTPField.Name("X-Accel-Buffering") ?? .cacheControl
    static let contentTypeOptions = HTTPField.Name("X-Content-Type-Options") ?? .cacheControl
}
