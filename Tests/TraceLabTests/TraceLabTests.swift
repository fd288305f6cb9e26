import Foundation
import XCTest
import TestSupport
import Lab

/// `mptracebox trace` end to end through real labs: the binary runs in the client namespace,
/// its JSON document is checked. The lab is the ground truth: each test knows where the box is.
/// Labs are `client → hop1 → hop2 (the box) → hop3 → server` unless stated.
final class TraceLabTests: XCTestCase {
    struct Trace {
        let json: [String: Any]
        var findings: [[String: Any]] { json["findings"] as? [[String: Any]] ?? [] }
        var hops: [[String: Any]] { json["hops"] as? [[String: Any]] ?? [] }
        var destination: [String: Any] { json["destination"] as? [String: Any] ?? [:] }

        func finding(_ id: String) -> [String: Any]? { findings.first { $0["id"] as? String == id } }
        func hop(of id: String) -> Int? { finding(id)?["hop"] as? Int }
        func after(of id: String) -> Int? { finding(id)?["after"] as? Int }
        func detail(of id: String) -> [String: Any] { finding(id)?["detail"] as? [String: Any] ?? [:] }
        var ids: Set<String> { Set(findings.compactMap { $0["id"] as? String }) }
        /// Findings that say something on the path changed the probe.
        var interference: Set<String> { ids.filter { !$0.hasPrefix("dest.") && $0 != "quote.partial" } }
        func hopReply(_ ttl: Int) -> [String: Any]? { hops.first { $0["ttl"] as? Int == ttl } }
    }

    func lab(_ hops: [String], servers: [String] = ["mptcp:80"]) throws -> Lab {
        try TestEnvironment.requireRoot()
        let chars = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        let name = "r" + String((0..<7).map { _ in chars.randomElement()! })
        let lab = try Lab.up(try LabSpec(name: name, hops: hops, servers: servers), ephemeral: true)
        addTeardownBlock { try? lab.down() }
        return lab
    }

