import Foundation
import Lab
import TestSupport
import XCTest

/// The element in a real three-namespace chain (client — box — server) with kernel TCP/MPTCP
/// endpoints. Oracles: tshark on captures taken on both sides of the box, the kernels' MPTCP
/// counters, and what the applications got.
final class ElementIntegrationTests: XCTestCase {
    var chain: ElementChain!

    override func setUpWithError() throws {
        try TestEnvironment.requireRoot()
        for tool in ["ip", "iptables", "ip6tables", "tshark", "tcpdump", "ethtool", "nstat", "python3", "ping"] {
            try TestEnvironment.requireTool(tool)
        }
        chain = try ElementChain()
    }

    override func tearDown() {
        chain?.destroy()
        chain = nil
    }

    // MARK: RFC 792 router

    func testRFC792QuotesOnlyTheIPHeaderAndEightBytes() throws {
        let el = try chain.startElement(["rfc792"])
        let cap = try chain.capture(chain.client, "eth0", "client")
        let srv = try chain.capture(chain.server, "eth0", "server")
        // ICMP probes with TTL/hop limit 1, and a TCP SYN with TTL 1 from a connecting socket.
        _ = try? chain.exec(chain.client, ["ping", "-c", "1", "-t", "1", "-W", "1", ElementChain.server4])
        _ = try? chain.exec(chain.client, ["ping", "-c", "1", "-t", "1", "-W", "1", ElementChain.server6])
        let tcp4 = try chain.runClient(proto: 6, family: 4, bytes: 10, extra: ["--ttl", "1", "--timeout", "1"])
        XCTAssertTrue(tcp4.hasPrefix("error"), "a TTL-1 SYN cannot connect: \(tcp4)")
        // Traffic that does not expire passes untouched.
        XCTAssertNoThrow(try chain.exec(chain.client, ["ping", "-c", "1", "-W", "2", ElementChain.server4]))
        try chain.stop(cap)
        try chain.stop(srv)
        let log = try chain.stop(el)

        let v4 = try chain.tshark(cap, filter: "icmp.type == 11", fields: ["ip.src", "ip.len", "ip.proto"])
        XCTAssertGreaterThanOrEqual(v4.count, 2, "one time-exceeded for the ping and at least one for the SYN: \(v4)\n\(log)")
        for row in v4 {
            // Outer header from the box's incoming interface; 20 + 8 + a 28-byte quote.
            XCTAssertEqual(row[0], "\(ElementChain.box4Left),\(ElementChain.client4)")
            XCTAssertEqual(row[1].split(separator: ",").first, "56", "outer IPv4 length: \(row)")
        }
        XCTAssertEqual(Set(v4.map { $0[2] }), ["1,1", "1,6"], "ICMP and TCP quotes")
        let v6 = try chain.tshark(cap, filter: "icmpv6.type == 3", fields: ["ipv6.src", "ipv6.plen"])
        XCTAssertEqual(v6.count, 1, "\(v6)")
        XCTAssertEqual(v6.first?[0], "\(ElementChain.box6Left),\(ElementChain.client6)")
        XCTAssertEqual(v6.first?[1].split(separator: ",").first, "56", "8 + a 48-byte quote")
        // The expired packets never reached the server; the TTL-64 ping did.
        let atServer = try chain.tshark(srv, filter: "icmp.type == 8 || icmpv6.type == 128 || tcp.flags.syn == 1", fields: ["ip.ttl", "ipv6.hlim"])
        XCTAssertEqual(atServer.count, 1, "\(atServer)")
        XCTAssertTrue(log.contains("dropped="), log)
    }

    /// The other way to get RFC 792 quotes: the kernel expires the packet and the element cuts
    /// the quote of the box's own ICMP error, queued from OUTPUT (how the lab's hop plan feeds it).
    func testRFC792CutsTheKernelsOwnQuotes() throws {
        let rules = [
            ElementQueueRule(tool: "iptables", chain: "OUTPUT", rule: ["-p", "icmp", "--icmp-type", "time-exceeded", "-j", "NFQUEUE", "--queue-num", "4"]),
            ElementQueueRule(tool: "ip6tables", chain: "OUTPUT", rule: ["-p", "ipv6-icmp", "--icmpv6-type", "time-exceeded", "-j", "NFQUEUE", "--queue-num", "4"]),
        ]
        let el = try chain.startElement(["rfc792"], queue: 4, rules: rules)
        let cap = try chain.capture(chain.client, "eth0", "client")
        _ = try? chain.exec(chain.client, ["ping", "-c", "1", "-t", "1", "-s", "200", "-W", "1", ElementChain.server4])
        _ = try? chain.exec(chain.client, ["ping", "-c", "1", "-t", "1", "-s", "200", "-W", "1", ElementChain.server6])
        try chain.stop(cap)
        let log = try chain.stop(el)
        let v4 = try chain.tshark(cap, filter: "icmp.type == 11", fields: ["ip.src", "ip.len"])
        XCTAssertEqual(v4.count, 1, "\(v4)\n\(log)")
        XCTAssertEqual(v4.first?[0], "\(ElementChain.box4Left),\(ElementChain.client4)")
        XCTAssertEqual(v4.first?[1].split(separator: ",").first, "56", "the kernel quoted 228 bytes; 28 are left")
        let v6 = try chain.tshark(cap, filter: "icmpv6.type == 3", fields: ["ipv6.src", "ipv6.plen"])
        XCTAssertEqual(v6.count, 1, "\(v6)")
        XCTAssertEqual(v6.first?[1].split(separator: ",").first, "56")
        XCTAssertTrue(log.contains("modified=2"), log)
    }

