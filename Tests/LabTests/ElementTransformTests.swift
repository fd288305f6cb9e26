@testable import Lab
import Wire
import XCTest

/// The element's transformations, without privileges: bytes in, decisions out.
final class ElementTransformTests: XCTestCase {
    static let a4 = IPv4Address(198, 18, 1, 2), b4 = IPv4Address(198, 18, 2, 2)
    static let a6 = IPv6Address("2001:db8:1::2")!, b6 = IPv6Address("2001:db8:2::2")!
    let fwd = PacketContext(hook: .forward)

    static func segment(v6: Bool = false, reverse: Bool = false, seq: UInt32 = 1000, ack: UInt32 = 5000,
                        flags: TCPFlags = [.ack, .psh], options: [TCPOption] = [], payload: [UInt8] = [],
                        ttl: UInt8 = 64) -> [UInt8] {
        let (sp, dp): (UInt16, UInt16) = reverse ? (80, 40000) : (40000, 80)
        let tcp = TCPHeader(sourcePort: sp, destinationPort: dp, sequenceNumber: seq, acknowledgmentNumber: ack,
                            flags: flags, window: 500, options: options)
        let ip: IPHeader
        if v6 {
            ip = .v6(IPv6Header(source: reverse ? b6 : a6, destination: reverse ? a6 : b6, nextHeader: .tcp, hopLimit: ttl))
        } else {
            var h = IPv4Header(source: reverse ? b4 : a4, destination: reverse ? a4 : b4, protocol: .tcp, ttl: ttl)
            h.identification = 77
            ip = .v4(h)
        }
        return try! IPPacket(ip: ip, transport: .tcp(TCPSegment(header: tcp, payload: payload))).serialized(finalize: true)
    }

    static let dss = TCPOption.mptcp(.dss(DSS(dataACK: 0x0102_0304, mapping: DSS.Mapping(
        dataSequenceNumber: 0x1_0000_0001, subflowSequenceNumber: 1, dataLevelLength: 11))))
    static let ts = TCPOption.timestamps(value: 1, echoReply: 2)
    static let payload = Array("HELLO world".utf8)

    /// The TCP checksum of `bytes` verifies.
    func assertTCPChecksumValid(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try IPPacket.parse(bytes)
        let t = p.ip.headerLength
        let stored = bytes.uint16(at: t + 16)
        let computed = Checksum.transport(source: p.ip.source, destination: p.ip.destination, protocol: 6,
                                          segment: bytes, range: t..<bytes.count, checksumFieldOffset: 16)
        XCTAssertEqual(stored, computed, "TCP checksum", file: file, line: line)
        if case .v4(let h) = p.ip { XCTAssertEqual(h.checksum, h.computedChecksum, "IPv4 header checksum", file: file, line: line) }
    }

    func modified(_ d: ElementDecision, file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
        guard case .acceptModified(let b) = d.verdict else {
            XCTFail("expected a modified packet, got \(d.verdict)", file: file, line: line)
            return []
        }
        return b
    }

    func pipeline(_ texts: String..., seed: UInt64 = 7) throws -> ElementPipeline {
        ElementPipeline(behaviours: try texts.map(ElementBehaviour.init(parsing:)), seed: seed)
    }

    // MARK: options

