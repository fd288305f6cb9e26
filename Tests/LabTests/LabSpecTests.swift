import XCTest
@testable import Lab

/// The spec grammar, YAML files and rendered rule sets (no root needed).
final class LabSpecTests: XCTestCase {
    func testEveryBehaviourRoundTripsThroughItsText() throws {
        let texts = [
            "silent", "ratelimit:250", "rfc792", "strip:30", "strip:30@syn", "strip:30@synack@pre",
            "strip:30/2@data", "strip:8@nonsyn", "drop:30/1@syn", "drop:30", "eol:30@syn", "mss:1300",
            "mss:clamp", "mss:clamp:1200", "dscp:46", "ecn:clear", "ecn:ce", "ttl:3", "nat", "synproxy",
            "proxy", "seqrand", "payload:GET=PUT", "split:100", "coalesce", "echo-mpc", "delay:20",
            "loss:2.5", "dup:10", "reorder:5", "corrupt:30/1@synack", "corrupt:30", "corrupt:8@syn@pre",
        ]
        for t in texts {
            let b = try HopBehaviour(parsing: t)
            XCTAssertEqual(b.description, t, "canonical text of \(t)")
            XCTAssertEqual(try HopBehaviour(parsing: b.description), b)
            XCTAssertEqual(try HopBehaviour(parsing: b.elementArgument), b, "element argument of \(t)")
        }
    }

    func testNamesAndDefaultsParse() throws {
        XCTAssertEqual(try HopBehaviour(parsing: "strip:mptcp/mp_join@syn"),
                       .strip(OptionSelector(kind: 30, mptcpSubtype: 1), on: .syn, hook: .forward))
        XCTAssertEqual(try HopBehaviour(parsing: "ratelimit"), .icmpRateLimit(milliseconds: 1000))
        XCTAssertEqual(try HopBehaviour(parsing: "strip:30@pre@syn"), .strip(OptionSelector(kind: 30), on: .syn, hook: .prerouting))
        XCTAssertEqual(try HopSpec(parsing: "router").behaviours, [])
        XCTAssertEqual(try HopSpec(parsing: "silent, strip:30@syn").description, "silent,strip:30@syn")
    }

    func testElementBehavioursAreMarked() throws {
        XCTAssertTrue(try HopBehaviour(parsing: "strip:30/2@data").isElement)
        XCTAssertFalse(try HopBehaviour(parsing: "strip:30@data").isElement)
        XCTAssertTrue(try HopBehaviour(parsing: "rfc792").isElement)
        XCTAssertTrue(try HopBehaviour(parsing: "delay:10").isElement)
        XCTAssertFalse(try HopBehaviour(parsing: "drop:30/1").isElement)
        XCTAssertFalse(try HopBehaviour(parsing: "synproxy").isElement)
    }

    func testBadBehavioursAreRejectedWithAReason() {
        let bad = ["strip", "strip:300", "strip:8/1", "strip:30/99", "strip:30@sideways", "mss:10", "mss:abc",
                   "dscp:64", "ecn:maybe", "ttl:0", "loss:150", "payload:nothing", "silent:3", "nat@syn",
                   "teleport", "strip:30@syn@synack", "", "corrupt", "corrupt:1", "corrupt:0@syn", "corrupt:30/42",
                   "remove:eol", "remove:nop@syn", "eol:nop", "eol:0"]
        for t in bad {
            XCTAssertThrowsError(try HopBehaviour(parsing: t), t) { e in
                guard case LabSpecError.badBehaviour = e else { return XCTFail("\(t): \(e)") }
                XCTAssertFalse("\(e)".isEmpty)
            }
        }
        XCTAssertThrowsError(try HopSpec(parsing: "router,,nat"))
    }

