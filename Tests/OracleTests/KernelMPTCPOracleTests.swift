import Foundation
import XCTest
import MPTCPCrypto
import NetIO
import Wire
import TestSupport

/// The Linux kernel as the oracle for MPTCPCrypto: a real MPTCP connection (python3 sockets with
/// protocol 262) with a second subflow (MP_JOIN), captured by PacketCapture. The keys come from
/// the MP_CAPABLE options; tokens, IDSNs and join HMACs that MPTCPCrypto computes from them must
/// equal what the kernel put on the wire (and what `ss -Mi` reports).
final class KernelMPTCPOracleTests: XCTestCase {
    func testTokensIDSNsAndJoinHMACsMatchTheKernel() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let session = try KernelMPTCPSession.run(lab: lab)
        defer { unlink(session.pcapPath) }
        let packets = session.packets
        XCTAssertGreaterThan(packets.count, 10)

        // The keys, from our own scan of the options…
        let segments = packets.compactMap(TCPSegmentView.init)
        let capable = segments.flatMap { s in s.mptcpOptions.filter { $0.subtype == 0 }.map { (s, $0) } }
        let synAck = try XCTUnwrap(capable.first { $0.0.isSyn && $0.0.isAck && $0.1.bytes.count == 12 })
        let serverKey = try XCTUnwrap(MPTCPKey(bytes: Array(synAck.1.bytes[4..<12])))
        let thirdAck = try XCTUnwrap(capable.first { !$0.0.isSyn && $0.1.bytes.count >= 20 })
        let clientKey = try XCTUnwrap(MPTCPKey(bytes: Array(thirdAck.1.bytes[4..<12])))
        XCTAssertEqual(MPTCPKey(bytes: Array(thirdAck.1.bytes[12..<20])), serverKey, "the ACK echoes the server's key")
        XCTAssertEqual(thirdAck.1.bytes[2] & 0x0f, 1, "the kernel speaks MPTCP v1")

        // …agree with tshark's dissection of the pcap written from the capture.
        try TestEnvironment.requireTool("tshark")
        let fields = try TestShell.check(["tshark", "-r", session.pcapPath, "-Y", "tcp.options.mptcp.recvkey",
                                          "-T", "fields", "-e", "tcp.options.mptcp.sendkey",
                                          "-e", "tcp.options.mptcp.recvkey"])
        let firstRow = try XCTUnwrap(fields.split(separator: "\n").first).split(separator: "\t").map(String.init)
        XCTAssertEqual(firstRow.map { $0.hasPrefix("0x") ? UInt64($0.dropFirst(2), radix: 16) : UInt64($0) },
                       [clientKey.rawValue, serverKey.rawValue], "tshark: \(fields)")

        // Token: the MP_JOIN SYN carries the server's token, and ss -Mi on the server shows it.
        let joins = segments.flatMap { s in s.mptcpOptions.filter { $0.subtype == 1 }.map { (s, $0) } }
        let joinSyn = try XCTUnwrap(joins.first { $0.0.isSyn && !$0.0.isAck }, "the client never joined a subflow")
        let joinSynAck = try XCTUnwrap(joins.first { $0.0.isSyn && $0.0.isAck })
        let joinAck = try XCTUnwrap(joins.first { !$0.0.isSyn && $0.1.bytes.count == 24 })
        let wireToken = MPTCPToken(rawValue: UInt32(truncatingIfNeeded: be(joinSyn.1.bytes[4..<8])))
        XCTAssertEqual(try serverKey.token(.v1), wireToken)
        XCTAssertTrue(session.serverSS.contains("token:\(wireToken)"), "ss -Mi: \(session.serverSS)")
        XCTAssertNotEqual(try clientKey.token(.v1), wireToken, "sanity: the client's token differs")