    func testStripOverwritesOnlyTheSubtypeWithNOPs() throws {
        var p = try pipeline("strip:30/2@data")
        for v6 in [false, true] {
            let original = Self.segment(v6: v6, options: [.noOperation, .noOperation, Self.ts, Self.dss], payload: Self.payload)
            let out = modified(p.process(original, context: fwd))
            XCTAssertEqual(out.count, original.count)
            let seg = try XCTUnwrap(IPPacket.parse(out).tcp)
            XCTAssertFalse(seg.header.options.options.contains { $0.mptcpSubtype != nil })
            XCTAssertTrue(seg.header.options.options.contains(Self.ts))
            XCTAssertEqual(seg.header.options.options.filter { $0 == .noOperation }.count, 2 + Self.dss.encodedLength)
            XCTAssertEqual(seg.payload, Self.payload)
            try assertTCPChecksumValid(out)
            // Only the option bytes and the checksum changed.
            let t = v6 ? 40 : 20
            let changed = (0..<out.count).filter { out[$0] != original[$0] }
            XCTAssertTrue(changed.allSatisfy { ($0 >= t + 32 && $0 < t + 32 + Self.dss.encodedLength) || $0 == t + 16 || $0 == t + 17 }, "\(changed)")
        }
        // Not a data segment, or another subtype: untouched.
        let ack = Self.segment(options: [Self.dss])
        XCTAssertEqual(p.process(ack, context: fwd).verdict, .accept)
        var q = try pipeline("strip:30/0@data")
        XCTAssertEqual(q.process(Self.segment(options: [Self.dss], payload: Self.payload), context: fwd).verdict, .accept)
        // A behaviour for prerouting does not act on packets queued in forward.
        var r = try pipeline("strip:30/2@data@pre")
        XCTAssertEqual(r.process(Self.segment(options: [Self.dss], payload: Self.payload), context: fwd).verdict, .accept)
        XCTAssertNotEqual(r.process(Self.segment(options: [Self.dss], payload: Self.payload),
                                    context: PacketContext(hook: .prerouting)).verdict, .accept)
    }

    func testRemoveShrinksTheHeader() throws {
        var p = try pipeline("remove:30/2@data")
        for v6 in [false, true] {
            let original = Self.segment(v6: v6, options: [.noOperation, .noOperation, Self.ts, Self.dss], payload: Self.payload)
            let out = modified(p.process(original, context: fwd))
            let before = try XCTUnwrap(IPPacket.parse(original).tcp), after = try XCTUnwrap(IPPacket.parse(out).tcp)
            XCTAssertEqual(after.header.options.options, [.noOperation, .noOperation, Self.ts])
            XCTAssertEqual(after.header.headerLength, 32)
            XCTAssertEqual(original.count - out.count, before.header.headerLength - after.header.headerLength)
            XCTAssertEqual(after.payload, Self.payload)
            XCTAssertEqual(after.header.sequenceNumber, before.header.sequenceNumber)
            try assertTCPChecksumValid(out)
            XCTAssertEqual(try IPPacket.parse(out).missingBytes, 0)
        }
    }

    func testEOLZeroesTheOption() throws {
        var p = try pipeline("eol:30@syn")
        let syn = Self.segment(flags: .syn, options: [.maximumSegmentSize(1460), .mptcp(.capable(MPCapable())), .sackPermitted])
        let out = modified(p.process(syn, context: fwd))
        let opts = try XCTUnwrap(IPPacket.parse(out).tcp).header.options
        // EOL ends the list: the SACK-permitted option after it is gone too.
        XCTAssertEqual(opts.options, [.maximumSegmentSize(1460), .endOfList])
        XCTAssertEqual(Array(opts.trailer.prefix(5)), [0, 0, 0, 4, 2])
        try assertTCPChecksumValid(out)
    }

