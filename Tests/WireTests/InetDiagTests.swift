import XCTest
import TestSupport
@testable import Wire

/// The netlink / inet_diag parser: real kernel answers (fixtures captured in the lab, decoded
/// independently with a Python struct reader to get the expected values), hand-made edge cases,
/// and arbitrary or mutated bytes, which must give a value or a WireError, never a trap or a hang.
final class InetDiagTests: XCTestCase {
    func answer(_ hex: [String], _ sequence: UInt32) throws -> InetDiagAnswer {
        try InetDiag.parseAnswer(KernelDiagFixtures.datagrams(hex), sequence: sequence)
    }

    func testCleanSessionFixture() throws {
        let m = try answer(KernelDiagFixtures.clean, 1)
        XCTAssertTrue(m.complete)
        XCTAssertNil(m.errorNumber)
        XCTAssertEqual(m.sockets.count, 1)
        let s = try XCTUnwrap(m.sockets.first)
        XCTAssertEqual(s.stateName, "ESTAB")
        XCTAssertEqual(s.id.sourcePort, 44074)
        XCTAssertEqual(s.id.destinationPort, 80)
        XCTAssertEqual(s.source, IPAddress("198.18.0.1"))
        XCTAssertEqual(s.destination, IPAddress("198.18.1.2"))
        XCTAssertEqual(s.inode, 1_199_528)
        let info = try XCTUnwrap(s.mptcpInfo)
        XCTAssertEqual(info.token, 0x03f5_281a)
        XCTAssertFalse(info.fallback)
        XCTAssertTrue(info.remoteKeyReceived)
        XCTAssertEqual(info.subflows, 0)

        let t = try answer(KernelDiagFixtures.clean, 2)
        XCTAssertTrue(t.complete)
        let sub = try XCTUnwrap(t.sockets.first { $0.id.sourcePort == 44074 })
        let ulp = try XCTUnwrap(try sub.ulp())
        XCTAssertEqual(ulp.name, "mptcp")
        let sf = try XCTUnwrap(ulp.mptcp)
        XCTAssertEqual(sf.flags, 0xc3)
        XCTAssertEqual(sf.flagLetters, "Mmec", "as ss -ti prints it")
        XCTAssertEqual(sf.localToken, info.token)
        XCTAssertEqual(sf.remoteToken, 0)
        XCTAssertEqual(sf.localID, 0)
        XCTAssertEqual(sub.inode, s.inode, "the subflow shows the MPTCP socket's inode")
    }

    func testFallbackFixtures() throws {
        let a = try XCTUnwrap(try answer(KernelDiagFixtures.synAckStripped, 1).sockets.first?.mptcpInfo)
        XCTAssertTrue(a.fallback)
        XCTAssertFalse(a.remoteKeyReceived, "the SYN/ACK's key never arrived")
        XCTAssertEqual(a.token, 0xd7bd_5e8b)
        let b = try XCTUnwrap(try answer(KernelDiagFixtures.ackStripped, 1).sockets.first?.mptcpInfo)
        XCTAssertTrue(b.fallback)
        XCTAssertTrue(b.remoteKeyReceived, "the key came in the SYN/ACK; the fallback came later")
        for fixture in [KernelDiagFixtures.synAckStripped, KernelDiagFixtures.ackStripped] {
            let sf = try XCTUnwrap(try answer(fixture, 2).sockets.first?.ulp()?.mptcp)
            XCTAssertEqual(sf.flagLetters, "mc")
            XCTAssertEqual(sf.flagNames, ["mp_capable_local", "connected"])
        }
    }

    func testOtherSequencesAreSkipped() throws {
        // The MPTCP dump's datagrams answer sequence 1 only.
        let none = try answer(Array(KernelDiagFixtures.clean.prefix(2)), 2)
        XCTAssertTrue(none.sockets.isEmpty)
        XCTAssertFalse(none.complete)
    }

    func testRequestLayout() throws {
        let id = InetDiagSocketID(sourcePort: 44074, destinationPort: 80, source: IPAddress("198.18.0.1"))
        let bytes = InetDiag.request(family: InetDiag.familyIPv4, protocol: InetDiag.protocolMPTCP, id: id, sequence: 7)
        let m = try XCTUnwrap(try NetlinkMessage.parseAll(bytes).first)
        XCTAssertEqual(bytes.count, 16 + 56 + 8)
        XCTAssertEqual(m.type, 20)
        XCTAssertEqual(m.flags, 0x301, "NLM_F_REQUEST | NLM_F_DUMP")
        XCTAssertEqual(m.sequence, 7)
        XCTAssertEqual(m.payload[0], 2)
        XCTAssertEqual(m.payload[1], 6, "262 does not fit: the low byte, overridden by the attribute")
        XCTAssertEqual(m.payload[2], 2, "INET_DIAG_INFO requested")
        XCTAssertEqual(Array(m.payload[8..<12]), [0xac, 0x2a, 0x00, 0x50], "ports in network order")
        XCTAssertEqual(Array(m.payload[12..<16]), [198, 18, 0, 1])
        XCTAssertEqual(Array(m.payload[48..<56]), [UInt8](repeating: 0xff, count: 8), "no cookie")
        let attrs = try NetlinkAttribute.parseAll(Array(m.payload[56...]))
        XCTAssertEqual(attrs, [NetlinkAttribute(type: 3, value: [0x06, 0x01, 0, 0])], "INET_DIAG_REQ_PROTOCOL 262")
        // TCP needs no attribute.
        XCTAssertEqual(InetDiag.request(family: 10, protocol: 6, dump: false).count, 16 + 56)
    }

