import Testing
@testable import SwitchyardDeploy

@Suite struct PlanTests {
    @Test func placeholder() { #expect(VersionName.isValid("v1")) }
}
