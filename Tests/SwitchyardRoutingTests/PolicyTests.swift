import Testing
import Foundation
import SwitchyardConfig
import SwitchyardHTTP
@testable import SwitchyardRouting

@Suite("Retry policy")
struct RetryPolicyTests {
    func attempt(_ method: HTTPMethod, reused: Bool = true, resent: Bool = false, wrote: Bool = true, committed: Bool = false,
                 complete: Bool = true, partial: Bool = false, attempts: Int = 1, retries: Int = 2, inTime: Bool = true) -> RetryPolicy.Attempt {
        RetryPolicy.Attempt(method: method, attempts: attempts, retries: retries, withinDeadline: inTime, reusedConnection: reused,
                            alreadyResent: resent, wroteRequest: wrote, requestBytesCommitted: committed, requestComplete: complete,
                            partialResponse: partial)
    }

    @Test func aWrittenNonIdempotentRequestIsNeverSentAgain() {
        for method in [HTTPMethod.post, .patch, .other] {
            #expect(RetryPolicy.afterConnectionLost(attempt(method)) == .fail)
            #expect(RetryPolicy.afterConnectionLost(attempt(method, reused: false)) == .fail)
            // Nothing of it written yet: the server cannot have acted on it.
            #expect(RetryPolicy.afterConnectionLost(attempt(method, wrote: false)) == .resendOnFreshConnection)
        }
    }

    @Test func idempotentRequestsAreResentOnceThenTriedElsewhere() {
        #expect(RetryPolicy.afterConnectionLost(attempt(.get)) == .resendOnFreshConnection)
        #expect(RetryPolicy.afterConnectionLost(attempt(.put, resent: true)) == .tryAnotherServer)
        #expect(RetryPolicy.afterConnectionLost(attempt(.get, reused: false, attempts: 3, retries: 2)) == .fail)
        #expect(RetryPolicy.afterConnectionLost(attempt(.get, reused: false, inTime: false)) == .fail)
        #expect(RetryPolicy.afterConnectionLost(attempt(.get, reused: false, complete: false)) == .fail)
    }

    @Test func partialAnswersAndStreamedBodiesAreNeverRetried() {
        #expect(RetryPolicy.afterConnectionLost(attempt(.get, partial: true)) == .fail)
        #expect(RetryPolicy.afterConnectionLost(attempt(.put, committed: true)) == .fail)
    }

    @Test func connectFailuresMayGoToAnotherServerForAnyMethod() {
        #expect(RetryPolicy.afterConnectFailure(attempts: 1, retries: 2, withinDeadline: true) == .tryAnotherServer)
        #expect(RetryPolicy.afterConnectFailure(attempts: 3, retries: 2, withinDeadline: true) == .fail)
        #expect(RetryPolicy.afterConnectFailure(attempts: 1, retries: 2, withinDeadline: false) == .fail)
    }
}

@Suite("Weight scaling")
struct WeightScalingTests {
    @Test func slowStartRampsFromTenPercentToTheFullWeight() {
        #expect(WeightScaling.slowStartPercent(elapsedMs: 0, durationMs: 10_000) == 10)
        #expect(WeightScaling.slowStartPercent(elapsedMs: 5_000, durationMs: 10_000) == 50)
        #expect(WeightScaling.slowStartPercent(elapsedMs: 10_000, durationMs: 10_000) == nil)
        #expect(WeightScaling.slowStartPercent(elapsedMs: 5, durationMs: 0) == nil)
        #expect(WeightScaling.slowStartPercent(elapsedMs: -5, durationMs: 100) == 10)
    }

    @Test func reportedLoadScalesTheWeight() {
        #expect(WeightScaling.loadPercent(ReportedLoad(weightPercent: 30), overloadCPU: 0.9) == 30)
        #expect(WeightScaling.loadPercent(ReportedLoad(cpu: 0.95), overloadCPU: 0.9) == 50)
        #expect(WeightScaling.loadPercent(ReportedLoad(cpu: 0.5), overloadCPU: 0.9) == 100)
        #expect(WeightScaling.combined(ramp: 50, load: 50) == 25)
        #expect(WeightScaling.combined(ramp: nil, load: 50) == 50)
    }
}

@Suite("Deploy lock rules")
struct LockRulesTests {
    let now = Date(timeIntervalSince1970: 1_000_000)