        // Join HMACs, from the captured keys and nonces.
        let nonceA = UInt32(truncatingIfNeeded: be(joinSyn.1.bytes[8..<12]))
        let nonceB = UInt32(truncatingIfNeeded: be(joinSynAck.1.bytes[12..<16]))
        XCTAssertEqual(try MPTCPHMAC.joinSynAck(.v1, responderKey: serverKey, initiatorKey: clientKey,
                                                responderNonce: nonceB, initiatorNonce: nonceA),
                       be(joinSynAck.1.bytes[4..<12]), "the SYN/ACK's truncated HMAC")
        XCTAssertEqual(try MPTCPHMAC.joinAck(.v1, initiatorKey: clientKey, responderKey: serverKey,
                                             initiatorNonce: nonceA, responderNonce: nonceB),
                       Array(joinAck.1.bytes[4..<24]), "the third ACK's 160-bit HMAC")

        // IDSNs: the server's first mapping starts at IDSN+1; its data ACK for the client's
        // 1000 bytes is the client's IDSN + 1 + 1000.
        let serverMapping = try XCTUnwrap(segments.lazy.filter { $0.sourcePort == KernelMPTCPSession.port }
            .compactMap { $0.mptcpOptions.compactMap(\.dssMapping).first }.first)
        XCTAssertEqual(serverMapping, try serverKey.idsn(.v1) &+ 1)
        let serverAcks = segments.filter { $0.sourcePort == KernelMPTCPSession.port }
            .flatMap { $0.mptcpOptions.compactMap(\.dssDataAck) }
        let clientIDSN = try clientKey.idsn(.v1)
        XCTAssertTrue(serverAcks.contains(clientIDSN &+ 1 &+ UInt64(KernelMPTCPSession.payloadSize)),
                      "data ACKs \(serverAcks), client IDSN \(clientIDSN)")

        // The kernel's own counters agree that the join was accepted (HMAC checked by the kernel).
        XCTAssertTrue(session.serverCounters.contains("MPTcpExtMPJoinAckRx"), session.serverCounters)
        XCTAssertFalse(session.serverCounters.contains("MPTcpExtMPJoinAckHMacFailure"), session.serverCounters)
    }
}

extension KernelMPTCPOracleTests {
    /// The Wire parser decodes every packet of a real kernel MPTCP session (MP_CAPABLE, DSS with
    /// data, MP_JOIN, ADD_ADDR/echo, DATA_FIN), with no malformed or unknown MPTCP option, writes
    /// each back byte for byte, and reads the same keys as the independent byte scan above.
    func testWireDecodesEveryPacketOfAKernelSession() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let session = try KernelMPTCPSession.run(lab: lab)
        defer { unlink(session.pcapPath) }
        var subtypes = Set<UInt8>()
        var wireKeys: [UInt64] = []
        var joinToken: UInt32?
        for bytes in session.packets {
            let packet = try IPPacket.parse(bytes)
            guard case .tcp(let seg) = packet.transport else {
                XCTFail("not a complete TCP segment: \(bytes.hexString)"); continue
            }
            XCTAssertEqual(try packet.serialized(), Array(bytes.prefix(try packet.serialized().count)), "round trip")
            for option in seg.header.options.options {
                if case .malformed(let m) = option { XCTFail("malformed option in a kernel packet: \(m)") }
                guard case .mptcp(let m) = option else { continue }
                if case .other(let o) = m { XCTFail("unknown MPTCP subtype \(o.subtype) from the kernel") }
                subtypes.insert(m.subtype.rawValue)
                if case .capable(let c) = m, let s = c.senderKey, let r = c.receiverKey, wireKeys.isEmpty { wireKeys = [s, r] }
                if case .join(let j) = m, case .syn(let token, _) = j.stage { joinToken = token }
            }
        }
        XCTAssertTrue(subtypes.isSuperset(of: [0, 1, 2]), "MP_CAPABLE, MP_JOIN and DSS seen: \(subtypes.sorted())")
        // The same keys as the byte scan of the first test, and the server's token from them is the kernel's.
        let segments = session.packets.compactMap(TCPSegmentView.init)
        var scanned: [TCPSegmentView.Option] = []
        for s in segments where !s.isSyn { scanned += s.mptcpOptions.filter { $0.subtype == 0 && $0.bytes.count >= 20 } }
        let thirdAck = try XCTUnwrap(scanned.first)
        XCTAssertEqual(wireKeys, [be(thirdAck.bytes[4..<12]), be(thirdAck.bytes[12..<20])])
        XCTAssertEqual(try MPTCPKey(rawValue: try XCTUnwrap(wireKeys.last)).token(.v1).rawValue, try XCTUnwrap(joinToken))
    }
}

