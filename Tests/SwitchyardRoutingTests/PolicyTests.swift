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

    @Test func aLockAdmitsOnlyItsTokenUntilItExpires() {
        guard case .success(let lock) = LockRules.take(nil, owner: "ci", reason: "r", ttlMilliseconds: 60_000, token: nil, newToken: "t1", at: now) else {
            Issue.record("not taken"); return
        }
        #expect(lock.token == "t1" && lock.expires == now.addingTimeInterval(60))
        #expect(LockRules.admits(lock, token: "t1", at: now))
        #expect(!LockRules.admits(lock, token: nil, at: now))
        #expect(!LockRules.admits(lock, token: "other", at: now))
        #expect(LockRules.admits(lock, token: nil, at: now.addingTimeInterval(60))) // expired
        #expect(LockRules.current(lock, at: now.addingTimeInterval(61)) == nil)
    }

    @Test func renewalKeepsTokenAndStartOthersAreRefused() {
        let held = LockInfo(owner: "ci", reason: "r", token: "t1", since: now, expires: now.addingTimeInterval(60))
        let later = now.addingTimeInterval(30)
        guard case .success(let renewed) = LockRules.take(held, owner: "ci", reason: "r", ttlMilliseconds: 60_000, token: "t1", newToken: "x", at: later) else {
            Issue.record("not renewed"); return
        }
        #expect(renewed.token == "t1" && renewed.since == now && renewed.expires == later.addingTimeInterval(60))
        #expect(LockRules.take(held, owner: "b", reason: "", ttlMilliseconds: 1000, token: nil, newToken: "t2", at: later) == .failure(.heldByAnother(held)))
        // Once expired, anyone may take it.
        if case .success(let taken) = LockRules.take(held, owner: "b", reason: "", ttlMilliseconds: 1000, token: nil, newToken: "t2", at: now.addingTimeInterval(61)) {
            #expect(taken.token == "t2" && taken.owner == "b")
        } else { Issue.record("expired lock not taken") }
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
