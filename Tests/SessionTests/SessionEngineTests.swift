import XCTest
import Wire
import MPTCPCrypto
@testable import Session

/// The engine and classifier against a simulated server (no privileges, virtual time).
final class SessionEngineTests: XCTestCase {
    func config(_ version: VersionChoice = .v1) -> SessionConfiguration {
        var c = SessionConfiguration(target: IPAddress("198.18.1.2")!, source: IPAddress("198.18.0.1")!, sourcePort: 40000, destinationPort: 80)
        c.version = version
        c.inspectPath = false
        c.timeout = 0.2
        c.retries = 2
        c.localKey = 0x0102_0304_0506_0708
        c.initialSequence = 1000
        return c
    }

    func run(_ server: SimulatedServer, _ c: SessionConfiguration? = nil) throws -> (SessionRecord, SessionVerdicts) {
        let r = try SessionEngine(configuration: c ?? config(), network: server).run()
        return (r, SessionClassifier.classify(r))
    }

    func testCleanSessionMPTCPWithChecksumsJoinAddAddrAndClose() throws {
        let s = SimulatedServer(.mptcp)
        let (r, v) = try run(s)
        XCTAssertEqual(v.session.id, "mptcp")
        XCTAssertEqual(v.join?.id, "join.ok")
        XCTAssertEqual(v.addAddress?.id, "add-addr.ok")
        XCTAssertNil(v.payloadChanged)
        // What the server checked independently of the client's own bookkeeping.
        XCTAssertTrue(s.received == r.configuration.payload, "the server received the payload in order")
        XCTAssertEqual(s.checksumFailures, 0, "every DSS checksum we sent verifies")
        XCTAssertTrue(s.checksums, "flag A was set in our SYN")
        XCTAssertEqual(s.joinHMACOK, true, "our MP_JOIN third-ACK HMAC verifies")
        XCTAssertEqual(s.addAddrReceived, 1)
        XCTAssertTrue(s.dataFinReceived)
        XCTAssertTrue(r.facts.received == r.configuration.payload)
        XCTAssertTrue(r.facts.dataFinAcked)
        XCTAssertNotNil(r.facts.serverDataFin)
        XCTAssertTrue(r.facts.subflowClosed)
        XCTAssertEqual(r.facts.bytesAckedDataLevel, 4000)
        XCTAssertGreaterThanOrEqual(r.duration, r.configuration.linger, "the session lasts at least its linger")
        // The third ACK carries both keys; the first data carries MP_CAPABLE with length and checksum.
        let third = r.packets[r.facts.thirdAckPacket!].packet.tcp!.header.options.mpCapable!
        XCTAssertEqual(third.senderKey, 0x0102_0304_0506_0708)
        XCTAssertEqual(third.receiverKey, s.serverKey.rawValue)
        let firstData = r.packets.first { $0.label == "data (mp_capable)" }!.packet.tcp!
        XCTAssertEqual(firstData.header.options.mpCapable?.dataLevelLength, UInt16(firstData.payload.count))
        XCTAssertNotNil(firstData.header.options.mpCapable?.checksum)
        // JSON per the contract.
        let json = SessionReport.json(r, v)
        XCTAssertEqual(json["schema"], "mptracebox.session/1")
        XCTAssertEqual(json["verdict"], "mptcp")
        XCTAssertEqual(json["counters"]?["bytes_acked_data_level"], 4000)
    }

    func testWrongChecksumWouldBeCaughtByTheServer() throws {
        // The oracle is not blind: a mapping whose checksum is off by one fails at the server.
        let s = SimulatedServer(.mptcp)
        var c = config()
        c.payload = Array(repeating: 0x41, count: 100)
        _ = try run(s, c)
        XCTAssertEqual(s.checksumFailures, 0)
        let good = Checksum.dss(dataSequenceNumber: 1, subflowSequenceNumber: 1, dataLevelLength: 3, payload: [1, 2, 3])
        XCTAssertNotEqual(good, Checksum.dss(dataSequenceNumber: 1, subflowSequenceNumber: 1, dataLevelLength: 3, payload: [1, 2, 4]))
    }

    func testNoChecksumsWhenNeitherSideAsks() throws {
        let s = SimulatedServer(.mptcp)
        var c = config()
        c.checksum = false
        let (r, v) = try run(s, c)
        XCTAssertEqual(v.session.id, "mptcp")
        XCTAssertFalse(r.facts.checksums)
        XCTAssertFalse(s.checksums)
        XCTAssertTrue(r.packets.filter { $0.direction == .out }.allSatisfy {
            $0.packet.tcp?.header.options.mptcp.allSatisfy { if case .dss(let d) = $0 { return d.mapping?.checksum == nil }; return true } ?? true
        })
    }