/// A kernel MPTCP session in a two-namespace lab, captured on the server side. The packets are
/// kept as network-layer bytes ([[UInt8]]) so other checks (the Wire parser) can reuse them.
struct KernelMPTCPSession {
    static let port: UInt16 = 8080
    static let payloadSize = 1000

    var packets: [[UInt8]]
    var pcapPath: String
    var serverSS: String
    /// Non-zero MPTcpExt counters of the server namespace after the session.
    var serverCounters: String

    static func run(lab: NetnsLab) throws -> KernelMPTCPSession {
        try TestEnvironment.requireTool("python3")
        try TestEnvironment.requireTool("nstat")
        let client = try lab.add("c"), server = try lab.add("s")
        for ns in [client, server] {
            try lab.sysctl(ns, "net.mptcp.enabled", "1")
            try lab.run(ns, ["ip", "mptcp", "limits", "set", "subflow", "2", "add_addr_accepted", "2"])
        }
        try lab.link(client, "eth0", server, "eth0")
        try lab.address(client, "eth0", "198.18.5.1/24")
        try lab.address(client, "eth0", "198.18.5.3/24")
        try lab.address(server, "eth0", "198.18.5.2/24")
        try lab.run(client, ["ip", "mptcp", "endpoint", "add", "198.18.5.3", "dev", "eth0", "subflow"])

        let capture = try lab.inside(server) {
            try PacketCapture(options: .init(device: "any", filter: "tcp port \(port)"))
        }
        defer { capture.close() }

        let serverProcess = Process()
        serverProcess.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        serverProcess.arguments = ["ip", "netns", "exec", server, "python3", "-c", serverScript, "198.18.5.2", "\(port)"]
        let serverOut = Pipe()
        serverProcess.standardOutput = serverOut
        serverProcess.standardError = FileHandle.nullDevice
        try serverProcess.run()
        defer { if serverProcess.isRunning { serverProcess.terminate() } }

        let clientResult = try TestShell.run(["ip", "netns", "exec", client, "python3", "-c", clientScript,
                                              "198.18.5.2", "\(port)", "\(payloadSize)"])
        guard clientResult.status == 0, clientResult.stdout.contains("echoed") else {
            throw LabError("MPTCP client failed: \(clientResult.stdout) \(clientResult.stderr)")
        }
        serverProcess.waitUntilExit()
        let ss = String(decoding: serverOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let captured = try capture.collect(quiet: 0.5, maximum: 5)
        let counters = try lab.run(server, ["env", "NSTAT_HISTORY=/dev/null", "nstat", "-a", "MPTcpExt*"])

        let packets = captured.compactMap(\.packet)
        let path = NSTemporaryDirectory() + "mtbt-\(getpid())-mptcp-\(UUID().uuidString).pcap"
        let writer = try PcapFileWriter(path: path)
        for packet in captured { try writer.write(packet) }
        try writer.close()
        return KernelMPTCPSession(packets: packets, pcapPath: path, serverSS: ss, serverCounters: counters)
    }

    /// Accepts one MPTCP connection, echoes until EOF, reports `ss -Mi` once data flowed (the
    /// MPTCP socket is listed once fully established). Bounded by timeouts.
    static let serverScript = """
    import socket, subprocess, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(10)
    c, _ = s.accept(); c.settimeout(10)
    reported = False
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
        if not reported:
            # Under load the MPTCP socket may show a moment later: look again for up to a second.
            for _ in range(10):
                out = subprocess.run(['ss', '-Mi'], capture_output=True, text=True).stdout
                if 'token:' in out: break
                time.sleep(0.1)
            print(out, flush=True)
            reported = True
    c.close()
    """

    /// Connects (retrying while the server starts), waits for the join, sends and reads back.
    static let clientScript = """
    import socket, sys, time
    for i in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262); s.settimeout(5)
        try:
            s.connect((sys.argv[1], int(sys.argv[2]))); break
        except ConnectionRefusedError:
            s.close(); time.sleep(0.1)
    time.sleep(0.3)
    msg = bytes(i % 251 for i in range(int(sys.argv[3])))
    s.sendall(msg)
    got = b''
    while len(got) < len(msg):
        d = s.recv(65536)
        if not d: break
        got += d
    time.sleep(0.5)
    s.close()
    print('echoed' if got == msg else 'mismatch')
    """
}

/// The few TCP fields this test reads, by its own minimal scan (independent of Wire).
struct TCPSegmentView {
    struct Option { var bytes: [UInt8] }
    var sourcePort: UInt16
    var flags: UInt8
    var options: [Option]