    func testErrorAndAcknowledgement() throws {
        var payload: [UInt8] = []
        LE.put(Int32(-2), &payload)
        payload += [UInt8](repeating: 0, count: 16)
        let err = NetlinkMessage(type: NetlinkMessage.error, flags: 0, sequence: 1, payload: payload).serialized()
        let a = try InetDiag.parseAnswer([err], sequence: 1)
        XCTAssertEqual(a.errorNumber, 2)
        XCTAssertTrue(a.complete)
        let ack = NetlinkMessage(type: NetlinkMessage.error, flags: 0, sequence: 1, payload: [0, 0, 0, 0]).serialized()
        XCTAssertNil(try InetDiag.parseAnswer([ack], sequence: 1).errorNumber)
        var minPayload: [UInt8] = []
        LE.put(Int32.min, &minPayload)
        let weird = NetlinkMessage(type: NetlinkMessage.error, flags: 0, sequence: 1, payload: minPayload).serialized()
        XCTAssertEqual(try InetDiag.parseAnswer([weird], sequence: 1).errorNumber, .max)
        let short = NetlinkMessage(type: NetlinkMessage.error, flags: 0, sequence: 1, payload: [1]).serialized()
        XCTAssertThrowsError(try InetDiag.parseAnswer([short], sequence: 1))
    }

    func testMalformedLengthsAreErrors() {
        // A header claiming less than itself, more than there is, and a zero-length attribute.
        var small = NetlinkMessage(type: 20, flags: 2, sequence: 1, payload: []).serialized()
        small[0] = 8
        XCTAssertThrowsError(try NetlinkMessage.parseAll(small)) { XCTAssertEqual(($0 as? WireError)?.code, .invalidField) }
        var long = NetlinkMessage(type: 20, flags: 2, sequence: 1, payload: []).serialized()
        long[0] = 200
        XCTAssertThrowsError(try NetlinkMessage.parseAll(long)) { XCTAssertEqual(($0 as? WireError)?.code, .truncated) }
        XCTAssertThrowsError(try NetlinkAttribute.parseAll([0, 0, 1, 0])) { XCTAssertEqual(($0 as? WireError)?.code, .invalidField) }
        XCTAssertThrowsError(try NetlinkMessage.parseAll([1, 2, 3]))
        XCTAssertThrowsError(try InetDiagMessage.parse([UInt8](repeating: 0, count: 71)))
        XCTAssertEqual(try NetlinkMessage.parseAll([]), [])
        // Odd-sized attribute values give nil typed views, not wrong numbers.
        XCTAssertNil(NetlinkAttribute(type: 1, value: [1, 2, 3]).u32)
        XCTAssertNil(KernelMPTCPInfo.decode([UInt8](repeating: 0, count: 79)))
    }

    func testAttributesRoundTrip() throws {
        let attrs = [NetlinkAttribute(type: 1, value: Array("mptcp\u{0}".utf8)), NetlinkAttribute(type: 3, isNested: true, value: [8, 0, 8, 0, 0xc3, 0, 0, 0]),
                     NetlinkAttribute(type: 9, value: [5])]
        let bytes = attrs.flatMap { $0.serialized() }
        XCTAssertEqual(try NetlinkAttribute.parseAll(bytes), attrs)
        XCTAssertEqual(attrs[0].string, "mptcp")
    }

    /// Arbitrary bytes, and every truncation and many bit flips of the real answers, never trap.
    func testArbitraryAndMutatedBytesNeverTrap() throws {
        var rng = SplitMix64(seed: 0x6b65_726e_656c)
        func exercise(_ bytes: [UInt8]) {
            _ = try? InetDiag.parseAnswer([bytes], sequence: 1)
            _ = try? InetDiag.parseAnswer([bytes], sequence: 2)
            if let ms = try? NetlinkMessage.parseAll(bytes) {
                for m in ms {
                    if let s = try? InetDiagMessage.parse(m.payload) {
                        _ = s.mptcpInfo
                        _ = s.stateName
                        _ = s.source
                        _ = try? s.ulp()
                    }
                }
            }
            _ = try? NetlinkAttribute.parseAll(bytes)
            _ = try? InetDiagMessage.parse(bytes).ulp()
        }
        for _ in 0..<3000 {
            let n = Int.random(in: 0..<400, using: &rng)
            exercise((0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) })
        }
        let real = KernelDiagFixtures.datagrams(KernelDiagFixtures.clean + KernelDiagFixtures.ackStripped)
        for d in real {
            for cut in 0..<d.count { exercise(Array(d[0..<cut])) }
            for _ in 0..<500 {
                var m = d
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    m[Int.random(in: 0..<m.count, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
                }
                exercise(m)
            }
        }
    }
}
