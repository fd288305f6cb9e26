import Foundation
import XCTest
import TestSupport
import Lab

/// The crafted client against real kernel MPTCP servers behind real middleboxes. Each verdict is
/// asserted from the JSON and confirmed independently by the server's kernel counters or log.
final class SessionLabTests: XCTestCase {
    func testCleanPathIsMPTCPWithJoinAndAddAddrAndTheServerGotTheData() throws {
        let lab = try SessionLab(self, hops: ["router"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.ok"])
        XCTAssertEqual(doc.addAddrVerdict, "add-addr.ok")
        XCTAssertEqual(doc["payload"] as? String, "intact")
        XCTAssertEqual(doc.counters["bytes_acked_data_level"], 4000)
        XCTAssertEqual(doc["checksums"] as? Bool, true)
        // The server's kernel: MPTCP handshake, keys on the third ACK, a join with a valid HMAC,
        // our ADD_ADDR accepted (HMAC valid) and echoed; no checksum or HMAC failures.
        XCTAssertEqual(d["MPCapableSYNRX"], 1)
        XCTAssertEqual(d["MPCapableACKRX"], 1)
        XCTAssertEqual(d["MPJoinSynRx"], 1)
        XCTAssertEqual(d["MPJoinAckRx"], 1)
        XCTAssertEqual(d["AddAddr"], 1)
        XCTAssertEqual(d["EchoAddTx"] ?? 0, 1)
        for bad in ["DataCsumErr", "MPJoinAckHMacFailure", "MPJoinSynAckHMacFailure", "MPCapableFallbackACK", "DssFallback", "MPFailTx", "AddAddrDrop"] {
            XCTAssertEqual(d[bad] ?? 0, 0, bad)
        }
        // The server's socket: MPTCP to the end, and it received (and echoed) exactly what was sent.
        let closed = lab.serverClosed()
        XCTAssertEqual(closed.count, 1)
        XCTAssertEqual(closed.first?["bytes_in"] as? Int, 4000)
        XCTAssertEqual(closed.first?["mptcp_at_close"] as? Bool, true)
    }

    func testCleanPathWithoutChecksumsAndIPv6() throws {
        let lab = try SessionLab(self, hops: ["router"])
        let (doc, d, _) = try lab.connect(["-6", "--no-checksum", "--size", "10000"], target: lab.lab.serverIPv6)
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.ok"])
        XCTAssertEqual(doc["checksums"] as? Bool, false)
        XCTAssertEqual(doc.counters["bytes_acked_data_level"], 10000)
        XCTAssertEqual(d["MPCapableACKRX"], 1)
        XCTAssertEqual(d["MPJoinAckRx"], 1)
        XCTAssertEqual(lab.serverClosed().first?["bytes_in"] as? Int, 10000)
    }

    func testPlainTCPServer() throws {
        let lab = try SessionLab(self, hops: ["router"], servers: ["tcp:80"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "fallback.not-mptcp-server")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0)
        // The data still went through as plain TCP.
        XCTAssertEqual(lab.serverClosed().first?["proto"] as? String, "tcp")
        XCTAssertEqual(lab.serverClosed().first?["bytes_in"] as? Int, 4000)
        XCTAssertEqual(doc["payload"] as? String, "intact")
    }

    func testVersionAutoRetriesWithV0AndStillReportsAPlainServer() throws {
        let lab = try SessionLab(self, hops: ["router"], servers: ["tcp:80"])
        let (doc, _, raw) = try lab.connect(["--mptcp-version", "auto"])
        XCTAssertEqual(doc.verdict, "fallback.not-mptcp-server")
        XCTAssertTrue(raw.contains("syn v0"), "a v0 SYN was tried")
        XCTAssertTrue(raw.contains("a v0 SYN was answered without MP_CAPABLE too"))
        // The v0 retry's connection carried the data as plain TCP.
        XCTAssertEqual(doc["payload"] as? String, "intact")
        XCTAssertEqual(lab.serverClosed().first?["bytes_in"] as? Int, 4000)
    }

    /// A v0-only peer facing a v1 SYN (RFC 8684 §3.1): an MPTCP server whose namespace strips
    /// MP_CAPABLE v1 from incoming SYNs (no router sees it). Linux speaks v1 only and ignores the
    /// v0 retry too, so the honest verdict is still "not an MPTCP server we can talk to".
    func testVersionAutoAgainstAServerThatIgnoresV1() throws {
        let lab = try SessionLab(self, hops: ["router"], servers: ["mptcp:80,ignorev1"])
        var result: (doc: [String: Any], delta: [String: Int64], raw: String)?
        let seen = try lab.serverCapture { result = try lab.connect(["--mptcp-version", "auto", "--no-inspect"]) }
        let (doc, d, raw) = try XCTUnwrap(result)
        XCTAssertEqual(doc.verdict, "fallback.not-mptcp-server")
        XCTAssertTrue(raw.contains("a v0 SYN was answered without MP_CAPABLE too"))
        XCTAssertEqual(doc["payload"] as? String, "intact")
        // Both SYNs reached the server with their MP_CAPABLE (the capture is before its netfilter hooks) ...
        let syns = seen.filter { $0.fromClient && $0.syn && !$0.ack }
        XCTAssertTrue(syns.contains { $0.subtypes.contains(0) && $0.versions == [1] }, "the v1 SYN arrived: \(syns)")
        XCTAssertTrue(syns.contains { $0.subtypes.contains(0) && $0.versions == [0] }, "the v0 SYN arrived: \(syns)")
        XCTAssertFalse(seen.contains { !$0.fromClient && $0.syn && $0.subtypes.contains(0) }, "no SYN/ACK offered MP_CAPABLE")
        // ... and the kernel took neither: the rule rewrote the v1 SYN only, Linux ignored the v0 one.
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0)
        let rule = try lab.lab.check(.server, ["nft", "list", "ruleset"]).split(separator: "\n").first { $0.contains("reset tcp option") } ?? ""
        XCTAssertTrue(rule.contains("counter packets 1 "), "only the v1 SYN matched the v1 rule: \(rule)")
        let closed = lab.serverClosed()
        XCTAssertEqual(closed.first?["mptcp"] as? Bool, false)
        XCTAssertEqual(closed.first?["bytes_in"] as? Int, 4000, "the v0 retry's connection carried the data as TCP")
    }

    func testMPCapableStrippedFromTheSYN() throws {
        // A router after the stripping box quotes the SYN as it left the box.
        let lab = try SessionLab(self, hops: ["router", "strip:30@syn", "router"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "fallback.syn-stripped")
        XCTAssertEqual(doc.detail["hop"], "3")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0, "the server never saw MP_CAPABLE")
        XCTAssertEqual(lab.serverClosed().first?["mptcp"] as? Bool, false)
        // IPv6: the copies' hop limit travels in the flow label of the quotes.
        let (doc6, d6, _) = try lab.connect(["-6"], target: lab.lab.serverIPv6)
        XCTAssertEqual(doc6.verdict, "fallback.syn-stripped")
        XCTAssertEqual(doc6.detail["hop"], "3")
        XCTAssertEqual(d6["MPCapableSYNRX"] ?? 0, 0)
    }

    func testMPCapableStrippedFromTheSYNACK() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30@synack"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "fallback.synack-stripped")
        XCTAssertEqual(d["MPCapableSYNRX"], 1, "the server did see our MP_CAPABLE")
        XCTAssertEqual(d["MPCapableFallbackACK"], 1, "and fell back when our third ACK had none")
    }

