import Foundation
import XCTest
import NetIO
import TestSupport

/// RawInjector and PacketCapture in a real namespace lab: A — R (Linux router) — B.
/// Oracles: the bytes captured on the far side, tshark's dissection of the written pcap, and
/// the ICMP time-exceeded that the router's kernel sends back for TTL / hop limit 1.
final class InjectionCaptureTests: XCTestCase {
    private var lab: NetnsLab!
    private var a = "", r = "", b = ""
    private var tempFiles: [String] = []

    override func setUpWithError() throws {
        lab = try NetnsLab()
        a = try lab.add("a"); r = try lab.add("r"); b = try lab.add("b")
        try lab.link(a, "eth0", r, "ra")
        try lab.link(r, "rb", b, "eth0")
        try lab.address(a, "eth0", "198.18.1.1/24"); try lab.address(a, "eth0", "2001:db8:1::1/64")
        try lab.address(r, "ra", "198.18.1.2/24"); try lab.address(r, "ra", "2001:db8:1::2/64")
        try lab.address(r, "rb", "198.18.2.1/24"); try lab.address(r, "rb", "2001:db8:2::1/64")
        try lab.address(b, "eth0", "198.18.2.2/24"); try lab.address(b, "eth0", "2001:db8:2::2/64")
        try lab.run(a, ["ip", "route", "add", "default", "via", "198.18.1.2"])
        try lab.run(a, ["ip", "-6", "route", "add", "default", "via", "2001:db8:1::2"])
        try lab.run(b, ["ip", "route", "add", "default", "via", "198.18.2.1"])
        try lab.run(b, ["ip", "-6", "route", "add", "default", "via", "2001:db8:2::1"])
        try lab.sysctl(r, "net.ipv4.ip_forward", "1")
        try lab.sysctl(r, "net.ipv6.conf.all.forwarding", "1")
        try lab.sysctl(r, "net.ipv4.icmp_ratelimit", "0")
        try lab.sysctl(r, "net.ipv6.icmp.ratelimit", "0")
    }

    override func tearDown() {
        lab?.destroy()
        for path in tempFiles { unlink(path) }
    }

    private func tempPcap() -> String {
        let path = NSTemporaryDirectory() + "mtbt-\(getpid())-\(UUID().uuidString).pcap"
        tempFiles.append(path)
        return path
    }

    func testIPv4SynArrivesExactlyAndTsharkDissectsIt() throws {
        let syn = TestPackets.ipv4Packet(src: "198.18.1.1", dst: "198.18.2.2", ttl: 64, id: 0x1234,
                                         tcp: TestPackets.tcpSyn(sport: 40001, dport: 33001, seq: 0xdeadbeef))
        try checkExactArrival(syn, filter: "tcp and dst port 33001", ttlOffset: 8, ipv4: true)
    }

    func testIPv6SynArrivesExactlyAndTsharkDissectsIt() throws {
        let syn = TestPackets.ipv6Packet(src: "2001:db8:1::1", dst: "2001:db8:2::2", hopLimit: 64, flowLabel: 0x12345,
                                         tcp: TestPackets.tcpSyn(sport: 40002, dport: 33002, seq: 0xfeedf00d))
        try checkExactArrival(syn, filter: "tcp and dst port 33002", ttlOffset: 7, ipv4: false)
    }

