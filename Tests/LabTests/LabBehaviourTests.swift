import XCTest
import TestSupport
@testable import Lab

/// Each middlebox behaviour, checked on the wire: capture on both sides of the box, dissect with
/// tshark, and require that the box changed exactly what it should and nothing else.
final class LabBehaviourTests: XCTestCase {
    /// Forward (client→server) packets before and after hop `hop`.
    private func forward(_ lab: Lab, _ c: (left: [Packet], right: [Packet])) -> ([Packet], [Packet]) {
        (c.left.filter { $0.isTCP && $0.src == lab.clientIPv4 }, c.right.filter { $0.isTCP && $0.src == lab.clientIPv4 })
    }
    private func backward(_ lab: Lab, _ c: (left: [Packet], right: [Packet])) -> ([Packet], [Packet]) {
        (c.right.filter { $0.isTCP && $0.src == lab.serverIPv4 }, c.left.filter { $0.isTCP && $0.src == lab.serverIPv4 })
    }

    func testPlainRouterOnlyDecrementsTTL() throws {
        let lab = try makeLab(self, hops: ["router", "router"])
        let c = try captureAcross(lab, .hop(path: 0, index: 2)) { XCTAssertEqual(try KernelClient.exchange(lab), 3000) }
        let (fb, fa) = forward(lab, c), (bb, ba) = backward(lab, c)
        assertTransformed(fb, fa, "forward", routed)
        assertTransformed(bb, ba, "backward", routed)
        XCTAssertTrue(fb.allSatisfy { $0["tcp.checksum.status"] == "1" }, "offloads off: real checksums")
        XCTAssertTrue(fb.contains { Packet.kinds($0.options).contains(30) }, "MPTCP options crossed the router")
    }

    func testStripOnSYNOnly() throws {
        let lab = try makeLab(self, hops: ["router", "strip:30@syn"])
        let c = try captureAcross(lab, .hop(path: 0, index: 2)) { XCTAssertEqual(try KernelClient.exchange(lab), 3000) }
        let (fb, fa) = forward(lab, c)
        XCTAssertTrue(Packet.kinds(fb[0].options).contains(30), "the client's SYN carries MP_CAPABLE")
        assertTransformed(fb, fa, "forward") { p in
            routed(&p)
            if p.isSYN { p["tcp.options"] = Packet.stripping(30, from: p.options) }
        }
        let (bb, ba) = backward(lab, c)
        assertTransformed(bb, ba, "backward", routed)
        XCTAssertTrue(fa.allSatisfy { $0["tcp.checksum.status"] == "1" }, "checksums fixed after the rewrite")
    }

    func testStripOnSYNACKOnly() throws {
        let lab = try makeLab(self, hops: ["strip:30@synack"])
        let c = try captureAcross(lab, .hop(path: 0, index: 1)) { XCTAssertEqual(try KernelClient.exchange(lab), 3000) }
        let (fb, fa) = forward(lab, c), (bb, ba) = backward(lab, c)
        assertTransformed(fb, fa, "forward", routed)
        XCTAssertTrue(bb.first.map { $0.isSYNACK && Packet.kinds($0.options).contains(30) } ?? false)
        assertTransformed(bb, ba, "backward") { p in
            routed(&p)
            if p.isSYNACK { p["tcp.options"] = Packet.stripping(30, from: p.options) }
        }
    }

    func testStripOnNonSYNAndOnDataOnly() throws {
        for (behaviour, applies) in [("strip:30@nonsyn", { (p: Packet) in !p.isSYN && !p.isSYNACK }),
                                     ("strip:30@data", { (p: Packet) in !p.isSYN && !p.isSYNACK && p.hasPayload })] {
            let lab = try makeLab(self, hops: [behaviour])
            let c = try captureAcross(lab, .hop(path: 0, index: 1)) { _ = try KernelClient.exchange(lab) }
            let (fb, fa) = forward(lab, c), (bb, ba) = backward(lab, c)
            XCTAssertTrue(fb.contains { !$0.isSYN && Packet.kinds($0.options).contains(30) }, "\(behaviour): MPTCP on non-SYN before")
            for (b, a, dir) in [(fb, fa, "forward"), (bb, ba, "backward")] {
                assertTransformed(b, a, "\(behaviour) \(dir)") { p in
                    routed(&p)
                    if applies(p) { p["tcp.options"] = Packet.stripping(30, from: p.options) }
                }
            }
            if behaviour.hasSuffix("@data") {
                XCTAssertTrue(fa.contains { !$0.isSYN && !$0.hasPayload && Packet.kinds($0.options).contains(30) },
                              "@data leaves pure ACKs alone")
            }
            try lab.down()
        }
    }

