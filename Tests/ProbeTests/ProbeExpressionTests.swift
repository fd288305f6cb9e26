import XCTest
import Wire
@testable import Probe

final class ProbeExpressionTests: XCTestCase {
    let src = IPAddress("198.18.0.1")!, dst = IPAddress("198.18.3.2")!

    func build(_ text: String) throws -> IPPacket {
        try ProbeExpression(parsing: text).packet(source: src, destination: dst, sourcePort: 40000, destinationPort: 80,
                                                  sequenceNumber: 1000)
    }

    func testDefaultProbeIsALinuxMPTCPv1SYN() throws {
        let p = try build(ProbeExpression.defaultText)
        guard let seg = p.tcp else { return XCTFail() }
        XCTAssertEqual(seg.header.flags, .syn)
        XCTAssertEqual(seg.header.options.options, [
            .maximumSegmentSize(1460), .sackPermitted, .timestamps(value: 0, echoReply: 0), .noOperation, .windowScale(7),
            .mptcp(.capable(MPCapable(version: 1, flags: 0x01))),
        ])
        XCTAssertEqual(seg.header.destinationPort, 80)
        XCTAssertEqual(ProbeExpression.default.text, ProbeExpression.defaultText)
    }

    func testTheIssueExampleAndEveryOptionLayer() throws {
        let p = try build("ip(dscp=46)/tcp(syn,dport=443)/mss(1460)/sackok/ts/ws(7)/mpcapable(v1,flags=AH)")
        guard case .v4(let h) = p.ip else { return XCTFail() }
        XCTAssertEqual(h.dscp, 46)
        XCTAssertEqual(p.tcp?.header.destinationPort, 443)
        // 22 option bytes are padded with EOL to 24 on the wire.
        XCTAssertEqual(p.tcp?.header.options.options.suffix(2), [.mptcp(.capable(MPCapable(version: 1, flags: 0x81))), .endOfList])

        let cases: [(String, TCPOption)] = [
            ("mpjoin(token=0xcafef00d,nonce=7,id=2,backup)", .mptcp(.join(MPJoin(flags: 1, addressID: 2, stage: .syn(receiverToken: 0xcafe_f00d, senderNonce: 7))))),
            ("mpjoin(hmac=0102030405060708,nonce=9)", .mptcp(.join(MPJoin(stage: .synAck(truncatedHMAC: 0x0102_0304_0506_0708, senderNonce: 9))))),
            ("dss(dack=5,dsn=10,ssn=1,len=100)", .mptcp(.dss(DSS(dataACK: 5, mapping: .init(dataSequenceNumber: 10, subflowSequenceNumber: 1, dataLevelLength: 100))))),
            ("addaddr(id=1,198.18.9.9,port=8080,hmac=0x1122334455667788)", .mptcp(.addAddress(AddAddress(addressID: 1, address: .v4(IPv4Address(198, 18, 9, 9)), port: 8080, hmac: 0x1122_3344_5566_7788)))),
            ("addaddr(id=2,2001:db8::9,echo)", .mptcp(.addAddress(AddAddress(echo: true, addressID: 2, address: IPAddress("2001:db8::9")!)))),
            ("rmaddr(1,2)", .mptcp(.removeAddress(RemoveAddress(addressIDs: [1, 2])))),
            ("mpprio(backup)", .mptcp(.priority(MPPriority(backup: true)))),
            ("mpfail(dsn=99)", .mptcp(.fail(MPFail(dataSequenceNumber: 99)))),
            ("fastclose(key=0x42)", .mptcp(.fastClose(MPFastClose(receiverKey: 0x42)))),
            ("tcprst(reason=6,transient)", .mptcp(.reset(MPTCPReset(transient: true, reason: 6)))),
            ("mptcp(subtype=9,hex=aabb)", .mptcp(.other(MPTCPRawOption(subtype: MPTCPSubtype(9), data: [0xaa, 0xbb])))),
            ("tfo(cookie=0102030405060708)", .fastOpen(cookie: [1, 2, 3, 4, 5, 6, 7, 8])),
            ("tfo", .fastOpen(cookie: [])),
            ("tfo(exp,cookie=01020304)", .experimental(kind: 254, exid: 0xF989, data: [1, 2, 3, 4])),
            // Raw bytes that happen to be TFO's experimental form decode as such.
            ("raw(kind=254,hex=f98901)", .experimental(kind: 254, exid: 0xF989, data: [1])),
            ("raw(kind=99,hex=0102)", .raw(kind: 99, data: [1, 2])),
            ("sack(1000-2000,3000-4000)", .sack([SACKBlock(left: 1000, right: 2000), SACKBlock(left: 3000, right: 4000)])),
        ]
        for (text, expected) in cases {
            let packet = try build("tcp(ack)/" + text)
            XCTAssertEqual(packet.tcp?.header.options.options.first, expected, text)
        }
    }

