import Testing
@testable import SwitchyardDNS

/// Wire pieces for hand-written messages.
private func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
private func u32(_ v: UInt32) -> [UInt8] { u16(UInt16(v >> 16)) + u16(UInt16(v & 0xFFFF)) }
private func name(_ text: String) -> [UInt8] {
    text.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
}
/// A response header: ID, flags, then QD, AN, NS and AR counts.
private func header(id: UInt16 = 0xBEEF, flags: UInt16 = 0x8180, questions: UInt16 = 1, answers: UInt16) -> [UInt8] {
    u16(id) + u16(flags) + u16(questions) + u16(answers) + u16(0) + u16(0)
}
private func question(_ text: String, type: UInt16 = 1) -> [UInt8] { name(text) + u16(type) + u16(1) }
/// A record: owner (already encoded), type, class IN, TTL, data.
private func record(_ owner: [UInt8], type: UInt16, ttl: UInt32 = 60, data: [UInt8]) -> [UInt8] {
    owner + u16(type) + u16(1) + u32(ttl) + u16(UInt16(data.count)) + data
}
/// A pointer to the question's name, which always starts at offset 12.
private let toQuestion: [UInt8] = [0xC0, 0x0C]

@Suite("DNS messages")
struct DNSMessageTests {
    let queryA = try! DNSQuery(id: 0xBEEF, name: "app.test", type: .a)

    // MARK: Queries