    // MARK: option stripping

    func testStripDSSOnDataMakesMPTCPFallBack() throws {
        let el = try chain.startElement(["strip:30/2@data"])
        let cap = try chain.capture(chain.client, "eth0", "client")
        let srv = try chain.capture(chain.server, "eth0", "server")
        try chain.startServer(proto: 262, family: 4)
        let result = try chain.runClient(proto: 262, family: 4, bytes: 6000, extra: ["--rounds", "3"])
        try chain.stop(cap)
        try chain.stop(srv)
        let log = try chain.stop(el)
        XCTAssertTrue(result.hasPrefix("ok"), "the connection survives by falling back: \(result)\n\(log)")

        // Data in both directions, matched by sequence number on the two sides of the box.
        let pairs = try dataPairs(cap, srv, client: ElementChain.client4, server: ElementChain.server4)
        XCTAssertTrue(pairs.contains { $0.sent.hasDSS }, "some data was sent with DSS: \(pairs)")
        XCTAssertFalse(pairs.contains { $0.arrived.hasDSS }, "no DSS arrived on data: \(pairs)")
        // Overwritten, not removed: the header length of each segment is kept.
        for p in pairs { XCTAssertEqual(p.sent.headerLength, p.arrived.headerLength, "\(p)") }
        // Everything else passes: SYNs carry MP_CAPABLE on both sides.
        XCTAssertEqual(try chain.tshark(srv, filter: "tcp.flags.syn == 1 && tcp.options.mptcp.subtype == 0", fields: ["tcp.seq_raw"]).count, 2)
        try assertChecksumsValid(srv)

        let c = try chain.nstat(chain.client), s = try chain.nstat(chain.server)
        XCTAssertEqual(s["MPTcpExtMPCapableSYNRX"], 1)
        XCTAssertGreaterThan((c["MPTcpExtDssFallback"] ?? 0) + (s["MPTcpExtDssFallback"] ?? 0)
                             + (c["MPTcpExtInfiniteMapRx"] ?? 0) + (s["MPTcpExtInfiniteMapRx"] ?? 0), 0,
                             "a fallback counter moved: client \(c) server \(s)")
    }

    func testRemoveDSSShrinksTheHeader() throws {
        let el = try chain.startElement(["remove:30/2@data"])
        let cap = try chain.capture(chain.client, "eth0", "client")
        let srv = try chain.capture(chain.server, "eth0", "server")
        try chain.startServer(proto: 262, family: 6)
        let result = try chain.runClient(proto: 262, family: 6, bytes: 6000, extra: ["--rounds", "3"])
        try chain.stop(cap)
        try chain.stop(srv)
        _ = try chain.stop(el)
        XCTAssertTrue(result.hasPrefix("ok"), result)
        let pairs = try dataPairs(cap, srv, client: ElementChain.client6, server: ElementChain.server6)
        var shrunk = 0
        for p in pairs {
            XCTAssertEqual(p.sent.length, p.arrived.length, "payload length kept: \(p)")
            XCTAssertFalse(p.arrived.hasDSS, "\(p)")
            if p.sent.hasDSS {
                XCTAssertLessThan(p.arrived.headerLength, p.sent.headerLength, "header shorter without DSS: \(p)")
                shrunk += 1
            } else {
                XCTAssertEqual(p.arrived.headerLength, p.sent.headerLength, "\(p)")
            }
        }
        XCTAssertGreaterThan(shrunk, 0, "\(pairs)")
        try assertChecksumsValid(srv)
    }