    /// corrupt: the MP_JOIN SYN/ACK keeps kind, length, subtype and address id; its truncated
    /// HMAC and nonce are inverted; the checksum stays valid; other segments and options pass.
    func testCorruptInvertsTheOptionValueAndKeepsTheChecksumValid() throws {
        var p = try pipeline("corrupt:30/1@synack")
        let join = MPJoin(flags: 0, addressID: 3, stage: .synAck(truncatedHMAC: 0x0123_4567_89ab_cdef, senderNonce: 0xdead_beef))
        for v6 in [false, true] {
            let original = Self.segment(v6: v6, reverse: true, flags: [.syn, .ack], options: [.maximumSegmentSize(1460), .mptcp(.join(join))])
            let out = modified(p.process(original, context: fwd))
            XCTAssertEqual(out.count, original.count)
            try assertTCPChecksumValid(out)
            let opts = try XCTUnwrap(IPPacket.parse(out).tcp).header.options
            XCTAssertEqual(opts.options.first, .maximumSegmentSize(1460))
            guard case .mptcp(.join(let j))? = opts.options.last, case .synAck(let hmac, let nonce) = j.stage else {
                return XCTFail("still an MP_JOIN SYN/ACK: \(opts.options)")
            }
            XCTAssertEqual(j.addressID, 3)
            XCTAssertEqual(hmac, ~0x0123_4567_89ab_cdef)
            XCTAssertEqual(nonce, ~0xdead_beef)
            // Only the 12 value bytes (at option offset 4) and the checksum changed.
            let t = v6 ? 40 : 20, start = t + 20 + 4 + 4
            let changed = (0..<out.count).filter { out[$0] != original[$0] }
            XCTAssertEqual(Set(changed).subtracting([t + 16, t + 17]), Set(start..<(start + 12)), "\(changed)")
        }
        // A join SYN (another class) and an MP_CAPABLE SYN/ACK (another subtype) pass untouched.
        let syn = Self.segment(flags: .syn, options: [.mptcp(.join(MPJoin(stage: .syn(receiverToken: 1, senderNonce: 2))))])
        XCTAssertEqual(p.process(syn, context: fwd).verdict, .accept)
        let mpc = Self.segment(reverse: true, flags: [.syn, .ack], options: [.mptcp(.capable(MPCapable(senderKey: 5)))])
        XCTAssertEqual(p.process(mpc, context: fwd).verdict, .accept)
        // Which bytes: MPTCP after the 4-byte header (3 for 4-byte options), others after kind and length.
        XCTAssertEqual(Transforms.corruptedRange(kind: 30, length: 16), 4..<16)
        XCTAssertEqual(Transforms.corruptedRange(kind: 30, length: 4), 3..<4)
        XCTAssertEqual(Transforms.corruptedRange(kind: 2, length: 4), 2..<4)
    }

    func testDropSelectsSegmentsCarryingTheOption() throws {
        var p = try pipeline("drop:30/0@syn")
        XCTAssertEqual(p.process(Self.segment(flags: .syn, options: [.mptcp(.capable(MPCapable()))]), context: fwd).verdict, .drop)
        XCTAssertEqual(p.process(Self.segment(flags: .syn, options: [.maximumSegmentSize(1460)]), context: fwd).verdict, .accept)
        XCTAssertEqual(p.process(Self.segment(flags: [.syn, .ack], options: [.mptcp(.capable(MPCapable()))]), context: fwd).verdict, .accept)
    }

    // MARK: sequence numbers

    func testSeqrandIsConsistentAcrossDirections() throws {
        var p = try pipeline("seqrand")
        // Client SYN, server SYN/ACK, client ACK with a SACK block, server data.
        let syn = modified(p.process(Self.segment(seq: 1000, ack: 0, flags: .syn), context: fwd))
        let offC = try XCTUnwrap(IPPacket.parse(syn).tcp).header.sequenceNumber &- 1000
        XCTAssertNotEqual(offC, 0)
        // The server acknowledges what it saw: 1000 + offC + 1.
        let synack = modified(p.process(Self.segment(reverse: true, seq: 9000, ack: 1001 &+ offC, flags: [.syn, .ack]), context: fwd))
        let sa = try XCTUnwrap(IPPacket.parse(synack).tcp).header
        XCTAssertEqual(sa.acknowledgmentNumber, 1001, "the client sees its own sequence space")
        let offS = sa.sequenceNumber &- 9000
        XCTAssertNotEqual(offS, 0)
        XCTAssertNotEqual(offS, offC)
        // The client acknowledges the server's shifted numbers and SACKs a block of them.
        let sack = TCPOption.sack([SACKBlock(left: 9101 &+ offS, right: 9201 &+ offS)])
        let ack = modified(p.process(Self.segment(seq: 1001, ack: 9001 &+ offS, options: [.noOperation, .noOperation, sack],
                                                  payload: Self.payload), context: fwd))
        let ah = try XCTUnwrap(IPPacket.parse(ack).tcp).header
        XCTAssertEqual(ah.sequenceNumber, 1001 &+ offC)
        XCTAssertEqual(ah.acknowledgmentNumber, 9001)
        XCTAssertEqual(ah.options.options[2], .sack([SACKBlock(left: 9101, right: 9201)]))
        for b in [syn, synack, ack] { try assertTCPChecksumValid(b) }
        // Same seed, same offsets; another connection gets its own.
        var q = try pipeline("seqrand")
        XCTAssertEqual(modified(q.process(Self.segment(seq: 1000, ack: 0, flags: .syn), context: fwd)), syn)
        let other = Self.segment(seq: 1000, ack: 0, flags: .syn).enumerated().map { $0.offset == 21 ? UInt8(0x9d) : $0.element }
        let o = try XCTUnwrap(IPPacket.parse(modified(q.process(try IPPacket.parse(other).serialized(finalize: true), context: fwd))).tcp)
        XCTAssertNotEqual(o.header.sequenceNumber &- 1000, offC)
    }

