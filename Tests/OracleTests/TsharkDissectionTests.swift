import Foundation
import TestSupport
import Wire
import XCTest

/// tshark as an independent oracle for what Wire writes. Every packet is crafted with the Wire
/// API, written to a pcap with libpcap's dumper and dissected by tshark (one run per capture);
/// the fields tshark shows are compared with what the test meant, written down from the intended
/// values and RFC lengths (not from Wire's encoder). A malformed frame, an unexpected expert
/// warning or error, a checksum tshark does not find good, or any field mismatch fails the test.
///
/// Where tshark 4.0 and Wire disagreed, RFC 8684 sided with Wire:
/// - tshark never shows the DSS checksum: epan's packet-tcp.c asks for `optlen >= offset + 4`
///   after the data-level length, two bytes more than the checksum takes. The test checks the
///   option length tshark reads and the checksum bytes inside the option tshark delimits instead.
final class TsharkDissectionTests: XCTestCase {
    // MARK: - MPTCP: every variant of Fixtures.mptcpVariants, IPv4 and IPv6

    func testEveryMPTCPOptionVariantOverIPv4AndIPv6() throws {
        try TestEnvironment.requireTool("tshark")
        // One capture per address family: tshark links MPTCP connections by key across the whole
        // file, and the fixtures' keys repeat in the IPv6 copies ("echoed key does not match").
        for v6 in [false, true] {
            try Self.check(Self.mptcpCases(v6: v6))
        }
    }

    static func mptcpCases(v6: Bool) -> [OracleCase] {
        let family = v6 ? "IPv6" : "IPv4"
        var cases: [OracleCase] = []
        var port: UInt16 = 41000
        func add(_ name: String, _ seg: TCPIntent) {
            var seg = seg
            seg.sourcePort = port   // one TCP stream per packet, so tshark's stream analysis stays quiet
            port += 1
            if seg.flags.contains(.ack) && seg.ack == 0 { seg.ack = 0x2000_0001 }
            cases.append(OracleCase(name: "\(name) (\(family))", tcp: seg))
        }
        for (name, option) in Fixtures.mptcpVariants {
            var seg = TCPIntent(v6: v6, sourcePort: 0, flags: segmentFlags(for: option), options: [.mptcp(option)])
            seg.payload = payload(for: option)
            add(name, seg)
        }
        // Realistic combinations: the option lists Linux sends, and a full 40-byte option space.
        add("linux-syn", TCPIntent(v6: v6, sourcePort: 0, flags: .syn, options: Fixtures.linuxSYNOptions))
        let dss = DSS(dataACK: 0x0102_0304_0506_0708, dataACK64: true,
                      mapping: DSS.Mapping(dataSequenceNumber: 0x0a0b_0c0d_0e0f_1011, subflowSequenceNumber: 1, dataLevelLength: 5))
        var data = TCPIntent(v6: v6, sourcePort: 0, flags: [.ack, .psh],
                             options: [.noOperation, .noOperation, .timestamps(value: 7, echoReply: 9), .mptcp(.dss(dss))])
        data.payload = Array("hello".utf8)
        add("linux-data-ts-dss", data)
        let addAddr = AddAddress(addressID: 9, address: .v6(IPv6Address("2001:db8:9::9")!), port: 65535, hmac: 0xffee_ddcc_bbaa_9988)
        add("full-40-byte-option-space",
            TCPIntent(v6: v6, sourcePort: 0, flags: .ack, options: [.timestamps(value: 1, echoReply: 2), .mptcp(.addAddress(addAddr))]))
        return cases
    }

    // MARK: - Every other TCP option