    /// `ip(...)` with fields both families have fits either target (a suite's ECN probe runs over
    /// IPv6 too); IPv4-only fields or `ip4(...)` pin IPv4, and then an IPv6 target is an error.
    func testIPLayerWithCommonFieldsFitsBothFamilies() throws {
        let v6src = IPAddress("2001:db8::1")!, v6dst = IPAddress("2001:db8:0:3::2")!
        let e = try ProbeExpression(parsing: "ip(ecn=2,dscp=10)/tcp(ack,psh)/nop/nop/ts/payload(len=10)")
        guard case .v6(let h6) = try e.packet(source: v6src, destination: v6dst, sourcePort: 1, destinationPort: 80, sequenceNumber: 1).ip
        else { return XCTFail("not an IPv6 packet") }
        XCTAssertEqual(h6.trafficClass, 10 << 2 | 2)
        guard case .v4(let h4) = try e.packet(source: src, destination: dst, sourcePort: 1, destinationPort: 80, sequenceNumber: 1).ip
        else { return XCTFail("not an IPv4 packet") }
        XCTAssertEqual(h4.ecn, 2)
        XCTAssertEqual(h4.dscp, 10)
        XCTAssertNoThrow(try ProbeExpression(parsing: "ip(ttl=9)/mss(1400)"), "options may follow ip(...) directly")
        for pinned in ["ip4(ecn=2)/tcp(syn)", "ip(id=7)/tcp(syn)", "ip(df)/tcp(syn)"] {
            let p = try ProbeExpression(parsing: pinned)
            XCTAssertThrowsError(try p.packet(source: v6src, destination: v6dst, sourcePort: 1, destinationPort: 80, sequenceNumber: 1),
                                 pinned) { XCTAssertTrue("\($0)".contains("IPv4 probe"), "\($0)") }
        }
        XCTAssertThrowsError(try ProbeExpression(parsing: "ip(src=198.18.0.9)/tcp(syn)")
            .packet(source: v6src, destination: v6dst, sourcePort: 1, destinationPort: 80, sequenceNumber: 1))
        XCTAssertThrowsError(try build("ip6(flowlabel=5)/tcp(syn)"))
    }

    func testDSSChecksumIsComputedFromThePayload() throws {
        let p = try build("tcp(ack,psh)/dss(dack=1,dsn=0x100000001,ssn=1,len=5,csum)/payload(\"hello\")")
        guard case .mptcp(.dss(let d)) = p.tcp?.header.options.options.first else { return XCTFail() }
        XCTAssertEqual(d.mapping?.checksum, Checksum.dss(dataSequenceNumber: 0x1_0000_0001, subflowSequenceNumber: 1,
                                                           dataLevelLength: 5, payload: Array("hello".utf8)))
        XCTAssertEqual(p.tcp?.payload, Array("hello".utf8))
    }

    func testErrorsPointAtTheColumn() {
        func error(_ text: String) -> ProbeError? {
            do { _ = try ProbeExpression(parsing: text); return nil } catch { return error as? ProbeError }
        }
        XCTAssertEqual(error("tcp(syn)/mss(1460")?.column, 10)
        XCTAssertEqual(error("tcp(syn)/msss(1460)")?.column, 10)
        XCTAssertTrue(error("tcp(syn)/msss(1460)")?.message.contains("did you mean mss") ?? false)
        XCTAssertEqual(error("tcp(syn)/mss(14x60)")?.column, 14)
        XCTAssertEqual(error("tcp(syn)/ws(300)")?.column, 13)
        XCTAssertEqual(error("tcp(syn,bogus)")?.column, 9)
        XCTAssertNotNil(error("tcp(syn) mss"))
        XCTAssertNotNil(error(""))
        XCTAssertNotNil(error("tcp(syn)//mss(1)"))
        XCTAssertNotNil(error("mpcapable(flags=XY)"))
    }

    func testOptionBudgetIsAnErrorNotATruncation() {
        XCTAssertThrowsError(try build(ProbeExpression.defaultText + "/tfo(cookie=00112233445566778899aabbccddeeff)")) { e in
            XCTAssertEqual((e as? WireError)?.code, .optionSpaceExceeded)
        }
    }

    func testRemovingAnOptionForTheBlackholeControl() throws {
        let p = try ProbeExpression(parsing: ProbeExpression.defaultText).removing(kind: 30)
        XCTAssertFalse(p.options.contains { $0.kind == .mptcp })
        XCTAssertEqual(p.options.count, 5)
    }

    func testRandomTextNeverTraps() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("tcp(syn,ack=1)/mss0x=,\"dssaddr:9 ")
        for _ in 0..<20_000 {
            let text = String((0..<Int.random(in: 0...30, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            _ = try? ProbeExpression(parsing: text)
        }
    }
}