    // MARK: payload

    func testPayloadRewriteKeepsChecksumsValid() throws {
        var p = try pipeline("payload:s/HELLO/HOLLA/")
        for v6 in [false, true] {
            // Occurrences at even and odd offsets.
            let data = Array("xHELLO HELLO".utf8)
            let out = modified(p.process(Self.segment(v6: v6, options: [Self.dss], payload: data), context: fwd))
            XCTAssertEqual(try XCTUnwrap(IPPacket.parse(out).tcp).payload, Array("xHOLLA HOLLA".utf8))
            try assertTCPChecksumValid(out)
        }
        XCTAssertEqual(p.process(Self.segment(payload: Array("nothing".utf8)), context: fwd).verdict, .accept)
        var o = try pipeline("payload:o/3/ffff/")
        let out = modified(o.process(Self.segment(payload: Array("abcd".utf8)), context: fwd))
        XCTAssertEqual(try XCTUnwrap(IPPacket.parse(out).tcp).payload, [0x61, 0x62, 0x63, 0xff])
        try assertTCPChecksumValid(out)
    }

    func testIncrementalUpdateKeepsABadChecksumBad() throws {
        var bytes = Self.segment(payload: Self.payload)
        bytes[36] ^= 0x55  // corrupt the TCP checksum
        var p = try pipeline("payload:s/HELLO/HOLLA/")
        let out = modified(p.process(bytes, context: fwd))
        let pk = try IPPacket.parse(out)
        let computed = Checksum.transport(source: pk.ip.source, destination: pk.ip.destination, protocol: 6,
                                          segment: out, range: 20..<out.count, checksumFieldOffset: 16)
        XCTAssertNotEqual(out.uint16(at: 36), computed, "a box does not repair what it did not break")
    }

    // MARK: segmentation

    func testSplitCoversTheOriginalExactly() throws {
        var p = try pipeline("split:100")
        let data = (0..<250).map { UInt8($0 & 0xff) }
        for v6 in [false, true] {
            let d = p.process(Self.segment(v6: v6, seq: 0xffff_ff80, flags: [.ack, .psh], options: [Self.ts], payload: data), context: fwd)
            XCTAssertEqual(d.verdict, .drop)
            let pieces = try d.injections.map { try XCTUnwrap(IPPacket.parse($0.bytes).tcp) }
            XCTAssertEqual(pieces.map(\.payload.count), [100, 100, 50])
            XCTAssertEqual(pieces.map(\.header.sequenceNumber), [0xffff_ff80, 0xffff_ff80 &+ 100, 0xffff_ff80 &+ 200])
            XCTAssertEqual(pieces.flatMap(\.payload), data)
            XCTAssertEqual(pieces.map { $0.header.flags.contains(.psh) }, [false, false, true])
            XCTAssertTrue(pieces.allSatisfy { $0.header.options.options.first == Self.ts && $0.header.acknowledgmentNumber == 5000 })
            for b in d.injections { try assertTCPChecksumValid(b.bytes) }
        }
        // Small segments pass.
        XCTAssertEqual(p.process(Self.segment(payload: Self.payload), context: fwd).verdict, .accept)
    }