    func testTCPOptionsOverIPv4AndIPv6() throws {
        try TestEnvironment.requireTool("tshark")
        let tfoCookie: [UInt8] = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04]
        let lists: [(String, TCPFlags, [TCPOption])] = [
            ("mss", .syn, [.maximumSegmentSize(1460)]),
            ("mss-min", .syn, [.maximumSegmentSize(536)]),
            ("wscale", .syn, [.noOperation, .windowScale(7)]),
            ("wscale-14", .syn, [.noOperation, .windowScale(14)]),
            ("sack-permitted", .syn, [.noOperation, .noOperation, .sackPermitted]),
            // Blocks lie above the cumulative ACK (0x3000_0000), else tshark reports a D-SACK.
            ("sack-1", .ack, [.noOperation, .noOperation, .sack([SACKBlock(left: 0x3000_1000, right: 0x3000_2000)])]),
            ("sack-3", .ack, [.noOperation, .noOperation,
                              .sack([SACKBlock(left: 0x3000_0010, right: 0x3000_0020), SACKBlock(left: 0x3000_0030, right: 0x3000_0040),
                                     SACKBlock(left: 0x7fff_fff0, right: 0x8000_0005)])]),
            ("sack-4", .ack, [.sack((0..<4).map { SACKBlock(left: UInt32($0) * 100 + 0x3000_0100, right: UInt32($0) * 100 + 0x3000_0150) })]),
            ("timestamps", .ack, [.noOperation, .noOperation, .timestamps(value: 0xfedc_ba98, echoReply: 0x0123_4567)]),
            ("md5", .syn, [.md5Signature(Array(0x10..<0x20)), .noOperation, .noOperation]),
            ("tcp-ao", .ack, [.raw(kind: 29, data: [5, 6] + Array(0xa0..<0xac))]),
            ("tfo-request", .syn, [.fastOpen(cookie: []), .noOperation, .noOperation]),
            ("tfo-cookie-8", .syn, [.fastOpen(cookie: tfoCookie), .noOperation, .noOperation]),
            ("tfo-cookie-16", .syn, [.fastOpen(cookie: Array(1...16)), .noOperation, .noOperation]),
            ("tfo-exp-request", .syn, [.experimental(kind: 254, exid: TCPOptionKind.fastOpenExID, data: [])]),
            ("tfo-exp-cookie", .syn, [.experimental(kind: 254, exid: TCPOptionKind.fastOpenExID, data: tfoCookie)]),
            ("exp-253-other-exid", .ack, [.experimental(kind: 253, exid: 0x1234, data: [9, 8])]),
            ("unknown-kind-99", .ack, [.raw(kind: 99, data: [1, 2, 3]), .noOperation]),
            ("unknown-kind-200-empty", .ack, [.raw(kind: 200, data: []), .noOperation, .noOperation]),
            ("eol-then-padding", .syn, [.maximumSegmentSize(1400), .endOfList]),
            ("no-options", .ack, []),
        ]
        var cases: [OracleCase] = []
        var port: UInt16 = 42000
        for v6 in [false, true] {
            for (name, flags, options) in lists {
                var seg = TCPIntent(v6: v6, sourcePort: port, flags: flags, options: options)
                if flags.contains(.ack) { seg.ack = 0x3000_0000 }
                cases.append(OracleCase(name: "\(name) (\(v6 ? "IPv6" : "IPv4"))", tcp: seg))
                port += 1
            }
        }
        try Self.check(cases)
    }

    // MARK: - UDP, ICMP and ICMPv6 errors quoting probes, RFC 4884 MPLS extensions

    func testUDPAndICMPErrorsQuotingProbes() throws {
        try TestEnvironment.requireTool("tshark")
        var cases: [OracleCase] = []
        for v6 in [false, true] {
            cases.append(OracleCase(name: "udp (\(v6 ? "IPv6" : "IPv4"))",
                                    udp: UDPIntent(v6: v6, sourcePort: 43000, destinationPort: 33435, payload: Array("probe".utf8))))
            cases.append(OracleCase(name: "udp-empty (\(v6 ? "IPv6" : "IPv4"))",
                                    udp: UDPIntent(v6: v6, sourcePort: 43001, destinationPort: 33434, payload: [])))
        }
        // The probe a router quotes: an MPTCP SYN with TTL 1.
        for v6 in [false, true] {
            var probe = TCPIntent(v6: v6, sourcePort: 44000, flags: .syn, options: Fixtures.linuxSYNOptions)
            probe.ttl = 1
            probe.seq = 0xdead_beef
            let label = MPLSLabelStackEntry(label: 0x12345, exp: 5, bottomOfStack: true, ttl: 1)
            let label2 = MPLSLabelStackEntry(label: 16, exp: 0, bottomOfStack: false, ttl: 254)
            let ext = ICMPExtensionStructure(objects: [ICMPExtensionObject(classNumber: 1, cType: 1,
                                                                           payload: label2.bytes + label.bytes)])
            let fam = v6 ? "ICMPv6" : "ICMP"
            cases.append(try OracleCase(name: "\(fam) time exceeded, full quote",
                                    icmp: ICMPIntent(v6: v6, type: v6 ? 3 : 11, code: 0, quoted: probe)))
            if !v6 {
                // RFC 792 routers quote the IP header and 8 bytes: ports and sequence number.
                cases.append(try OracleCase(name: "ICMP time exceeded, RFC 792 quote (28 bytes)",
                                        icmp: ICMPIntent(v6: false, type: 11, code: 0, quoted: probe, quoteLength: 28)))
                cases.append(try OracleCase(name: "ICMP destination unreachable (port), full quote",
                                        icmp: ICMPIntent(v6: false, type: 3, code: 3, quoted: probe)))
            } else {
                cases.append(try OracleCase(name: "ICMPv6 destination unreachable (port), full quote",
                                        icmp: ICMPIntent(v6: true, type: 1, code: 4, quoted: probe)))
            }
            cases.append(try OracleCase(name: "\(fam) time exceeded, RFC 4884 MPLS extension",
                                    icmp: ICMPIntent(v6: v6, type: v6 ? 3 : 11, code: 0, quoted: probe, mpls: [label2, label],
                                                     extensions: ext)))
        }
        try Self.check(cases)
    }

    // MARK: - Malformed options: Wire and tshark must both reject them

    /// Option areas with a bad length. Wire must parse each as `.malformed` (of the right kind) and
    /// tshark must flag it too. tshark 4.0 validates the lengths of the classic options only; it
    /// dissects any MPTCP length as far as the bytes go and accepts odd TFO cookie lengths that
    /// RFC 7413 and Linux reject, so those are covered by WireTests alone.
    func testMalformedOptionLengthsAreFlaggedByBoth() throws {
        try TestEnvironment.requireTool("tshark")
        let areas: [(String, [UInt8], String)] = [
            ("mss-len-3", [2, 3, 5, 1], "option length should be 4"),
            ("wscale-len-4", [3, 4, 7, 0], "option length should be 3"),
            ("sack-permitted-len-3", [4, 3, 0, 1], "option length should be 2"),
            ("sack-len-11", [5, 11] + [UInt8](repeating: 1, count: 9) + [1], "suboption would go past end of option"),
            ("timestamps-len-9", [8, 9] + [UInt8](repeating: 1, count: 7) + [1], "option length should be 10"),
            ("md5-len-10", [19, 10] + [UInt8](repeating: 1, count: 8) + [1, 1], "option length should be 18"),
            ("length-1", [99, 1, 1, 1], "too-short option length = 1 byte"),
            ("length-0", [2, 0, 1, 1], "too-short option length = 0 bytes"),
            ("overrun", [99, 9, 1, 1], "says option goes past end of options"),
            ("mptcp-len-2", [30, 2, 1, 1], "Malformed Packet"),
        ]
        var packets: [[UInt8]] = []
        for (i, (name, area, _)) in areas.enumerated() {
            let kind = area[0]
            let parsed = TCPOptions.parse(ByteReader(area))
            guard case .malformed(let m)? = parsed.options.first, m.kind == kind else {
                XCTFail("\(name): Wire parses \(area) as \(parsed.options), not as a malformed kind \(kind)")
                continue
            }
            var seg = TCPIntent(v6: i % 2 == 1, sourcePort: UInt16(45000 + i), flags: .syn, options: [.malformed(m)])
            seg.options += parsed.options.dropFirst()
            packets.append(try OracleCase.build(seg).serialized(finalize: true))
        }
        guard packets.count == areas.count else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mptracebox-oracle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let pcap = dir.appendingPathComponent("malformed.pcap").path
        try RawIPPcap.write(packets, to: pcap)
        let frames = try Tshark.dissect(pcap: pcap, fields: ["tcp.option_kind"], preferences: ["tcp.check_checksum": "TRUE"])
        XCTAssertEqual(frames.count, areas.count)
        for ((name, area, message), frame) in zip(areas, frames) {
            // tshark stops before the kind field when the length itself is invalid.
            if let kind = frame["tcp.option_kind"].first {
                XCTAssertEqual(kind, "\(area[0])", "\(name): tshark sees another option kind")
            }
            XCTAssertTrue(frame.expertItems.contains { $0.message.contains(message) },
                          "\(name): tshark does not flag \(area); its expert items: \(frame.expertItems.map(\.message))")
        }
    }

    // MARK: - What the segments look like

    /// tshark's MPTCP dissection keys some subtypes on the TCP flags and length (MP_CAPABLE 12 in
    /// a SYN or SYN/ACK, MP_JOIN 12/16/24 in SYN/SYN-ACK/ACK), so each option rides the segment it belongs to.
    static func segmentFlags(for option: MPTCPOption) -> TCPFlags {
        switch option {
        case .capable(let c):
            switch (c.senderKey, c.receiverKey, c.dataLevelLength) {
            case (nil, _, _): return .syn
            case (.some, nil, _): return c.version == 0 ? .syn : [.syn, .ack]
            case (.some, .some, nil): return .ack
            default: return [.ack, .psh]
            }
        case .join(let j):
            switch j.stage {
            case .syn: return .syn
            case .synAck: return [.syn, .ack]
            case .ack: return .ack
            }
        case .dss(let d):
            if d.mapping != nil { return [.ack, .psh] }
            return d.isDataFIN ? [.ack, .fin] : .ack
        case .reset: return [.rst, .ack]
        case .fastClose: return [.rst, .ack]
        default: return .ack
        }
    }

    /// Data segments carry as many bytes as their mapping or MP_CAPABLE says.
    static func payload(for option: MPTCPOption) -> [UInt8] {
        switch option {
        case .capable(let c): return c.dataLevelLength.map { [UInt8](repeating: 0x61, count: Int($0)) } ?? []
        case .dss(let d):
            guard let m = d.mapping else { return [] }
            return [UInt8](repeating: 0x62, count: m.dataLevelLength == 0 ? 10 : Int(m.dataLevelLength))
        default: return []
        }
    }

    // MARK: - Running tshark and comparing

    /// Fields compared for every frame: a field not in a case's expectations must be absent.
    static let strictFields: [String] = [
        "ip.src", "ip.dst", "ip.ttl", "ip.len", "ip.proto", "ip.id", "ip.flags.df", "ip.checksum.status",
        "ipv6.src", "ipv6.dst", "ipv6.plen", "ipv6.nxt", "ipv6.hlim",
        "tcp.srcport", "tcp.dstport", "tcp.seq", "tcp.ack", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.hdr_len", "tcp.len",
        "tcp.window_size_value", "tcp.checksum.status", "tcp.option_kind", "tcp.option_len",
        "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.wscale.multiplier",
        "tcp.options.sack_le", "tcp.options.sack_re", "tcp.options.sack.count",
        "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "tcp.options.md5.digest",
        "tcp.options.ao.keyid", "tcp.options.ao.rnextkeyid", "tcp.options.ao.mac",
        "tcp.options.tfo.request", "tcp.options.tfo.cookie", "tcp.options.experimental.exid",
        "tcp.options.experimental.data", "tcp.options.unknown.payload",
        "tcp.options.mptcp.subtype", "tcp.options.mptcp.version", "tcp.options.mptcp.flags",
        "tcp.options.mptcp.reserved", "tcp.options.mptcp.reserved.flag",
        "tcp.options.mptcp.checksumreq.flags", "tcp.options.mptcp.extensibility.flag",
        "tcp.options.mptcp.nomoresubflows.flag", "tcp.options.mptcp.sha1.flag", "tcp.options.mptcp.sha256.flag",
        "tcp.options.mptcp.backup.flag", "tcp.options.mptcp.datafin.flag", "tcp.options.mptcp.dseqn8.flag",
        "tcp.options.mptcp.dseqnpresent.flag", "tcp.options.mptcp.dataack8.flag",
        "tcp.options.mptcp.dataackpresent.flag", "tcp.options.mptcp.flag_U.flag", "tcp.options.mptcp.flag_V.flag",
        "tcp.options.mptcp.flag_W.flag", "tcp.options.mptcp.flag_T.flag", "tcp.options.mptcp.rst_reason",
        "tcp.options.mptcp.addrid", "tcp.options.mptcp.sendkey", "tcp.options.mptcp.recvkey",
        "tcp.options.mptcp.recvtok", "tcp.options.mptcp.sendrand", "tcp.options.mptcp.sendtrunchmac",
        "tcp.options.mptcp.sendhmac", "tcp.options.mptcp.addaddrtrunchmac", "tcp.options.mptcp.rawdataack",
        "tcp.options.mptcp.rawdataseqno", "tcp.options.mptcp.subflowseqno", "tcp.options.mptcp.datalvllen",
        "tcp.options.mptcp.checksum", "tcp.options.mptcp.ipver", "tcp.options.mptcp.echo",
        "tcp.options.mptcp.ipv4", "tcp.options.mptcp.ipv6", "tcp.options.mptcp.port",
        "udp.srcport", "udp.dstport", "udp.length", "udp.checksum.status",
        "icmp.type", "icmp.code", "icmp.checksum.status", "icmp.length", "icmp.ext.version", "icmp.ext.checksum.status",
        "icmp.ext.class", "icmp.ext.ctype", "icmp.ext.length", "icmp.mpls.label", "icmp.mpls.exp", "icmp.mpls.s", "icmp.mpls.ttl",
        "icmpv6.type", "icmpv6.code", "icmpv6.checksum.status", "icmpv6.length",
    ]

    /// Writes the cases to one pcap, runs tshark once and compares every frame.
    static func check(_ cases: [OracleCase], file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mptracebox-oracle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let keep = ProcessInfo.processInfo.environment["ORACLE_KEEP_PCAP"] != nil
        defer { if !keep { try? FileManager.default.removeItem(at: dir) } }
        let pcap = dir.appendingPathComponent("crafted.pcap").path
        try RawIPPcap.write(try cases.map { try $0.bytes() }, to: pcap)
        if keep { print("oracle pcap kept at \(pcap)") }

        let extra = Set(cases.flatMap { $0.expect.keys }).subtracting(strictFields).sorted()
        let frames = try Tshark.dissect(pcap: pcap, fields: strictFields + ["tcp.options"] + extra, preferences: [
            "ip.check_checksum": "TRUE", "tcp.check_checksum": "TRUE", "udp.check_checksum": "TRUE",
            "tcp.relative_sequence_numbers": "FALSE", "tcp.analyze_sequence_numbers": "FALSE",
        ])
        XCTAssertEqual(frames.count, cases.count, "tshark saw \(frames.count) frames, \(cases.count) were written", file: file, line: line)
        for (c, frame) in zip(cases, frames) {
            var problems: [String] = []
            if frame.isMalformed { problems.append("tshark marks the frame malformed (\(frame["frame.protocols"].joined()))") }
            let loud = frame.expertItems.filter { $0.severity == "error" || $0.severity == "warn" }
            for item in loud where !c.expectedExperts.contains(item.message) {
                problems.append("unexpected expert \(item.severity): \(item.message)")
            }
            for e in c.expectedExperts.sorted() where !loud.contains(where: { $0.message == e }) {
                problems.append("expected expert item missing: \(e)")
            }
            for field in Set(strictFields).union(c.expect.keys).subtracting(c.unchecked).sorted() {
                let want = c.expect[field] ?? []
                let got = frame[field].map { $0.lowercased() }
                if got != want.map({ $0.lowercased() }) {
                    problems.append("\(field): tshark \(got.isEmpty ? "absent" : got.joined(separator: ",")), meant \(want.isEmpty ? "absent" : want.joined(separator: ","))")
                }
            }
            for check in c.byteChecks {
                let opts = Array(frame["tcp.options"].first.map { $0.replacingOccurrences(of: ":", with: "").lowercased() } ?? "")
                let at = check.offset * 2
                let got = at + check.hex.count <= opts.count ? String(opts[at..<(at + check.hex.count)]) : "(beyond \(opts.count / 2) option bytes)"
                if got != check.hex { problems.append("\(check.what) at option byte \(check.offset): \(got), meant \(check.hex)") }
            }
            if !problems.isEmpty {
                XCTFail("frame \(frame.number) \(c.name):\n  " + problems.joined(separator: "\n  "), file: file, line: line)
            }
        }
    }
}