    /// `@toclient`: only segments entering from the server side are changed.
    func testDirectedStripActsOneWayOnly() throws {
        let lab = try makeLab(self, hops: ["strip:30@data@toclient"])
        let c = try captureAcross(lab, .hop(path: 0, index: 1)) { XCTAssertEqual(try KernelClient.exchange(lab), 3000) }
        let (fb, fa) = forward(lab, c), (bb, ba) = backward(lab, c)
        XCTAssertTrue(fb.contains { $0.hasPayload && Packet.kinds($0.options).contains(30) }, "the client's data carries DSS")
        assertTransformed(fb, fa, "forward (untouched)", routed)
        XCTAssertTrue(bb.contains { $0.hasPayload && Packet.kinds($0.options).contains(30) }, "the server's data carries DSS")
        assertTransformed(bb, ba, "backward") { p in
            routed(&p)
            if !p.isSYN && !p.isSYNACK && p.hasPayload { p["tcp.options"] = Packet.stripping(30, from: p.options) }
        }
    }

    /// `ignorev1`: the server's own namespace strips MP_CAPABLE v1 from SYNs (a v0-only peer
    /// facing a v1 client); the path still carries it, and a v0 SYN is left alone.
    func testServerIgnoringV1() throws {
        let lab = try makeLab(self, hops: ["router"], servers: ["mptcp:80,ignorev1"])
        let before = try lab.mptcpCounters(.server)
        let c = try captureAcross(lab, .hop(path: 0, index: 1)) { XCTAssertEqual(try KernelClient.exchange(lab), 3000) }
        let (_, fa) = forward(lab, c), (bb, _) = backward(lab, c)
        XCTAssertTrue(fa.first.map { $0.isSYN && Packet.kinds($0.options).contains(30) } ?? false, "MP_CAPABLE left the last hop")
        XCTAssertTrue(bb.first.map { $0.isSYNACK && !Packet.kinds($0.options).contains(30) } ?? false, "the server answered plainly")
        let after = try lab.mptcpCounters(.server)
        XCTAssertEqual((after["MPTcpExtMPCapableSYNRX"] ?? 0) - (before["MPTcpExtMPCapableSYNRX"] ?? 0), 0)
        XCTAssertEqual(lab.serverConnections(port: 80).last?["mptcp"] as? Bool, false)
        func matched() throws -> Int {
            let rule = try lab.check(.server, ["nft", "list", "ruleset"]).split(separator: "\n").first { $0.contains("reset tcp option") } ?? ""
            return Int(rule.split(separator: " ").drop { $0 != "packets" }.dropFirst().first ?? "") ?? -1
        }
        XCTAssertEqual(try matched(), 1, "the kernel client's v1 SYN")
        // A crafted v0 SYN (MP_CAPABLE with the sender's key) is not the rule's business.
        try KernelClient.craftedSYN(lab, ttl: 64, options: "020405b4" + "1e0c0081" + "0102030405060708")
        usleep(100_000)
        XCTAssertEqual(try matched(), 1, "a v0 SYN passes the v1 rule")
    }

    /// A change in prerouting is in the box's own ICMP quote; one in forward is not.
    func testStripHookDecidesWhatTheBoxQuotes() throws {
        for (behaviour, quoteStripped) in [("strip:30@syn@pre", true), ("strip:30@syn", false)] {
            let lab = try makeLab(self, hops: ["router", behaviour])
            let cap = try Capture(lab, .hop(path: 0, index: 2), "left")
            try KernelClient.craftedSYN(lab, ttl: 2)
            usleep(100_000)
            let pkts = try cap.packets()
            let quote = pkts.first { $0["icmp.type"] == "11" }
            XCTAssertNotNil(quote, "\(behaviour): time-exceeded from hop2")
            let quotedKinds = Packet.kinds(quote?.options ?? "")
            XCTAssertFalse(quotedKinds.isEmpty, "the quote holds the TCP options (RFC 1812 full quote)")
            XCTAssertEqual(!quotedKinds.contains(30), quoteStripped, "\(behaviour): quoted options \(quotedKinds)")
            try lab.down()
        }
    }