    func testCoalesceMergesUpToTheReceiversMSS() throws {
        var p = try pipeline("coalesce")
        // The receiver (server) announces MSS 300 in its SYN/ACK.
        XCTAssertEqual(p.process(Self.segment(reverse: true, flags: [.syn, .ack], options: [.maximumSegmentSize(300)]),
                                 context: fwd).verdict, .accept)
        let chunk = { (i: Int) in [UInt8](repeating: UInt8(i), count: 100) }
        var ctx = fwd
        ctx.now = 1000
        XCTAssertEqual(p.process(Self.segment(seq: 1000, ack: 1, payload: chunk(1)), context: ctx), ElementDecision(verdict: .drop))
        XCTAssertEqual(p.process(Self.segment(seq: 1100, ack: 2, payload: chunk(2)), context: ctx), ElementDecision(verdict: .drop))
        let merged = modified(p.process(Self.segment(seq: 1200, ack: 3, payload: chunk(3)), context: ctx))
        let m = try XCTUnwrap(IPPacket.parse(merged).tcp)
        XCTAssertEqual(m.header.sequenceNumber, 1000)
        XCTAssertEqual(m.header.acknowledgmentNumber, 3)
        XCTAssertEqual(m.payload, chunk(1) + chunk(2) + chunk(3))
        try assertTCPChecksumValid(merged)
        // A lone segment is released by the timer.
        XCTAssertEqual(p.process(Self.segment(seq: 1300, payload: chunk(4)), context: ctx).verdict, .drop)
        XCTAssertEqual(p.nextDeadline, 1000 + UInt64(ElementPipeline.coalesceHold))
        XCTAssertTrue(p.flush(now: 1005).isEmpty)
        let released = p.flush(now: 1000 + UInt64(ElementPipeline.coalesceHold))
        XCTAssertEqual(try released.map { try XCTUnwrap(IPPacket.parse($0.bytes).tcp).header.sequenceNumber }, [1300])
        // A FIN releases what is held first, in order.
        _ = p.process(Self.segment(seq: 1400, payload: chunk(5)), context: ctx)
        let fin = p.process(Self.segment(seq: 1500, flags: [.ack, .fin]), context: ctx)
        XCTAssertEqual(fin.verdict, .drop)
        XCTAssertEqual(try fin.injections.map { try XCTUnwrap(IPPacket.parse($0.bytes).tcp).header.sequenceNumber }, [1400, 1500])
    }

    // MARK: fake MPTCP box

    func testEchoMPCapableAnswersTheSYN() throws {
        var p = try pipeline("echo-mpc")
        let syn = Self.segment(seq: 777, ack: 0, flags: .syn, options: [.maximumSegmentSize(1460), .sackPermitted,
                                                                       .timestamps(value: 42, echoReply: 0), .noOperation,
                                                                       .windowScale(7), .mptcp(.capable(MPCapable(version: 1, flags: 0x81)))])
        let d = p.process(syn, context: fwd)
        XCTAssertEqual(d.verdict, .drop, "the SYN is not forwarded")
        let reply = try IPPacket.parse(try XCTUnwrap(d.injections.first).bytes)
        XCTAssertEqual(reply.ip.source, .v4(Self.b4))
        XCTAssertEqual(reply.ip.destination, .v4(Self.a4))
        let h = try XCTUnwrap(reply.tcp).header
        XCTAssertEqual(h.flags, [.syn, .ack])
        XCTAssertEqual(h.acknowledgmentNumber, 778)
        XCTAssertEqual(h.sourcePort, 80)
        guard case .mptcp(.capable(let m))? = h.options.options.last else { return XCTFail("no MP_CAPABLE in \(h.options)") }
        XCTAssertEqual(m.version, 1)
        XCTAssertEqual(m.flags, 0x81)
        XCTAssertNotNil(m.senderKey, "a v1 SYN/ACK carries a key")
        XCTAssertTrue(h.options.options.contains(.timestamps(value: 0, echoReply: 42)) == false)
        XCTAssertTrue(h.options.options.contains { if case .timestamps(_, 42) = $0 { return true } else { return false } })
        try assertTCPChecksumValid(d.injections[0].bytes)
        // A v0 SYN's key comes back as it is: an echo.
        let v0 = Self.segment(v6: true, flags: .syn, options: [.mptcp(.capable(MPCapable(version: 0, flags: 0x81, senderKey: 0xabcd)))])
        let r0 = try XCTUnwrap(IPPacket.parse(try XCTUnwrap(p.process(v0, context: fwd).injections.first).bytes).tcp)
        XCTAssertEqual(r0.header.options.options.last, .mptcp(.capable(MPCapable(version: 0, flags: 0x81, senderKey: 0xabcd))))
        // A SYN without MP_CAPABLE passes.
        XCTAssertEqual(p.process(Self.segment(flags: .syn, options: [.maximumSegmentSize(1460)]), context: fwd).verdict, .accept)
    }