// MARK: - Intents and expectations

/// A TCP segment as the test means it.
struct TCPIntent {
    var v6: Bool
    var sourcePort: UInt16
    var destinationPort: UInt16 = 80
    var seq: UInt32 = 0x1000_0000
    var ack: UInt32 = 0
    var flags: TCPFlags
    var window: UInt16 = 64240
    var options: [TCPOption]
    var payload: [UInt8] = []
    var ttl: UInt8 = 64
}

struct UDPIntent {
    var v6: Bool
    var sourcePort: UInt16
    var destinationPort: UInt16
    var payload: [UInt8]
}

/// An ICMP(v6) error from a router quoting a probe (the whole probe unless `quoteLength`).
struct ICMPIntent {
    var v6: Bool
    var type: UInt8
    var code: UInt8
    var quoted: TCPIntent
    var quoteLength: Int?
    var mpls: [MPLSLabelStackEntry] = []
    var extensions: ICMPExtensionStructure?
}

/// One crafted packet and the fields tshark must show for it.
struct OracleCase {
    var name: String
    var packet: IPPacket
    var expect: [String: [String]] = [:]
    var expectedExperts: Set<String> = []
    /// Strict fields not compared for this case (tshark shows them inconsistently).
    var unchecked: Set<String> = []
    /// Bytes of tshark's `tcp.options` to check where tshark shows no field: (what, offset, hex).
    var byteChecks: [(what: String, offset: Int, hex: String)] = []
    /// Where the option being expected starts in the option area.
    private var optionOffset = 0