    func testServersAndValidation() throws {
        let s = try ServerSpec(parsing: "mptcp:8080,csum,addaddr")
        XCTAssertEqual(s, ServerSpec(kind: .mptcp, port: 8080, checksum: true, addAddr: true))
        XCTAssertEqual(try ServerSpec(parsing: s.description), s)
        XCTAssertThrowsError(try ServerSpec(parsing: "tcp:80,csum"))
        XCTAssertThrowsError(try ServerSpec(parsing: "udp:53"))
        XCTAssertThrowsError(try ServerSpec(parsing: "tcp:0"))
        XCTAssertThrowsError(try LabSpec(name: "x", hops: [], servers: ["tcp:80", "mptcp:80"]).validate())
        XCTAssertThrowsError(try LabSpec(name: "Bad_Name", hops: []).validate())
        XCTAssertThrowsError(try LabSpec(name: "waytoolongname", hops: []).validate())
        XCTAssertNoThrow(try LabSpec(name: "ok-1", hops: ["router"]).validate())
    }

    func testCommandLineFormRoundTrips() throws {
        let spec = try LabSpec(name: "t", hops: ["router", "strip:30@syn"], servers: ["mptcp:80,addaddr", "tcp:81"],
                               secondPath: ["drop:30/1@syn"], anyIP: true)
        XCTAssertEqual(try LabSpec(commandLine: spec.commandLine, name: "t"), spec)
        XCTAssertEqual(spec.nodes.map(\.name), ["client", "hop1", "hop2", "alt1", "server"])
        for s in Scenario.all { XCTAssertNoThrow(try s.spec(name: "s").validate(), s.name) }
        XCTAssertThrowsError(try Scenario.named("nope"))
    }

    func testYAMLFile() throws {
        let yaml = """
            name: ylab
            path: [router, "strip:30@syn", [silent, "mss:1300"]]
            path2: ["drop:30/1@syn"]
            servers: ["mptcp:80,csum", "closed:81"]
            anyip: true
            """
        let spec = try LabSpec(yaml: yaml)
        XCTAssertEqual(spec.name, "ylab")
        XCTAssertEqual(spec.paths[0].hops.map(\.description), ["router", "strip:30@syn", "silent,mss:1300"])
        XCTAssertEqual(spec.paths[1].hops.map(\.description), ["drop:30/1@syn"])
        XCTAssertEqual(spec.servers.map(\.description), ["mptcp:80,csum", "closed:81"])
        XCTAssertTrue(spec.anyIP)
        XCTAssertThrowsError(try LabSpec(yaml: "name: a\npaths: [router]\n")) { e in
            XCTAssertTrue("\(e)".contains("unknown key 'paths'"), "\(e)")
        }
        XCTAssertThrowsError(try LabSpec(yaml: "name: a\npath: [teleport]\n"))
        XCTAssertThrowsError(try LabSpec(yaml: "path: [router]\n"))  // no name
        XCTAssertThrowsError(try LabSpec(yaml: "name: [1, 2]\n"))
    }

    func testAddressPlan() throws {
        let spec = try LabSpec(name: "t", hops: ["router", "router"], secondPath: ["router"])
        XCTAssertEqual(Addressing.serverIPv4(spec), "198.18.2.2")
        XCTAssertEqual(Addressing.serverIPv6(spec), "2001:db8:0:2::2")
        XCTAssertEqual(Addressing.clientIPv6(), "2001:db8::1")
        XCTAssertEqual(Addressing.ends(of: .hop(path: 0, index: 2), in: spec).map(\.ipv4), ["198.18.1.2", "198.18.2.1"])
        XCTAssertEqual(Addressing.ends(of: .client, in: spec).map(\.interface), ["p0", "p1"])
        XCTAssertEqual(Addressing.ends(of: .server, in: spec).map(\.ipv4), ["198.18.2.2", "198.19.1.2"])
        XCTAssertEqual(Addressing.ipv6(path: 1, link: 10, end: 2), "2001:db8:1:a::2")
        // Every address is inside the documentation/benchmark ranges.
        for l in Addressing.links(of: spec) {
            for e in [l.leftEnd, l.rightEnd] {
                XCTAssertTrue(e.ipv4.hasPrefix("198.18.") || e.ipv4.hasPrefix("198.19."))
                XCTAssertTrue(e.ipv6.hasPrefix("2001:db8:"))
            }
        }
    }

