// libFuzzer target for the Wire parsers (scripts/fuzz.sh builds it with -sanitize=fuzzer,address
// together with Sources/Wire/*.swift, so Wire's internals are in this module).
//
// Properties checked on every input, the same as Tests/WireTests/FuzzPropertyTests.swift plus two:
// - IPPacket.parse never traps; whatever serializes back gives exactly the input's bytes, up to
//   the IP length field (link padding beyond it is dropped), and those bytes parse to the same packet;
// - the decoded ICMP views (quote, extensions, MPLS labels) are usable;
// - a finalized packet parses again and finalizing it again changes nothing;
// - TCPOptions.parse over the raw bytes as an option area writes the same bytes back;
// - the sock_diag parsers (netlink messages, inet_diag messages, ULP info, MPTCP_INFO) never trap.
// A failed property calls fatalError, which libFuzzer reports as a crash with the input saved.
//
// WIRE_FUZZ_WRITE_SEEDS=dir: write seed packets (valid probes, every MPTCP option, ICMP quotes)
// into dir and exit, so the corpus starts from packets that reach deep into the parsers.

import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func wireFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    checkPacket(input)
    checkOptionArea(Array(input.prefix(40)))
    checkSockDiag(input)
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func wireFuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    if let dir = ProcessInfo.processInfo.environment["WIRE_FUZZ_WRITE_SEEDS"] {
        do {
            let seeds = try seedPackets()
            for (name, bytes) in seeds {
                try Data(bytes).write(to: URL(fileURLWithPath: dir).appendingPathComponent("seed-\(name)"))
            }
            print("wire-fuzz: wrote \(seeds.count) seeds to \(dir)")
            exit(0)
        } catch {
            print("wire-fuzz: cannot write seeds to \(dir): \(error)")
            exit(1)
        }
    }
    return 0
}

func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

func checkPacket(_ input: [UInt8]) {
    guard let p = try? IPPacket.parse(input) else { return }
    if let out = try? p.serialized() {
        guard out.count <= input.count, out == Array(input.prefix(out.count)) else {
            fatalError("round trip differs: in \(hex(input)) out \(hex(out))")
        }
        // Parsing is a function of the bytes it uses: the written bytes decode to the same packet.
        guard (try? IPPacket.parse(out)) == p else {
            fatalError("reparse differs: in \(hex(input)) out \(hex(out))")
        }
    }
    if case .icmp(let m) = p.transport {
        _ = m.quote?.packet?.transport
        _ = m.extensions?.objects.map { $0.mplsLabelStack }
        _ = m.rfc4884Length
        _ = m.mtu
    }
    if case .tcp(let s) = p.transport {
        _ = s.header.options.options.map { ($0.kind.name, $0.mptcpSubtype, $0.encodedLength) }
    }
    // What Wire finalizes (lengths and checksums set) it must read back, and finalizing is idempotent.
    if let finalized = try? p.serialized(finalize: true) {
        let again: IPPacket
        do { again = try IPPacket.parse(finalized) } catch {
            fatalError("finalized packet does not parse (\(error)): in \(hex(input)) finalized \(hex(finalized))")
        }
        guard let twice = try? again.serialized(finalize: true), twice == finalized else {
            fatalError("finalizing twice differs: in \(hex(input)) finalized \(hex(finalized))")
        }
    }
}

/// The sock_diag (netlink) answers kernel mode reads: any bytes give a value or an error. The
/// first four bytes pick the sequence number so inputs can match it.
func checkSockDiag(_ input: [UInt8]) {
    let sequence = input.count >= 12 ? UInt32(input[8]) | UInt32(input[9]) << 8 | UInt32(input[10]) << 16 | UInt32(input[11]) << 24 : 0
    if let answer = try? InetDiag.parseAnswer([input], sequence: sequence) { _ = answer }
    for m in (try? NetlinkMessage.parseAll(input)) ?? [] {
        if let d = try? InetDiagMessage.parse(m.payload) { _ = try? d.ulp() }
    }
    _ = KernelMPTCPInfo.decode(input)
}

func checkOptionArea(_ area: [UInt8]) {
    let parsed = TCPOptions.parse(ByteReader(area))
    var w = ByteWriter()
    do { try parsed.write(to: &w) } catch { fatalError("options area does not write back (\(error)): \(hex(area))") }
    guard w.bytes == area else { fatalError("options round trip differs: in \(hex(area)) out \(hex(w.bytes))") }
}