    static let router4 = IPv4Address(198, 18, 1, 1)
    static let router6 = IPv6Address("2001:db8:1::1")!

    func bytes() throws -> [UInt8] { try packet.serialized(finalize: true) }

    init(name: String, tcp t: TCPIntent) {
        self.name = name
        packet = Self.build(t)
        expectTCPPacket(t, quotedBytes: nil)
    }

    init(name: String, udp u: UDPIntent) {
        self.name = name
        let dgram = UDPDatagram(sourcePort: u.sourcePort, destinationPort: u.destinationPort, payload: u.payload)
        packet = IPPacket(ip: Self.ipHeader(v6: u.v6, proto: .udp, ttl: 64, id: u.sourcePort), transport: .udp(dgram))
        expectIP(v6: u.v6, proto: 17, ttl: 64, id: u.sourcePort, transportLength: 8 + u.payload.count,
                 src: u.v6 ? "\(Fixtures.client6)" : "\(Fixtures.client4)",
                 dst: u.v6 ? "\(Fixtures.server6)" : "\(Fixtures.server4)")
        add("udp.srcport", u.sourcePort)
        add("udp.dstport", u.destinationPort)
        add("udp.length", 8 + u.payload.count)
        add("udp.checksum.status", Tshark.checksumGood)
    }