    func testRuleRendering() throws {
        let spec = try LabSpec(name: "t", hops: ["strip:30@syn@pre,drop:30/1@syn,strip:30@data", "delay:5,rfc792"])
        let hop1 = NodePlanner.plan(for: .hop(path: 0, index: 1), in: spec)
        XCTAssertTrue(hop1.nftables.contains("chain pre {"))
        XCTAssertTrue(hop1.nftables.contains("tcp flags & (syn | ack) == syn tcp option 30 exists counter reset tcp option 30"))
        XCTAssertTrue(hop1.nftables.contains("tcp option mptcp subtype 1 counter drop"))
        XCTAssertTrue(hop1.nftables.contains("chain classify"), "a @data rule needs the data classifier")
        XCTAssertTrue(hop1.elements.isEmpty)
        let hop2 = NodePlanner.plan(for: .hop(path: 0, index: 2), in: spec)
        XCTAssertEqual(hop2.elements.map(\.queue), [100, 101])
        XCTAssertTrue(hop2.iptables.contains("-A FORWARD -p tcp -m mark ! --mark 0x4d50 -j NFQUEUE --queue-num 100"), hop2.iptables)
        XCTAssertTrue(hop2.iptables.contains("--queue-num 101"), hop2.iptables)
        XCTAssertTrue(hop2.ip6tables.contains("--queue-num 101"), hop2.ip6tables)
    }

    /// `@toserver` / `@toclient`: one direction of a hop, by the interface packets come in on.
    func testDirectedBehavioursParseAndRender() throws {
        for t in ["strip:30@data@toclient", "strip:30/2@toserver", "drop:30/1@syn@pre@toserver", "remove:30/3@toclient", "eol:30@toserver",
                  "corrupt:30/1@synack@toclient"] {
            let b = try HopBehaviour(parsing: t)
            XCTAssertEqual(b.description, t)
            XCTAssertEqual(try HopBehaviour(parsing: b.description), b)
        }
        XCTAssertEqual(try HopBehaviour(parsing: "strip:30@toclient@data"),
                       .directed(.strip(OptionSelector(kind: 30), on: .data, hook: .forward), .toClient))
        for bad in ["nat@toserver", "delay:5@toclient", "strip:30@toserver@toclient"] {
            XCTAssertThrowsError(try HopBehaviour(parsing: bad), bad)
        }
        let spec = try LabSpec(name: "t", hops: ["strip:30@data@toclient,drop:30/1@syn@toserver", "strip:30/2@toclient"])
        let hop1 = NodePlanner.plan(for: .hop(path: 0, index: 1), in: spec)
        XCTAssertTrue(hop1.nftables.contains("iifname \"right\" tcp flags & syn == 0 meta mark & 0x00000001 == 0x00000001 tcp option 30 exists counter reset tcp option 30"), hop1.nftables)
        XCTAssertTrue(hop1.nftables.contains("iifname \"left\" tcp flags & (syn | ack) == syn tcp option mptcp subtype 1 counter drop"), hop1.nftables)
        let hop2 = NodePlanner.plan(for: .hop(path: 0, index: 2), in: spec)
        XCTAssertTrue(hop2.iptables.contains("-A FORWARD -i right -p tcp -m mark ! --mark 0x4d50 -j NFQUEUE --queue-num 100"), hop2.iptables)
        XCTAssertTrue(hop2.ip6tables.contains("-A FORWARD -i right -p tcp"), hop2.ip6tables)
        XCTAssertEqual(hop2.elements.first?.behaviour.elementArgument, "strip:30/2@all@fwd", "the element itself is not directed")
    }