    func lock(_ service: String?, _ token: String, owner: String = "o", seconds: Double = 60) -> LockInfo {
        LockInfo(owner: owner, reason: "r", token: token, since: now, expires: now.addingTimeInterval(seconds), service: service)
    }

    func taken(_ locks: LockSet, _ service: String?, token: String? = nil, newToken: String, owner: String = "o",
               at time: Date? = nil) -> Result<LockSet, LockRules.Refusal> {
        LockRules.take(locks, service: service, owner: owner, reason: "r", ttlMilliseconds: 60_000, token: token,
                       newToken: newToken, at: time ?? now)
    }

    @Test func aLockAdmitsOnlyItsTokenUntilItExpires() throws {
        let locks = try taken(LockSet(), nil, newToken: "t1", owner: "ci").get()
        let lock = try #require(locks.proxyWide)
        #expect(lock.token == "t1" && lock.owner == "ci" && lock.expires == now.addingTimeInterval(60))
        #expect(LockRules.admits(lock, token: "t1", at: now))
        #expect(!LockRules.admits(lock, token: nil, at: now))
        #expect(!LockRules.admits(lock, token: "other", at: now))
        #expect(LockRules.admits(lock, token: nil, at: now.addingTimeInterval(60))) // expired
        #expect(LockRules.current(lock, at: now.addingTimeInterval(61)) == nil)
        #expect(LockRules.live(locks, at: now.addingTimeInterval(61)).isEmpty)
    }

    @Test func renewalKeepsTokenAndStartOthersAreRefused() throws {
        let held = LockSet([lock(nil, "t1", owner: "ci")])
        let later = now.addingTimeInterval(30)
        let renewed = try #require(try taken(held, nil, token: "t1", newToken: "x", owner: "ci", at: later).get().proxyWide)
        #expect(renewed.token == "t1" && renewed.since == now && renewed.expires == later.addingTimeInterval(60))
        #expect(taken(held, nil, newToken: "t2", owner: "b", at: later) == .failure(.heldByAnother(lock(nil, "t1", owner: "ci"))))
        // Once expired, anyone may take it.
        let afterwards = try #require(try taken(held, nil, newToken: "t2", owner: "b", at: now.addingTimeInterval(61)).get().proxyWide)
        #expect(afterwards.token == "t2" && afterwards.owner == "b")
    }

    @Test func serviceLocksAreIndependent() throws {
        // Two owners lock two services at once, each with its own token.
        var locks = try taken(LockSet(), "a", newToken: "ta", owner: "deploy-a").get()
        locks = try taken(locks, "b", newToken: "tb", owner: "deploy-b").get()
        #expect(locks.serviceLocks.map(\.service) == ["a", "b"])
        #expect(locks.lock(service: "a")?.token == "ta" && locks.lock(service: "b")?.token == "tb")
        // Each covers its own service only.
        #expect(LockRules.blocking(locks, scope: .service("a"), token: "ta", at: now) == nil)
        #expect(LockRules.blocking(locks, scope: .service("a"), token: "tb", at: now)?.service == "a")
        #expect(LockRules.blocking(locks, scope: .service("b"), token: "tb", at: now) == nil)
        #expect(LockRules.blocking(locks, scope: .service("c"), token: nil, at: now) == nil)
        // A pool both services route to is covered by both locks: no single token passes.
        #expect(LockRules.blocking(locks, scope: .services(["a", "b"]), token: "ta", at: now)?.service == "b")
        #expect(LockRules.blocking(locks, scope: .services(["a", "b"]), token: "tb", at: now)?.service == "a")
        // A pool no service routes to is covered only by the proxy-wide lock.
        #expect(LockRules.blocking(locks, scope: .services([]), token: nil, at: now) == nil)
        // A reload is covered by every lock.
        #expect(LockRules.blocking(locks, scope: .proxy, token: "ta", at: now)?.service == "b")
        #expect(LockRules.blocking(LockSet([lock("a", "ta")]), scope: .proxy, token: "ta", at: now) == nil)
        // Someone else cannot take a held service lock; its holder renews it.
        #expect(taken(locks, "a", newToken: "x", owner: "intruder") == .failure(.heldByAnother(lock("a", "ta", owner: "deploy-a"))))
        let renewed = try taken(locks, "a", token: "ta", newToken: "x", owner: "deploy-a", at: now.addingTimeInterval(10)).get()
        #expect(renewed.lock(service: "a")?.expires == now.addingTimeInterval(70) && renewed.lock(service: "a")?.token == "ta")
        #expect(renewed.lock(service: "b") == locks.lock(service: "b"))
        // A token renews its own lock only.
        #expect(taken(locks, "b", token: "ta", newToken: "x") == .failure(.tokenOfAnotherLock(lock("a", "ta", owner: "deploy-a"))))
        #expect(taken(locks, "c", token: "ta", newToken: "x") == .failure(.tokenOfAnotherLock(lock("a", "ta", owner: "deploy-a"))))
    }