    init(name: String, icmp i: ICMPIntent) throws {
        self.name = name
        let probe = try Self.build(i.quoted).serialized(finalize: true)
        let quote = i.quoteLength.map { Array(probe.prefix($0)) } ?? probe
        let message = ICMPMessage.error(family: i.v6 ? .v6 : .v4, type: i.type, code: i.code, quoting: quote,
                                        extensions: i.extensions)
        var ip = Self.ipHeader(v6: i.v6, proto: i.v6 ? .icmpv6 : .icmp, ttl: 255, id: 7)
        switch ip {
        case .v4(var h): h.source = Self.router4; h.destination = Fixtures.client4; ip = .v4(h)
        case .v6(var h): h.source = Self.router6; h.destination = Fixtures.client6; ip = .v6(h)
        }
        packet = IPPacket(ip: ip, transport: .icmp(message))

        // RFC 4884: the quote is padded to 128 bytes (a multiple of 4 or 8) before the extension.
        let paddedQuote = i.extensions == nil ? quote.count : max(128, quote.count)
        let extLength = i.extensions.map { 4 + $0.objects.reduce(0) { $0 + 4 + $1.payload.count } } ?? 0
        expectIP(v6: i.v6, proto: i.v6 ? 58 : 1, ttl: 255, id: 7, transportLength: 8 + paddedQuote + extLength,
                 src: i.v6 ? "\(Self.router6)" : "\(Self.router4)", dst: i.v6 ? "\(Fixtures.client6)" : "\(Fixtures.client4)")
        let p = i.v6 ? "icmpv6" : "icmp"
        add("\(p).type", i.type)
        add("\(p).code", i.code)
        add("\(p).checksum.status", Tshark.checksumGood)
        if i.extensions != nil {
            add("\(p).length", paddedQuote / (i.v6 ? 8 : 4))
        }
        expectTCPPacket(i.quoted, quotedBytes: quote.count)
        if let ext = i.extensions {
            add("icmp.ext.version", 2)
            add("icmp.ext.checksum.status", Tshark.checksumGood)
            for o in ext.objects {
                add("icmp.ext.length", 4 + o.payload.count)
                add("icmp.ext.class", o.classNumber)
                add("icmp.ext.ctype", o.cType)
            }
            for l in i.mpls {
                add("icmp.mpls.label", l.label)
                add("icmp.mpls.exp", l.exp)
                add("icmp.mpls.s", l.bottomOfStack ? 1 : 0)
                add("icmp.mpls.ttl", l.ttl)
            }
        }
    }

