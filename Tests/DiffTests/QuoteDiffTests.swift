import XCTest
import Wire
import Probe
@testable import Diff

/// The diff on crafted quotes: no privileges, no network.
final class QuoteDiffTests: XCTestCase {
    let src = IPAddress("198.18.0.1")!, dst = IPAddress("198.18.3.2")!

    func probe(_ text: String = ProbeExpression.defaultText, v6: Bool = false) throws -> (IPPacket, [UInt8]) {
        let s = v6 ? IPAddress("2001:db8::1")! : src, d = v6 ? IPAddress("2001:db8:3::2")! : dst
        let p = try ProbeExpression(parsing: text).packet(source: s, destination: d, sourcePort: 40000, destinationPort: 80,
                                                          sequenceNumber: 1000, ttl: 5, identification: 77, timestampValue: 12345)
        return (p, try p.serialized(finalize: true))
    }

    /// What a router `hops` away quotes: the packet as it arrived (TTL 1), after `change`, cut to `quoteBytes`.
    func quote(_ sent: IPPacket, cut quoteBytes: Int? = nil, fixChecksum: Bool = true, _ change: (inout IPPacket) -> Void = { _ in }) throws -> ICMPQuote {
        var p = sent
        change(&p)
        switch p.ip {
        case .v4(var h): h.ttl = 1; p.ip = .v4(h)
        case .v6(var h): h.hopLimit = 1; p.ip = .v6(h)
        }
        var bytes = try p.serialized(finalize: true)
        if !fixChecksum, let sentTCP = sent.tcp {
            // Keep the sent TCP checksum: a box that changed bytes without fixing it.
            let off = p.ip.headerLength + 16
            bytes.setUInt16(sentTCP.header.checksum, at: off)
        }
        if let n = quoteBytes { bytes = Array(bytes.prefix(n)) }
        return ICMPQuote(bytes: bytes)
    }

    func options(_ p: inout IPPacket, _ f: (inout [TCPOption]) -> Void) {
        guard case .tcp(var s) = p.transport else { return }
        f(&s.header.options.options)
        p.transport = .tcp(s)
    }