    func testSYNsWithMPCapableDropped() throws {
        let lab = try SessionLab(self, hops: ["router", "drop:30@syn"])
        let (doc, d, _) = try lab.connect(["--retries", "2"])
        XCTAssertEqual(doc.verdict, "fallback.syn-dropped")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0)
    }

    func testMPCapableStrippedFromTheThirdACKAndFirstData() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30@nonsyn"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "fallback.ack-stripped")
        XCTAssertEqual(d["MPCapableSYNRX"], 1)
        XCTAssertEqual(d["MPCapableACKRX"] ?? 0, 0, "the server never got our keys")
        XCTAssertEqual(d["MPCapableFallbackACK"], 1)
        XCTAssertEqual(lab.serverClosed().first?["bytes_in"] as? Int, 4000, "the data went through as TCP")
    }

    func testDSSStrippedOnData() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30@data"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "fallback.dss-stripped")
        XCTAssertEqual(doc.detail["direction"], "client-to-server")
        XCTAssertEqual(d["MPCapableACKRX"], 1, "the keys arrived on the third ACK")
        XCTAssertEqual(d["DssFallback"], 1, "the server fell back on data without a mapping")
    }

    /// The server's DSS stripped from its data on the way back only: its ACKs still carry DSS.
    func testDSSStrippedServerToClient() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30@data@toclient"])
        var result: (doc: [String: Any], delta: [String: Int64], raw: String)?
        let seen = try lab.serverCapture { result = try lab.connect(["--no-join", "--no-add-addr"]) }
        let (doc, d, _) = try XCTUnwrap(result)
        XCTAssertEqual(doc.verdict, "fallback.dss-stripped")
        XCTAssertEqual(doc.detail["direction"], "server-to-client")
        XCTAssertEqual(doc["payload"] as? String, "intact", "after falling back we read the echo as TCP")
        // The server: our keys and mappings arrived (no fallback on its side), it still holds an
        // established MPTCP connection, and its data left it with DSS mappings.
        XCTAssertEqual(d["MPCapableACKRX"], 1)
        XCTAssertEqual(d["DssFallback"] ?? 0, 0, "our data reached the server with its mappings")
        XCTAssertEqual(d["MPCurrEstab"], 1, "the server's MPTCP connection never fell back")
        XCTAssertTrue(seen.contains { !$0.fromClient && $0.payload > 0 && $0.subtypes.contains(2) }, "the server sent its data with DSS")
    }

    /// DSS stripped both ways (the element overwrites subtype 2 only, so the keys on the third ACK
    /// and first data pass): the server's ACKs arrive with NOP runs, and it falls back on our data.
    func testDSSStrippedBothWays() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30/dss"])
        let (doc, d, _) = try lab.connect(["--no-join", "--no-add-addr"])
        XCTAssertEqual(doc.verdict, "fallback.dss-stripped")
        XCTAssertEqual(doc.detail["direction"], "both")
        XCTAssertEqual(d["MPCapableACKRX"], 1, "the keys arrived")
        XCTAssertEqual(d["DssFallback"], 1, "the server fell back on our data without a mapping")
        XCTAssertEqual(lab.serverClosed().first?["mptcp_at_close"] as? Bool, false)
        XCTAssertEqual(lab.serverClosed().first?["bytes_in"] as? Int, 4000)
    }

    func testSYNProxy() throws {
        let lab = try SessionLab(self, hops: ["router", "synproxy"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "fallback.proxy")
        XCTAssertEqual(doc.detail["hop"], "2")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0, "the proxy's SYN to the server carries no MP_CAPABLE")
    }

    func testTerminatingProxy() throws {
        let lab = try SessionLab(self, hops: ["router", "proxy"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "fallback.proxy")
        XCTAssertEqual(doc.detail["hop"], "2")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0)
        // The server's peer is the proxy, not the client.
        let peer = lab.serverClosed().first?["peer"] as? String ?? ""
        XCTAssertFalse(peer.hasSuffix(lab.lab.clientIPv4), "peer \(peer)")
    }

    func testADDADDRDropped() throws {
        // A router after the box: the TTL-limited copies of our ADD_ADDR segment are quoted by it
        // only if they get that far.
        let lab = try SessionLab(self, hops: ["router", "drop:30/3", "router"])
        var result: (doc: [String: Any], delta: [String: Int64], raw: String)?
        let seen = try lab.serverCapture { result = try lab.connect(["--no-join", "--retries", "2"]) }
        let (doc, d, _) = try XCTUnwrap(result)
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.addAddrVerdict, "add-addr.no-echo")
        XCTAssertEqual(d["AddAddr"] ?? 0, 0, "no ADD_ADDR reached the server")
        XCTAssertEqual(d["MPCapableACKRX"], 1)
        XCTAssertFalse(seen.contains { $0.fromClient && $0.subtypes.contains(3) }, "no ADD_ADDR on the server's wire")
    }

    func testADDADDRStrippedButTheSegmentArrives() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30/add_addr", "router"])
        var result: (doc: [String: Any], delta: [String: Int64], raw: String)?
        let seen = try lab.serverCapture { result = try lab.connect(["--no-join", "--retries", "2"]) }
        let (doc, d, _) = try XCTUnwrap(result)
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.addAddrVerdict, "add-addr.stripped")
        let a = doc["add_addr"] as? [String: Any] ?? [:]
        XCTAssertEqual(a["detail"] as? [String: String], ["direction": "client-to-server", "hop": "3"], "the router after the box (hop 2) quotes it stripped")
        // The server: no ADD_ADDR, but our segments that carried it arrived (a pure ACK with a DSS
        // and the NOP run the box left), and the session stayed MPTCP.
        XCTAssertEqual(d["AddAddr"] ?? 0, 0)
        XCTAssertEqual(d["MPCapableACKRX"], 1)
        XCTAssertFalse(seen.contains { $0.subtypes.contains(3) })
        XCTAssertGreaterThanOrEqual(seen.filter { $0.fromClient && !$0.syn && $0.payload == 0 && $0.subtypes == [2] && $0.nops >= 16 }.count, 3,
                                    "each ADD_ADDR segment (first and retransmissions) arrived with NOPs in its place")
    }

    func testJoinSYNsDroppedIsJoinTimeout() throws {
        let lab = try SessionLab(self, hops: ["router", "drop:30/mp_join@syn"])
        let (doc, d, _) = try lab.connect(["--no-add-addr", "--retries", "2"])
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.timeout"])
        XCTAssertEqual(d["MPJoinSynRx"] ?? 0, 0, "no MP_JOIN SYN reached the server")
        XCTAssertEqual(d["MPCapableACKRX"], 1)
    }

    /// The server's path manager refuses more subflows: it answers the join SYN (MPJoinSynRx), then
    /// resets the subflow on our third ACK with MP_TCPRST reason 3 (administratively prohibited).
    func testJoinRefusedByTheServerIsJoinRST() throws {
        let lab = try SessionLab(self, hops: ["router"])
        try lab.lab.check(.server, ["ip", "mptcp", "limits", "set", "subflows", "0"])
        var result: (doc: [String: Any], delta: [String: Int64], raw: String)?
        let seen = try lab.serverCapture { result = try lab.connect(["--no-add-addr"]) }
        let (doc, d, _) = try XCTUnwrap(result)
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.rst"])
        let join = (doc["subflows"] as? [[String: Any]])?.last ?? [:]
        XCTAssertEqual(join["detail"] as? [String: String], ["reason": "3"])
        XCTAssertEqual(d["MPJoinSynRx"], 1)
        XCTAssertEqual(d["MPJoinRejected"], 1, "the server's kernel rejected the subflow")
        XCTAssertEqual(d["MPJoinAckRx"] ?? 0, 0)
        XCTAssertTrue(seen.contains { !$0.fromClient && $0.subtypes.contains(8) }, "the server's RST carried MP_TCPRST")
    }

    func testJoinThroughNATOnTheSecondPath() throws {
        let lab = try SessionLab(self, hops: ["router"], secondPath: ["nat"])
        let joinFrom = Addressing.clientIPv4(path: 1)
        let (doc, d, _) = try lab.connect(["--join-from", joinFrom])
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.ok"])
        XCTAssertEqual(d["MPJoinSynRx"], 1)
        XCTAssertEqual(d["MPJoinAckRx"], 1)
        XCTAssertEqual(d["MPJoinAckHMacFailure"] ?? 0, 0)
        // The NAT box translated the join: its masquerade rule counted packets.
        let rules = try lab.lab.check(Node.hop(path: 1, index: 1), ["nft", "list", "ruleset"])
        let masq = rules.split(separator: "\n").first { $0.contains("masquerade") } ?? ""
        let packets = masq.split(separator: " ").drop { $0 != "packets" }.dropFirst().first.flatMap { Int($0) } ?? 0
        XCTAssertGreaterThan(packets, 0, String(masq))
    }

    func testUnknownHostIsUnreachable() throws {
        let lab = try SessionLab(self, hops: ["router"])
        // An address in the server's subnet that nobody holds: the last router's ARP fails.
        let (doc, d, _) = try lab.connect(["--timeout", "1", "--retries", "3"], target: "198.18.1.99")
        XCTAssertEqual(doc.verdict, "unreachable")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0)
    }

    func testClosedPortIsRefused() throws {
        let lab = try SessionLab(self, hops: ["router"], servers: ["closed:80"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "refused")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0, "a closed port's RST is not an MPTCP listener")
    }
}