    func testEOLOnSYNHidesMPCapable() throws {
        let el = try chain.startElement(["eol:30@syn"])
        let srv = try chain.capture(chain.server, "eth0", "server")
        try chain.startServer(proto: 262, family: 4)
        let result = try chain.runClient(proto: 262, family: 4, bytes: 100)
        try chain.stop(srv)
        _ = try chain.stop(el)
        XCTAssertTrue(result.hasPrefix("ok"), "plain TCP still works: \(result)")
        let syns = try chain.tshark(srv, filter: "tcp.flags.syn == 1 && tcp.flags.ack == 0", fields: ["tcp.option_kind", "tcp.options.mptcp.subtype"])
        XCTAssertEqual(syns.count, 1, "\(syns)")
        XCTAssertTrue(syns[0][0].split(separator: ",").contains("0"), "an EOL where MP_CAPABLE was: \(syns)")
        XCTAssertEqual(syns[0][1], "", "no MPTCP option left")
        let s = try chain.nstat(chain.server), c = try chain.nstat(chain.client)
        XCTAssertEqual(s["MPTcpExtMPCapableSYNRX"] ?? 0, 0)
        XCTAssertEqual(c["MPTcpExtMPCapableSYNTX"], 1)
        XCTAssertGreaterThanOrEqual(c["MPTcpExtMPCapableFallbackSYNACK"] ?? 0, 1, "\(c)")
    }

    // MARK: payload

    func testPayloadRewriteBreaksTheDSSChecksum() throws {
        for ns in [chain.client, chain.server] { try chain.exec(ns, ["sysctl", "-qw", "net.mptcp.checksum_enabled=1"]) }
        let el = try chain.startElement(["payload:s/HELLO/HOLLA/"])
        let srv = try chain.capture(chain.server, "eth0", "server")
        try chain.startServer(proto: 262, family: 4)
        try chain.startServer(proto: 6, family: 4, port: 8081)
        let mptcp = try chain.runClient(proto: 262, family: 4, bytes: 2000)
        let tcp = try chain.runClient(proto: 6, family: 4, bytes: 2000, port: 8081)
        try chain.stop(srv)
        _ = try chain.stop(el)
        // Plain TCP delivers the rewritten bytes (valid checksums) and echoes them back.
        XCTAssertTrue(tcp.hasPrefix("mismatch"), "the echo carries HOLLA: \(tcp)")
        let rewritten = try chain.tshark(srv, filter: "ip.src == \(ElementChain.client4) && tcp.payload contains \"HOLLA\"", fields: ["tcp.dstport"])
        XCTAssertEqual(Set(rewritten.map { $0[0] }), ["8080", "8081"], "\(rewritten)")
        XCTAssertTrue(try chain.tshark(srv, filter: "tcp.payload contains \"HELLO\"", fields: ["tcp.dstport"]).isEmpty)
        try assertChecksumsValid(srv)
        // MPTCP with checksums sees the change at the data level.
        let s = try chain.nstat(chain.server)
        XCTAssertGreaterThanOrEqual(s["MPTcpExtDataCsumErr"] ?? 0, 1, "\(s)")
        XCTAssertGreaterThanOrEqual((s["MPTcpExtMPFailTx"] ?? 0) + (s["MPTcpExtInfiniteMapTx"] ?? 0)
                                    + (s["MPTcpExtDssFallback"] ?? 0), 1, "MP_FAIL or fallback: \(s)")
        XCTAssertFalse(mptcp.hasPrefix("ok"), "the MPTCP client cannot get its bytes back unchanged: \(mptcp)")
    }

    // MARK: sequence numbers

    func testSeqrandShiftsEachDirectionByAConstant() throws {
        let el = try chain.startElement(["seqrand"])
        let cap = try chain.capture(chain.client, "eth0", "client")
        let srv = try chain.capture(chain.server, "eth0", "server")
        try chain.startServer(proto: 262, family: 4)
        try chain.startServer(proto: 6, family: 6, port: 8082)
        let mptcp = try chain.runClient(proto: 262, family: 4, bytes: 20000, extra: ["--rounds", "2"])
        let tcp = try chain.runClient(proto: 6, family: 6, bytes: 20000, port: 8082)
        try chain.stop(cap)
        try chain.stop(srv)
        _ = try chain.stop(el)
        XCTAssertTrue(mptcp.hasPrefix("ok"), mptcp)
        XCTAssertTrue(tcp.hasPrefix("ok"), tcp)

        for (client, server) in [(ElementChain.client4, ElementChain.server4), (ElementChain.client6, ElementChain.server6)] {
            let src = client.contains(":") ? "ipv6.src" : "ip.src"
            let fields = ["tcp.seq_raw", "tcp.ack_raw", "tcp.flags.ack"]
            let cs1 = try chain.tshark(cap, filter: "\(src) == \(client) && tcp", fields: fields)
            let cs2 = try chain.tshark(srv, filter: "\(src) == \(client) && tcp", fields: fields)
            let sc1 = try chain.tshark(srv, filter: "\(src) == \(server) && tcp", fields: fields)
            let sc2 = try chain.tshark(cap, filter: "\(src) == \(server) && tcp", fields: fields)
            XCTAssertEqual(cs1.count, cs2.count)
            XCTAssertEqual(sc1.count, sc2.count)
            XCTAssertGreaterThan(cs1.count, 5)
            func diffs(_ before: [[String]], _ after: [[String]], _ column: Int) -> Set<UInt32> {
                Set(zip(before, after).compactMap { b, a -> UInt32? in
                    guard column == 0 || b[2] == "1", let x = UInt32(b[column]), let y = UInt32(a[column]) else { return nil }
                    return y &- x
                })
            }
            // Client→server seq and server→client ack move by one constant; likewise the other way.
            let offC = diffs(cs1, cs2, 0), offS = diffs(sc1, sc2, 0)
            XCTAssertEqual(offC.count, 1, "\(offC)")
            XCTAssertEqual(offS.count, 1, "\(offS)")
            XCTAssertFalse(offC.contains(0))
            XCTAssertFalse(offS.contains(0))
            XCTAssertEqual(diffs(sc1, sc2, 1), Set(offC.map { 0 &- $0 }), "acks of client data undo the client offset")
            XCTAssertEqual(diffs(cs1, cs2, 1), Set(offS.map { 0 &- $0 }), "acks of server data undo the server offset")
        }
        try assertChecksumsValid(srv)
        try assertChecksumsValid(cap)
    }