    func testCleanFullQuoteHasNoChanges() throws {
        let (sent, bytes) = try probe()
        let d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: try quote(sent))
        XCTAssertEqual(d.kind, .full)
        XCTAssertEqual(d.changes, [])
        XCTAssertEqual(d.observations[.option(kind: 30, subtype: 0)], .intact)
        XCTAssertEqual(d.observations[.field(.tcpChecksum)], .intact)
    }

    func testNoppedRemovedAndEOLReplacedAreTold() throws {
        let (sent, bytes) = try probe()
        // TCPOPTSTRIP: the 4 bytes of MP_CAPABLE become NOPs.
        let nopped = try quote(sent) { p in self.options(&p) { o in o[5] = .noOperation; o += [.noOperation, .noOperation, .noOperation] } }
        var d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: nopped)
        XCTAssertEqual(d.changes.map(\.change), [.nopped])
        XCTAssertEqual(d.changes.first?.field, .option(kind: 30, subtype: 0))

        let removed = try quote(sent) { p in self.options(&p) { o in o.removeLast() } }
        d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: removed)
        XCTAssertEqual(Set(d.changes.map { FindingID.of($0) }), [.optionRemoved, .lengthChanged])

        let eol = try quote(sent) { p in self.options(&p) { o in o[5] = .endOfList } }
        d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: eol)
        XCTAssertEqual(d.changes.map(\.change), [.eolReplaced])
    }

    func testMSSClampAndMPTCPFieldModification() throws {
        let (sent, bytes) = try probe()
        let q = try quote(sent) { p in self.options(&p) { o in
            o[0] = .maximumSegmentSize(1200)
            o[5] = .mptcp(.capable(MPCapable(version: 0, flags: 0x01)))
        } }
        let d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: q)
        let ids = d.changes.map { FindingID.of($0) }
        XCTAssertEqual(ids, [.mssChanged, .optionModified])
        XCTAssertEqual(d.changes[0].sent, .number(1460))
        XCTAssertEqual(d.changes[0].received, .number(1200))
        XCTAssertEqual(d.changes[1].field, .optionField(kind: 30, subtype: 0, name: "version"))
    }

    func testRepeatedAndReorderedOptionsAreMatchedByPositionAndKind() throws {
        let (sent, bytes) = try probe("tcp(ack)/dss(dack=1)/dss(dack=2)/nop/nop/ts")
        let q = try quote(sent) { p in self.options(&p) { o in o = [o[4], o[0], o[1], o[2], o[3]] } }
        let d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: q)
        // Timestamps moved in front: one removed and one added, the two DSS intact.
        XCTAssertEqual(d.changes.filter { $0.layer == .tcp }.map(\.change).sorted { $0.rawValue < $1.rawValue }, [.added, .removed])
        XCTAssertEqual(d.observations[.option(kind: 30, subtype: 2)], .intact)

        let q2 = try quote(sent) { p in self.options(&p) { o in o[1] = .mptcp(.dss(DSS(dataACK: 3))) } }
        let d2 = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: q2)
        XCTAssertEqual(d2.changes.map(\.field), [.optionField(kind: 30, subtype: 2, name: "data_ack")])
        XCTAssertEqual(d2.changes.first?.received, .number(3))
    }

    func testPartialQuotesNeverReportUnseenOptionsAsRemoved() throws {
        let (sent, bytes) = try probe()
        // RFC 792: IP header + 8 bytes.
        var d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: try quote(sent, cut: 28))
        XCTAssertEqual(d.kind, .rfc792)
        XCTAssertEqual(d.changes, [])
        XCTAssertNil(d.observations[.option(kind: 30, subtype: 0)])
        XCTAssertEqual(d.observations[.field(.tcpSequence)], .intact)

        // IP + 20 bytes of TCP: tracebox reported this as "options removed".
        d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: try quote(sent, cut: 40))
        XCTAssertEqual(d.kind, .headerOnly)
        XCTAssertEqual(d.changes, [])
        XCTAssertEqual(d.observations[.field(.tcpChecksum)], .intact)

        // Cut in the middle of the timestamps option: MSS and SACK-permitted seen, the rest not.
        d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: try quote(sent, cut: 20 + 20 + 10))
        XCTAssertEqual(d.kind, .truncated)
        XCTAssertEqual(d.changes, [])
        XCTAssertEqual(d.observations[.option(kind: 2, subtype: nil)], .intact)
        XCTAssertNil(d.observations[.option(kind: 30, subtype: 0)])
    }

    func testChecksumRevealsAChangeBeyondAPartialQuote() throws {
        let (sent, bytes) = try probe()
        // The box changed MP_CAPABLE's flags (byte beyond the quote) and fixed the checksum.
        let q = try quote(sent, cut: 40) { p in self.options(&p) { o in o[5] = .mptcp(.capable(MPCapable(version: 1, flags: 0x81))) } }
        let d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: q)
        XCTAssertEqual(d.changes.map { FindingID.of($0) }, [.checksumUnexplained])

        // A full quote whose checksum does not match its bytes: the box changed them without fixing it.
        let q2 = try quote(sent, fixChecksum: false) { p in self.options(&p) { o in o[0] = .maximumSegmentSize(1400) } }
        let d2 = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: q2)
        XCTAssertEqual(Set(d2.changes.map { FindingID.of($0) }), [.mssChanged, .checksumUnexplained])
    }

    func testHeaderFieldsV4AndV6() throws {
        let (sent, bytes) = try probe()
        let q = try quote(sent) { p in
            if case .v4(var h) = p.ip { h.dscp = 0; h.ecn = 2; h.dscp = 10; p.ip = .v4(h) }
            if case .tcp(var s) = p.transport { s.header.sequenceNumber = 5; s.header.sourcePort = 1; p.transport = .tcp(s) }
        }
        let d = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: q)
        XCTAssertEqual(Set(d.changes.map { FindingID.of($0) }), [.dscpChanged, .ecnChanged, .seqChanged, .sportChanged])

        let (sent6, bytes6) = try probe(v6: true)
        let q6 = try quote(sent6) { p in if case .v6(var h) = p.ip { h.trafficClass = 0xb8; h.flowLabel = 9; p.ip = .v6(h) } }
        let d6 = QuoteDiffer.diff(sent: sent6, sentBytes: bytes6, quote: q6)
        XCTAssertEqual(Set(d6.changes.map { FindingID.of($0) }), [.tclassChanged, .flowLabelChanged])
    }

    func testFindingsNameTheFirstHopAndTheLastIntactOne() throws {
        let (sent, bytes) = try probe()
        let clean = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: try quote(sent))
        let partial = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: try quote(sent, cut: 28))
        let stripped = QuoteDiffer.diff(sent: sent, sentBytes: bytes, quote: try quote(sent) { p in
            self.options(&p) { o in o[5] = .noOperation; o += [.noOperation, .noOperation, .noOperation] } })
        let f = FindingAggregator.findings(hops: [(1, clean), (2, clean), (3, partial), (4, stripped), (5, stripped)])
        XCTAssertEqual(f.map(\.id), [.quotePartial, .optionNopped])
        let nop = f[1]
        XCTAssertEqual(nop.hop, 4)
        XCTAssertEqual(nop.after, 2) // hop 3 quoted too little to see the option
        XCTAssertEqual(nop.detail.kind, 30)
        XCTAssertEqual(nop.detail.subtype, 0)
    }
}