/// Kernel mode: the host's MPTCP stack, as applications get it. The kernel's own view (TCP_IS_MPTCP,
/// MPTCP_INFO, sock_diag) and the capture are asserted from the JSON; the server's counters, `ss`
/// run in the client namespace while the connection is held open, and tshark on the pcap are the
/// independent oracles.
final class KernelModeLabTests: XCTestCase {
    func kernel(_ doc: [String: Any]) -> [String: Any] { doc["kernel"] as? [String: Any] ?? [:] }
    func diag(_ doc: [String: Any]) -> [String: Any] { kernel(doc)["diag"] as? [String: Any] ?? [:] }
    func diagMPTCP(_ doc: [String: Any]) -> [String: Any] { diag(doc)["mptcp"] as? [String: Any] ?? [:] }
    func diagSubflows(_ doc: [String: Any]) -> [[String: Any]] { diag(doc)["subflows"] as? [[String: Any]] ?? [] }
    func wire(_ doc: [String: Any]) -> [String: Any] { doc["wire"] as? [String: Any] ?? [:] }
    func evidence(_ doc: [String: Any]) -> [[String: Any]] { doc["evidence"] as? [[String: Any]] ?? [] }

    func testCleanPathDiagShowsAnMPTCPSocketAndSubflowAndSSAgrees() throws {
        let lab = try SessionLab(self, hops: ["router"])
        // Held open for 4 s after the kernel's view is taken, while `ss` reads the same sockets.
        let out = "\(lab.lab.stateDirectory)/kernel-held.json"
        let before = try lab.counters()
        let p = try lab.start(.client, ["sh", "-c", "exec \(lab.binary) connect --json --mode kernel --timeout 0.5 --hold 4 \(lab.server) > \(out)"])
        var ssM = "", ssT = ""
        let deadline = Date().addingTimeInterval(8)
        while Date() < deadline {
            ssM = try lab.lab.check(.client, ["ss", "-M", "-n", "-i", "-H"])
            ssT = try lab.lab.check(.client, ["ss", "-t", "-n", "-i", "-e", "-H", "dport", "=", ":80"])
            if ssM.contains("\(lab.server):80"), ssM.contains("token:"), ssT.contains("tcp-ulp-mptcp") { break }
            usleep(100_000)
        }
        p.waitUntilExit()
        usleep(200_000)
        let after = try lab.counters()
        let doc = try XCTUnwrap((try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out)))) as? [String: Any],
                                (try? String(contentsOfFile: out, encoding: .utf8)) ?? "no output")
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc["payload"] as? String, "intact")
        XCTAssertEqual(kernel(doc)["tcp_is_mptcp"] as? Bool, true)
        XCTAssertEqual(kernel(doc)["remote_key_received"] as? Bool, true)
        let m = diagMPTCP(doc)
        XCTAssertEqual(m["state"] as? String, "ESTAB")
        XCTAssertEqual(m["fallback"] as? Bool, false)
        XCTAssertEqual(m["remote_key_received"] as? Bool, true)
        let subs = diagSubflows(doc)
        XCTAssertEqual(subs.count, 1)
        let sub = try XCTUnwrap(subs.first)
        XCTAssertEqual(sub["ulp"] as? String, "mptcp")
        XCTAssertEqual(sub["flags"] as? String, "Mmec", "MP_CAPABLE both ways, fully established, connected")
        XCTAssertEqual(sub["token_local"] as? String, m["token"] as? String)
        XCTAssertEqual(wire(doc)["syn_mp_capable"] as? Bool, true)
        XCTAssertEqual(wire(doc)["synack_mp_capable"] as? Bool, true)
        XCTAssertEqual(wire(doc)["third_ack_mp_capable"] as? Bool, true)
        XCTAssertGreaterThan(wire(doc)["data_in_with_dss"] as? Int ?? 0, 0)
        XCTAssertEqual(Int64(after["MPTcpExtMPCapableACKRX"] ?? 0) - Int64(before["MPTcpExtMPCapableACKRX"] ?? 0), 1)
        XCTAssertEqual(Int64(after["MPTcpExtMPCapableFallbackACK"] ?? 0) - Int64(before["MPTcpExtMPCapableFallbackACK"] ?? 0), 0)

        // ss, reading the kernel on its own, saw the same socket, token and subflow flags.
        let token = try XCTUnwrap(m["token"] as? String)
        XCTAssertTrue(ssM.contains("token:\(token) "), "ss -M: \(ssM)")
        XCTAssertTrue(ssM.contains("remote_key"))
        XCTAssertFalse(ssM.contains("fallback"))
        XCTAssertTrue(ssM.contains(":\(sub["sport"] as? Int ?? -1) "), ssM)
        XCTAssertTrue(ssT.contains("tcp-ulp-mptcp flags:Mmec "), "ss -tie: \(ssT)")
        XCTAssertTrue(ssT.contains("/\(token)(id:"), "ss -tie shows the local token: \(ssT)")
    }

    func testSYNACKStrippedIsNamedByTheWireAndTheKernelFellBack() throws {
        try TestEnvironment.requireTool("tshark")
        let lab = try SessionLab(self, hops: ["router", "strip:30@synack"])
        let pcap = "\(lab.lab.stateDirectory)/kernel-synack.pcap"
        let (doc, d, _) = try lab.connect(["--mode", "kernel", "--pcap", pcap])
        XCTAssertEqual(doc.verdict, "fallback.synack-stripped")
        XCTAssertEqual(doc.detail["fallback"], "synack")
        XCTAssertEqual(kernel(doc)["tcp_is_mptcp"] as? Bool, false)
        XCTAssertNotNil(kernel(doc)["mptcp_info_error"], "this kernel refuses MPTCP_INFO after a fallback")
        XCTAssertEqual(diagMPTCP(doc)["fallback"] as? Bool, true, "sock_diag still shows the MPTCP level")
        XCTAssertEqual(diagMPTCP(doc)["remote_key_received"] as? Bool, false)
        XCTAssertEqual(diagSubflows(doc).first?["flags"] as? String, "mc", "we asked for MP_CAPABLE, the peer's never came")
        XCTAssertEqual(wire(doc)["syn_mp_capable"] as? Bool, true)
        XCTAssertEqual(wire(doc)["synack_mp_capable"] as? Bool, false)
        let named = evidence(doc).first { $0["dir"] as? String == "in" && ($0["why"] as? String ?? "").contains("NOPs") }
        let n = try XCTUnwrap(named?["packet"] as? Int, "\(evidence(doc))")
        let packets = doc["packets"] as? [[String: Any]] ?? []
        XCTAssertEqual(packets.first { $0["n"] as? Int == n }?["label"] as? String, "synack")
        XCTAssertEqual(doc["payload"] as? String, "intact", "the data still went through, as TCP")
        // The server saw our MP_CAPABLE and fell back when our third ACK came without one.
        XCTAssertEqual(d["MPCapableSYNRX"], 1)
        XCTAssertEqual(d["MPCapableFallbackACK"], 1)
        XCTAssertEqual(d["MPCapableACKRX"] ?? 0, 0)
        // tshark reads the pcap: our SYN with MP_CAPABLE, the SYN/ACK without.
        let synMPC = try TestShell.check(["tshark", "-r", pcap, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.options.mptcp.subtype==0"])
        let synAckMPC = try TestShell.check(["tshark", "-r", pcap, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==1 && tcp.options.mptcp.subtype==0"])
        let synAck = try TestShell.check(["tshark", "-r", pcap, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==1"])
        XCTAssertEqual(synMPC.split(separator: "\n").count, 1)
        XCTAssertEqual(synAckMPC.split(separator: "\n").count, 0)
        XCTAssertEqual(synAck.split(separator: "\n").count, 1)
    }

    func testThirdACKStrippedIsNamedByTheServersAnswer() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30@nonsyn"])
        let (doc, d, _) = try lab.connect(["--mode", "kernel"])
        XCTAssertEqual(doc.verdict, "fallback.ack-stripped")
        XCTAssertEqual(kernel(doc)["tcp_is_mptcp"] as? Bool, false)
        XCTAssertEqual(diagMPTCP(doc)["fallback"] as? Bool, true)
        XCTAssertEqual(diagMPTCP(doc)["remote_key_received"] as? Bool, true, "the SYN/ACK's key arrived; the fallback came after")
        XCTAssertEqual(wire(doc)["synack_mp_capable"] as? Bool, true)
        XCTAssertEqual(wire(doc)["third_ack_mp_capable"] as? Bool, true, "our third ACK left with both keys")
        let named = evidence(doc).first { $0["dir"] as? String == "in" && ($0["why"] as? String ?? "").contains("no MPTCP option") }
        XCTAssertNotNil(named?["packet"] as? Int, "\(evidence(doc))")
        XCTAssertTrue(evidence(doc).contains { $0["dir"] as? String == "out" && ($0["why"] as? String ?? "").contains("third ACK carries MP_CAPABLE") })
        // The server got our MP_CAPABLE SYN but never our keys, and fell back.
        XCTAssertEqual(d["MPCapableSYNRX"], 1)
        XCTAssertEqual(d["MPCapableACKRX"] ?? 0, 0)
        XCTAssertEqual(d["MPCapableFallbackACK"], 1)
        XCTAssertEqual(lab.serverClosed().first?["bytes_in"] as? Int, 4000)
    }

    func testWithoutCapabilitiesKernelModeRunsWithoutTheWireView() throws {
        try TestEnvironment.requireTool("setpriv")
        let lab = try SessionLab(self, hops: ["router"])
        let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", lab.binary, "connect", "--mode", "kernel",
                      "--json", "--timeout", "0.5"]
        let r = try lab.lab.run(.client, nobody + [lab.server])
        XCTAssertEqual(r.status, 0, r.stderr)
        let doc = try XCTUnwrap((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any], r.stdout)
        XCTAssertEqual(doc.verdict, "mptcp", "the kernel's own view needs no privilege")
        XCTAssertEqual(wire(doc)["captured"] as? Bool, false)
        XCTAssertTrue((wire(doc)["error"] as? String ?? "").contains("CAP_NET_RAW"), "\(wire(doc))")
        XCTAssertEqual(diagMPTCP(doc)["fallback"] as? Bool, false)
        XCTAssertEqual(lab.serverClosed().count, 1, "the session reached the server")
        // Asking for a pcap without the capability is an error the user can act on (exit 77).
        let p = try lab.lab.run(.client, nobody + ["--pcap", "\(lab.lab.stateDirectory)/nobody.pcap", lab.server])
        XCTAssertEqual(p.status, 77)
        XCTAssertTrue(p.stderr.contains("CAP_NET_RAW"), p.stderr)
    }

    /// `connect --mode kernel` until the client's kernel opens a join (its own MPJoinSynTx): the
    /// in-kernel path manager now and then opens none for a connection (seen on 6.18 after a
    /// join of the previous connection was reset), which is its choice, not what is tested. A
    /// run without a join must not report one. Returns the run with the join.
    func kernelSessionWithJoin(_ lab: SessionLab, _ args: [String]) throws -> (doc: [String: Any], delta: [String: Int64], closedBefore: Int) {
        for _ in 0..<4 {
            let closedBefore = lab.serverClosed().count
            let before = try lab.lab.mptcpCounters(.client)
            let r = try lab.connect(["--mode", "kernel"] + args)
            let after = try lab.lab.mptcpCounters(.client)
            let joinSYNs = Int64(after["MPTcpExtMPJoinSynTx"] ?? 0) - Int64(before["MPTcpExtMPJoinSynTx"] ?? 0)
            if joinSYNs > 0 { return (r.doc, r.delta, closedBefore) }
            XCTAssertEqual(r.doc.subflowVerdicts.count, 1, "no join was sent, none may be reported")
        }
        throw SessionLabError("the client's kernel opened no join in 4 connections")
    }

    /// Dual-path lab: the client's path manager has a `subflow` endpoint on its second address
    /// (`ip mptcp endpoint add 198.19.0.1 dev p1 subflow`, limits subflows 4), so the kernel
    /// opens a join over path 1 by itself. The server's counters confirm it (MPJoinAckRx).
    func testKernelJoinOnTheSecondPathIsJoinOK() throws {
        let lab = try SessionLab(self, hops: ["router"], secondPath: ["router"])
        let endpoints = try lab.lab.check(.client, ["ip", "mptcp", "endpoint", "show"])
        XCTAssertTrue(endpoints.contains("\(Addressing.clientIPv4(path: 1)) id 1 subflow dev p1"), endpoints)
        let (doc, d, closedBefore) = try kernelSessionWithJoin(lab, ["--size", "20000"])
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.ok"])
        let join = try XCTUnwrap((doc["subflows"] as? [[String: Any]])?.last)
        XCTAssertEqual(join["local"] as? String, Addressing.clientIPv4(path: 1), "the join left from the second address")
        XCTAssertEqual(doc["payload"] as? String, "intact")
        // The kernel's own view: two subflows, the second an MP_JOIN one (flags J/j) from the second address.
        let subs = diagSubflows(doc)
        XCTAssertEqual(subs.count, 2, "\(subs)")
        let joined = try XCTUnwrap(subs.first { $0["sport"] as? Int == join["sport"] as? Int }, "\(subs)")
        XCTAssertTrue((joined["flags"] as? String ?? "").hasPrefix("Jj"), "\(joined)")
        XCTAssertEqual(joined["local"] as? String, Addressing.clientIPv4(path: 1))
        // The server: one join with a valid HMAC both ways.
        XCTAssertEqual(d["MPJoinSynRx"], 1)
        XCTAssertEqual(d["MPJoinAckRx"], 1)
        XCTAssertEqual(d["MPJoinAckHMacFailure"] ?? 0, 0)
        XCTAssertEqual(d["MPCapableACKRX"], 1)
        XCTAssertEqual(lab.serverClosed().dropFirst(closedBefore).first?["bytes_in"] as? Int, 20000)
    }

    /// The same, with a box on path 1 that strips MP_JOIN from SYNs: the server takes the join SYN
    /// for a new plain connection (MPJoinSynRx 0), our kernel resets it on the SYN/ACK without
    /// MP_JOIN (the server's half-open connection is reset: EmbryonicRsts 1, no passive open).
    func testKernelJoinWithMPJoinStrippedOnTheSecondPathIsJoinSYNStripped() throws {
        let lab = try SessionLab(self, hops: ["router"], secondPath: ["strip:30/mp_join@syn"])
        let (doc, d, closedBefore) = try kernelSessionWithJoin(lab, ["--size", "20000"])
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.syn-stripped"])
        let join = try XCTUnwrap((doc["subflows"] as? [[String: Any]])?.last)
        XCTAssertEqual(join["local"] as? String, Addressing.clientIPv4(path: 1))
        XCTAssertEqual(doc["payload"] as? String, "intact")
        // Our kernel answered the SYN/ACK without MP_JOIN with a RST (RFC 8684 §3.2).
        let packets = doc["packets"] as? [[String: Any]] ?? []
        XCTAssertTrue(packets.contains { $0["dir"] as? String == "out" && $0["label"] as? String == "rst" && $0["subflow"] as? Int == 1 },
                      "\(packets.filter { $0["subflow"] as? Int == 1 })")
        XCTAssertFalse(diagSubflows(doc).contains { ($0["flags"] as? String ?? "").contains("J") }, "no MP_JOIN ever came from the server")
        // The server never saw MP_JOIN; the plain SYN got a SYN/ACK and then our RST.
        XCTAssertEqual(d["MPJoinSynRx"] ?? 0, 0)
        XCTAssertEqual(d["MPJoinAckRx"] ?? 0, 0)
        XCTAssertEqual(d["TcpExtEmbryonicRsts"], 1)
        XCTAssertEqual(d["TcpPassiveOpens"], 1, "only the initial connection was opened")
        XCTAssertEqual(d["MPCapableACKRX"], 1)
        XCTAssertEqual(lab.serverClosed().count - closedBefore, 1)
    }

    /// The client's TCP counters, absolute (`nstat -az`): RSTs its kernel sent, segments it took.
    func clientTCP(_ lab: SessionLab) throws -> [String: Int64] {
        let out = try lab.lab.check(.client, ["nstat", "-az", "TcpOutRsts", "TcpInSegs", "TcpExtTWRecycled"],
                                    environment: ["NSTAT_HISTORY": "\(lab.lab.stateDirectory)/nstat-client-tcp"])
        var c: [String: Int64] = [:]
        for line in out.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 2, let v = Int64(f[1]) { c[String(f[0])] = v }
        }
        return c
    }

    func inspections(_ doc: [String: Any]) -> [[String: Any]] {
        ((doc["inspections"] as? [[String: Any]])?.first?["hops"] as? [[String: Any]]) ?? []
    }

    /// A plain SYN/ACK to the kernel's MP_CAPABLE SYN: copies of that SYN, sent after the close
    /// with TTL 1 to 3 (the SYN/ACK came from 4 hops away), expire at the hops; the router
    /// after the stripping box quotes the SYN without MP_CAPABLE. Oracles: the server never saw
    /// MP_CAPABLE (MPCapableSYNRX 0) and, on its own interface, only the kernel's one SYN; the
    /// client's kernel sent no RST; the quoting router owns the address reported.
    func testSYNStrippedIsLocatedWithCopiesOfTheKernelsSYN() throws {
        try TestEnvironment.requireTool("tshark")
        let lab = try SessionLab(self, hops: ["router", "strip:30@syn", "router"])
        let before = try clientTCP(lab)
        var result: (doc: [String: Any], delta: [String: Int64], raw: String)?
        let seen = try lab.serverCapture { result = try lab.connect(["--mode", "kernel"]) }
        let after = try clientTCP(lab)
        let (doc, d, raw) = try XCTUnwrap(result)
        XCTAssertEqual(doc.verdict, "fallback.syn-stripped", raw)
        XCTAssertEqual(doc.detail["hop"], "3", "the router after the box quotes the SYN as the box left it")
        XCTAssertEqual(doc.detail["fallback"], "syn")
        let hops = inspections(doc)
        XCTAssertEqual(hops.map { $0["state"] as? String ?? "?" }, ["intact", "intact", "nopped"], "nft overwrites the option with NOPs: \(raw)")
        let router = try XCTUnwrap(doc.detail["router"])
        XCTAssertEqual(hops[2]["address"] as? String, router)
        XCTAssertTrue(try lab.lab.check(.hop(path: 0, index: 3), ["ip", "-o", "addr", "show"]).contains(" \(router)/"), "hop 3 owns \(router)")
        let quote = try XCTUnwrap(hops[2]["packet"] as? Int)
        XCTAssertTrue(evidence(doc).contains { $0["packet"] as? Int == quote && ($0["why"] as? String ?? "").contains("hop 3 (\(router))") }, "\(evidence(doc))")
        let packets = doc["packets"] as? [[String: Any]] ?? []
        XCTAssertEqual(packets.filter { ($0["label"] as? String ?? "").hasPrefix("inspect syn ttl") }.count, 3)
        XCTAssertEqual(kernel(doc)["tcp_is_mptcp"] as? Bool, false)
        XCTAssertEqual(wire(doc)["syn_mp_capable"] as? Bool, true, "captured before the box")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0, "the server never saw MP_CAPABLE")
        // The copies expired before the server: it saw the kernel's SYN only, and no RST from us.
        let fromClient = seen.filter { $0.fromClient }
        XCTAssertEqual(fromClient.filter { $0.syn && !$0.ack }.count, 1, "\(fromClient)")
        XCTAssertFalse(fromClient.contains { $0.rst })
        XCTAssertEqual((after["TcpOutRsts"] ?? 0) - (before["TcpOutRsts"] ?? 0), 0, "the client's kernel reset nothing")

        // IPv6: the copies' hop limit travels in the flow label of the quotes.
        let (doc6, d6, raw6) = try lab.connect(["--mode", "kernel", "-6"], target: lab.lab.serverIPv6)
        XCTAssertEqual(doc6.verdict, "fallback.syn-stripped", raw6)
        XCTAssertEqual(doc6.detail["hop"], "3")
        XCTAssertTrue(try lab.lab.check(.hop(path: 0, index: 3), ["ip", "-o", "addr", "show"]).contains(" \(doc6.detail["router"] ?? "?")/"))
        XCTAssertEqual(d6["MPCapableSYNRX"] ?? 0, 0)

        // --no-inspect: no copies, and the verdict stays open, saying why.
        let (off, _, _) = try lab.connect(["--mode", "kernel", "--no-inspect"])
        XCTAssertEqual(off.verdict, "unclear")
        XCTAssertNil(off["inspections"])
        XCTAssertTrue(evidence(off).contains { ($0["why"] as? String ?? "").contains("--no-inspect") }, "\(evidence(off))")
        XCTAssertFalse((off["packets"] as? [[String: Any]] ?? []).contains { ($0["label"] as? String ?? "").hasPrefix("inspect") })
    }

    /// Routers that send no ICMP: the copies go out, nothing quotes them, and the verdict stays
    /// open, saying so (the server's counters show the SYN was in fact stripped).
    func testSilentRoutersLeaveAPlainSYNACKUnclearAndSaySo() throws {
        let lab = try SessionLab(self, hops: ["silent", "silent,strip:30@syn", "silent"])
        let (doc, d, raw) = try lab.connect(["--mode", "kernel"])
        XCTAssertEqual(doc.verdict, "unclear", raw)
        XCTAssertEqual(inspections(doc).map { $0["state"] as? String ?? "?" }, ["unknown", "unknown", "unknown"], raw)
        XCTAssertTrue(evidence(doc).contains { ($0["why"] as? String ?? "").contains("no router quoted the 3 TTL-limited copies") }, raw)
        XCTAssertEqual((doc["packets"] as? [[String: Any]] ?? []).filter { ($0["label"] as? String ?? "").hasPrefix("inspect syn ttl") }.count, 3)
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0)
    }

    /// A plain TCP server on a clean path: every router up to the server quotes MP_CAPABLE intact.
    func testPlainTCPServerIsNotAnMPTCPServerWhenTheLastRouterQuotedTheOption() throws {
        let lab = try SessionLab(self, hops: ["router", "router"], servers: ["tcp:80"])
        let before = try clientTCP(lab)
        let (doc, d, raw) = try lab.connect(["--mode", "kernel"])
        let after = try clientTCP(lab)
        XCTAssertEqual(doc.verdict, "fallback.not-mptcp-server", raw)
        XCTAssertEqual(inspections(doc).map { $0["state"] as? String ?? "?" }, ["intact", "intact"], raw)
        XCTAssertTrue(evidence(doc).contains { ($0["why"] as? String ?? "").contains("the last router before the server") })
        // The server: no MPTCP at all, the data arrived over plain TCP.
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0)
        XCTAssertEqual(lab.serverClosed().first?["proto"] as? String, "tcp")
        XCTAssertEqual(lab.serverClosed().count, 1, "the copies opened no connection")
        XCTAssertEqual(doc["payload"] as? String, "intact")
        XCTAssertEqual((after["TcpOutRsts"] ?? 0) - (before["TcpOutRsts"] ?? 0), 0)
    }
}

