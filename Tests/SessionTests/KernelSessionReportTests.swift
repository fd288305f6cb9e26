import XCTest
import TestSupport
import Wire
import Report
@testable import Session

/// Kernel mode's judgement as a pure function: the kernel's answers (real sock_diag fixtures)
/// and a capture (packets built with Wire) in, the verdict and its evidence out.
final class KernelSessionReportTests: XCTestCase {
    let client = IPAddress("198.18.0.1")!
    let server = IPAddress("198.18.1.2")!
    let cport: UInt16 = 44074

    func packet(_ out: Bool, _ flags: TCPFlags, _ options: [TCPOption] = [], payload: [UInt8] = [], port: UInt16? = nil) -> (time: Double, bytes: [UInt8]) {
        let p = port ?? cport
        let h = TCPHeader(sourcePort: out ? p : 80, destinationPort: out ? 80 : p, sequenceNumber: 1, acknowledgmentNumber: 1,
                          flags: flags, options: options)
        guard case .v4(let c) = client, case .v4(let s) = server else { fatalError("IPv4 fixtures") }
        let ip = IPHeader.v4(IPv4Header(source: out ? c : s, destination: out ? s : c, protocol: .tcp, ttl: 64))
        let bytes = try! IPPacket(ip: ip, transport: .tcp(TCPSegment(header: h, payload: payload))).serialized(finalize: true)
        return (1000, bytes)
    }

    let mpcSYN = TCPOption.mptcp(.capable(MPCapable(version: 1)))
    let mpcSYNACK = TCPOption.mptcp(.capable(MPCapable(version: 1, senderKey: 0x1111)))
    let mpcACK = TCPOption.mptcp(.capable(MPCapable(version: 1, senderKey: 0x2222, receiverKey: 0x1111)))
    let mpcData = TCPOption.mptcp(.capable(MPCapable(version: 1, senderKey: 0x2222, receiverKey: 0x1111, dataLevelLength: 4)))
    func dss(_ len: UInt16 = 4) -> TCPOption {
        .mptcp(.dss(DSS(dataACK: 5, mapping: DSS.Mapping(dataSequenceNumber: 1, subflowSequenceNumber: 1, dataLevelLength: len))))
    }
    let dack = TCPOption.mptcp(.dss(DSS(dataACK: 5)))
    let nops = [TCPOption](repeating: .noOperation, count: 12)
    let data: [UInt8] = [1, 2, 3, 4]

    func facts(_ diag: [String], fellBack: Bool, packets: [(time: Double, bytes: [UInt8])]?) throws -> KernelSessionFacts {
        var f = KernelSessionFacts(outcome: .connected, target: server, port: 80)
        f.localAddress = client
        f.localPort = cport
        f.payload = data
        f.bytesSent = 4
        f.received = data
        let d = KernelDiagFixtures.datagrams(diag)
        f.established = KernelSocketView(isMPTCP: !fellBack, info: nil, infoError: fellBack ? "Operation not supported" : nil)
        f.established.mptcpDiag = try InetDiag.parseAnswer(d, sequence: 1)
        f.established.tcpDiag = try InetDiag.parseAnswer(d, sequence: 2)
        f.captured = packets
        return f
    }

    func handshake(synAck: [TCPOption]) -> [(time: Double, bytes: [UInt8])] {
        [packet(true, .syn, [.maximumSegmentSize(1460), mpcSYN]), packet(false, [.syn, .ack], [.maximumSegmentSize(1460)] + synAck),
         packet(true, .ack, [mpcACK])]
    }