    @Test func queryIsEncodedByteByByte() throws {
        let query = try DNSQuery(id: 0xBEEF, name: "App.Test.", type: .a)
        #expect(query.name == "app.test")
        #expect(query.encoded == [
            0xBE, 0xEF, // ID
            0x01, 0x00, // flags: a standard query, recursion desired
            0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // one question, no other record
            0x03, 0x61, 0x70, 0x70, // "app"
            0x04, 0x74, 0x65, 0x73, 0x74, // "test"
            0x00, // the root
            0x00, 0x01, // type A
            0x00, 0x01, // class IN
        ])
        let aaaa = try DNSQuery(id: 0x0102, name: "x", type: .aaaa)
        #expect(aaaa.encoded == [0x01, 0x02, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x01, 0x78, 0x00, 0x00, 0x1C, 0x00, 0x01])
    }

    @Test func namesThatCannotBeAskedAreRefused() {
        #expect(throws: DNSNameError.empty) { try DNSQuery(id: 1, name: "", type: .a) }
        #expect(throws: DNSNameError.empty) { try DNSQuery(id: 1, name: ".", type: .a) }
        #expect(throws: DNSNameError.emptyLabel) { try DNSQuery(id: 1, name: "a..b", type: .a) }
        #expect(throws: DNSNameError.emptyLabel) { try DNSQuery(id: 1, name: ".a", type: .a) }
        #expect(throws: DNSNameError.labelTooLong) { try DNSQuery(id: 1, name: String(repeating: "a", count: 64) + ".test", type: .a) }
        // 63-byte labels are fine; four of them with their length bytes and the root make 257 > 255.
        let label = String(repeating: "b", count: 63)
        #expect(throws: Never.self) { try DNSQuery(id: 1, name: [label, label, label].joined(separator: "."), type: .a) }
        #expect(throws: DNSNameError.nameTooLong) { try DNSQuery(id: 1, name: [label, label, label, label].joined(separator: "."), type: .a) }
    }

    // MARK: Answers

    @Test func addressesAreReadFromTheAnswerSection() throws {
        let message = header(answers: 2) + question("app.test")
            + record(toQuestion, type: 1, ttl: 60, data: [127, 0, 0, 2])
            + record(toQuestion, type: 1, ttl: 30, data: [127, 0, 0, 3])
        let answer = try DNSAnswer(decoding: message, answering: queryA)
        #expect(answer == DNSAnswer(responseCode: .noError, addresses: [[127, 0, 0, 2], [127, 0, 0, 3]], ttl: 30))
    }

    @Test func namesCompareWithoutCase() throws {
        // The question echoed in capitals, an owner written out (no pointer) in mixed case.
        let message = header(answers: 1) + question("APP.test") + record(name("aPp.TEST"), type: 1, data: [10, 0, 0, 1])
        #expect(try DNSAnswer(decoding: message, answering: queryA).addresses == [[10, 0, 0, 1]])
    }

    @Test func ipv6AddressesAreSixteenBytes() throws {
        let query = try DNSQuery(id: 0xBEEF, name: "app.test", type: .aaaa)
        let v6: [UInt8] = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        let message = header(answers: 1) + question("app.test", type: 28) + record(toQuestion, type: 28, data: v6)
        #expect(try DNSAnswer(decoding: message, answering: query).addresses == [v6])
        let short = header(answers: 1) + question("app.test", type: 28) + record(toQuestion, type: 28, data: [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.badAddressRecord) { try DNSAnswer(decoding: short, answering: query) }
        let long = header(answers: 1) + question("app.test") + record(toQuestion, type: 1, data: [1, 2, 3, 4, 5])
        #expect(throws: DNSDecodeError.badAddressRecord) { try DNSAnswer(decoding: long, answering: queryA) }
    }

    @Test func aliasesAreFollowedWithinTheAnswer() throws {
        // www.test is an alias of app.test, written as "app" and a pointer to "test" in the question.
        let query = try DNSQuery(id: 0xBEEF, name: "www.test", type: .a)
        let start = header(answers: 3) + question("www.test")
        let aliasData: [UInt8] = [3] + Array("app".utf8) + [0xC0, 16] // "test" starts at 12 + 4
        let alias = record(toQuestion, type: 5, ttl: 20, data: aliasData)
        let aliasNameOffset = UInt8(start.count + 12) // owner (2) + type, class, TTL, length (10)
        // An unrelated record first, to show records are matched by owner, not by position.
        let unrelated = record(name("other.test"), type: 1, data: [9, 9, 9, 9])
        let message = start + alias + unrelated + record([0xC0, aliasNameOffset], type: 1, ttl: 300, data: [10, 1, 2, 3])
        let answer = try DNSAnswer(decoding: message, answering: query)
        #expect(answer.addresses == [[10, 1, 2, 3]])
        #expect(answer.ttl == 20) // the alias's TTL is the shorter
    }

    @Test func aliasChainsEndAfterALimit() throws {
        // a0 -> a1 -> ... -> a20 -> address: longer than maxAliases, so no address is found.
        let query = try DNSQuery(id: 0xBEEF, name: "a0.test", type: .a)
        var message = header(answers: 21) + question("a0.test")
        for i in 0..<20 { message += record(name("a\(i).test"), type: 5, data: name("a\(i + 1).test")) }
        message += record(name("a20.test"), type: 1, data: [1, 1, 1, 1])
        #expect(try DNSAnswer(decoding: message, answering: query).addresses == [])
        // An alias loop ends the same way.
        var loop = header(answers: 2) + question("a0.test")
        loop += record(name("a0.test"), type: 5, data: name("a1.test")) + record(name("a1.test"), type: 5, data: name("a0.test"))
        #expect(try DNSAnswer(decoding: loop, answering: query).addresses == [])
    }

    @Test func responseCodesAndTruncationAreReported() throws {
        let nx = header(flags: 0x8183, answers: 0) + question("app.test")
        #expect(try DNSAnswer(decoding: nx, answering: queryA).responseCode == .nameError)
        let servfail = header(flags: 0x8182, answers: 0) + question("app.test")
        #expect(try DNSAnswer(decoding: servfail, answering: queryA).responseCode.description == "SERVFAIL")
        // Some servers leave the question out of an error.
        let bare = header(flags: 0x8185, questions: 0, answers: 0)
        #expect(try DNSAnswer(decoding: bare, answering: queryA).responseCode == .refused)
        // TC: the records (here none at all, though ANCOUNT says 5) are not read.
        let truncated = header(flags: 0x8380, answers: 5) + question("app.test")
        #expect(try DNSAnswer(decoding: truncated, answering: queryA) == DNSAnswer(responseCode: .noError, isTruncated: true))
        #expect(DNSResponseCode(rawValue: 9).description == "RCODE 9")
    }

    @Test func answersToOtherQuestionsAreTold() {
        let otherID = header(id: 0x1234, answers: 0) + question("app.test")
        #expect(throws: DNSDecodeError.unexpectedID) { try DNSAnswer(decoding: otherID, answering: queryA) }
        let otherName = header(answers: 0) + question("evil.test")
        #expect(throws: DNSDecodeError.unexpectedQuestion) { try DNSAnswer(decoding: otherName, answering: queryA) }
        let otherType = header(answers: 0) + question("app.test", type: 28)
        #expect(throws: DNSDecodeError.unexpectedQuestion) { try DNSAnswer(decoding: otherType, answering: queryA) }
        let twoQuestions = header(questions: 2, answers: 0) + question("app.test") + question("app.test")
        #expect(throws: DNSDecodeError.unexpectedQuestion) { try DNSAnswer(decoding: twoQuestions, answering: queryA) }
        #expect(DNSDecodeError.unexpectedID.isForAnotherQuestion && !DNSDecodeError.badName.isForAnotherQuestion)
        let query = header(flags: 0x0100, answers: 0) + question("app.test")
        #expect(throws: DNSDecodeError.notAResponse) { try DNSAnswer(decoding: query, answering: queryA) }
        let notify = header(flags: 0x8000 | 4 << 11, answers: 0) + question("app.test") // opcode NOTIFY
        #expect(throws: DNSDecodeError.notAResponse) { try DNSAnswer(decoding: notify, answering: queryA) }
    }

    // MARK: Hostile messages

    @Test func compressionPointersMustPointBackwards() throws {
        let start = header(answers: 1) + question("app.test")
        let here = UInt8(start.count)
        // A pointer to itself.
        let selfLoop = start + record([0xC0, here], type: 1, data: [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.badName) { try DNSAnswer(decoding: selfLoop, answering: queryA) }
        // A label, then a pointer back to that label: a loop through one label.
        let labelLoop = start + record([1, 0x78, 0xC0, here], type: 1, data: [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.badName) { try DNSAnswer(decoding: labelLoop, answering: queryA) }
        // A pointer forward, past the end, and one into a pointer pair that points forward again.
        let forward = start + record([0xC0, here + 2, 0xC0, here], type: 1, data: [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.badName) { try DNSAnswer(decoding: forward, answering: queryA) }
        let outside = start + record([0xFF, 0xFF], type: 1, data: [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.badName) { try DNSAnswer(decoding: outside, answering: queryA) }
        // The reserved label types 0x40 and 0x80.
        let extended = start + record([0x41, 0], type: 1, data: [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.badName) { try DNSAnswer(decoding: extended, answering: queryA) }
        // A name longer than 255 bytes, made of labels in an earlier record's data, each
        // ending with a pointer further back: every pointer is legal, the name is not.
        let chainStart = start.count + 12 // past the first record's owner (2) and fixed fields (10)
        var chain: [UInt8] = []
        var previous = 12 // "app.test" in the question
        for _ in 0..<5 {
            let here = chainStart + chain.count
            chain += [60] + [UInt8](repeating: 0x61, count: 60) + [0xC0 | UInt8(previous >> 8), UInt8(previous & 0xFF)]
            previous = here
        }
        let longName = header(answers: 2) + question("app.test") + record(toQuestion, type: 99, data: chain)
            + record([0xC0 | UInt8(previous >> 8), UInt8(previous & 0xFF)], type: 1, data: [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.badName) { try DNSAnswer(decoding: longName, answering: queryA) }
        // Three such labels are a legal name: the same layout decodes.
        chain = []
        previous = 12
        for _ in 0..<3 {
            let here = chainStart + chain.count
            chain += [60] + [UInt8](repeating: 0x61, count: 60) + [0xC0 | UInt8(previous >> 8), UInt8(previous & 0xFF)]
            previous = here
        }
        let legal = header(answers: 2) + question("app.test") + record(toQuestion, type: 99, data: chain)
            + record([0xC0 | UInt8(previous >> 8), UInt8(previous & 0xFF)], type: 1, data: [1, 2, 3, 4])
        #expect(try DNSAnswer(decoding: legal, answering: queryA).addresses == [])
    }

    @Test func everyPrefixOfAnAnswerFailsCleanly() throws {
        let message = header(answers: 2) + question("app.test")
            + record(toQuestion, type: 5, data: [3] + Array("alt".utf8) + [0xC0, 0x10])
            + record(toQuestion, type: 1, data: [127, 0, 0, 2])
        #expect(try DNSAnswer(decoding: message, answering: queryA).addresses == [[127, 0, 0, 2]])
        for length in 0..<message.count {
            #expect(throws: DNSDecodeError.self) { try DNSAnswer(decoding: Array(message.prefix(length)), answering: queryA) }
        }
        // A count of records far beyond what the message holds ends at its end.
        let lying = header(answers: 0xFFFF) + question("app.test") + record(toQuestion, type: 1, data: [1, 1, 1, 1])
        #expect(throws: DNSDecodeError.truncatedMessage) { try DNSAnswer(decoding: lying, answering: queryA) }
    }

    /// Arbitrary bytes, and answers with bytes changed at random: decoding must end, with an
    /// answer or an error, never a trap (the fuzz target does the same at length).
    @Test func randomBytesNeverTrap() throws {
        var random = SplitMix(seed: 0x5EED)
        let valid = header(answers: 2) + question("app.test")
            + record(toQuestion, type: 5, data: [3] + Array("alt".utf8) + [0xC0, 0x10])
            + record([0xC0, 30], type: 1, data: [127, 0, 0, 2])
        var decoded = 0
        for round in 0..<20_000 {
            var message: [UInt8]
            if round % 2 == 0 {
                message = (0..<Int(random.next() % 300)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                if message.count >= 2 { message[0] = 0xBE; message[1] = 0xEF } // past the ID check
            } else {
                message = valid
                for _ in 0..<(1 + random.next() % 4) {
                    let at = Int(random.next() % UInt64(message.count))
                    message[at] = UInt8(truncatingIfNeeded: random.next())
                }
            }
            if (try? DNSAnswer(decoding: message, answering: queryA)) != nil { decoded += 1 }
        }
        #expect(decoded > 0) // some mutations leave a readable answer
    }
}

/// A small seeded generator: the same inputs on every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