    func testPlainServer() throws {
        let (r, v) = try run(SimulatedServer(.plain))
        XCTAssertEqual(v.session.id, "fallback.not-mptcp-server")
        XCTAssertTrue(r.facts.received == r.configuration.payload, "the data still flows as TCP")
        XCTAssertNil(v.join, "no join without MPTCP")
    }

    func testSynAckStripped() throws {
        let (_, v) = try run(SimulatedServer(.stripSynAck))
        XCTAssertEqual(v.session.id, "fallback.synack-stripped")
    }

    func testServerWithoutDSSAfterTheHandshakeIsAckStripped() throws {
        let (r, v) = try run(SimulatedServer(.noDSS))
        XCTAssertEqual(v.session.id, "fallback.ack-stripped")
        XCTAssertNotNil(r.facts.ackProbeReply)
        XCTAssertFalse(r.facts.ackProbeReplyHasDSS)
        XCTAssertNotNil(r.facts.dataAckedWithoutDSS)
    }

    func testAutoFallsBackToV0ForAV0OnlyServer() throws {
        let s = SimulatedServer(.v0Only)
        var c = config(.auto)
        c.addAddress = false
        let (r, v) = try run(s, c)
        XCTAssertEqual(r.facts.versionUsed, 0)
        XCTAssertEqual(v.session.id, "mptcp")
        XCTAssertEqual(v.join?.id, "join.ok")
        XCTAssertEqual(s.joinHMACOK, true, "v0 join HMAC (SHA-1)")
        XCTAssertTrue(s.received == c.payload)
    }

    func testV1OnlyAgainstV0OnlyServerIsNotMPTCP() throws {
        let (_, v) = try run(SimulatedServer(.v0Only))
        XCTAssertEqual(v.session.id, "fallback.not-mptcp-server")
    }

    func testAutoAgainstAPlainServerCarriesTheDataOnTheV0Retry() throws {
        let s = SimulatedServer(.plain)
        let (r, v) = try run(s, config(.auto))
        XCTAssertEqual(v.session.id, "fallback.not-mptcp-server")
        XCTAssertTrue(v.session.evidence.contains { $0.why.contains("a v0 SYN was answered without MP_CAPABLE too") })
        XCTAssertTrue(s.received == r.configuration.payload, "the data went over the retry's connection as TCP")
        XCTAssertNil(v.payloadChanged)
        XCTAssertTrue(r.packets.contains { $0.direction == .out && $0.label == "rst" && $0.packet.tcp?.header.sourcePort == 40000 },
                      "the abandoned v1 attempt was reset")
    }

    func testServerDSSStrippedOnItsDataIsServerToClient() throws {
        let s = SimulatedServer(.mptcp, dssStrip: .serverData)
        var c = config()
        c.join = false
        c.addAddress = false
        let (r, v) = try run(s, c)
        XCTAssertEqual(v.session.id, "fallback.dss-stripped")
        XCTAssertEqual(v.session.detail["direction"], "server-to-client")
        XCTAssertNotNil(r.facts.serverDataWithoutMapping)
        XCTAssertFalse(s.fellBack, "the server never fell back")
        XCTAssertTrue(r.facts.received == c.payload, "after our fallback the echo is read as TCP")
    }

    func testDSSStrippedBothWays() throws {
        let s = SimulatedServer(.mptcp, dssStrip: .bothWays)
        var c = config()
        c.join = false
        c.addAddress = false
        let (r, v) = try run(s, c)
        XCTAssertEqual(v.session.id, "fallback.dss-stripped")
        XCTAssertEqual(v.session.detail["direction"], "both")
        XCTAssertTrue(s.fellBack, "the server fell back on our data without a mapping")
        XCTAssertGreaterThanOrEqual(r.facts.ackProbeReplyNOPRun, 4)
        XCTAssertNotNil(r.facts.serverPlainSegment)
    }

    func testCleanPathHasNoDirectionEvidence() throws {
        let (r, _) = try run(SimulatedServer(.mptcp))
        XCTAssertNil(r.facts.serverDataWithoutMapping)
        XCTAssertNil(r.facts.serverPlainSegment)
    }

