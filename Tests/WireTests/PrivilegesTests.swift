import XCTest
@testable import NetIO

final class PrivilegesTests: XCTestCase {
    func testParsesCapEffAndNamesWhatIsMissing() {
        let status = "Name:\tmptracebox\nCapInh:\t0000000000000000\nCapEff:\t0000000000002000\n"
        let eff = Privileges.effectiveCapabilities(statusText: status)
        XCTAssertEqual(eff, 0x2000)
        XCTAssertEqual(Privileges.missing([.netRaw, .netAdmin], effective: eff!), [.netAdmin])
        XCTAssertEqual(Privileges.missing([.netRaw, .netAdmin], effective: 0x3000), [])
        let error = PrivilegeError(missing: [.netAdmin], purpose: "the lab")
        XCTAssertTrue(error.description.contains("CAP_NET_ADMIN"))
    }
}
