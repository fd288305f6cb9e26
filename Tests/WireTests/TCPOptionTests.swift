import XCTest
@testable import Wire

final class TCPOptionTests: XCTestCase {
    func testLinuxSYNRoundTripsAndDecodes() throws {
        let bytes = try Fixtures.syn4().serialized(finalize: true)
        XCTAssertEqual(bytes.count, 20 + 20 + 24)
        let parsed = try IPPacket.parse(bytes)
        guard case .tcp(let seg) = parsed.transport else { return XCTFail("not TCP: \(parsed.transport)") }
        XCTAssertEqual(seg.header.options.options, Fixtures.linuxSYNOptions)
        XCTAssertEqual(seg.header.sequenceNumber, 0xdead_beef)
        XCTAssertEqual(try parsed.serialized(), bytes)
        // Checksums computed on build verify on the parsed bytes.
        XCTAssertEqual(Checksum.internet(bytes, range: 0..<20), 0)
        XCTAssertEqual(Checksum.transport(source: parsed.ip.source, destination: parsed.ip.destination, protocol: 6,
                                          segment: bytes, range: 20..<bytes.count, checksumFieldOffset: 16),
                       seg.header.checksum)
    }

    func testEveryMPTCPVariantRoundTrips() throws {
        for (name, option) in Fixtures.mptcpVariants {
            let encoded = try TCPOption.mptcp(option).encoded()
            XCTAssertEqual(encoded.count, option.encodedLength, name)
            XCTAssertEqual(Int(encoded[1]), encoded.count, "\(name): length byte")
            let parsed = TCPOptions.parse(ByteReader(encoded))
            XCTAssertEqual(parsed.options, [.mptcp(option)], name)
            XCTAssertEqual(try parsed.options[0].encoded(), encoded, name)
        }
    }

    func testMPCapableLengthsFollowFields() throws {
        let lengths = Fixtures.mptcpVariants.filter { $0.1.subtype == .capable }.map { $0.1.encodedLength }
        XCTAssertEqual(Set(lengths), [4, 12, 20, 22, 24])
        XCTAssertThrowsError(try TCPOption.mptcp(.capable(MPCapable(receiverKey: 1))).encoded()) { e in
            XCTAssertEqual((e as? WireError)?.code, .invalidCombination)
        }
    }

    func testOtherOptionsRoundTrip() throws {
        let options: [TCPOption] = [
            .sack([SACKBlock(left: 1, right: 2), SACKBlock(left: 3, right: 4)]),
            .md5Signature(Array(repeating: 0xab, count: 16)),
            .fastOpen(cookie: []), .fastOpen(cookie: [1, 2, 3, 4, 5, 6, 7, 8]),
            .experimental(kind: 254, exid: TCPOptionKind.fastOpenExID, data: [9, 9, 9, 9]),
            .raw(kind: 29, data: [1, 2, 3, 4, 5, 6]),
            .raw(kind: 200, data: []),
        ]
        for o in options {
            let b = try o.encoded()
            XCTAssertEqual(TCPOptions.parse(ByteReader(b)).options, [o], "\(o)")
        }
    }

    func testMalformedOptionsAreReportedWithTheirBytes() {
        // MSS with length 3, then a valid window scale: parsing continues after a bad length.
        var parsed = TCPOptions.parse(ByteReader([2, 3, 5, 3, 3, 7]))
        XCTAssertEqual(parsed.options.count, 2)
        guard case .malformed(let m) = parsed.options[0] else { return XCTFail() }
        XCTAssertEqual(m.bytes, [2, 3, 5])
        XCTAssertEqual(m.reason, .badLength(expected: "4", got: 3))
        XCTAssertEqual(parsed.options[1], .windowScale(7))

        // Zero length: the rest of the option space is attributed to the bad option.
        parsed = TCPOptions.parse(ByteReader([1, 30, 0, 0x10, 1]))
        XCTAssertEqual(parsed.options.first, .noOperation)
        guard case .malformed(let z) = parsed.options.last else { return XCTFail() }
        XCTAssertEqual(z.reason, .lengthBelowTwo(0))
        XCTAssertEqual(z.bytes, [30, 0, 0x10, 1])

        // Overrun and a lone kind byte.
        parsed = TCPOptions.parse(ByteReader([8, 10, 0, 0]))
        XCTAssertEqual(parsed.options, [.malformed(MalformedTCPOption(kind: 8, bytes: [8, 10, 0, 0], reason: .overrun(declared: 10, available: 4)))])
        parsed = TCPOptions.parse(ByteReader([1, 1, 2]))
        XCTAssertEqual(parsed.options.last, .malformed(MalformedTCPOption(kind: 2, bytes: [2], reason: .missingLength)))

        // MP_CAPABLE with an impossible length (13) keeps its subtype and bytes.
        let bad: [UInt8] = [30, 13, 0x01, 0x81] + Array(repeating: 0, count: 9)
        parsed = TCPOptions.parse(ByteReader(bad))
        XCTAssertEqual(parsed.options[0].mptcpSubtype, .capable)
        guard case .malformed(let mc) = parsed.options[0] else { return XCTFail() }
        XCTAssertEqual(mc.bytes, bad)
        XCTAssertTrue(mc.description.contains("MPTCP"), mc.description)
    }

    func testEOLAndTrailerAreKept() throws {
        let area: [UInt8] = [2, 4, 5, 0xb4, 0, 0xde, 0xad, 0]
        let parsed = TCPOptions.parse(ByteReader(area))
        XCTAssertEqual(parsed.options, [.maximumSegmentSize(1460), .endOfList])
        XCTAssertEqual(parsed.trailer, [0xde, 0xad, 0])
        var w = ByteWriter()
        try parsed.write(to: &w)
        XCTAssertEqual(w.bytes, area)
    }

    func testOptionSpaceBudgetSaysByHowMuch() {
        // The Linux SYN (24 bytes) plus a 16-byte TFO cookie (18) needs 42 bytes.
        let options = Fixtures.linuxSYNOptions + [.fastOpen(cookie: Array(repeating: 1, count: 16))]
        XCTAssertThrowsError(try Fixtures.syn4(options: options).serialized(finalize: true)) { error in
            let e = error as? WireError
            XCTAssertEqual(e?.code, .optionSpaceExceeded)
            XCTAssertTrue(e?.message.contains("42 bytes, 2 more") ?? false, e?.message ?? "")
        }
    }

    func testOddOptionLengthIsPaddedWithEOL() throws {
        let bytes = try Fixtures.syn4(options: [.windowScale(7)]).serialized(finalize: true)
        XCTAssertEqual(bytes[32] >> 4, 6) // data offset 6
        XCTAssertEqual(Array(bytes[40..<44]), [3, 3, 7, 0])
    }
}