/// Valid packets to start from: SYNs with every MPTCP option variant, TCP options, UDP, ICMP quotes.
func seedPackets() throws -> [(String, [UInt8])] {
    let c4 = IPv4Address(198, 18, 0, 1), s4 = IPv4Address(198, 18, 3, 2)
    let c6 = IPv6Address("2001:db8::1")!, s6 = IPv6Address("2001:db8:3::2")!
    func tcp(_ v6: Bool, _ flags: TCPFlags, _ options: [TCPOption], payload: [UInt8] = []) -> IPPacket {
        let h = TCPHeader(sourcePort: 40000, destinationPort: 80, sequenceNumber: 0xdead_beef,
                          acknowledgmentNumber: flags.contains(.ack) ? 1 : 0, flags: flags, options: options)
        let ip: IPHeader = v6 ? .v6(IPv6Header(source: c6, destination: s6, nextHeader: .tcp))
                              : .v4(IPv4Header(source: c4, destination: s4, protocol: .tcp))
        return IPPacket(ip: ip, transport: .tcp(TCPSegment(header: h, payload: payload)))
    }
    let a4 = IPAddress.v4(IPv4Address(198, 18, 9, 9)), a6 = IPAddress.v6(IPv6Address("2001:db8::99")!)
    let map = DSS.Mapping(dataSequenceNumber: 0x1_0000_0001, subflowSequenceNumber: 1, dataLevelLength: 3, checksum: 0x1234)
    let mptcp: [(String, MPTCPOption)] = [
        ("mpc4", .capable(MPCapable(version: 1, flags: 0x81))),
        ("mpc12", .capable(MPCapable(senderKey: 1))),
        ("mpc24", .capable(MPCapable(senderKey: 1, receiverKey: 2, dataLevelLength: 3, checksum: 4))),
        ("join12", .join(MPJoin(flags: 1, addressID: 3, stage: .syn(receiverToken: 1, senderNonce: 2)))),
        ("join16", .join(MPJoin(addressID: 2, stage: .synAck(truncatedHMAC: 1, senderNonce: 2)))),
        ("join24", .join(MPJoin(stage: .ack(hmac: Array(1...20))))),
        ("dss", .dss(DSS(dataACK: 9, dataACK64: true, mapping: map))),
        ("dss4", .dss(DSS(dataACK: 9, mapping: DSS.Mapping(dataSequenceNumber: 5, subflowSequenceNumber: 1, dataLevelLength: 3), dsn64: false, dataFIN: true))),
        ("addaddr4", .addAddress(AddAddress(addressID: 1, address: a4, port: 80, hmac: 7))),
        ("addaddr6", .addAddress(AddAddress(addressID: 1, address: a6, port: 80, hmac: 7))),
        ("addaddr0", .addAddress(AddAddress(encoding: .v0, addressID: 1, address: a4))),
        ("rmaddr", .removeAddress(RemoveAddress(addressIDs: [1, 2]))),
        ("prio", .priority(MPPriority(backup: true, addressID: 1))),
        ("fail", .fail(MPFail(dataSequenceNumber: 1))),
        ("fastclose", .fastClose(MPFastClose(receiverKey: 1))),
        ("rst", .reset(MPTCPReset(transient: true, reason: 6))),
        ("exp", .other(MPTCPRawOption(subtype: .experimental, data: [1, 2]))),
    ]
    let linux: [TCPOption] = [.maximumSegmentSize(1460), .sackPermitted, .timestamps(value: 1, echoReply: 0),
                              .noOperation, .windowScale(7), .mptcp(.capable(MPCapable()))]
    var out: [(String, [UInt8])] = []
    for v6 in [false, true] {
        let f = v6 ? "6" : "4"
        out.append(("linux-syn\(f)", try tcp(v6, .syn, linux).serialized(finalize: true)))
        for (name, o) in mptcp {
            out.append(("\(name)-\(f)", try tcp(v6, .ack, [.mptcp(o)], payload: [1, 2, 3]).serialized(finalize: true)))
        }
        out.append(("opts-\(f)", try tcp(v6, .ack, [.sack([SACKBlock(left: 1, right: 2)]), .md5Signature(Array(0..<16)),
                                                   .fastOpen(cookie: Array(0..<8))]).serialized(finalize: true)))
        out.append(("tfo-exp-\(f)", try tcp(v6, .syn, [.experimental(kind: 254, exid: 0xF989, data: [1, 2, 3, 4]),
                                                      .raw(kind: 29, data: [1, 2, 3, 4]), .endOfList]).serialized(finalize: true)))
        let udpIP: IPHeader = v6 ? .v6(IPv6Header(source: c6, destination: s6, nextHeader: .udp))
                                 : .v4(IPv4Header(source: c4, destination: s4, protocol: .udp))
        out.append(("udp-\(f)", try IPPacket(ip: udpIP, transport: .udp(UDPDatagram(sourcePort: 1, destinationPort: 2, payload: [9])))
            .serialized(finalize: true)))
        let probe = try tcp(v6, .syn, linux).serialized(finalize: true)
        let label = MPLSLabelStackEntry(label: 16, exp: 0, bottomOfStack: true, ttl: 1).rawValue
        let ext = ICMPExtensionStructure(objects: [ICMPExtensionObject(classNumber: 1, cType: 1,
                                                                       payload: [UInt8(label >> 24), UInt8(label >> 16 & 0xff), UInt8(label >> 8 & 0xff), UInt8(label & 0xff)])])
        let router: IPHeader = v6 ? .v6(IPv6Header(source: IPv6Address("2001:db8:1::1")!, destination: c6, nextHeader: .icmpv6))
                                  : .v4(IPv4Header(source: IPv4Address(198, 18, 1, 1), destination: c4, protocol: .icmp))
        for (name, quote, e) in [("full", probe, nil), ("short", Array(probe.prefix(v6 ? 48 : 28)), nil), ("mpls", probe, ext)] {
            let m = ICMPMessage.error(family: v6 ? .v6 : .v4, type: v6 ? 3 : 11, code: 0, quoting: quote, extensions: e)
            out.append(("icmp-\(name)-\(f)", try IPPacket(ip: router, transport: .icmp(m)).serialized(finalize: true)))
        }
    }
    return out
}