    private func checkExactArrival(_ packet: [UInt8], filter: String, ttlOffset: Int, ipv4: Bool) throws {
        try TestEnvironment.requireTool("tshark")
        // R on "any" (cooked header) sees the packet arrive on ra, then leave on rb; B on its
        // Ethernet interface sees the forwarded copy.
        let atRouter = try lab.inside(r) { try PacketCapture(options: .init(device: "any", filter: filter)) }
        let atB = try lab.inside(b) { try PacketCapture(options: .init(device: "eth0", filter: filter)) }
        defer { atRouter.close(); atB.close() }
        XCTAssertTrue([LinkType.linuxSLL, .linuxSLL2].contains(atRouter.linkType))
        XCTAssertEqual(atB.linkType, .ethernet)

        let injector = try lab.inside(a) { try RawInjector(options: .init(mark: 0x4d54)) }
        defer { injector.close() }
        XCTAssertEqual(try injector.send(packet), packet.count)

        let routerPackets = try atRouter.collect(quiet: 0.5, maximum: 5)
        let incoming = try XCTUnwrap(routerPackets.first { $0.network?.direction == .incoming },
                                     "the router captured nothing incoming: \(routerPackets)")
        XCTAssertEqual(incoming.packet, packet, "the packet must arrive at the first hop byte for byte")
        XCTAssertEqual(incoming.network?.etherType, ipv4 ? 0x0800 : 0x86DD)
        let outgoing = try XCTUnwrap(routerPackets.first { $0.network?.direction == .outgoing },
                                     "nothing forwarded: \(routerPackets.map { ($0.network?.direction, $0.network?.interfaceIndex) })")
        XCTAssertEqual(outgoing.packet?[ttlOffset], 63, "forwarded once: TTL / hop limit 64 → 63")
        if atRouter.linkType == .linuxSLL2 {
            XCTAssertNotEqual(incoming.network?.interfaceIndex, outgoing.network?.interfaceIndex)
        }

        let atFar = try XCTUnwrap(try atB.next(timeout: 2), "B captured nothing")
        let far = try XCTUnwrap(atFar.packet)
        XCTAssertEqual(far.count, packet.count)
        // Only the TTL / hop limit (and for IPv4 the header checksum) changed on the way.
        let changed = (0..<packet.count).filter { far[$0] != packet[$0] }
        XCTAssertEqual(Set(changed).subtracting(ipv4 ? [ttlOffset, 10, 11] : [ttlOffset]), [], "changed bytes \(changed)")

        // Write both to a raw-IP pcap; tshark must read it and find the fields we set.
        let path = tempPcap()
        let writer = try PcapFileWriter(path: path)
        try writer.write(incoming)
        try writer.write(far, timestamp: atFar.timestamp)
        try writer.close()
        let header = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)).prefix(24))
        XCTAssertEqual(Array(header[20..<24]), [101, 0, 0, 0], "file link type must be LINKTYPE_RAW (101)")
        let readBack = try PcapFileReader.readAll(path: path)
        XCTAssertEqual(readBack.map(\.packet), [packet, far])

        let ttlField = ipv4 ? "ip.ttl" : "ipv6.hlim"
        let extra = ipv4 ? ["-e", "ip.id", "-e", "ip.checksum.status"] : ["-e", "ipv6.flow"]
        let out = try TestShell.check(["tshark", "-r", path, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                                       "-T", "fields", "-E", "separator=|", "-e", ttlField, "-e", "tcp.srcport",
                                       "-e", "tcp.dstport", "-e", "tcp.seq_raw", "-e", "tcp.flags.syn",
                                       "-e", "tcp.options.mss_val", "-e", "tcp.options.wscale.shift",
                                       "-e", "tcp.checksum.status"] + extra)
        let rows = out.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        XCTAssertEqual(rows.count, 2, out)
        let sport = ipv4 ? "40001" : "40002"
        for (row, ttl) in zip(rows, ["64", "63"]) {
            guard row.count == (ipv4 ? 10 : 9) else { XCTFail("unexpected tshark row \(row)"); continue }
            XCTAssertEqual(row[0], ttl)
            XCTAssertEqual(row[1], sport)
            XCTAssertEqual(row[4], "1")
            XCTAssertEqual(row[5], "1460")
            XCTAssertEqual(row[6], "7")
            XCTAssertEqual(row[7], "1", "tshark: TCP checksum status must be Good (1)")
            if ipv4 { XCTAssertEqual(row[8], "0x1234"); XCTAssertEqual(row[9], "1") } else { XCTAssertEqual(row[8], "0x012345") }
        }
        XCTAssertEqual(rows.first?[3], ipv4 ? "3735928559" : "4277006349")
    }

    /// What the kernel does to an IPv4 header on a raw socket (documented in RawInjector): with
    /// DF set, ID 0 stays 0; a wrong header checksum is replaced by the right one.
    func testIPv4KernelFixupsAreTheDocumentedOnes() throws {
        var probe = TestPackets.ipv4Packet(src: "198.18.1.1", dst: "198.18.1.2", ttl: 5, id: 0,
                                           tcp: TestPackets.tcpSyn(sport: 40005, dport: 33005, seq: 11))
        let good = probe
        probe[10] ^= 0xff
        let capture = try lab.inside(r) { try PacketCapture(options: .init(device: "ra", filter: "tcp and dst port 33005")) }
        defer { capture.close() }
        let injector = try lab.inside(a) { try RawInjector(options: .init(families: [.v4])) }
        defer { injector.close() }
        try injector.send(probe)
        let got = try XCTUnwrap(try capture.next(timeout: 3)?.packet)
        XCTAssertEqual(got, good, "ID 0 kept (DF set), checksum recomputed, nothing else touched")
    }

    func testIPv4TTL1GetsTimeExceededQuotingTheProbe() throws {
        let probe = TestPackets.ipv4Packet(src: "198.18.1.1", dst: "198.18.2.2", ttl: 1, id: 0x4242,
                                           tcp: TestPackets.tcpSyn(sport: 40003, dport: 33003, seq: 7))
        let capture = try lab.inside(a) { try PacketCapture(options: .init(filter: "icmp")) }
        defer { capture.close() }
        let injector = try lab.inside(a) { try RawInjector(options: .init(families: [.v4])) }
        defer { injector.close() }
        try injector.send(probe)
        let reply = try XCTUnwrap(try capture.next(timeout: 3), "no ICMP came back for TTL 1")
        let icmp = try XCTUnwrap(reply.packet)
        XCTAssertEqual(Array(icmp[12..<16]), TestPackets.ipv4("198.18.1.2"), "the router answers")
        XCTAssertEqual(icmp[20], 11, "time exceeded"); XCTAssertEqual(icmp[21], 0, "TTL exceeded in transit")
        XCTAssertEqual(Array(icmp[28...]), probe, "a Linux router quotes the whole probe as it arrived")
    }

    func testIPv6HopLimit1GetsTimeExceededQuotingTheProbe() throws {
        let probe = TestPackets.ipv6Packet(src: "2001:db8:1::1", dst: "2001:db8:2::2", hopLimit: 1, flowLabel: 7,
                                           tcp: TestPackets.tcpSyn(sport: 40004, dport: 33004, seq: 9))
        let capture = try lab.inside(a) { try PacketCapture(options: .init(filter: "icmp6 and ip6[40] == 3")) }
        defer { capture.close() }
        let injector = try lab.inside(a) { try RawInjector(options: .init(families: [.v6])) }
        defer { injector.close() }
        try injector.send(probe)
        let reply = try XCTUnwrap(try capture.next(timeout: 3), "no ICMPv6 came back for hop limit 1")
        let icmp = try XCTUnwrap(reply.packet)
        XCTAssertEqual(Array(icmp[8..<24]), TestPackets.ipv6("2001:db8:1::2"), "the router answers")
        XCTAssertEqual(icmp[40], 3, "time exceeded"); XCTAssertEqual(icmp[41], 0, "hop limit exceeded in transit")
        XCTAssertEqual(Array(icmp[48...]), probe, "the quote is the probe as it arrived, hop limit 1")
    }

    func testErrorsAreTypedAndActionable() throws {
        try lab.inside(a) {
            XCTAssertThrowsError(try PacketCapture(options: .init(filter: "tcp and dst portt 80"))) { error in
                XCTAssertEqual((error as? NetIOError)?.code, .captureFilter)
                XCTAssertTrue("\(error)".contains("tcp and dst portt 80"), "\(error)")
            }
            XCTAssertThrowsError(try PacketCapture(options: .init(device: "nosuchif0"))) { error in
                XCTAssertEqual((error as? NetIOError)?.code, .captureOpen)
                XCTAssertTrue("\(error)".contains("nosuchif0"), "\(error)")
            }
            XCTAssertThrowsError(try RawInjector(options: .init(interface: "nosuchif0"))) { error in
                XCTAssertEqual((error as? NetIOError)?.code, .socketOption)
                XCTAssertTrue("\(error)".contains("nosuchif0"), "\(error)")
            }
            let injector = try RawInjector(options: .init(families: [.v4]))
            let v6 = TestPackets.ipv6Packet(src: "2001:db8:1::1", dst: "2001:db8:2::2", hopLimit: 9, flowLabel: 0,
                                            tcp: TestPackets.tcpSyn(sport: 1, dport: 2, seq: 3))
            XCTAssertThrowsError(try injector.send(v6)) { XCTAssertEqual(($0 as? NetIOError)?.code, .injectorOpen) }
            injector.close()
            let v4 = TestPackets.ipv4Packet(src: "198.18.1.1", dst: "198.18.2.2", ttl: 9, id: 1,
                                            tcp: TestPackets.tcpSyn(sport: 1, dport: 2, seq: 3))
            XCTAssertThrowsError(try injector.send(v4)) { XCTAssertEqual(($0 as? NetIOError)?.code, .closed) }
        }
        XCTAssertThrowsError(try PcapFileReader(path: "/nonexistent/x.pcap")) { error in
            XCTAssertEqual((error as? NetIOError)?.code, .pcapFile)
            XCTAssertTrue("\(error)".contains("/nonexistent/x.pcap"))
        }
        XCTAssertThrowsError(try PcapFileWriter(path: "/nonexistent/dir/x.pcap")) { error in
            XCTAssertEqual((error as? NetIOError)?.code, .pcapFile)
        }
    }
}