    // MARK: RFC 792 router

    func testRFC792AnswersExpiringPacketsWithShortQuotes() throws {
        var p = try pipeline("rfc792")
        let box4 = IPAddress.v4(IPv4Address(198, 18, 1, 1)), box6 = IPAddress.v6(IPv6Address("2001:db8:1::1")!)
        let link = IPAddress.v6(IPv6Address("fe80::1")!)
        let ctx = PacketContext(hook: .prerouting, incomingAddresses: [link, box4, box6], localAddresses: [box4, box6])
        for v6 in [false, true] {
            let probe = Self.segment(v6: v6, flags: .syn, options: [.mptcp(.capable(MPCapable()))], ttl: 1)
            let d = p.process(probe, context: ctx)
            XCTAssertEqual(d.verdict, .drop)
            let reply = try IPPacket.parse(try XCTUnwrap(d.injections.first).bytes)
            XCTAssertEqual(reply.ip.source, v6 ? box6 : box4)
            XCTAssertEqual(reply.ip.destination, v6 ? .v6(Self.a6) : .v4(Self.a4))
            let icmp = try XCTUnwrap(reply.icmp)
            XCTAssertEqual(icmp.type, v6 ? ICMPv6Type.timeExceeded : ICMPv4Type.timeExceeded)
            XCTAssertEqual(icmp.body, Array(probe.prefix(v6 ? 48 : 28)))
            guard case .partialTCP(let q)? = icmp.quote?.packet?.transport else { return XCTFail("quote: \(String(describing: icmp.quote))") }
            XCTAssertEqual(q.sequenceNumber, 1000)
            XCTAssertNil(q.acknowledgmentNumber)
            // The ICMP checksum verifies.
            let bytes = d.injections[0].bytes
            let t = v6 ? 40 : 20
            if v6 {
                XCTAssertEqual(Checksum.transport(source: reply.ip.source, destination: reply.ip.destination, protocol: 58,
                                                  segment: bytes, range: t..<bytes.count, checksumFieldOffset: 2), bytes.uint16(at: t + 2))
            } else {
                XCTAssertEqual(Checksum.internet(bytes, range: t..<bytes.count), 0)
            }
        }
        // Packets that do not expire here pass: TTL 2, to the box itself, or queued elsewhere.
        XCTAssertEqual(p.process(Self.segment(ttl: 2), context: ctx).verdict, .accept)
        var local = ctx
        local.localAddresses.insert(.v4(Self.b4))
        XCTAssertEqual(p.process(Self.segment(ttl: 1), context: local).verdict, .accept)
        XCTAssertEqual(p.process(Self.segment(ttl: 1), context: fwd).verdict, .accept)
        // Link-local and multicast traffic (an MLD report has hop limit 1) is not forwarded.
        var mld = try IPPacket.parse(Self.segment(v6: true, ttl: 1))
        if case .v6(var h) = mld.ip {
            h.destination = IPv6Address("ff02::16")!
            mld.ip = .v6(h)
        }
        XCTAssertEqual(p.process(try mld.serialized(finalize: true), context: ctx).verdict, .accept)
        var ll = try IPPacket.parse(Self.segment(v6: true, ttl: 1))
        if case .v6(var h) = ll.ip {
            h.source = IPv6Address("fe80::2")!
            ll.ip = .v6(h)
        }
        XCTAssertEqual(p.process(try ll.serialized(finalize: true), context: ctx).verdict, .accept)
    }