    func testCleanSessionIsMPTCPWithWireAndKernelEvidence() throws {
        let f = try facts(KernelDiagFixtures.clean, fellBack: false, packets: handshake(synAck: [mpcSYNACK]) + [
            packet(true, [.ack, .psh], [mpcData], payload: data), packet(false, [.ack, .psh], [dss()], payload: data), packet(true, .ack, [dack]),
        ])
        let a = KernelSessionReport.analyse(f)
        XCTAssertEqual(a.verdict.id, "mptcp")
        XCTAssertEqual(a.kernelFellBack, false)
        XCTAssertEqual(a.wire?.synAck, 1)
        XCTAssertEqual(a.wire?.thirdAck, 2)
        XCTAssertEqual(a.wire?.firstDataOut, 3)
        XCTAssertEqual(a.wire?.firstDSSIn, 4)
        XCTAssertEqual(a.wire?.dataInWithDSS, 1)
        XCTAssertTrue(a.verdict.evidence.contains { $0.packet == 1 && $0.why.contains("server's MP_CAPABLE v1 with a key") })
        XCTAssertTrue(a.verdict.evidence.contains { $0.why == "sock_diag (ss -M): no fallback, remote_key" })
        XCTAssertEqual(a.diag.connection?.id.sourcePort, cport)
        XCTAssertEqual(a.diag.subflows.count, 1)
        XCTAssertEqual(a.diag.subflows.first?.mptcp?.flagLetters, "Mmec")
        XCTAssertTrue(a.diag.problems.isEmpty, "\(a.diag.problems)")

        let doc = KernelSessionReport.json(f, a)
        XCTAssertEqual(doc["schema"], "mptracebox.session/1")
        XCTAssertEqual(doc["mode"], "kernel")
        XCTAssertEqual(doc["verdict"], "mptcp")
        XCTAssertEqual(doc["version"], 1)
        XCTAssertEqual(doc["payload"], "intact")
        XCTAssertEqual(doc["kernel"]?["diag"]?["mptcp"]?["token"], "3f5281a")
        XCTAssertEqual(doc["kernel"]?["diag"]?["mptcp"]?["fallback"], false)
        guard case .array(let subs)? = doc["kernel"]?["diag"]?["subflows"] else { return XCTFail("no diag subflows") }
        XCTAssertEqual(subs.first?["flags"], "Mmec")
        XCTAssertEqual(subs.first?["token_local"], "3f5281a")
        XCTAssertEqual(doc["wire"]?["synack_mp_capable"], true)
        guard case .array(let sf)? = doc["subflows"] else { return XCTFail("no subflows") }
        XCTAssertEqual(sf.first?["kind"], "initial")
        XCTAssertEqual(sf.first?["verdict"], "mptcp")
        XCTAssertTrue(KernelSessionReport.text(f, a).contains("tcp-ulp-mptcp flags:Mmec"))
    }

