import XCTest
import TestSupport
import Wire
import Report
import PacketIO
@testable import Session

/// A path of routers for TTL-limited copies: router `ttl` answers the copy that expires at it with
/// a time-exceeded quote of the copy as it arrived (MP_CAPABLE removed or NOPped from hop
/// `stripAt` on), unless it is silent. Every copy also draws an unrelated error quoting another flow.
final class QuotingPath: PacketNetwork {
    let routers: [IPAddress]
    let client: IPAddress
    var stripAt: Int?
    var nop = false
    var silent: Set<Int> = []
    var quoteBytes: Int?
    var sent: [[UInt8]] = []
    var queue: [ReceivedPacket] = []
    var clock = 100.0

    init(routers: [IPAddress], client: IPAddress) {
        self.routers = routers
        self.client = client
    }

    func now() -> Double { clock }

    func receive(until deadline: Double) throws -> ReceivedPacket? {
        guard !queue.isEmpty else { clock = max(clock, deadline); return nil }
        clock += 0.001
        return queue.removeFirst()
    }

    func send(_ bytes: [UInt8]) throws {
        sent.append(bytes)
        guard var p = try? IPPacket.parse(bytes), case .tcp(var seg) = p.transport else { return }
        let ttl = Int(p.ip.ttl)
        guard ttl >= 1, ttl <= routers.count else { return }
        if let s = stripAt, ttl >= s {
            var o: [TCPOption] = []
            for x in seg.header.options.options {
                if case .mptcp(let m) = x {
                    if nop { o += [TCPOption](repeating: .noOperation, count: m.encodedLength) }
                } else {
                    o.append(x)
                }
            }
            seg.header.options = TCPOptions(o)
            p.transport = .tcp(seg)
        }
        guard !silent.contains(ttl) else { return }
        let arrived = try p.serialized(finalize: true)
        var other = p
        if case .tcp(var s) = other.transport { s.header.sourcePort &+= 1; other.transport = .tcp(s) }
        for q in [try other.serialized(finalize: true), arrived] {
            let quote = quoteBytes.map { Array(q.prefix($0)) } ?? q
            let ip: IPHeader, m: ICMPMessage
            switch (routers[ttl - 1], client) {
            case let (.v4(r), .v4(c)):
                ip = .v4(IPv4Header(source: r, destination: c, protocol: .icmp))
                m = .error(family: .v4, type: ICMPv4Type.timeExceeded, code: 0, quoting: quote)
            case let (.v6(r), .v6(c)):
                ip = .v6(IPv6Header(source: r, destination: c, nextHeader: .icmpv6))
                m = .error(family: .v6, type: ICMPv6Type.timeExceeded, code: 0, quoting: quote)
            default: return
            }
            queue.append(ReceivedPacket(bytes: try IPPacket(ip: ip, transport: .icmp(m)).serialized(finalize: true), time: clock))
        }
    }
}

extension MPTCPOption {
    var encodedLength: Int { TCPOption.mptcp(self).encodedLength }
}

/// The path check shared by crafted and kernel mode (PathInspection), and kernel mode's use of it.
extension KernelSessionReportTests {
    var routers: [IPAddress] { ["198.18.0.254", "198.18.5.1", "198.18.6.1"].map { IPAddress($0)! } }

    func syn(_ family: ICMPMessage.Family = .v4) throws -> IPPacket {
        let h = TCPHeader(sourcePort: cport, destinationPort: 80, sequenceNumber: 7, flags: .syn,
                          options: [.maximumSegmentSize(1460), .sackPermitted, mpcSYN, .windowScale(7)])
        let ip: IPHeader = family == .v4
            ? .v4(IPv4Header(source: IPv4Address("198.18.0.1")!, destination: IPv4Address("198.18.1.2")!, protocol: .tcp))
            : .v6(IPv6Header(source: IPv6Address("2001:db8::1")!, destination: IPv6Address("2001:db8:1::2")!, nextHeader: .tcp))
        return try IPPacket(ip: ip, transport: .tcp(TCPSegment(header: h))).finalized()
    }

    func testDistanceFromTheSYNACKsTTL() {
        XCTAssertEqual(PathInspection.distance(receivedTTL: 64), 1)
        XCTAssertEqual(PathInspection.distance(receivedTTL: 61), 4)
        XCTAssertEqual(PathInspection.distance(receivedTTL: 126), 3)
        XCTAssertEqual(PathInspection.distance(receivedTTL: 250), 6)
    }

    func testCopiesCarryTheirTTLInTheIDOrFlowLabelAndNothingElseChanges() throws {
        for family in [ICMPMessage.Family.v4, .v6] {
            let original = try syn(family)
            let copies = PathInspection.copies(of: original, maxTTL: 3)
            XCTAssertEqual(copies.map(\.ttl), [1, 2, 3])
            for c in copies {
                let p = try c.packet.finalized()
                XCTAssertEqual(Int(p.ip.ttl), c.ttl)
                XCTAssertEqual(PathInspection.markedTTL(p.ip), c.ttl)
                XCTAssertEqual(p.tcp, original.tcp, "the segment is the kernel's, byte for byte")
            }
            XCTAssertNil(PathInspection.markedTTL(original.ip), "an unmarked packet is not a copy")
        }
        XCTAssertEqual(PathInspection.copies(of: try syn(), maxTTL: 99).count, 30)
        XCTAssertTrue(PathInspection.copies(of: try syn(), maxTTL: 0).isEmpty)
    }