    static func ipHeader(v6: Bool, proto: IPProtocol, ttl: UInt8, id: UInt16) -> IPHeader {
        if v6 {
            return .v6(IPv6Header(source: Fixtures.client6, destination: Fixtures.server6, nextHeader: proto, hopLimit: ttl))
        }
        var h = IPv4Header(source: Fixtures.client4, destination: Fixtures.server4, protocol: proto, ttl: ttl)
        h.identification = id
        h.dontFragment = true
        return .v4(h)
    }

    static func build(_ t: TCPIntent) -> IPPacket {
        let tcp = TCPHeader(sourcePort: t.sourcePort, destinationPort: t.destinationPort, sequenceNumber: t.seq,
                            acknowledgmentNumber: t.ack, flags: t.flags, window: t.window, options: t.options)
        return IPPacket(ip: ipHeader(v6: t.v6, proto: .tcp, ttl: t.ttl, id: t.sourcePort),
                        transport: .tcp(TCPSegment(header: tcp, payload: t.payload)))
    }

    mutating func add(_ field: String, _ value: some CustomStringConvertible) {
        expect[field, default: []].append(value.description)
    }

    mutating func expectIP(v6: Bool, proto: UInt8, ttl: UInt8, id: UInt16, transportLength: Int,
                           src: String, dst: String) {
        if v6 {
            add("ipv6.src", src); add("ipv6.dst", dst)
            add("ipv6.plen", transportLength); add("ipv6.nxt", proto); add("ipv6.hlim", ttl)
        } else {
            add("ip.src", src); add("ip.dst", dst)
            add("ip.len", 20 + transportLength); add("ip.proto", proto); add("ip.ttl", ttl)
            add("ip.id", String(format: "0x%04x", id)); add("ip.flags.df", 1)
            // tshark verifies quoted headers too: the quote must carry the probe's good checksum.
            add("ip.checksum.status", Tshark.checksumGood)
        }
    }

    /// The IP header and TCP segment fields, options included. `quotedBytes` is set when the
    /// segment is inside an ICMP error (tshark then shows only what the quote holds).
    mutating func expectTCPPacket(_ t: TCPIntent, quotedBytes: Int?) {
        let optionLength = Self.rfcLength(of: t.options)
        let padded = (optionLength + 3) / 4 * 4
        let tcpLength = 20 + padded + t.payload.count
        expectIP(v6: t.v6, proto: 6, ttl: t.ttl, id: t.sourcePort, transportLength: tcpLength,
                 src: t.v6 ? "\(Fixtures.client6)" : "\(Fixtures.client4)",
                 dst: t.v6 ? "\(Fixtures.server6)" : "\(Fixtures.server4)")
        add("tcp.srcport", t.sourcePort)
        add("tcp.dstport", t.destinationPort)
        let ipHeader = t.v6 ? 40 : 20
        if let q = quotedBytes, q < ipHeader + 20 {
            // An RFC 792 quote: ports and sequence number only.
            if q >= ipHeader + 8 { add("tcp.seq", t.seq) }
            return
        }
        add("tcp.seq", t.seq)
        add("tcp.ack", t.ack)
        if quotedBytes == nil {
            add("tcp.seq_raw", t.seq)
            add("tcp.ack_raw", t.ack)
            add("tcp.len", t.payload.count)
        } else {
            // tshark 4.0 shows these for quotes only sometimes (seq_raw in ICMPv6 but not ICMP quotes).
            unchecked.formUnion(["tcp.seq_raw", "tcp.ack_raw", "tcp.len"])
        }
        add("tcp.flags", String(format: "0x%04x", t.flags.rawValue))
        add("tcp.hdr_len", 20 + padded)
        add("tcp.window_size_value", t.window)
        // A full quote's TCP checksum is verified too: it must be the probe's, good.
        add("tcp.checksum.status", Tshark.checksumGood)
        if t.flags.contains(.rst) { expectedExperts.insert("Connection reset (RST)") }
        optionOffset = 0
        for o in t.options {
            expectOption(o)
            optionOffset += Self.rfcLength(of: [o])
        }
        for _ in 0..<(padded - optionLength) { add("tcp.option_kind", 0) }
    }