/// Scenarios that need the lab's NFQUEUE element (payload rewriting, MP_CAPABLE echo, subtype stripping).
final class SessionElementLabTests: XCTestCase {
    func testPayloadRewrittenWithChecksumsIsFallbackChecksum() throws {
        let lab = try SessionLab(self, hops: ["router", "payload:session=SESSION"], servers: ["mptcp:80,csum"])
        let (doc, d, _) = try lab.connect()
        XCTAssertEqual(doc.verdict, "fallback.checksum")
        XCTAssertEqual(doc["payload"] as? String, "changed")
        XCTAssertEqual(d["DataCsumErr"], 1, "the server's kernel found the DSS checksum wrong")
    }

    func testPayloadRewrittenWithoutChecksumsGoesUnnoticedByMPTCP() throws {
        let lab = try SessionLab(self, hops: ["router", "payload:session=SESSION"])
        let (doc, d, _) = try lab.connect(["--no-checksum"])
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc["payload"] as? String, "changed", "only the echo shows the change")
        XCTAssertEqual(d["DataCsumErr"] ?? 0, 0, "no checksums, nothing for the server to catch")
        XCTAssertEqual(d["MPCapableACKRX"], 1)
    }

    func testEchoingBoxIsFallbackEchoed() throws {
        let lab = try SessionLab(self, hops: ["router", "echo-mpc"])
        let (doc, d, _) = try lab.connect(["--no-join", "--no-add-addr"])
        XCTAssertEqual(doc.verdict, "fallback.echoed")
        XCTAssertEqual(d["MPCapableACKRX"] ?? 0, 0, "the server never had an MPTCP connection with us")
    }

    func testJoinSYNStripped() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30/1@syn"])
        let (doc, d, _) = try lab.connect(["--no-add-addr"])
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.syn-stripped"])
        XCTAssertEqual(d["MPJoinSynRx"] ?? 0, 0, "the server never saw MP_JOIN")
        XCTAssertEqual(d["MPCapableACKRX"], 1)
    }

    /// A box that corrupts the server's MP_JOIN SYN/ACK (`corrupt:30/1@synack` inverts its
    /// truncated HMAC and nonce): we must not complete the join and must reset it with MP_TCPRST
    /// "MPTCP specific error" (RFC 8684 §3.2). The server answered the join SYN, never got our third
    /// ACK, and saw its half-open subflow reset; tshark on its wire shows the HMAC it sent was the
    /// bitwise inverse of the one we received, and our RST's reason.
    func testJoinSYNACKWithACorruptedHMACIsHMACMismatch() throws {
        let lab = try SessionLab(self, hops: ["router", "corrupt:30/1@synack"])
        var result: (doc: [String: Any], delta: [String: Int64], raw: String)?
        let seen = try lab.serverCapture { result = try lab.connect(["--no-add-addr"]) }
        let (doc, d, _) = try XCTUnwrap(result)
        XCTAssertEqual(doc.verdict, "mptcp", "the initial subflow is untouched")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.hmac-mismatch"])
        XCTAssertEqual(doc["payload"] as? String, "intact")
        // The server's kernel: the join SYN arrived and was answered, no third ACK with our HMAC
        // came, and the half-open (embryonic) subflow was reset; the initial connection is MPTCP to the end.
        XCTAssertEqual(d["MPJoinSynRx"], 1)
        XCTAssertEqual(d["MPJoinAckRx"] ?? 0, 0)
        XCTAssertEqual(d["MPJoinAckHMacFailure"] ?? 0, 0, "we never sent an HMAC it could reject")
        XCTAssertEqual(d["TcpExtEmbryonicRsts"], 1, "our RST closed the join in SYN-RECV")
        XCTAssertEqual(d["MPCapableACKRX"], 1)
        let closed = lab.serverClosed()
        XCTAssertEqual(closed.count, 1)
        XCTAssertEqual(closed.first?["mptcp_at_close"] as? Bool, true)
        XCTAssertEqual(closed.first?["bytes_in"] as? Int, 4000)

        let join = try XCTUnwrap((doc["subflows"] as? [[String: Any]])?.last)
        let joinPort = try XCTUnwrap(join["sport"] as? Int)
        // What left the server (tshark) against what reached us (our record): the box inverted the HMAC.
        let sent = try XCTUnwrap(seen.first { !$0.fromClient && $0.syn && $0.ack && !$0.truncatedHMACs.isEmpty }?.truncatedHMACs.first,
                                 "the server's MP_JOIN SYN/ACK on its wire: \(seen)")
        let packets = doc["packets"] as? [[String: Any]] ?? []
        let synAck = try XCTUnwrap(packets.first { $0["dir"] as? String == "in" && $0["label"] as? String == "join synack" }
                                   ?? packets.first { $0["dir"] as? String == "in" && ($0["mptcp"] as? [String] ?? []).contains { $0.hasPrefix("MP_JOIN(synack") } })
        let text = (synAck["mptcp"] as? [String] ?? []).first { $0.hasPrefix("MP_JOIN(synack") } ?? ""
        let received = text.split(separator: ",").first { $0.hasPrefix("hmac=0x") }.flatMap { UInt64($0.dropFirst(7), radix: 16) }
        XCTAssertEqual(received, ~sent, "received \(text), the server sent \(String(sent, radix: 16))")
        // Our answer on the server's wire: a RST from the join port with MP_TCPRST reason 1, and no third ACK.
        let fromJoin = seen.filter { $0.fromClient && $0.sourcePort == joinPort }
        XCTAssertEqual(fromJoin.filter(\.rst).map(\.rstReasons), [[1]], "\(fromJoin)")
        XCTAssertFalse(fromJoin.contains { !$0.syn && !$0.rst && $0.subtypes.contains(1) }, "no MP_JOIN third ACK: \(fromJoin)")
    }

    /// A path that drops every TCP segment (`loss:100`): no SYN, with or without MP_CAPABLE,
    /// reaches the server; its kernel saw no segment and no connection at all.
    func testPathDroppingAllTCPIsTimeout() throws {
        let lab = try SessionLab(self, hops: ["router", "loss:100"])
        let (doc, d, _) = try lab.connect(["--retries", "1"])
        XCTAssertEqual(doc.verdict, "timeout")
        XCTAssertEqual(d["MPCapableSYNRX"] ?? 0, 0)
        XCTAssertEqual(d["TcpPassiveOpens"] ?? -1, 0, "no connection was opened on the server")
        XCTAssertEqual(d["TcpInSegs"] ?? -1, 0, "no TCP segment reached the server")
        XCTAssertTrue(lab.serverClosed().isEmpty)
        // We did send: the MP_CAPABLE SYNs and the plain SYN.
        let out = (doc["packets"] as? [[String: Any]] ?? []).filter { $0["dir"] as? String == "out" && $0["flags"] as? String == "S" }
        XCTAssertGreaterThanOrEqual(out.count, 3, "\(out)")
    }

    func testJoinSYNACKStripped() throws {
        let lab = try SessionLab(self, hops: ["router", "strip:30/1@synack"])
        let (doc, d, _) = try lab.connect(["--no-add-addr"])
        XCTAssertEqual(doc.verdict, "mptcp")
        XCTAssertEqual(doc.subflowVerdicts, ["mptcp", "join.synack-stripped"])
        XCTAssertEqual(d["MPJoinSynRx"], 1, "the server saw our MP_JOIN SYN")
        XCTAssertEqual(d["MPJoinAckRx"] ?? 0, 0, "but never got a third ACK with our HMAC")
    }
}