    @Test func theProxyWideLockAndServiceLocksExcludeEachOther() throws {
        let services = LockSet([lock("a", "ta"), lock("b", "tb", seconds: 10)])
        #expect(taken(services, nil, newToken: "tp", owner: "ops") == .failure(.blockedBy([lock("a", "ta"), lock("b", "tb", seconds: 10)])))
        // Once the service locks are gone (released or expired), it can be taken...
        #expect(taken(services, nil, newToken: "tp", at: now.addingTimeInterval(61)).map(\.locks.count) == .success(1))
        let proxyWide = try taken(LockSet(), nil, newToken: "tp", owner: "ops").get()
        // ...and then it blocks every change, and every new service lock.
        #expect(LockRules.blocking(proxyWide, scope: .service("a"), token: nil, at: now)?.service == nil)
        #expect(LockRules.blocking(proxyWide, scope: .services([]), token: nil, at: now) != nil)
        #expect(LockRules.blocking(proxyWide, scope: .proxy, token: "tp", at: now) == nil)
        #expect(LockRules.blocking(proxyWide, scope: .service("a"), token: "tp", at: now) == nil)
        #expect(taken(proxyWide, "a", newToken: "ta") == .failure(.blockedBy([lock(nil, "tp", owner: "ops")])))
        #expect(taken(proxyWide, "a", token: "tp", newToken: "ta") == .failure(.tokenOfAnotherLock(lock(nil, "tp", owner: "ops"))))
    }

    @Test func releaseByTokenOrByForce() throws {
        let locks = LockSet([lock("a", "ta"), lock("b", "tb")])
        // The token's own lock, whatever its scope; a wrong service name is refused.
        let released = try LockRules.release(locks, service: nil, token: "ta", force: false, at: now).get()
        #expect(released.released.service == "a" && !released.broken && released.locks.locks == [lock("b", "tb")])
        #expect(try LockRules.release(locks, service: "a", token: "ta", force: false, at: now).get().released.service == "a")
        #expect(LockRules.release(locks, service: "b", token: "ta", force: false, at: now) == .failure(.heldByAnother(lock("b", "tb"))))
        // Without the token: refused, unless forced (then recorded as broken).
        #expect(LockRules.release(locks, service: "b", token: nil, force: false, at: now) == .failure(.heldByAnother(lock("b", "tb"))))
        let broken = try LockRules.release(locks, service: "b", token: nil, force: true, at: now).get()
        #expect(broken.released.service == "b" && broken.broken && broken.locks.locks == [lock("a", "ta")])
        // Nothing to release: the proxy-wide lock is not held (the service locks are listed), nor is c's.
        #expect(LockRules.release(locks, service: nil, token: nil, force: true, at: now) == .failure(.notLocked(service: nil, held: locks.locks)))
        #expect(LockRules.release(locks, service: "c", token: nil, force: true, at: now) == .failure(.notLocked(service: "c", held: locks.locks)))
        #expect(LockRules.release(locks, service: "a", token: nil, force: true, at: now.addingTimeInterval(61))
                == .failure(.notLocked(service: "a", held: [])))
    }

    @Test func aPoolIsCoveredByTheServicesThatRouteToIt() throws {
        let config = try ConfigLoader.parse(yaml: """
            listeners: [{ bind: 127.0.0.1:8080 }]
            pools:
              a-blue: { servers: [{ address: 127.0.0.1:9001 }] }
              a-green: { servers: [{ address: 127.0.0.1:9002 }] }
              b-blue: { servers: [{ address: 127.0.0.1:9003 }] }
              shared: { servers: [{ address: 127.0.0.1:9004 }] }
              spare: { servers: [{ address: 127.0.0.1:9005 }] }
            services:
              a: { active: a-blue, standby: a-green, match: { hosts: [a.test] }, rules: [{ header: X-Beta, value: "1", pool: shared }] }
              b: { active: b-blue, canary: { pool: shared, weight: 5% }, match: { hosts: [b.test] } }
            """, file: "t")
        let state = RuntimeState(config: config)
        #expect(LockScope.pool("a-blue", in: state) == .services(["a"]))
        #expect(LockScope.pool("a-green", in: state) == .services(["a"]))   // a standby belongs to its service
        #expect(LockScope.pool("shared", in: state) == .services(["a", "b"])) // a rule and a canary
        #expect(LockScope.pool("spare", in: state) == .services([]))
    }

    @Test func oldStateFilesKeepTheirLockProxyWide() throws {
        let old = #"{"owner": "ci", "reason": "r", "token": "t", "since": "2026-01-01T00:00:00Z", "expires": "2026-01-01T00:10:00Z"}"#
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let lock = try decoder.decode(LockInfo.self, from: Data(old.utf8))
        #expect(lock.service == nil && lock.covers(.service("anything")) && lock.covers(.proxy))
    }
}