    // MARK: fake MPTCP box

    func testEchoMPCapableMakesTheClientBelieveMPTCP() throws {
        let el = try chain.startElement(["echo-mpc"])
        let cap = try chain.capture(chain.client, "eth0", "client")
        let srv = try chain.capture(chain.server, "eth0", "server")
        try chain.startServer(proto: 262, family: 4)
        let result = try chain.runClient(proto: 262, family: 4, bytes: 100, extra: ["--timeout", "2"])
        try chain.stop(cap)
        try chain.stop(srv)
        _ = try chain.stop(el)
        XCTAssertFalse(result.hasPrefix("ok"), "the server never saw the SYN: \(result)")
        let synacks = try chain.tshark(cap, filter: "tcp.flags.syn == 1 && tcp.flags.ack == 1", fields: ["ip.src", "tcp.options.mptcp.subtype", "tcp.options.mptcp.version"])
        XCTAssertFalse(synacks.isEmpty)
        XCTAssertTrue(synacks.allSatisfy { $0[0] == ElementChain.server4 && $0[1] == "0" && $0[2] == "1" }, "\(synacks)")
        XCTAssertTrue(try chain.tshark(srv, filter: "tcp.flags.syn == 1", fields: ["tcp.seq_raw"]).isEmpty, "no SYN crossed the box")
        let c = try chain.nstat(chain.client), s = try chain.nstat(chain.server)
        XCTAssertGreaterThanOrEqual(c["MPTcpExtMPCapableSYNACKRX"] ?? 0, 1, "the client took the SYN/ACK for MPTCP: \(c)")
        XCTAssertEqual(s["MPTcpExtMPCapableSYNRX"] ?? 0, 0)
    }

    // MARK: segmentation

    func testSplitCutsDataIntoPieces() throws {
        let el = try chain.startElement(["split:100"])
        let cap = try chain.capture(chain.client, "eth0", "client")
        let srv = try chain.capture(chain.server, "eth0", "server")
        try chain.startServer(proto: 262, family: 4)
        let result = try chain.runClient(proto: 262, family: 4, bytes: 5000)
        try chain.stop(cap)
        try chain.stop(srv)
        _ = try chain.stop(el)
        XCTAssertTrue(result.hasPrefix("ok"), result)
        let filter = "ip.src == \(ElementChain.client4) && tcp.len > 0 && !tcp.analysis.retransmission"
        let sent = try chain.tshark(cap, filter: filter, fields: ["tcp.seq_raw", "tcp.len"])
        let arrived = try chain.tshark(srv, filter: filter, fields: ["tcp.seq_raw", "tcp.len"])
        XCTAssertTrue(sent.contains { (Int($0[1]) ?? 0) > 100 }, "\(sent)")
        XCTAssertTrue(arrived.allSatisfy { (Int($0[1]) ?? 999) <= 100 }, "\(arrived)")
        // Every sent segment is covered exactly by consecutive pieces.
        let pieces = Dictionary(arrived.map { (UInt32($0[0])!, Int($0[1])!) }, uniquingKeysWith: { a, _ in a })
        for s in sent {
            var at = UInt32(s[0])!, left = Int(s[1])!
            while left > 0 {
                guard let n = pieces[at] else { XCTFail("no piece at \(at) for segment \(s)"); break }
                at &+= UInt32(n)
                left -= n
            }
            XCTAssertEqual(left, 0)
        }
        try assertChecksumsValid(srv)
    }