    /// `corrupt:30/1@synack` on the second path: the kernel client's path manager opens a join
    /// there (a `subflow` endpoint on the client's second address); the server's MP_JOIN SYN/ACK
    /// leaves the box with its truncated HMAC and nonce inverted and a valid checksum, nothing
    /// else changed; the client's kernel rejects the HMAC (MPJoinSynAckHMacFailure).
    func testCorruptInvertsTheMPJoinSYNACKValue() throws {
        let lab = try makeLab(self, hops: ["router"], secondPath: ["corrupt:30/1@synack"])
        let joinFrom = Addressing.clientIPv4(path: 1)
        let before = try lab.mptcpCounters(.client)
        let c = try captureAcross(lab, .hop(path: 1, index: 1)) { XCTAssertEqual(try KernelClient.exchange(lab, bytes: 20000), 20000) }
        let after = try lab.mptcpCounters(.client)
        let fb = c.left.filter { $0.isTCP && $0.src == joinFrom }, fa = c.right.filter { $0.isTCP && $0.src == joinFrom }
        let bb = c.right.filter { $0.isTCP && $0.src == lab.serverIPv4 }, ba = c.left.filter { $0.isTCP && $0.src == lab.serverIPv4 }
        XCTAssertTrue(fb.contains { $0.isSYN && Packet.kinds($0.options).contains(30) }, "the client's join SYN crossed the box: \(fb)")
        assertTransformed(fb, fa, "forward (untouched)", routed)
        XCTAssertEqual(bb.filter(\.isSYNACK).count, 1, "one SYN/ACK: \(bb)")
        assertTransformed(bb, ba, "backward") { p in
            routed(&p)
            if p.isSYNACK { p["tcp.options"] = Packet.corrupting(mptcpSubtype: 1, from: p.options) }
        }
        let synAckAfter = try XCTUnwrap(ba.first { $0.isSYNACK })
        XCTAssertNotEqual(synAckAfter.options, bb.first { $0.isSYNACK }?.options, "the option bytes changed")
        XCTAssertEqual(synAckAfter["tcp.checksum.status"], "1", "the checksum was fixed")
        XCTAssertEqual((after["MPTcpExtMPJoinSynAckHMacFailure"] ?? 0) - (before["MPTcpExtMPJoinSynAckHMacFailure"] ?? 0), 1,
                       "the client's kernel found the HMAC wrong")
    }

    func testDropSegmentsWithOption() throws {
        let lab = try makeLab(self, hops: ["drop:30@syn"])
        let c = try captureAcross(lab, .hop(path: 0, index: 1)) {
            XCTAssertThrowsError(try lab.check(.client, ["timeout", "2", "python3", "-c", KernelClient.script,
                                                         "mptcp", lab.serverIPv4, "80", "10", "10", "0"]))
        }
        let (fb, fa) = forward(lab, c)
        XCTAssertTrue(fb.contains { $0.isSYN && Packet.kinds($0.options).contains(30) }, "MPTCP SYNs arrived")
        XCTAssertFalse(fa.contains { $0.isSYN && Packet.kinds($0.options).contains(30) }, "no MPTCP SYN left the box")
        // A plain TCP connection through the same box is untouched.
        let c2 = try captureAcross(lab, .hop(path: 0, index: 1)) { XCTAssertEqual(try KernelClient.exchange(lab, proto: "tcp"), 3000) }
        let (pb, pa) = forward(lab, c2)
        assertTransformed(pb, pa, "plain TCP", routed)
    }