    /// Option lengths from the RFCs, computed independently of Wire's encoder.
    static func rfcLength(of options: [TCPOption]) -> Int {
        options.reduce(0) { sum, o in
            switch o {
            case .endOfList, .noOperation: return sum + 1
            case .maximumSegmentSize: return sum + 4
            case .windowScale: return sum + 3
            case .sackPermitted: return sum + 2
            case .sack(let b): return sum + 2 + 8 * b.count
            case .timestamps: return sum + 10
            case .md5Signature: return sum + 18
            case .fastOpen(let c): return sum + 2 + c.count
            case .experimental(_, _, let d): return sum + 4 + d.count
            case .raw(_, let d): return sum + 2 + d.count
            case .mptcp(let m): return sum + rfcLength(of: m)
            case .malformed(let m): return sum + m.bytes.count
            }
        }
    }

    /// RFC 8684 §3 (and RFC 6824 for v0) option lengths.
    static func rfcLength(of m: MPTCPOption) -> Int {
        switch m {
        case .capable(let c):
            return 4 + (c.senderKey == nil ? 0 : 8) + (c.receiverKey == nil ? 0 : 8)
                + (c.dataLevelLength == nil ? 0 : 2) + (c.checksum == nil ? 0 : 2)
        case .join(let j):
            switch j.stage { case .syn: return 12; case .synAck: return 16; case .ack: return 24 }
        case .dss(let d):
            let ack = d.flags & 0x01 == 0 ? 0 : (d.flags & 0x02 == 0 ? 4 : 8)
            let map = d.flags & 0x04 == 0 ? 0 : (d.flags & 0x08 == 0 ? 4 : 8) + 4 + 2 + (d.mapping?.checksum == nil ? 0 : 2)
            return 4 + ack + map
        case .addAddress(let a):
            let addr: Int
            if case .v4 = a.address { addr = 4 } else { addr = 16 }
            return 4 + addr + (a.port == nil ? 0 : 2) + (a.hmac == nil ? 0 : 8)
        case .removeAddress(let r): return 3 + r.addressIDs.count
        case .priority(let p): return p.addressID == nil ? 3 : 4
        case .fail, .fastClose: return 12
        case .reset: return 4
        case .other(let o): return 3 + o.data.count
        }
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
    static func hex2(_ v: UInt8) -> String { String(format: "0x%02x", v) }

    mutating func expectOption(_ o: TCPOption) {
        add("tcp.option_kind", o.kind.rawValue)
        switch o {
        case .endOfList, .noOperation: return
        default: add("tcp.option_len", Self.rfcLength(of: [o]))
        }
        switch o {
        case .maximumSegmentSize(let v): add("tcp.options.mss_val", v)
        case .windowScale(let s):
            add("tcp.options.wscale.shift", s)
            add("tcp.options.wscale.multiplier", 1 << Int(s))
        case .sack(let blocks):
            add("tcp.options.sack.count", blocks.count)
            for b in blocks { add("tcp.options.sack_le", b.left); add("tcp.options.sack_re", b.right) }
        case .timestamps(let v, let e):
            add("tcp.options.timestamp.tsval", v)
            add("tcp.options.timestamp.tsecr", e)
        case .md5Signature(let d): add("tcp.options.md5.digest", Self.hex(d))
        case .fastOpen(let c):
            if c.isEmpty { add("tcp.options.tfo.request", 1) } else { add("tcp.options.tfo.cookie", Self.hex(c)) }
        case .experimental(_, let exid, let d):
            add("tcp.options.experimental.exid", String(format: "0x%04x", exid))
            if exid == TCPOptionKind.fastOpenExID {
                if d.isEmpty { add("tcp.options.tfo.request", 1) } else { add("tcp.options.tfo.cookie", Self.hex(d)) }
            } else {
                add("tcp.options.experimental.data", Self.hex(d))
            }
        case .raw(29, let d):
            add("tcp.options.ao.keyid", d[0])
            add("tcp.options.ao.rnextkeyid", d[1])
            add("tcp.options.ao.mac", Self.hex(Array(d[2...])))
        case .raw(_, let d):
            if !d.isEmpty { add("tcp.options.unknown.payload", Self.hex(d)) }
        case .mptcp(let m): expectMPTCP(m)
        default: break
        }
    }

    mutating func expectMPTCP(_ m: MPTCPOption) {
        let f = "tcp.options.mptcp."
        add(f + "subtype", m.subtype.rawValue)
        switch m {
        case .capable(let c):
            add(f + "version", c.version)
            add(f + "flags", Self.hex2(c.flags))
            add(f + "checksumreq.flags", c.flags >> 7 & 1)
            add(f + "extensibility.flag", c.flags >> 6 & 1)
            if c.version == 0 {
                // RFC 6824: bits C..G reserved (tshark masks 0x3e), H = HMAC-SHA1.
                add(f + "sha1.flag", c.flags & 1)
                add(f + "reserved.flag", Self.hex2((c.flags & 0x3e) >> 1))
            } else {
                // RFC 8684: C = no more subflows, D..G reserved (0x1e), H = HMAC-SHA256.
                add(f + "nomoresubflows.flag", c.flags >> 5 & 1)
                add(f + "sha256.flag", c.flags & 1)
                add(f + "reserved.flag", Self.hex2((c.flags & 0x1e) >> 1))
            }
            if let k = c.senderKey { add(f + "sendkey", k) }
            if let k = c.receiverKey { add(f + "recvkey", k) }
            if let l = c.dataLevelLength { add(f + "datalvllen", l) }
            if let s = c.checksum { add(f + "checksum", String(format: "0x%04x", s)) }
        case .join(let j):
            switch j.stage {
            case let .syn(token, nonce):
                add(f + "flags", Self.hex2(0x10 | j.flags))
                add(f + "backup.flag", j.flags & 1)
                add(f + "addrid", j.addressID)
                add(f + "recvtok", token)
                add(f + "sendrand", nonce)
            case let .synAck(h, nonce):
                add(f + "flags", Self.hex2(0x10 | j.flags))
                add(f + "backup.flag", j.flags & 1)
                add(f + "addrid", j.addressID)
                add(f + "sendtrunchmac", h)
                add(f + "sendrand", nonce)
            case let .ack(h):
                // The 12 bits after the subtype are reserved in the third ACK.
                add(f + "reserved", String(format: "0x%04x", UInt16(j.flags) << 8 | UInt16(j.addressID)))
                add(f + "sendhmac", Self.hex(h))
            }
        case .dss(let d):
            add(f + "flags", Self.hex2(d.flags))
            add(f + "datafin.flag", d.flags >> 4 & 1)
            add(f + "dseqn8.flag", d.flags >> 3 & 1)
            add(f + "dseqnpresent.flag", d.flags >> 2 & 1)
            add(f + "dataack8.flag", d.flags >> 1 & 1)
            add(f + "dataackpresent.flag", d.flags & 1)
            if let a = d.dataACK { add(f + "rawdataack", a) }
            if let map = d.mapping {
                add(f + "rawdataseqno", map.dataSequenceNumber)
                add(f + "subflowseqno", map.subflowSequenceNumber)
                add(f + "datalvllen", map.dataLevelLength)
                if map.dataLevelLength == 0 { expectedExperts.insert("Fallback to infinite mapping") }
                if let c = map.checksum {
                    // tshark 4.0 never shows the DSS checksum (see the class comment); check the
                    // option's last two bytes, in the option tshark delimited, instead.
                    byteChecks.append(("DSS checksum", optionOffset + Self.rfcLength(of: m) - 2, String(format: "%04x", c)))
                }
            }
        case .addAddress(let a):
            add(f + "addrid", a.addressID)
            if a.encoding == .v0 {
                if case .v4 = a.address { add(f + "ipver", 4) } else { add(f + "ipver", 6) }
            } else {
                add(f + "echo", a.flags & 1)
            }
            switch a.address {
            case .v4(let x): add(f + "ipv4", x)
            case .v6(let x): add(f + "ipv6", x)
            }
            if let p = a.port { add(f + "port", p) }
            if let h = a.hmac { add(f + "addaddrtrunchmac", h) }
        case .removeAddress(let r):
            for id in r.addressIDs { add(f + "addrid", id) }
        case .priority(let p):
            add(f + "flags", Self.hex2(0x50 | p.flags))
            add(f + "backup.flag", p.flags & 1)
            if let id = p.addressID { add(f + "addrid", id) }
        case .fail(let x):
            add(f + "reserved", String(format: "0x%04x", x.reserved))
            add(f + "rawdataseqno", x.dataSequenceNumber)
        case .fastClose(let x):
            add(f + "reserved", String(format: "0x%04x", x.reserved))
            add(f + "recvkey", x.receiverKey)
        case .reset(let r):
            add(f + "flags", Self.hex2(0x80 | r.flags))
            add(f + "flag_U.flag", r.flags >> 3 & 1)
            add(f + "flag_V.flag", r.flags >> 2 & 1)
            add(f + "flag_W.flag", r.flags >> 1 & 1)
            add(f + "flag_T.flag", r.flags & 1)
            add(f + "rst_reason", Self.hex2(r.reason))
        case .other:
            break
        }
    }
}

extension MPLSLabelStackEntry {
    var bytes: [UInt8] { [UInt8(rawValue >> 24), UInt8(rawValue >> 16 & 0xff), UInt8(rawValue >> 8 & 0xff), UInt8(rawValue & 0xff)] }
}
