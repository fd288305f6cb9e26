import XCTest
@testable import Wire

final class IPAndICMPTests: XCTestCase {
    func testIPv4HeaderChecksumKnownVector() throws {
        // The classic example header: checksum 0xb861.
        let header: [UInt8] = Array(hexString: "450000730000400040110000c0a80001c0a800c7")!
        XCTAssertEqual(Checksum.internet(header), 0xb861)
        var r = ByteReader(header)
        let h = try IPv4Header.parse(&r)
        XCTAssertEqual(h.computedChecksum, 0xb861)
        XCTAssertEqual(h.source.description, "192.168.0.1")
        XCTAssertTrue(h.dontFragment)
    }

    func testIncrementalUpdateMatchesRecomputation() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var bytes = (0..<40).map { _ in UInt8.random(in: 0...255, using: &rng) }
            bytes.setUInt16(0, at: 10)
            let before = Checksum.internet(bytes)
            let at = Int.random(in: 0..<19, using: &rng) * 2
            guard at != 10 else { continue }
            let old = bytes.uint16(at: at)!
            let new = UInt16.random(in: 0...UInt16.max, using: &rng)
            bytes.setUInt16(new, at: at)
            let recomputed = Checksum.internet(bytes)
            let incremental = Checksum.incrementalUpdate(before, old: old, new: new)
            // 0x0000 and 0xffff are the same value in one's complement.
            XCTAssertTrue(incremental == recomputed || (incremental ^ recomputed) == 0xffff && (incremental == 0 || recomputed == 0),
                          "\(incremental) vs \(recomputed)")
        }
    }

    func testIPv6WithExtensionHeadersReachesTCP() throws {
        var p = Fixtures.syn6()
        guard case .v6(var h) = p.ip else { return XCTFail() }
        // Hop-by-hop (8 bytes, PadN) then destination options (8 bytes), then TCP.
        h.nextHeader = .ipv6HopByHop
        h.extensionHeaders = [
            IPv6ExtensionHeader(type: .ipv6HopByHop, bytes: [60, 0, 1, 4, 0, 0, 0, 0]),
            IPv6ExtensionHeader(type: .ipv6DestinationOptions, bytes: [6, 0, 1, 4, 0, 0, 0, 0]),
        ]
        p.ip = .v6(h)
        let bytes = try p.serialized(finalize: true)
        let parsed = try IPPacket.parse(bytes)
        XCTAssertEqual(parsed.ip.upperLayerProtocol, .tcp)
        XCTAssertEqual(parsed.tcp?.header.options.options, Fixtures.linuxSYNOptions)
        XCTAssertEqual(try parsed.serialized(), bytes)
        if case .v6(let ph) = parsed.ip { XCTAssertEqual(ph.flowLabel, 0xabcde) }
        // The TCP checksum uses the IPv6 pseudo-header (verified independently by tshark in OracleTests).
        let tcpStart = 40 + 16
        XCTAssertEqual(Checksum.transport(source: parsed.ip.source, destination: parsed.ip.destination, protocol: 6,
                                          segment: bytes, range: tcpStart..<bytes.count, checksumFieldOffset: 16),
                       parsed.tcp?.header.checksum)
    }

    func testIPv6AddressText() {
        XCTAssertEqual(IPv6Address("2001:db8::1")?.description, "2001:db8::1")
        XCTAssertEqual(IPv6Address("2001:0db8:0000:0000:0001:0000:0000:0001")?.description, "2001:db8::1:0:0:1")
        XCTAssertEqual(IPv6Address("::ffff:198.18.0.1")?.description, "::ffff:c612:1")
        XCTAssertEqual(IPv6Address("::")?.description, "::")
        XCTAssertNil(IPv6Address("2001:db8::1::2"))
        XCTAssertNil(IPv6Address("12345::"))
        XCTAssertNil(IPv4Address("198.18.0.256"))
        XCTAssertNil(IPv4Address("198.18.0"))
    }

    /// A Linux router quotes the whole probe (RFC 1812); an RFC 792 router only 8 bytes of TCP.
    func testTimeExceededQuotesFullAndRFC792() throws {
        let probe = try Fixtures.syn4(ttl: 1).serialized(finalize: true)
        for (cut, expectFull) in [(probe.count, true), (28, false), (20 + 14, false)] {
            let icmp = ICMPMessage.error(family: .v4, type: ICMPv4Type.timeExceeded, code: 0, quoting: Array(probe[0..<cut]))
            let router = IPv4Header(source: IPv4Address(198, 18, 1, 1), destination: Fixtures.client4, protocol: .icmp)
            let bytes = try IPPacket(ip: .v4(router), transport: .icmp(icmp)).serialized(finalize: true)
            XCTAssertEqual(Checksum.internet(bytes, range: 20..<bytes.count), 0, "ICMP checksum")
            let parsed = try IPPacket.parse(bytes)
            guard let quote = parsed.icmp?.quote, let inner = quote.packet else { return XCTFail("no quote") }
            XCTAssertEqual(inner.ip.ttl, 1)
            if expectFull {
                XCTAssertEqual(inner.tcp?.header.options.options, Fixtures.linuxSYNOptions)
                XCTAssertEqual(inner.missingBytes, 0)
            } else {
                guard case .partialTCP(let t) = inner.transport else { return XCTFail("expected partial TCP") }
                XCTAssertEqual(t.sourcePort, 40000)
                XCTAssertEqual(t.destinationPort, 80)
                XCTAssertEqual(t.sequenceNumber, 0xdead_beef)
                XCTAssertEqual(inner.missingBytes, probe.count - cut)
                if cut == 28 { XCTAssertNil(t.acknowledgmentNumber) } else { XCTAssertNotNil(t.flags) }
            }
            XCTAssertEqual(try parsed.serialized(), bytes)
        }
    }

    func testRFC4884MPLSExtension() throws {
        let probe = try Fixtures.syn4(ttl: 1).serialized(finalize: true)
        let labels = [MPLSLabelStackEntry(label: 16, exp: 0, bottomOfStack: false, ttl: 1),
                      MPLSLabelStackEntry(label: 299_792, exp: 5, bottomOfStack: true, ttl: 1)]
        let payload = labels.flatMap { e -> [UInt8] in var w = ByteWriter(); w.write(e.rawValue); return w.bytes }
        let ext = ICMPExtensionStructure(objects: [ICMPExtensionObject(classNumber: 1, cType: 1, payload: payload)])
        for family in [ICMPMessage.Family.v4, .v6] {
            let icmp = ICMPMessage.error(family: family, type: family == .v4 ? 11 : 3, code: 0, quoting: probe, extensions: ext)
            var r = ByteReader(icmp.bodyWithHeader())
            let parsed = try ICMPMessage.parse(family: family, &r, depth: 0)
            XCTAssertEqual(parsed.rfc4884Length, 128)
            XCTAssertEqual(parsed.extensions?.checksumValid, true)
            let stack = parsed.extensions?.objects.first?.mplsLabelStack
            XCTAssertEqual(stack?.map(\.label), [16, 299_792])
            XCTAssertEqual(stack?.map(\.exp), [0, 5])
            XCTAssertEqual(stack?.map(\.bottomOfStack), [false, true])
            // The padded quote still decodes: the IP length field ends the packet before the padding.
            XCTAssertEqual(parsed.quote?.packet?.tcp?.header.options.options, Fixtures.linuxSYNOptions)
        }
    }

    func testPacketTooBigAndFragNeededMTU() throws {
        let v6 = ICMPMessage(family: .v6, type: ICMPv6Type.packetTooBig, code: 0, rest: 1280)
        XCTAssertEqual(v6.mtu, 1280)
        let v4 = ICMPMessage(family: .v4, type: 3, code: 4, rest: 1400)
        XCTAssertEqual(v4.mtu, 1400)
        XCTAssertTrue(v4.isError)
    }

    func testDSSChecksumMatchesKernelConstruction() {
        // RFC 8684 §3.3.1: checksum over pseudo-header (DSN, SSN, length, 0) and payload; a
        // receiver summing everything including the checksum gets zero.
        let payload: [UInt8] = Array("hello, multipath".utf8)
        let c = Checksum.dss(dataSequenceNumber: 0x0102_0304_0506_0708, subflowSequenceNumber: 1,
                             dataLevelLength: UInt16(payload.count), payload: payload)
        var sum = InternetChecksum()
        sum.add(UInt64(0x0102_0304_0506_0708)); sum.add(UInt32(1)); sum.add(UInt16(payload.count)); sum.add(c)
        sum.add(payload)
        XCTAssertEqual(sum.value, 0)
    }
}

extension ICMPMessage {
    /// Header + body bytes (for parsing an ICMP message on its own in tests).
    func bodyWithHeader() -> [UInt8] {
        var w = ByteWriter()
        write(to: &w)
        return w.bytes
    }
}