    func testSYNACKWithNOPsIsStrippedAndWithoutIsUnclear() throws {
        let stripped = KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: true,
                                                             packets: handshake(synAck: nops) + [packet(true, .ack, payload: data)]))
        XCTAssertEqual(stripped.verdict.id, "fallback.synack-stripped")
        XCTAssertEqual(stripped.verdict.detail["fallback"], "synack")
        XCTAssertTrue(stripped.verdict.evidence.contains { $0.packet == 1 && $0.direction == .in && $0.why.contains("12 NOPs") })

        let plain = KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: true, packets: handshake(synAck: [])))
        XCTAssertEqual(plain.verdict.id, "unclear", "a plain SYN/ACK: a server without MPTCP or a stripped SYN, the wire cannot tell")
        XCTAssertEqual(plain.verdict.detail["fallback"], "synack")
        XCTAssertTrue(plain.verdict.evidence.contains { $0.packet == 1 })
    }

    func testServerAnswerWithoutMPTCPIsAckStripped() throws {
        let f = try facts(KernelDiagFixtures.ackStripped, fellBack: true, packets: handshake(synAck: [mpcSYNACK]) + [
            packet(true, [.ack, .psh], [mpcData], payload: data), packet(false, .ack), packet(false, [.ack, .psh], payload: data),
        ])
        var g = f
        g.target = IPAddress("198.18.2.2")!
        let a = KernelSessionReport.analyse(f)
        // The fixture's sockets go to 198.18.2.2: none of them is this connection's.
        XCTAssertNil(a.diag.connection)
        XCTAssertTrue(a.diag.subflows.isEmpty)
        XCTAssertFalse(a.diag.problems.isEmpty)
        XCTAssertEqual(a.verdict.id, "fallback.ack-stripped", "TCP_IS_MPTCP 0 alone says fallback")
        // With the right target the fixture (port 40972) is still not ours: our port is 44074.
        XCTAssertNil(KernelSessionReport.analyse(g).diag.connection)
        g.localPort = 40972
        g.captured = nil
        let b = KernelSessionReport.analyse(g)
        XCTAssertEqual(b.diag.info?.fallback, true)
        XCTAssertEqual(b.diag.info?.remoteKeyReceived, true)
        XCTAssertEqual(b.diag.subflows.first?.mptcp?.flagLetters, "mc")
        XCTAssertEqual(b.verdict.id, "unclear", "no capture: the kernel fell back, the wire cannot say why")

        XCTAssertEqual(a.wire?.serverFirst, 4)
        XCTAssertTrue(a.verdict.evidence.contains { $0.packet == 4 && $0.why.contains("no MPTCP option") })
        XCTAssertTrue(a.verdict.evidence.contains { $0.packet == 2 && $0.why.contains("third ACK carries MP_CAPABLE v1 with both keys") })
    }

    func testDSSLaterMissingIsDSSStrippedClientToServer() throws {
        let a = KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: true, packets: handshake(synAck: [mpcSYNACK]) + [
            packet(true, [.ack, .psh], [mpcData], payload: data), packet(false, .ack, [dack]),
            packet(true, [.ack, .psh], payload: data), packet(false, [.ack, .psh], payload: data),
        ]))
        XCTAssertEqual(a.verdict.id, "fallback.dss-stripped")
        XCTAssertEqual(a.verdict.detail["direction"], "client-to-server")
        XCTAssertEqual(a.wire?.serverDSSLost, 6)
    }

    func testServerOptionsNoppedIsDSSStrippedServerToClient() throws {
        let a = KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: true, packets: handshake(synAck: [mpcSYNACK]) + [
            packet(true, [.ack, .psh], [mpcData], payload: data), packet(false, .ack, nops),
        ]))
        XCTAssertEqual(a.verdict.id, "fallback.dss-stripped")
        XCTAssertEqual(a.verdict.detail["direction"], "server-to-client")
    }

    func testMPFailIsChecksum() throws {
        let a = KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: true, packets: handshake(synAck: [mpcSYNACK]) + [
            packet(true, [.ack, .psh], [mpcData], payload: data), packet(false, .ack, [.mptcp(.fail(MPFail(dataSequenceNumber: 1)))]),
        ]))
        XCTAssertEqual(a.verdict.id, "fallback.checksum")
        XCTAssertEqual(a.wire?.mpFail, 4)
    }

    func testSYNsWithMPCapableUnansweredThenAPlainOneIsSYNDropped() throws {
        let a = KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: true, packets: [
            packet(true, .syn, [mpcSYN]), packet(true, .syn, [mpcSYN]), packet(true, .syn, [.maximumSegmentSize(1460)]),
            packet(false, [.syn, .ack], [.maximumSegmentSize(1460)]), packet(true, .ack),
        ]))
        XCTAssertEqual(a.verdict.id, "fallback.syn-dropped")
        XCTAssertTrue(a.verdict.evidence.contains { $0.packet == 2 && $0.why.contains("retry without MP_CAPABLE") })
    }

    func testNoConnection() throws {
        var f = KernelSessionFacts(outcome: .refused, target: server, port: 80)
        f.error = "Connection refused"
        f.captured = [packet(true, .syn, [mpcSYN]), packet(false, [.rst, .ack])]
        let a = KernelSessionReport.analyse(f)
        XCTAssertEqual(a.verdict.id, "refused")
        XCTAssertEqual(a.verdict.evidence.first?.packet, 1)
        XCTAssertEqual(KernelSessionReport.json(f, a)["payload"], "unchecked")
        f.outcome = .timeout
        f.captured = [packet(true, .syn, [mpcSYN]), packet(true, .syn, [mpcSYN])]
        XCTAssertEqual(KernelSessionReport.analyse(f).verdict.id, "timeout")
    }

    func testOtherConnectionsAndJoinsInTheCapture() throws {
        let joinSYN = TCPOption.mptcp(.join(MPJoin(flags: 0, addressID: 1, stage: .syn(receiverToken: 1, senderNonce: 2))))
        let joinSYNACK = TCPOption.mptcp(.join(MPJoin(flags: 0, addressID: 0, stage: .synAck(truncatedHMAC: 3, senderNonce: 4))))
        let a = KernelSessionReport.analyse(try facts(KernelDiagFixtures.clean, fellBack: false, packets: handshake(synAck: [mpcSYNACK]) + [
            packet(true, .syn, [joinSYN], port: 50000), packet(false, [.syn, .ack], [joinSYNACK], port: 50000),
            packet(true, .syn, [joinSYN], port: 50002), packet(false, [.syn, .ack], nops, port: 50002),
        ]))
        XCTAssertEqual(a.verdict.id, "mptcp")
        XCTAssertEqual(a.joins.map(\.port), [50000, 50002])
        XCTAssertEqual(a.joins.map(\.verdict.id), ["join.ok", "join.synack-stripped"])
        XCTAssertEqual(a.wire?.syns, [0], "join SYNs are not the initial subflow's")
        // Each join names the address it left from (its SYN's source), as the initial subflow does.
        let f = try facts(KernelDiagFixtures.clean, fellBack: false, packets: [])
        guard case .array(let subflows)? = KernelSessionReport.json(f, a)["subflows"] else { return XCTFail("no subflows") }
        XCTAssertEqual(subflows.count, 3)
        for s in subflows.dropFirst() { XCTAssertEqual(s["local"], .string("\(client)")) }
    }
}