    func trace(_ lab: Lab, v6: Bool = false, probe: String? = nil, extra: [String] = []) throws -> Trace {
        let binary = try LabBinary.path()
        var argv = [binary, "trace", "--json", "-n", "--max-ttl", "8", "--timeout", "1.5", "--retries", "2"]
        if let p = probe { argv += ["-p", p] }
        argv += extra + [v6 ? lab.serverIPv6 : lab.serverIPv4]
        let out = try lab.run(.client, argv)
        XCTAssertEqual(out.status, 0, out.stderr)
        guard let obj = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] else {
            throw XCTSkip("no JSON: \(out.stdout) \(out.stderr)")
        }
        XCTAssertEqual(obj["schema"] as? String, "mptracebox.trace/1")
        if ProcessInfo.processInfo.environment["TRACE_LAB_DUMP"] != nil { print(out.stdout) }
        return Trace(json: obj)
    }

    // MARK: Clean paths

    func testCleanPathReportsNoInterferenceV4AndV6() throws {
        let lab = try lab(["router", "router", "router"])
        for v6 in [false, true] {
            let t = try trace(lab, v6: v6)
            XCTAssertEqual(t.interference, [], "v6=\(v6): \(t.findings)")
            XCTAssertEqual(t.ids, ["dest.mp-capable"], "v6=\(v6)")
            XCTAssertEqual(t.destination["reached"] as? Bool, true)
            XCTAssertEqual(t.destination["ttl"] as? Int, 4)
            XCTAssertEqual(t.hops.prefix(3).map { $0["quote"] as? String }, ["full", "full", "full"])
            XCTAssertEqual(t.detail(of: "dest.mp-capable")["version"] as? Int, 1)
        }
    }

    // MARK: Option stripping, where it shows

    func testStripInTheForwardHookShowsAtTheNextHopAndInPreroutingAtTheBox() throws {
        for v6 in [false, true] {
            let fwd = try trace(try lab(["router", "strip:30@syn", "router"]), v6: v6)
            XCTAssertEqual(fwd.hop(of: "option.nopped"), 3, "v6=\(v6)")
            XCTAssertEqual(fwd.after(of: "option.nopped"), 2)
            XCTAssertEqual(fwd.detail(of: "option.nopped")["kind"] as? Int, 30)
            XCTAssertEqual(fwd.detail(of: "option.nopped")["subtype"] as? Int, 0)
            XCTAssertNotNil(fwd.finding("dest.no-mp-capable"))

            let pre = try trace(try lab(["router", "strip:30@syn@pre", "router"]), v6: v6)
            XCTAssertEqual(pre.hop(of: "option.nopped"), 2, "v6=\(v6)")
            XCTAssertEqual(pre.after(of: "option.nopped"), 1)
        }
    }

    func testNoppedRemovedAndEOLReplacedAreToldApart() throws {
        let removed = try trace(try lab(["router", "remove:30@syn", "router"]))
        XCTAssertEqual(removed.hop(of: "option.removed"), 3)
        XCTAssertNil(removed.finding("option.nopped"))
        XCTAssertEqual(removed.hop(of: "ip.length.changed"), 3)

        let removed6 = try trace(try lab(["router", "remove:30@syn", "router"]), v6: true)
        XCTAssertEqual(removed6.hop(of: "option.removed"), 3)

        let eol = try trace(try lab(["router", "eol:30@syn", "router"]))
        XCTAssertEqual(eol.hop(of: "option.eol-replaced"), 3)
        XCTAssertNil(eol.finding("option.removed"))
        XCTAssertNil(eol.finding("option.nopped"))
    }

    // MARK: Header rewrites

    func testMSSClampDSCPAndECN() throws {
        let mss = try trace(try lab(["router", "mss:1200", "router"]))
        XCTAssertEqual(mss.hop(of: "tcp.mss.changed"), 3)
        XCTAssertEqual(mss.detail(of: "tcp.mss.changed")["received"] as? Int, 1200)
        XCTAssertEqual(mss.detail(of: "tcp.mss.changed")["sent"] as? Int, 1460)
        let mss6 = try trace(try lab(["router", "mss:1200", "router"]), v6: true)
        XCTAssertEqual(mss6.hop(of: "tcp.mss.changed"), 3)

        let dscpLab = try lab(["router", "dscp:46", "router"])
        let dscp = try trace(dscpLab)
        XCTAssertEqual(dscp.hop(of: "ip.dscp.changed"), 3)
        XCTAssertEqual(dscp.detail(of: "ip.dscp.changed")["received"] as? Int, 46)
        XCTAssertEqual(try trace(dscpLab, v6: true).hop(of: "ipv6.tclass.changed"), 3)

        let ecn = try trace(try lab(["router", "ecn:ce", "router"]))
        XCTAssertEqual(ecn.hop(of: "ip.ecn.changed"), 3)
        XCTAssertEqual(ecn.detail(of: "ip.ecn.changed")["received"] as? Int, 3)
        XCTAssertEqual(ecn.interference, ["ip.ecn.changed"])
    }

    func testSequenceRandomisationIsSeenAndProbesStillMatch() throws {
        let lab = try lab(["router", "seqrand", "router"])
        for v6 in [false, true] {
            let t = try trace(lab, v6: v6)
            XCTAssertEqual(t.hop(of: "tcp.seq.changed"), 3, "v6=\(v6)")
            XCTAssertEqual(t.after(of: "tcp.seq.changed"), 2)
            XCTAssertEqual(t.destination["reached"] as? Bool, true)
            // Behind the box, quotes are matched by what survived: IP ID (v4) or the window.
            XCTAssertEqual(t.hopReply(3)?["matched_by"] as? String, v6 ? "window" : "ip-id")
        }
    }

    func testNATIsInvisibleInLinuxQuotesAndCausesNoFalseFinding() throws {
        // Linux translates the addresses and ports inside quoted ICMP back (docs/trace.md).
        let t = try trace(try lab(["router", "nat", "router"]))
        XCTAssertEqual(t.interference, [])
        XCTAssertEqual(t.destination["reached"] as? Bool, true)
    }

    // MARK: Routers

    func testRFC792AndSilentRoutersAreNotMistakenForStripping() throws {
        let lab = try lab(["rfc792", "silent", "router"])
        for v6 in [false, true] {
            let t = try trace(lab, v6: v6)
            XCTAssertEqual(t.hopReply(1)?["quote"] as? String, "rfc792", "v6=\(v6)")
            XCTAssertEqual(t.hopReply(1)?["quoted_bytes"] as? Int, v6 ? 48 : 28)
            XCTAssertEqual(t.hopReply(2)?["reply"] as? String, "none")
            XCTAssertEqual(t.hopReply(3)?["quote"] as? String, "full")
            XCTAssertEqual(t.interference, [], "v6=\(v6): \(t.findings)")
            XCTAssertEqual(t.hop(of: "quote.partial"), 1)
            XCTAssertEqual(t.destination["reached"] as? Bool, true)
        }
    }

    // MARK: Boxes that answer for the server

    func testTerminatingProxyAndSYNProxyAreFound() throws {
        for v6 in [false, true] {
            let proxy = try trace(try lab(["router", "proxy", "router"]), v6: v6)
            XCTAssertEqual(proxy.hop(of: "path.proxy"), 2, "v6=\(v6)")
            XCTAssertEqual(proxy.destination["ttl"] as? Int, 2)
        }
        let synproxy = try trace(try lab(["router", "synproxy", "router"]))
        // The box forwards TTL-2 probes' ICMP itself, and answers SYNs that pass it.
        XCTAssertEqual(synproxy.hop(of: "path.proxy"), 3)
        XCTAssertNotNil(synproxy.finding("dest.no-mp-capable"))
    }

    func testAnOptionEchoIsNotTakenForAServer() throws {
        let lab = try lab(["router", "echo-mpc", "router"])
        // v0: our own key comes back.
        let v0 = try trace(lab, probe: "tcp(syn)/mss(1460)/sackok/ts/nop/ws(7)/mpcapable(v0,skey=0x1122334455667788)")
        XCTAssertNotNil(v0.finding("dest.mp-capable-echoed"), "\(v0.findings)")
        XCTAssertNil(v0.finding("dest.mp-capable"))
        // v1: the box answers with a key of its own; the echo check at the same TTL gives it away.
        let v1 = try trace(lab)
        XCTAssertEqual(v1.hop(of: "path.proxy"), 3)
    }

    func testAnOptionBlackholeIsConfirmedWithoutTheOption() throws {
        let t = try trace(try lab(["router", "drop:30@syn", "router"]))
        XCTAssertEqual(t.destination["reached"] as? Bool, false)
        XCTAssertEqual(t.hop(of: "path.option-blackhole"), 3)
        XCTAssertEqual(t.after(of: "path.option-blackhole"), 2)
        XCTAssertEqual(t.detail(of: "path.option-blackhole")["kind"] as? Int, 30)
    }
}
