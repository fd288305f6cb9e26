import Lab
import XCTest

final class ElementBehaviourTests: XCTestCase {
    func testEveryFormRoundTrips() throws {
        let texts = [
            "strip:30/2@data", "strip:30", "remove:30/2@data", "drop:30/0@syn", "eol:30@syn", "eol:8@synack",
            "seqrand", "payload:s/HELLO/HOLLA/", "payload:x/00ff/ff00/", "payload:o/4/deadbeef/", "split:100",
            "coalesce", "echo-mpc", "delay:20", "loss:5", "dup:12.5", "reorder:30", "rfc792",
            "strip:30/1@synack@pre", "loss:10@data", "delay:5@ack", "corrupt:30/1@synack", "corrupt:30", "corrupt:2@syn@pre",
        ]
        for t in texts {
            let b = try ElementBehaviour(parsing: t)
            XCTAssertEqual(b.description, t, "canonical text of \(t)")
            XCTAssertEqual(try ElementBehaviour(parsing: b.description), b)
        }
    }

    func testAliasesParseToCanonicalForms() throws {
        XCTAssertEqual(try ElementBehaviour(parsing: "strip:mptcp/dss@data").description, "strip:30/2@data")
        XCTAssertEqual(try ElementBehaviour(parsing: "payload:GET=PUT").description, "payload:s/GET/PUT/")
        XCTAssertEqual(try ElementBehaviour(parsing: "drop:30/mp_capable@SYN").description, "drop:30/0@syn")
        XCTAssertEqual(try ElementBehaviour(parsing: "strip:30@all@fwd").description, "strip:30")
        // Payload bytes that cannot be written as text come back in hex.
        XCTAssertEqual(try ElementBehaviour(parsing: "payload:x/2f41/2f42/").description, "payload:x/2f41/2f42/")
    }

    func testDefaultsAndStructure() throws {
        let b = try ElementBehaviour(parsing: "strip:30/2@data")
        XCTAssertEqual(b.kind, .strip(.init(kind: 30, mptcpSubtype: 2)))
        XCTAssertEqual(b.segments, .data)
        XCTAssertEqual(b.hook, .forward)
        XCTAssertEqual(try ElementBehaviour(parsing: "rfc792").hook, .prerouting)
        XCTAssertEqual(try ElementBehaviour(parsing: "echo-mpc").segments, .syn)
        XCTAssertEqual(try ElementBehaviour(parsing: "payload:s/a/b/").kind, .payload(.replace(find: [0x61], with: [0x62])))
    }

    func testBadInputGivesActionableErrors() {
        func message(_ t: String) -> String {
            do { _ = try ElementBehaviour(parsing: t); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertTrue(message("bogus").contains("unknown behaviour \"bogus\"; known: strip:KIND[/SUB]"))
        XCTAssertTrue(message("strip").contains("needs an argument"))
        XCTAssertTrue(message("strip:8/2").contains("only meaningful for the MPTCP option"))
        XCTAssertTrue(message("strip:30/99").contains("unknown MPTCP subtype"))
        XCTAssertTrue(message("strip:1").contains("EOL/NOP"))
        XCTAssertTrue(message("strip:30@bogus").contains("unknown qualifier \"@bogus\""))
        XCTAssertTrue(message("strip:30@syn@data").contains("two segment classes"))
        XCTAssertTrue(message("payload:s/AB/C/").contains("same length"))
        XCTAssertTrue(message("payload:s/AB/CD").contains("closing slash"))
        XCTAssertTrue(message("payload:x/zz/yy/").contains("hex"))
        XCTAssertTrue(message("split:0").contains("1...65535"))
        XCTAssertTrue(message("loss:101").contains("0...100"))
        XCTAssertTrue(message("loss:nan").contains("0...100"))
        XCTAssertTrue(message("seqrand:3").contains("takes no argument"))
        XCTAssertTrue(message("split:10@syn").contains("applies to data segments only"))
        XCTAssertTrue(message("rfc792@fwd").contains("prerouting"))
        XCTAssertTrue(message("").contains("unknown behaviour"))
    }

    func testSegmentClasses() {
        typealias S = ElementBehaviour.Segments
        XCTAssertTrue(S.syn.matches(.syn, payloadLength: 0))
        XCTAssertFalse(S.syn.matches([.syn, .ack], payloadLength: 0))
        XCTAssertTrue(S.synack.matches([.syn, .ack], payloadLength: 0))
        XCTAssertTrue(S.ack.matches(.ack, payloadLength: 0))
        XCTAssertFalse(S.ack.matches(.ack, payloadLength: 1))
        XCTAssertFalse(S.ack.matches([.ack, .fin], payloadLength: 0))
        XCTAssertTrue(S.data.matches([.ack, .psh], payloadLength: 10))
        XCTAssertFalse(S.data.matches([.syn], payloadLength: 10))
        XCTAssertTrue(S.nonsyn.matches([.ack, .fin], payloadLength: 0))
        XCTAssertTrue(S.all.matches([.syn], payloadLength: 0))
    }

    func testQueueRulesExcludeInjectedPackets() throws {
        let rules = ElementBehaviour.queueRules(for: [try .init(parsing: "rfc792"), try .init(parsing: "strip:30/2@data"),
                                                      try .init(parsing: "eol:30@syn@pre")], queue: 9)
        XCTAssertEqual(rules.map(\.tool), ["iptables", "ip6tables", "iptables", "ip6tables", "iptables", "ip6tables"])
        XCTAssertEqual(rules.map(\.chain), ["PREROUTING", "PREROUTING", "FORWARD", "FORWARD", "PREROUTING", "PREROUTING"])
        for r in rules {
            XCTAssertTrue(r.rule.joined(separator: " ").contains("-m mark ! --mark 0x4d50 -j NFQUEUE --queue-num 9"))
            XCTAssertEqual(Array(r.deleteArguments.prefix(5)), [r.tool, "-w", "-t", "mangle", "-D"])
        }
        XCTAssertTrue(rules[0].rule.contains("--ttl-lt"))
        XCTAssertTrue(rules[1].rule.contains("--hl-lt"))
    }
}