    var isSyn: Bool { flags & 0x02 != 0 }
    var isAck: Bool { flags & 0x10 != 0 }
    var mptcpOptions: [Option] { options.filter { $0.bytes[0] == 30 && $0.bytes.count >= 3 } }

    init?(_ ip: [UInt8]) {
        guard let first = ip.first else { return nil }
        var offset: Int
        if first >> 4 == 4 {
            guard ip.count >= 20, ip[9] == 6 else { return nil }
            offset = Int(first & 0x0f) * 4
        } else if first >> 4 == 6 {
            guard ip.count >= 40, ip[6] == 6 else { return nil }
            offset = 40
        } else { return nil }
        guard ip.count >= offset + 20 else { return nil }
        sourcePort = UInt16(ip[offset]) << 8 | UInt16(ip[offset + 1])
        flags = ip[offset + 13]
        let end = offset + Int(ip[offset + 12] >> 4) * 4
        guard end <= ip.count else { return nil }
        var i = offset + 20
        options = []
        while i < end {
            let kind = ip[i]
            if kind == 0 { break }
            if kind == 1 { i += 1; continue }
            guard i + 1 < end, ip[i + 1] >= 2, i + Int(ip[i + 1]) <= end else { return nil }
            options.append(Option(bytes: Array(ip[i..<(i + Int(ip[i + 1]))])))
            i += Int(ip[i + 1])
        }
    }
}

extension TCPSegmentView.Option {
    var subtype: UInt8 { bytes[2] >> 4 }

    private var dssFlags: UInt8? { subtype == 2 && bytes.count >= 4 ? bytes[3] : nil }

    /// The DSS data ACK (4 or 8 bytes), widened.
    var dssDataAck: UInt64? {
        guard let f = dssFlags, f & 0x01 != 0 else { return nil }
        let n = f & 0x02 != 0 ? 8 : 4
        guard bytes.count >= 4 + n else { return nil }
        return be(bytes[4..<(4 + n)])
    }

    /// The DSS mapping's data sequence number (4 or 8 bytes), widened.
    var dssMapping: UInt64? {
        guard let f = dssFlags, f & 0x04 != 0 else { return nil }
        let ack = f & 0x01 == 0 ? 0 : (f & 0x02 != 0 ? 8 : 4)
        let n = f & 0x08 != 0 ? 8 : 4
        guard bytes.count >= 4 + ack + n else { return nil }
        return be(bytes[(4 + ack)..<(4 + ack + n)])
    }
}

func be<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
    bytes.reduce(0) { $0 << 8 | UInt64($1) }
}