    func testCoalesceMergesSmallSegments() throws {
        let el = try chain.startElement(["coalesce"])
        let cap = try chain.capture(chain.client, "eth0", "client")
        let srv = try chain.capture(chain.server, "eth0", "server")
        try chain.startServer(proto: 6, family: 4)
        let result = try chain.runClient(proto: 6, family: 4, bytes: 3000, extra: ["--chunk", "50"])
        try chain.stop(cap)
        try chain.stop(srv)
        _ = try chain.stop(el)
        XCTAssertTrue(result.hasPrefix("ok"), result)
        let filter = "ip.src == \(ElementChain.client4) && tcp.len > 0 && !tcp.analysis.retransmission"
        let sent = try chain.tshark(cap, filter: filter, fields: ["tcp.len"]).map { Int($0[0])! }
        let arrived = try chain.tshark(srv, filter: filter, fields: ["tcp.len"]).map { Int($0[0])! }
        XCTAssertEqual(sent.reduce(0, +), 3000)
        XCTAssertEqual(arrived.reduce(0, +), 3000)
        XCTAssertLessThan(arrived.count, sent.count, "sent \(sent) arrived \(arrived)")
        XCTAssertGreaterThan(arrived.max() ?? 0, sent.max() ?? 0)
        try assertChecksumsValid(srv)
    }

    // MARK: timing, loss, duplication

    func testDelayAndDuplication() throws {
        var el = try chain.startElement(["delay:150"])
        try chain.startServer(proto: 6, family: 4)
        let slow = try chain.runClient(proto: 6, family: 4, bytes: 100)
        _ = try chain.stop(el)
        // SYN, SYN/ACK, data and echo each wait 150 ms in the box.
        let elapsed = Double(slow.split(separator: " ").last ?? "") ?? 0
        XCTAssertTrue(slow.hasPrefix("ok"), slow)
        XCTAssertGreaterThan(elapsed, 0.55, slow)

        el = try chain.startElement(["dup:100@data"])
        let srv = try chain.capture(chain.server, "eth0", "server")
        let fast = try chain.runClient(proto: 6, family: 4, bytes: 1000)
        try chain.stop(srv)
        _ = try chain.stop(el)
        XCTAssertTrue(fast.hasPrefix("ok"), fast)
        let data = try chain.tshark(srv, filter: "ip.src == \(ElementChain.client4) && tcp.len > 0", fields: ["tcp.seq_raw"])
        let counts = Dictionary(data.map { ($0[0], 1) }, uniquingKeysWith: +)
        XCTAssertFalse(counts.isEmpty)
        XCTAssertTrue(counts.values.allSatisfy { $0 == 2 }, "every data segment twice: \(counts)")
    }

    func testLossAndReorder() throws {
        try chain.startServer(proto: 6, family: 4)
        var el = try chain.startElement(["loss:100@syn"])
        var srv = try chain.capture(chain.server, "eth0", "server")
        let lost = try chain.runClient(proto: 6, family: 4, bytes: 100, extra: ["--timeout", "1.5"])
        try chain.stop(srv)
        _ = try chain.stop(el)
        XCTAssertTrue(lost.hasPrefix("error"), lost)
        XCTAssertTrue(try chain.tshark(srv, filter: "tcp.flags.syn == 1", fields: ["tcp.seq_raw"]).isEmpty, "no SYN got through")

        el = try chain.startElement(["reorder:50@data"], seed: 5)
        srv = try chain.capture(chain.server, "eth0", "server2")
        let reordered = try chain.runClient(proto: 6, family: 4, bytes: 30000)
        try chain.stop(srv)
        let log = try chain.stop(el, signal: SIGINT)
        XCTAssertTrue(reordered.hasPrefix("ok"), reordered)
        XCTAssertTrue(log.contains("stopped: queued="), "SIGINT stops the element cleanly: \(log)")
        let seqs = try chain.tshark(srv, filter: "ip.src == \(ElementChain.client4) && tcp.len > 0", fields: ["tcp.seq_raw"])
            .compactMap { UInt32($0[0]) }
        let backwards = zip(seqs, seqs.dropFirst()).filter { Int32(bitPattern: $1 &- $0) < 0 }.count
        XCTAssertGreaterThan(backwards, 0, "some data overtaken by later data: \(seqs)")
    }