    func testQuotesMatchTheirCopiesAndShowTheOption() throws {
        for family in [ICMPMessage.Family.v4, .v6] {
            let path = QuotingPath(routers: family == .v4 ? routers : ["2001:db8::fe", "2001:db8:5::1", "2001:db8:6::1"].map { IPAddress($0)! },
                                   client: try syn(family).ip.source)
            path.stripAt = 2
            for c in PathInspection.copies(of: try syn(family), maxTTL: 3) { try path.send(c.packet.serialized(finalize: true)) }
            let quotes = try path.queue.enumerated().map { ($0.offset, try IPPacket.parse($0.element.bytes)) }
            let insp = PathInspection.inspection(segment: "syn", sent: try XCTUnwrap(try syn(family).tcp), quotes: quotes, maxTTL: 3)
            // Each hop's second ICMP is the one quoting our flow; the first quotes another port.
            XCTAssertEqual(insp.hops.map(\.state), [.intact, .removed, .removed], "\(family)")
            XCTAssertEqual(insp.hops.map(\.packet), [1, 3, 5])
            XCTAssertEqual(insp.hops.map(\.router), path.routers)
            XCTAssertEqual(insp.firstChanged?.ttl, 2)
            XCTAssertEqual(insp.lastIntactBefore?.ttl, 1)
        }
        // NOPs where the option was; a quote of 28 bytes (RFC 792) cannot show options.
        let path = QuotingPath(routers: routers, client: try syn().ip.source)
        path.stripAt = 3
        path.nop = true
        for c in PathInspection.copies(of: try syn(), maxTTL: 3) { try path.send(c.packet.serialized(finalize: true)) }
        var quotes = try path.queue.enumerated().map { ($0.offset, try IPPacket.parse($0.element.bytes)) }
        XCTAssertEqual(PathInspection.inspection(segment: "syn", sent: try syn().tcp!, quotes: quotes, maxTTL: 3).hops.map(\.state), [.intact, .intact, .nopped])
        path.queue = []
        path.quoteBytes = 28
        try path.send(PathInspection.copies(of: try syn(), maxTTL: 1)[0].packet.serialized(finalize: true))
        quotes = try path.queue.enumerated().map { ($0.offset, try IPPacket.parse($0.element.bytes)) }
        XCTAssertEqual(PathInspection.inspection(segment: "syn", sent: try syn().tcp!, quotes: quotes, maxTTL: 1).hops.map(\.state), [.unknown])
    }

    // MARK: Kernel mode

    /// The kernel's SYN, a plain SYN/ACK from `synAckTTL`, the third ACK; plus the path check the CLI would make.
    func plainSynAckFacts(synAckTTL: UInt8 = 61, path: QuotingPath?) throws -> (KernelSessionFacts, KernelSessionReport.Analysis) {
        var synAck = try IPPacket.parse(packet(false, [.syn, .ack], [.maximumSegmentSize(1460)]).bytes)
        if case .v4(var h) = synAck.ip { h.ttl = synAckTTL; synAck.ip = .v4(h) }
        var f = try facts(KernelDiagFixtures.clean, fellBack: true, packets: [
            (999, try syn().serialized(finalize: true)), (1000, try synAck.serialized(finalize: true)), packet(true, .ack)])
        var a = KernelSessionReport.analyse(f)
        if let path, let r = a.pathCheckRequest {
            f.pathCheck = KernelSessionReport.checkPath(syn: r.syn, maxTTL: r.maxTTL, network: path, timeout: 1)
            a = KernelSessionReport.analyse(f)
        }
        return (f, a)
    }