    /// ADD_ADDR without an echo: a router's quote of a TTL-limited copy decides stripped vs lost.
    func testADDADDRStrippedOrLostFromTheQuotes() throws {
        var r = SessionRecord(configuration: config())
        let ip = IPPacket(ip: .v4(IPv4Header(source: IPv4Address(rawValue: 1), destination: IPv4Address(rawValue: 2))), transport: .other([]))
        for i in 0..<4 { r.packets.append(RecordedPacket(index: i, time: 0, direction: i == 0 ? .out : .in, subflow: nil, packet: ip, label: "")) }
        r.facts.addAddrSent = [0]
        r.facts.inspections = [Inspection(segment: "add-addr", hops: [HopView(ttl: 1, router: nil, packet: 1, state: .intact),
                                                                        HopView(ttl: 2, router: nil, packet: 2, state: .intact),
                                                                        HopView(ttl: 3, router: nil, packet: 3, state: .nopped)])]
        let stripped = SessionClassifier.addAddrVerdict(r)
        XCTAssertEqual(stripped.id, "add-addr.stripped")
        XCTAssertEqual(stripped.detail, ["direction": "client-to-server", "hop": "3"])
        XCTAssertEqual(stripped.evidence.compactMap(\.packet), [0, 3, 2])
        r.facts.inspections[0].hops[2].state = .unknown   // the copy never got past the box
        XCTAssertEqual(SessionClassifier.addAddrVerdict(r).id, "add-addr.no-echo")
        r.facts.addAddrEcho = 3
        XCTAssertEqual(SessionClassifier.addAddrVerdict(r).id, "add-addr.ok")
    }

    func testJoinHMACMismatch() throws {
        let s = SimulatedServer(.badJoinHMAC)
        let (_, v) = try run(s)
        XCTAssertEqual(v.session.id, "mptcp")
        XCTAssertEqual(v.join?.id, "join.hmac-mismatch")
        // RFC 8684 §3.2: the join is closed with a RST carrying MP_TCPRST "MPTCP specific error" (1).
        let joinPort = config().effectiveJoinPort
        let rsts = s.sent.filter { $0.tcp?.header.sourcePort == joinPort && $0.tcp?.header.flags.contains(.rst) == true }
        XCTAssertEqual(rsts.count, 1, "one RST on the join subflow")
        let reasons = rsts.first?.tcp?.header.options.mptcp.compactMap { m -> UInt8? in if case .reset(let x) = m { return x.reason }; return nil }
        XCTAssertEqual(reasons, [1])
        XCTAssertFalse(s.sent.contains { $0.tcp?.header.sourcePort == joinPort && $0.tcp?.header.options.mptcp.contains { if case .join(let j) = $0, case .ack = j.stage { return true }; return false } == true },
                       "no third ACK with our HMAC after a bad SYN/ACK")
        XCTAssertTrue(v.join?.evidence.contains { $0.why.contains("MP_TCPRST reason 1") } ?? false)
    }

    func testMPFailIsFallbackChecksum() throws {
        let (r, v) = try run(SimulatedServer(.mpFailOnData))
        XCTAssertEqual(v.session.id, "fallback.checksum")
        XCTAssertNotNil(r.facts.mpFail)
        // We answered the MP_FAIL (RFC 8684 §3.7).
        XCTAssertTrue(r.packets.contains { $0.label == "mp_fail (reply)" })
    }

    func testSilenceIsTimeoutNotAGuess() throws {
        let (r, v) = try run(SimulatedServer(.silent))
        XCTAssertEqual(v.session.id, "timeout")
        XCTAssertEqual(r.facts.synPackets.count, 3, "first SYN and two retransmissions")
        XCTAssertNotNil(r.facts.plainSYN, "a plain SYN was tried before calling it a timeout")
    }

    func testConfigurationErrors() {
        var c = config()
        c.target = IPAddress("2001:db8::1")!
        XCTAssertThrowsError(try c.validate())
        c = config()
        c.joinSourcePort = c.sourcePort
        XCTAssertThrowsError(try c.validate())
        c = config()
        c.segmentSize = 10
        XCTAssertThrowsError(try c.validate())
    }

    func testCaptureFilterCoversEveryLocalPort() {
        let f = SessionEngine.captureFilter(config())
        for p in config().localPorts { XCTAssertTrue(f.contains("dst port \(p)")) }
    }

    /// A server still holding an old connection of our four-tuple answers the SYN with a
    /// challenge ACK; the client resets it (SEQ = SEG.ACK) and its next SYN opens the session at
    /// once, where it used to wait out its retries and blame the path for dropping MP_CAPABLE SYNs.
    func testAnOldConnectionOfTheFourTupleIsResetAndTheSessionOpens() throws {
        let s = SimulatedServer(.staleConnection)
        var c = config()
        c.retries = 0
        let (r, v) = try run(s, c)
        XCTAssertEqual(s.staleResets, 1, "the server saw a RST that ends its old connection")
        XCTAssertEqual(v.session.id, "mptcp")
        let rst = try XCTUnwrap(r.packets.first { $0.direction == .out && $0.label.hasPrefix("rst (an old connection") })
        XCTAssertEqual(rst.packet.tcp?.header.sequenceNumber, SimulatedServer.staleRcvNxt)
        XCTAssertEqual(r.packets.filter { $0.direction == .out && $0.label.hasPrefix("syn") }.count, 2)
    }
}