@Suite("Sticky cookie")
struct StickyCookieTests {
    @Test func theLongestAllowedNameFits() {
        let name = [UInt8](repeating: UInt8(ascii: "c"), count: FieldRules.maxFieldNameBytes)
        let out = UnsafeMutablePointer<UInt8>.allocate(capacity: StickyCookie.maxLineLength)
        defer { out.deallocate() }
        let value = UnsafeMutablePointer<UInt8>.allocate(capacity: StickyCookie.valueLength)
        defer { value.deallocate() }
        StickyCookie.writeValue(0xABCD, into: value)
        let n = StickyCookie.writeSetCookieLine(name: name, value: UnsafeBufferPointer(start: value, count: StickyCookie.valueLength),
                                                into: out, capacity: StickyCookie.maxLineLength)
        #expect(n == StickyCookie.maxLineLength)
        let line = String(decoding: UnsafeBufferPointer(start: out, count: n), as: UTF8.self)
        #expect(line.hasPrefix("Set-Cookie: ccc") && line.contains("=000000000000abcd; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax\r\n"))
    }
}

@Suite("Outlier detection")
struct OutlierDetectorTests {
    func checked(_ weights: [Int]) -> PoolSnapshot {
        var c = OutlierDetectionConfig()
        c.consecutiveFailures = 3
        c.baseEjectionTime = .seconds(10)
        c.maxEjectionPercent = 50
        var p = pool(weights)
        p.outlierDetection = c
        return p
    }

    @Test func consecutiveFailuresEjectForLongerEachTime() {
        var d = OutlierDetector()
        d.grow(to: 4)
        let p = checked([1, 1, 1, 1])
        #expect(d.record(serverID: 1, failed: true, pool: p, now: 0) == nil)
        #expect(d.record(serverID: 1, failed: true, pool: p, now: 0) == nil)
        #expect(d.record(serverID: 1, failed: false, pool: p, now: 0) == nil) // a success resets the count
        for _ in 0..<2 { _ = d.record(serverID: 1, failed: true, pool: p, now: 0) }
        #expect(d.record(serverID: 1, failed: true, pool: p, now: 0) == 10_000)
        #expect(d.isEjected(1))
        #expect(d.returnDue(now: 9_999).isEmpty)
        #expect(d.returnDue(now: 10_000) == [1])
        for _ in 0..<2 { _ = d.record(serverID: 1, failed: true, pool: p, now: 20_000) }
        #expect(d.record(serverID: 1, failed: true, pool: p, now: 20_000) == 20_000) // second in a row: twice as long
    }

    @Test func neverMoreThanTheShareOfAPoolButAlwaysOne() {
        var d = OutlierDetector()
        d.grow(to: 4)
        let p = checked([1, 1, 1, 1])
        for id in 0..<4 { for _ in 0..<3 { _ = d.record(serverID: id, failed: true, pool: p, now: 0) } }
        #expect((0..<4).filter { d.isEjected($0) }.count == 2) // 50% of 4
        var one = OutlierDetector()
        one.grow(to: 1)
        for _ in 0..<3 { _ = one.record(serverID: 0, failed: true, pool: checked([1]), now: 0) }
        #expect(one.isEjected(0))
        // Ids it does not know, and pools without outlier detection, are ignored.
        #expect(one.record(serverID: 9, failed: true, pool: checked([1]), now: 0) == nil)
        var off = OutlierDetector()
        off.grow(to: 1)
        for _ in 0..<10 { #expect(off.record(serverID: 0, failed: true, pool: pool([1]), now: 0) == nil) }
        #expect(!one.isEjected(-1))
    }
}
