import Testing
@testable import SwitchyardHTTP

@Suite("Accept-Encoding")
struct AcceptEncodingTests {
    @Test(arguments: [
        ("gzip", true), ("GZIP", true), ("x-gzip", true), ("gzip, deflate, br", true), ("br;q=1.0, gzip;q=0.8, *;q=0.1", true),
        ("deflate, gzip ; q=0.001", true), ("*", true), ("br, *;q=0.5", true), (" \tgzip\t ", true), ("gzip;level=1", true),
    ])
    func gzipIsTakenWhenListedOrCoveredByTheWildcard(value: String, expected: Bool) {
        #expect(AcceptEncoding.allowsGzip(value) == expected, "\(value)")
    }

    @Test(arguments: [
        "", "identity", "br, deflate", "gzip;q=0", "gzip;q=0.000", "gzip; Q=0.0", "*;q=0", "gzip;q=0, *",
        "*, gzip;q=0", "gzip;q=2", "gzip;q=1.5", "gzip;q=0.0001", "gzip;q=abc", "gzip;q=", "gzip;q", ",,,", "gzipped",
    ])
    func gzipIsRefusedWhenNotListedWeightedZeroOrMalformed(value: String) {
        #expect(!AcceptEncoding.allowsGzip(value), "\(value)")
    }

    @Test func noFieldMeansIdentity() {
        #expect(!AcceptEncoding.allowsGzip(nil))
    }

    @Test(arguments: [("0", false), ("0.", false), ("0.000", false), ("0.001", true), ("0.5", true), ("1", true), ("1.", true), ("1.000", true)])
    func weights(text: String, above: Bool) {
        #expect(AcceptEncoding.isAboveZero(qvalue: Substring(text)) == above, "\(text)")
    }

    @Test(arguments: ["1.001", "2", "-0", "0.0000", ".5", "", "0,5"])
    func malformedWeights(text: String) {
        #expect(AcceptEncoding.isAboveZero(qvalue: Substring(text)) == nil, "\(text)")
    }
}