    func testElementRejectsBadArgumentsAndStopsCleanly() throws {
        let bad = try TestShell.run([chain.binary, "lab", "_element", "--queue", "3", "--behaviour", "strip:30/99"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("unknown MPTCP subtype"), bad.stderr)
        // Two elements cannot own one queue: the second says why.
        let el = try chain.startElement(["loss:0"], queue: 11)
        let second = try TestShell.run(["ip", "netns", "exec", chain.box, chain.binary, "lab", "_element", "--queue", "11", "--behaviour", "loss:0"])
        XCTAssertEqual(second.status, 2)
        XCTAssertTrue(second.stderr.contains("nfq_create_queue(11)"), second.stderr)
        let log = try chain.stop(el)
        XCTAssertTrue(log.contains("stopped: queued="), log)
    }

    struct DataSegment: CustomStringConvertible {
        var seq: String, headerLength: Int, subtypes: [Substring], length: Int
        var hasDSS: Bool { subtypes.contains("2") }
        var description: String { "seq \(seq) hdr \(headerLength) len \(length) mptcp \(subtypes)" }
    }

    /// Data segments (no retransmissions) as sent and as they arrived, in both directions.
    func dataPairs(_ clientSide: ElementChain.Capture, _ serverSide: ElementChain.Capture,
                   client: String, server: String) throws -> [(sent: DataSegment, arrived: DataSegment)] {
        let src = client.contains(":") ? "ipv6.src" : "ip.src"
        func read(_ c: ElementChain.Capture, _ from: String) throws -> [DataSegment] {
            try chain.tshark(c, filter: "\(src) == \(from) && tcp.len > 0 && !tcp.analysis.retransmission",
                             fields: ["tcp.seq_raw", "tcp.hdr_len", "tcp.options.mptcp.subtype", "tcp.len"]).map {
                DataSegment(seq: $0[0], headerLength: Int($0[1]) ?? -1, subtypes: $0[2].split(separator: ","), length: Int($0[3]) ?? -1)
            }
        }
        var out: [(DataSegment, DataSegment)] = []
        for (sentOn, arrivedOn, from) in [(clientSide, serverSide, client), (serverSide, clientSide, server)] {
            let arrived = Dictionary(try read(arrivedOn, from).map { ($0.seq, $0) }, uniquingKeysWith: { a, _ in a })
            for s in try read(sentOn, from) {
                guard let a = arrived[s.seq] else { XCTFail("segment \(s) from \(from) did not arrive"); continue }
                out.append((s, a))
            }
        }
        XCTAssertFalse(out.isEmpty)
        return out
    }

    func assertChecksumsValid(_ cap: ElementChain.Capture, file: StaticString = #filePath, line: UInt = #line) throws {
        let bad = try chain.tshark(cap, filter: "tcp.checksum.status == 0 || ip.checksum.status == 0", fields: ["frame.number"],
                                   options: ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"])
        XCTAssertTrue(bad.isEmpty, "frames with bad checksums: \(bad)", file: file, line: line)
    }
}

struct ChainError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A client — box — server chain of namespaces with veth links, removed on `destroy` (and, after
/// a SIGKILL, by the next run: names carry the creating process id).
final class ElementChain {
    static let client4 = "198.18.1.2", box4Left = "198.18.1.1", box4Right = "198.18.2.1", server4 = "198.18.2.2"
    static let client6 = "2001:db8:1::2", box6Left = "2001:db8:1::1", box6Right = "2001:db8:2::1", server6 = "2001:db8:2::2"
    static let namePrefix = "mpte-"

    let prefix: String
    let client: String, box: String, server: String
    let dir: URL
    let binary: String
    private var processes: [Process] = []
    private var rules: [ElementQueueRule] = []

    struct Capture { let process: Process; let file: String }

    init() throws {
        binary = try Self.findBinary()
        Self.removeStale()
        let tag = String(UInt32.random(in: 0...0xffffff), radix: 16)
        prefix = "\(Self.namePrefix)\(getpid())-\(tag)"
        client = "\(prefix)-c"; box = "\(prefix)-b"; server = "\(prefix)-s"
        dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(prefix)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        do { try build(tag: tag) } catch { destroy(); throw error }
    }

    static func findBinary() throws -> String {
        if let env = ProcessInfo.processInfo.environment["MPTRACEBOX_BIN"] { return env }
        // The test bundle sits next to the built executables.
        var url = Bundle(for: ElementChain.self).bundleURL
        for _ in 0..<4 {
            let candidate = url.appendingPathComponent("mptracebox").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            url = url.deletingLastPathComponent()
        }
        throw ChainError("cannot find the mptracebox binary near \(Bundle(for: ElementChain.self).bundleURL.path); run `swift build` or set MPTRACEBOX_BIN")
    }

    /// Namespaces left by a run that was killed (its process id is gone).
    static func removeStale() {
        guard let out = try? TestShell.check(["ip", "netns", "list"]) else { return }
        for line in out.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(namePrefix), let pid = Int32(name.dropFirst(namePrefix.count).split(separator: "-").first ?? ""),
                  kill(pid, 0) != 0 else { continue }
            // Processes left inside (element, servers, tcpdump) would keep the namespace alive.
            for p in ((try? TestShell.check(["ip", "netns", "pids", name])) ?? "").split(separator: "\n") {
                if let p = Int32(p) { kill(p, SIGKILL) }
            }
            _ = try? TestShell.run(["ip", "netns", "del", name])
            try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "/" + name.dropLast(2))
        }
    }

    private func build(tag: String) throws {
        for ns in [client, box, server] {
            try TestShell.check(["ip", "netns", "add", ns])
            try exec(ns, ["ip", "link", "set", "lo", "up"])
        }
        // Temporary names in the root namespace are unique per run; inside they are renamed.
        let l1 = "e\(tag)a", l2 = "e\(tag)b", r1 = "e\(tag)c", r2 = "e\(tag)d"
        try TestShell.check(["ip", "link", "add", l1, "type", "veth", "peer", "name", l2])
        try TestShell.check(["ip", "link", "set", l1, "netns", client, "name", "eth0"])
        try TestShell.check(["ip", "link", "set", l2, "netns", box, "name", "left"])
        try TestShell.check(["ip", "link", "add", r1, "type", "veth", "peer", "name", r2])
        try TestShell.check(["ip", "link", "set", r1, "netns", box, "name", "right"])
        try TestShell.check(["ip", "link", "set", r2, "netns", server, "name", "eth0"])
        let addrs: [(String, String, [String])] = [
            (client, "eth0", ["198.18.1.2/24", "2001:db8:1::2/64"]), (box, "left", ["198.18.1.1/24", "2001:db8:1::1/64"]),
            (box, "right", ["198.18.2.1/24", "2001:db8:2::1/64"]), (server, "eth0", ["198.18.2.2/24", "2001:db8:2::2/64"]),
        ]
        for (ns, dev, list) in addrs {
            for a in list { try exec(ns, ["ip", "addr", "add", a, "dev", dev] + (a.contains(":") ? ["nodad"] : [])) }
            try exec(ns, ["ip", "link", "set", dev, "up"])
            // Real per-segment checksums and sizes: no offloads.
            try exec(ns, ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off"])
        }
        try exec(client, ["ip", "route", "add", "default", "via", Self.box4Left])
        try exec(client, ["ip", "-6", "route", "add", "default", "via", Self.box6Left])
        try exec(server, ["ip", "route", "add", "default", "via", Self.box4Right])
        try exec(server, ["ip", "-6", "route", "add", "default", "via", Self.box6Right])
        try exec(box, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                       "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"])
        for ns in [client, server] { try exec(ns, ["sysctl", "-qw", "net.mptcp.enabled=1"]) }
        try Self.echoScript.write(to: dir.appendingPathComponent("echo.py"), atomically: true, encoding: .utf8)
    }

    func destroy() {
        for p in processes where p.isRunning {
            kill(p.processIdentifier, SIGTERM)
        }
        for p in processes where p.isRunning {
            let deadline = Date().addingTimeInterval(3)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        processes.removeAll()
        // The rules live in the box namespace and go with it.
        for ns in [client, box, server] { _ = try? TestShell.run(["ip", "netns", "del", ns]) }
        if ProcessInfo.processInfo.environment["ELEMENT_TEST_KEEP"] == nil { try? FileManager.default.removeItem(at: dir) }
    }

    @discardableResult
    func exec(_ ns: String, _ argv: [String]) throws -> String {
        try TestShell.check(["ip", "netns", "exec", ns] + argv)
    }

    func spawn(_ ns: String, _ argv: [String], log name: String, environment: [String: String]? = nil) throws -> (Process, URL) {
        let url = dir.appendingPathComponent(name)
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestEnvironment.which("ip") ?? "/usr/sbin/ip")
        p.arguments = ["netns", "exec", ns] + argv
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        if let environment { p.environment = environment }
        try p.run()
        processes.append(p)
        return (p, url)
    }

    func waitFor(_ url: URL, _ text: String, _ p: Process, timeout: TimeInterval = 5) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let s = try? String(contentsOf: url, encoding: .utf8), s.contains(text) { return }
            if !p.isRunning { break }
            usleep(20_000)
        }
        let log = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        throw ChainError("\((p.arguments ?? []).joined(separator: " ")) did not print \"\(text)\": \(log)")
    }

    struct Element { let process: Process; let log: URL }

    /// Installs the queue rules in the box and starts the element on them.
    func startElement(_ behaviours: [String], queue: UInt16 = 0, seed: UInt64 = 42,
                      rules custom: [ElementQueueRule]? = nil) throws -> Element {
        let parsed = try behaviours.map(ElementBehaviour.init(parsing:))
        for r in rules { _ = try? exec(box, r.deleteArguments) }
        rules = custom ?? ElementBehaviour.queueRules(for: parsed, queue: queue)
        for r in rules { try exec(box, r.addArguments) }
        let (p, log) = try spawn(box, [binary, "lab", "_element", "--queue", "\(queue)", "--seed", "\(seed)"]
                                    + behaviours.flatMap { ["--behaviour", $0] }, log: "element-\(queue)-\(processes.count).log")
        try waitFor(log, "ready on queue", p)
        return Element(process: p, log: log)
    }

    /// Stops the element (SIGTERM), removes its rules and returns its log.
    func stop(_ e: Element, signal: Int32 = SIGTERM) throws -> String {
        kill(e.process.processIdentifier, signal)
        e.process.waitUntilExit()
        for r in rules { _ = try? exec(box, r.deleteArguments) }
        rules = []
        let log = (try? String(contentsOf: e.log, encoding: .utf8)) ?? ""
        guard e.process.terminationStatus == 0 else {
            throw ChainError("the element exited \(e.process.terminationStatus): \(log)")
        }
        return log
    }

    func capture(_ ns: String, _ dev: String, _ name: String) throws -> Capture {
        let file = dir.appendingPathComponent("\(name).pcap").path
        let (p, log) = try spawn(ns, ["tcpdump", "-i", dev, "-n", "-U", "--immediate-mode", "-s", "0", "-w", file, "tcp or icmp or icmp6"],
                                 log: "\(name)-tcpdump.log")
        try waitFor(log, "listening on", p)
        return Capture(process: p, file: file)
    }

    func stop(_ c: Capture) throws {
        usleep(200_000)  // let the last frames reach the capture
        kill(c.process.processIdentifier, SIGTERM)
        c.process.waitUntilExit()
    }

    /// tshark fields of the frames matching `filter`, one array per frame.
    func tshark(_ c: Capture, filter: String, fields: [String], options: [String] = []) throws -> [[String]] {
        let out = try TestShell.check(["tshark", "-r", c.file, "-n"] + options + ["-Y", filter, "-T", "fields"]
                                      + fields.flatMap { ["-e", $0] } + ["-E", "occurrence=a", "-E", "aggregator=,"])
        return out.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    func nstat(_ ns: String) throws -> [String: Int] {
        let history = dir.appendingPathComponent("nstat-\(ns)").path
        let r = try TestShell.check(["env", "NSTAT_HISTORY=\(history)", "ip", "netns", "exec", ns, "nstat", "-az", "MPTcpExt*"])
        var out: [String: Int] = [:]
        for line in r.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 2, let v = Int(f[1]) { out[String(f[0])] = v }
        }
        return out
    }

    func startServer(proto: Int, family: Int, port: Int = 8080) throws {
        let (p, log) = try spawn(server, ["python3", dir.appendingPathComponent("echo.py").path, "server",
                                          "\(family)", "\(proto)", "\(port)"], log: "server-\(proto)-\(family)-\(port).log")
        try waitFor(log, "listening", p)
    }

    /// Runs the echo client; returns "ok SECONDS", "mismatch …" or "error …".
    func runClient(proto: Int, family: Int, bytes: Int, port: Int = 8080, extra: [String] = []) throws -> String {
        let addr = family == 4 ? Self.server4 : Self.server6
        return try exec(client, ["python3", dir.appendingPathComponent("echo.py").path, "client", "\(family)", "\(proto)",
                                 addr, "\(port)", "\(bytes)"] + extra).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// An echo server and client over kernel TCP (proto 6) or MPTCP (proto 262).
    static let echoScript = #"""
    import socket, sys, time
    role, fam, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    af = socket.AF_INET if fam == 4 else socket.AF_INET6
    if role == "server":
        s = socket.socket(af, socket.SOCK_STREAM, proto)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0" if fam == 4 else "::", int(sys.argv[4])))
        s.listen(8)
        print("listening", flush=True)
        while True:
            c, _ = s.accept()
            c.settimeout(5)
            try:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
            except Exception as e:
                print("server error", e, flush=True)
            c.close()
    else:
        addr, port, n = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
        opts = dict(zip(sys.argv[7::2], sys.argv[8::2]))
        s = socket.socket(af, socket.SOCK_STREAM, proto)
        if "--ttl" in opts:
            if fam == 4:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(opts["--ttl"]))
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, int(opts["--ttl"]))
        s.settimeout(float(opts.get("--timeout", "5")))
        payload = (b"HELLO-MPTRACEBOX-" + bytes((i * 7 + 13) % 251 for i in range(n)))[:n]
        start = time.monotonic()
        try:
            s.connect((addr, port))
            chunk = int(opts.get("--chunk", "0"))
            rounds = int(opts.get("--rounds", "1"))
            got = b""
            # Each round waits for its echo, so later rounds are sent on an established
            # connection (an MPTCP client's first burst carries MP_CAPABLE, later data DSS).
            step = -(-n // rounds)
            for r in range(0, n, step):
                part = payload[r:r + step]
                if chunk:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    for i in range(0, len(part), chunk):
                        s.send(part[i:i + chunk])
                        time.sleep(0.001)
                else:
                    s.sendall(part)
                while len(got) < r + len(part):
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
                if len(got) < r + len(part):
                    break
            if got == payload:
                print("ok %.3f" % (time.monotonic() - start), flush=True)
            else:
                print("mismatch %d/%d %r" % (len(got), n, got[:20]), flush=True)
        except Exception as e:
            print("error", type(e).__name__, e, flush=True)
        s.close()
    """#
}