    func testAPlainSYNACKAsksForAPathCheckOfTheAnsweredSYN() throws {
        let (f, a) = try plainSynAckFacts(path: nil)
        let r = try XCTUnwrap(a.pathCheckRequest)
        XCTAssertEqual(r.maxTTL, 3, "TTL 61: the server is 4 hops away, 3 routers quote")
        XCTAssertEqual(r.syn.tcp, try syn().tcp)
        XCTAssertEqual(a.verdict.id, "unclear")
        // Not asked: --no-inspect, a SYN/ACK with NOPs, the server next door, a connection that stayed MPTCP.
        var g = f
        g.inspectPath = false
        let off = KernelSessionReport.analyse(g)
        XCTAssertNil(off.pathCheckRequest)
        XCTAssertEqual(off.verdict.id, "unclear")
        XCTAssertTrue(off.verdict.evidence.contains { $0.why.contains("--no-inspect") })
        XCTAssertNil(KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: true, packets: handshake(synAck: nops))).pathCheckRequest)
        let near = try plainSynAckFacts(synAckTTL: 64, path: nil).1
        XCTAssertNil(near.pathCheckRequest)
        XCTAssertTrue(near.verdict.evidence.contains { $0.why.contains("1 hop away") })
        XCTAssertNil(KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: false, packets: handshake(synAck: []))).pathCheckRequest)
    }

    func testStrippedAtHopTwoIsSYNStrippedWithTheHopAndRouter() throws {
        let path = QuotingPath(routers: routers, client: client)
        path.stripAt = 2
        let (f, a) = try plainSynAckFacts(path: path)
        XCTAssertEqual(path.sent.count, 3)
        XCTAssertEqual(f.pathCheck?.received.count, 3, "only the quotes of our flow are kept")
        XCTAssertEqual(a.verdict.id, "fallback.syn-stripped")
        XCTAssertEqual(a.verdict.detail, ["fallback": "syn", "hop": "2", "router": "198.18.5.1"])
        // Packets 0-2 the connection, 3-5 the copies, 6-8 the quotes.
        XCTAssertEqual(a.wire?.packets.map(\.label).suffix(6), ["inspect syn ttl 1", "inspect syn ttl 2", "inspect syn ttl 3",
                                                              "icmp type 11 code 0", "icmp type 11 code 0", "icmp type 11 code 0"])
        XCTAssertEqual(a.wire?.syns, [0], "the copies are not the connection's SYNs")
        XCTAssertTrue(a.verdict.evidence.contains { $0.packet == 7 && $0.direction == .in && $0.why.contains("hop 2 (198.18.5.1)") && $0.why.contains("removed") })
        XCTAssertTrue(a.verdict.evidence.contains { $0.packet == 6 && $0.why.contains("hop 1") && $0.why.contains("intact") })
        let doc = KernelSessionReport.json(f, a)
        XCTAssertEqual(doc["verdict"], "fallback.syn-stripped")
        guard case .array(let insps)? = doc["inspections"], case .array(let hops)? = insps.first?["hops"] else { return XCTFail("no inspections") }
        XCTAssertEqual(insps.first?["segment"], "syn")
        XCTAssertEqual(hops.map { $0["state"] }, ["intact", "removed", "removed"])
        XCTAssertEqual(hops[1]["address"], "198.18.5.1")
        XCTAssertEqual(hops[1]["packet"], 7)
        XCTAssertEqual(hops[1]["ttl"], 2)
        XCTAssertTrue(KernelSessionReport.text(f, a).contains("path check of the syn: 1:intact 2:removed 3:removed"))
    }

    func testIntactUpToTheLastRouterIsNotAnMPTCPServer() throws {
        let (_, a) = try plainSynAckFacts(path: QuotingPath(routers: routers, client: client))
        XCTAssertEqual(a.verdict.id, "fallback.not-mptcp-server")
        XCTAssertTrue(a.verdict.evidence.contains { $0.packet == 8 && $0.why.contains("hop 3 (198.18.6.1), the last router") })
        XCTAssertTrue(a.verdict.evidence.contains { $0.why.contains("3 of 3 hop(s)") })
        // A silent router in the middle changes nothing: the last one still saw MP_CAPABLE.
        let middle = QuotingPath(routers: routers, client: client)
        middle.silent = [2]
        XCTAssertEqual(try plainSynAckFacts(path: middle).1.verdict.id, "fallback.not-mptcp-server")
    }

    func testSilentRoutersLeaveItUnclearAndSaySo() throws {
        let path = QuotingPath(routers: routers, client: client)
        path.silent = [1, 2, 3]
        let (f, a) = try plainSynAckFacts(path: path)
        XCTAssertEqual(f.pathCheck?.sent.count, 3)
        XCTAssertEqual(a.verdict.id, "unclear")
        XCTAssertTrue(a.verdict.evidence.contains { $0.why.contains("no router quoted the 3 TTL-limited copies") }, "\(a.verdict.evidence)")
        // The last router silent: past the last intact quote the path is unchecked.
        path.silent = [3]
        let b = try plainSynAckFacts(path: path).1
        XCTAssertEqual(b.verdict.id, "unclear")
        XCTAssertTrue(b.verdict.evidence.contains { $0.why.contains("a box past hop 2 may have removed it") }, "\(b.verdict.evidence)")
    }

    func testAPathCheckThatCannotSendSaysWhy() throws {
        final class Refusing: PacketNetwork {
            func send(_ packet: [UInt8]) throws { throw PacketIOError("sendto: Operation not permitted") }
            func receive(until deadline: Double) throws -> ReceivedPacket? { nil }
            func now() -> Double { 0 }
        }
        var (f, a) = try plainSynAckFacts(path: nil)
        let r = try XCTUnwrap(a.pathCheckRequest)
        f.pathCheck = KernelSessionReport.checkPath(syn: r.syn, maxTTL: r.maxTTL, network: Refusing(), timeout: 1)
        a = KernelSessionReport.analyse(f)
        XCTAssertEqual(a.verdict.id, "unclear")
        XCTAssertTrue(a.verdict.evidence.contains { $0.why.contains("Operation not permitted") }, "\(a.verdict.evidence)")
        XCTAssertEqual(KernelSessionReport.json(f, a)["path_check_error"], "sendto: Operation not permitted")
    }
}