    func testMSSDSCPECNAndTTLRewrites() throws {
        let cases: [(String, (inout Packet) -> Void)] = [
            ("mss:1300", { p in
                if p.isSYN || p.isSYNACK, let r = p.options.range(of: "0204") {
                    p["tcp.options"].replaceSubrange(r.upperBound..<p.options.index(r.upperBound, offsetBy: 4), with: "0514")
                }
            }),
            ("dscp:46", { p in
                let ds = Int(p["ip.dsfield"].replacingOccurrences(of: "0x", with: ""), radix: 16) ?? 0
                p["ip.dsfield"] = String(format: "0x%02x", 46 << 2 | ds & 3)
            }),
            ("ecn:ce", { p in
                let ds = Int(p["ip.dsfield"].replacingOccurrences(of: "0x", with: ""), radix: 16) ?? 0
                p["ip.dsfield"] = String(format: "0x%02x", ds & ~3 | 3)
            }),
            ("ttl:7", { p in p["ip.ttl"] = "8" }),  // set to 7 in forward, then... see below
        ]
        for (behaviour, change) in cases {
            let lab = try makeLab(self, hops: [behaviour])
            let c = try captureAcross(lab, .hop(path: 0, index: 1)) { XCTAssertEqual(try KernelClient.exchange(lab), 3000) }
            for (b, a, dir) in [forward(lab, c), backward(lab, c)].enumerated().map({ ($1.0, $1.1, $0 == 0 ? "fwd" : "back") }) {
                assertTransformed(b, a, "\(behaviour) \(dir)") { p in
                    change(&p)
                    routed(&p)
                }
            }
            try lab.down()
        }
    }

    func testNATRewritesSourceAddressAndPort() throws {
        let lab = try makeLab(self, hops: ["nat"])
        let natAddress = lab.addresses(.hop(path: 0, index: 1)).first { $0.interface == "right" }!.ipv4
        let c = try captureAcross(lab, .hop(path: 0, index: 1)) { XCTAssertEqual(try KernelClient.exchange(lab), 3000) }
        let before = c.left.filter { $0.isTCP && $0.src == lab.clientIPv4 }
        let after = c.right.filter { $0.isTCP && $0.src == natAddress }
        XCTAssertTrue(c.right.allSatisfy { $0.src != lab.clientIPv4 }, "no client address behind the NAT")
        assertTransformed(before, after, "NAT") { p in
            routed(&p)
            p["ip.src"] = natAddress
            p["tcp.srcport"] = after.first?["tcp.srcport"] ?? "?"
        }
        let peers = lab.serverConnections(port: 80).compactMap { $0["peer"] as? String }
        XCTAssertEqual(Set(peers), ["::ffff:\(natAddress)"], "the server saw the NAT's address")
    }

    func testSynproxyAnswersSYNsItself() throws {
        let lab = try makeLab(self, hops: ["synproxy"])
        let c = try captureAcross(lab, .hop(path: 0, index: 1)) { XCTAssertEqual(try KernelClient.exchange(lab), 3000) }
        let clientSYN = try XCTUnwrap(c.left.first { $0.isSYN })
        let proxySYNACK = try XCTUnwrap(c.left.first { $0.isSYNACK })
        let serverSYN = try XCTUnwrap(c.right.first { $0.isSYN })
        let serverSYNACK = try XCTUnwrap(c.right.first { $0.isSYNACK })
        XCTAssertTrue(Packet.kinds(clientSYN.options).contains(30))
        XCTAssertFalse(Packet.kinds(proxySYNACK.options).contains(30), "SYNPROXY's SYN/ACK has no MP_CAPABLE")
        XCTAssertFalse(Packet.kinds(serverSYN.options).contains(30), "SYNPROXY's own SYN to the server has no MP_CAPABLE")
        XCTAssertNotEqual(proxySYNACK["tcp.seq_raw"], serverSYNACK["tcp.seq_raw"], "the box picked its own ISN")
        // The server's SYN arrives only after the client completed the proxy's handshake.
        XCTAssertTrue(c.left.contains { !$0.isSYN && !$0.isSYNACK }, "client ACKed the cookie")
        let counters = try lab.mptcpCounters(.client)
        XCTAssertGreaterThanOrEqual(counters["MPTcpExtMPCapableFallbackSYNACK"] ?? 0, 1)
    }