    func testServerIgnoringV1RendersARuleInTheServerNamespace() throws {
        XCTAssertEqual(try ServerSpec(parsing: "mptcp:80,ignorev1").description, "mptcp:80,ignorev1")
        XCTAssertThrowsError(try ServerSpec(parsing: "tcp:80,ignorev1"))
        let spec = try LabSpec(name: "t", hops: ["router"], servers: ["mptcp:80,ignorev1", "mptcp:81"])
        let server = NodePlanner.plan(for: .server, in: spec)
        XCTAssertTrue(server.nftables.contains("tcp dport { 80 } tcp flags & (syn | ack) == syn tcp option mptcp subtype 0 tcp option @30,20,4 == 1 counter reset tcp option 30"), server.nftables)
        XCTAssertTrue(NodePlanner.plan(for: .hop(path: 0, index: 1), in: spec).nftables.isEmpty, "no hop sees it")
    }

    /// Every element behaviour the lab accepts is understood the same way by the element.
    func testElementUnderstandsEveryElementBehaviour() throws {
        for t in ["rfc792", "strip:30/2@data", "strip:30/1@syn@pre", "eol:30@syn", "eol:2", "seqrand",
                  "payload:GET=PUT", "split:100", "coalesce", "echo-mpc", "delay:20", "loss:2.5", "dup:10", "reorder:5",
                  "corrupt:30/1@synack", "corrupt:2@syn@pre"] {
            let b = try HopBehaviour(parsing: t)
            XCTAssertTrue(b.isElement, t)
            let e = try ElementBehaviour(parsing: b.elementArgument)
            XCTAssertEqual(try ElementBehaviour(parsing: e.description), e, t)
            if case .strip(_, let cls, let hook) = b {
                XCTAssertEqual(e.segments.rawValue, cls.rawValue, t)
                XCTAssertEqual(e.hook.rawValue, hook.rawValue, t)
            }
            if case .corrupt(_, let cls, let hook) = b {
                XCTAssertEqual(e.segments.rawValue, cls.rawValue, t)
                XCTAssertEqual(e.hook.rawValue, hook.rawValue, t)
            }
        }
    }

    /// The hop grammar and the element read option selectors with one type and one name table:
    /// what the lab parsed is what the element acts on, names and numbers alike.
    func testHopAndElementShareTheOptionSelector() throws {
        let cases: [(String, OptionSelector)] = [
            ("strip:mptcp/mp_join@syn", OptionSelector(kind: 30, mptcpSubtype: 1)),
            ("remove:30/add_addr", OptionSelector(kind: 30, mptcpSubtype: 3)),
            ("eol:ts@synack", OptionSelector(kind: 8)),
            ("remove:MPTCP/DSS@data@toserver", OptionSelector(kind: 30, mptcpSubtype: 2)),
        ]
        for (t, want) in cases {
            let (hop, _) = try HopBehaviour(parsing: t).undirected
            let hopSel: OptionSelector
            switch hop {
            case .strip(let s, _, _), .remove(let s, _, _), .replaceWithEOL(let s, _, _): hopSel = s
            default: XCTFail("\(t) parsed as \(hop)"); continue
            }
            XCTAssertEqual(hopSel, want, t)
            let element = try ElementBehaviour(parsing: hop.elementArgument)
            switch element.kind {
            case .strip(let s), .remove(let s), .eol(let s): XCTAssertEqual(s, want, t)
            default: XCTFail("\(t) reached the element as \(element)")
            }
        }
        // The element refuses what it cannot act on, by name as by number.
        for t in ["strip:eol", "remove:nop", "eol:0"] {
            XCTAssertThrowsError(try ElementBehaviour(parsing: t), t) { error in
                XCTAssertTrue("\(error)".contains("EOL/NOP"), "\(error)")
            }
        }
    }
}