    func testRFC792CutsTheBoxsOwnICMPQuotes() throws {
        var p = try pipeline("rfc792")
        let probe = Self.segment(options: [Self.dss], payload: Self.payload, ttl: 1)
        var ip = IPv4Header(source: IPv4Address(198, 18, 1, 1), destination: Self.a4, protocol: .icmp)
        ip.identification = 1
        let full = try IPPacket(ip: .v4(ip), transport: .icmp(.error(family: .v4, type: 11, code: 0, quoting: probe)))
            .serialized(finalize: true)
        let out = modified(p.process(full, context: PacketContext(hook: .output)))
        let icmp = try XCTUnwrap(IPPacket.parse(out).icmp)
        XCTAssertEqual(icmp.body, Array(probe.prefix(28)))
        XCTAssertEqual(Checksum.internet(out, range: 20..<out.count), 0)
        XCTAssertEqual(Checksum.internet(out, range: 0..<20), 0)
    }

    // MARK: timing and loss

    func testLossDuplicationDelayReorder() throws {
        let pkt = Self.segment(payload: Self.payload)
        var all = try pipeline("loss:100")
        XCTAssertEqual(all.process(pkt, context: fwd).verdict, .drop)
        var none = try pipeline("loss:0")
        XCTAssertEqual(none.process(pkt, context: fwd).verdict, .accept)
        var dup = try pipeline("dup:100")
        XCTAssertEqual(dup.process(pkt, context: fwd), ElementDecision(verdict: .drop, injections: [Emission(pkt), Emission(pkt)]))
        var delay = try pipeline("delay:50")
        XCTAssertEqual(delay.process(pkt, context: fwd), ElementDecision(verdict: .accept, verdictDelay: 50))
        var reorder = try pipeline("reorder:100")
        XCTAssertEqual(reorder.process(pkt, context: fwd).verdictDelay, ElementPipeline.reorderHold)
        // Only the selected class is delayed.
        var delayData = try pipeline("delay:50@data")
        XCTAssertEqual(delayData.process(Self.segment(), context: fwd).verdictDelay, 0)
        // A seed makes a run reproducible; another seed gives another run.
        func pattern(_ seed: UInt64) throws -> [Bool] {
            var l = try pipeline("loss:50", seed: seed)
            return (0..<64).map { _ in l.process(pkt, context: fwd).verdict == .drop }
        }
        XCTAssertEqual(try pattern(1), try pattern(1))
        XCTAssertNotEqual(try pattern(1), try pattern(2))
        let drops = try pattern(3).filter { $0 }.count
        XCTAssertTrue((16...48).contains(drops), "\(drops) of 64 dropped at 50%")
    }

    func testNonTCPAndGarbagePassUnchanged() throws {
        var p = try pipeline("strip:30", "seqrand", "split:10", "payload:s/a/b/")
        for bytes in [[UInt8](), [0x45, 0, 0], [0x60] + [UInt8](repeating: 0, count: 10)] {
            XCTAssertEqual(p.process(bytes, context: fwd).verdict, .accept)
        }
        var ip = IPv4Header(source: Self.a4, destination: Self.b4, protocol: .udp)
        ip.identification = 3
        let udp = try IPPacket(ip: .v4(ip), transport: .udp(UDPDatagram(sourcePort: 1, destinationPort: 2, payload: [1, 2])))
            .serialized(finalize: true)
        XCTAssertEqual(p.process(udp, context: fwd).verdict, .accept)
    }
}