    func testTerminatingProxyReoriginatesConnections() throws {
        let lab = try makeLab(self, hops: ["router", "proxy"])
        let hop = Node.hop(path: 0, index: 2)
        let proxyAddress = lab.addresses(hop).first { $0.interface == "right" }!.ipv4
        let c = try captureAcross(lab, hop) { XCTAssertEqual(try KernelClient.exchange(lab, bytes: 5000), 5000) }
        XCTAssertTrue(c.left.contains { $0.isSYN && Packet.kinds($0.options).contains(30) })
        let upstream = c.right.filter(\.isTCP)
        XCTAssertFalse(upstream.isEmpty)
        XCTAssertTrue(upstream.allSatisfy { !Packet.kinds($0.options).contains(30) }, "plain TCP towards the server")
        XCTAssertTrue(upstream.filter { $0.src != lab.serverIPv4 }.allSatisfy { $0.src == proxyAddress })
        let conns = lab.serverConnections(port: 80).filter { $0["event"] as? String == "close" }
        XCTAssertEqual(conns.count, 1)
        XCTAssertEqual(conns.first?["peer"] as? String, "::ffff:\(proxyAddress)")
        XCTAssertEqual(conns.first?["bytes_in"] as? Int, 5000)
        XCTAssertEqual(conns.first?["mptcp"] as? Bool, false)
        XCTAssertEqual(try lab.mptcpCounters(.server)["MPTcpExtMPCapableSYNRX"], 0)
    }

    func testSilentRouterSendsNoICMPAndRateLimitedRouterFew() throws {
        let lab = try makeLab(self, hops: ["router", "silent", "ratelimit:1000"])
        func icmpCount(hop: Int, probes: Int) throws -> Int {
            let cap = try Capture(lab, .hop(path: 0, index: hop), "left", filter: "icmp")
            // One burst of expiring SYNs from one process (the kernel's bucket refills at 1/s).
            try lab.check(.client, ["python3", "-c", """
                import socket, time
                for i in range(\(probes)):
                    s = socket.socket(); s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, \(hop)); s.setblocking(False)
                    try: s.connect(("\(lab.serverIPv4)", 80))
                    except BlockingIOError: pass
                time.sleep(0.2)
                """])
            usleep(100_000)
            return try cap.packets().filter { $0["icmp.type"] == "11" }.count
        }
        XCTAssertEqual(try icmpCount(hop: 1, probes: 3), 3, "a plain lab router answers every probe")
        XCTAssertEqual(try icmpCount(hop: 2, probes: 3), 0, "silent")
        XCTAssertEqual(try icmpCount(hop: 1, probes: 20), 20, "no limit on a plain lab router, even in a burst")
        let limited = try icmpCount(hop: 3, probes: 20)
        XCTAssertGreaterThan(limited, 0)
        XCTAssertLessThanOrEqual(limited, 8, "rate limited: the kernel's burst is about 6 per 1000 ms")
    }

    func testAnyIPServerAnswersAcrossItsPrefix() throws {
        let lab = try makeLab(self, hops: ["router"], servers: ["mptcp:80", "tcp:81"], anyIP: true)
        for host in ["198.18.128.1", "198.18.140.77", "198.18.143.254", "2001:db8:a::1234"] {
            XCTAssertEqual(try KernelClient.exchange(lab, host: host, port: 81, proto: "tcp", bytes: 100, chunk: 100), 100, host)
        }
        XCTAssertEqual(try KernelClient.exchange(lab, host: "198.18.133.3", port: 80, bytes: 100, chunk: 100), 100)
    }

    func testIPv6ThroughAStrippingBox() throws {
        let lab = try makeLab(self, hops: ["strip:30@syn"])
        let c = try captureAcross(lab, .hop(path: 0, index: 1)) {
            XCTAssertEqual(try KernelClient.exchange(lab, host: lab.serverIPv6), 3000)
        }
        let fb = c.left.filter { $0.isTCP && $0.src == lab.clientIPv6 }, fa = c.right.filter { $0.isTCP && $0.src == lab.clientIPv6 }
        assertTransformed(fb, fa, "IPv6 forward") { p in
            routed(&p)
            if p.isSYN { p["tcp.options"] = Packet.stripping(30, from: p.options) }
        }
    }
}
