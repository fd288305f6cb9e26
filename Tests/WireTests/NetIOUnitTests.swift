import Foundation
import XCTest
@testable import NetIO

/// NetIO's pure parts and pcap files: no root needed.
final class NetIOUnitTests: XCTestCase {
    let ip4: [UInt8] = [0x45, 0, 0, 20, 0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]

    func testStripsEveryLinkHeaderWeMeet() {
        let sll: [UInt8] = [0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00] + ip4
        XCTAssertEqual(LinkLayer.strip(sll, linkType: .linuxSLL),
                       NetworkPacket(etherType: 0x0800, bytes: ip4, direction: .outgoing, linkHeaderLength: 16))
        let sll2: [UInt8] = [0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0] + [0x60]
        XCTAssertEqual(LinkLayer.strip(sll2, linkType: .linuxSLL2),
                       NetworkPacket(etherType: 0x86DD, bytes: [0x60], interfaceIndex: 7, direction: .incoming,
                                     linkHeaderLength: 20))
        let macs = [UInt8](repeating: 0xaa, count: 12)
        XCTAssertEqual(LinkLayer.strip(macs + [0x08, 0x00] + ip4, linkType: .ethernet)?.bytes, ip4)
        let tagged = macs + [0x81, 0x00, 0x00, 0x05, 0x86, 0xdd, 0x60]
        XCTAssertEqual(LinkLayer.strip(tagged, linkType: .ethernet),
                       NetworkPacket(etherType: 0x86DD, bytes: [0x60], linkHeaderLength: 18))
        XCTAssertEqual(LinkLayer.strip(ip4, linkType: .raw)?.etherType, 0x0800)
        XCTAssertEqual(LinkLayer.strip([2, 0, 0, 0] + ip4, linkType: .null)?.bytes, ip4)
        // Runts and unknown link types give nil, never a trap.
        XCTAssertNil(LinkLayer.strip([0, 4, 0], linkType: .linuxSLL))
        XCTAssertNil(LinkLayer.strip(macs, linkType: .ethernet))
        XCTAssertNil(LinkLayer.strip(macs + [0x81, 0x00, 0, 5], linkType: .ethernet))
        XCTAssertNil(LinkLayer.strip([], linkType: .raw))
        XCTAssertNil(LinkLayer.strip(ip4, linkType: LinkType(rawValue: 999)))
    }

    func testInjectorRefusesPacketsTheKernelWouldChange() {
        func code(_ packet: [UInt8]) -> NetIOError.Code? {
            do { _ = try RawInjector.validate(packet); return nil } catch { return (error as? NetIOError)?.code }
        }
        XCTAssertNil(code(ip4))
        XCTAssertEqual(try RawInjector.validate(ip4), .v4)
        XCTAssertEqual(code([]), .badPacket)
        XCTAssertEqual(code(Array(ip4[0..<19])), .badPacket)
        var wrongLength = ip4; wrongLength[3] = 40
        XCTAssertEqual(code(wrongLength), .badPacket)
        var badIHL = ip4; badIHL[0] = 0x4f
        XCTAssertEqual(code(badIHL), .badPacket)
        XCTAssertEqual(code([0x55] + ip4.dropFirst()), .badPacket)
        let ip6 = [0x60, 0, 0, 0, 0, 2, 6, 1] + [UInt8](repeating: 0, count: 32) + [9, 9]
        XCTAssertEqual(try RawInjector.validate(ip6), .v6)
        XCTAssertEqual(code(Array(ip6.dropLast())), .badPacket)
        do { _ = try RawInjector.validate(wrongLength); XCTFail("accepted") } catch {
            XCTAssertTrue("\(error)".contains("total length field says 40 but the packet has 20 bytes"), "\(error)")
        }
    }

    func testPcapFileRoundTripKeepsBytesTimestampsAndLengths() throws {
        let path = NSTemporaryDirectory() + "mtbt-unit-\(getpid())-\(UUID().uuidString).pcap"
        defer { unlink(path) }
        let writer = try PcapFileWriter(path: path)
        try writer.write(ip4, timestamp: PacketTimestamp(seconds: 1_700_000_000, microseconds: 123_456))
        try writer.write(ip4, timestamp: PacketTimestamp(seconds: 1_700_000_001, microseconds: 0), originalLength: 1500)
        // A cooked capture goes into a raw-IP file as its network-layer bytes.
        let cooked = CapturedPacket(timestamp: PacketTimestamp(seconds: 5, microseconds: 6), linkType: .linuxSLL,
                                    frame: [0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00] + ip4, originalLength: 36)
        try writer.write(cooked)
        try writer.close()
        try writer.close()  // idempotent
        XCTAssertThrowsError(try writer.write(ip4)) { XCTAssertEqual(($0 as? NetIOError)?.code, .closed) }

        let reader = try PcapFileReader(path: path)
        defer { reader.close() }
        XCTAssertEqual(reader.linkType, .raw)
        let packets = try reader.readAll()
        XCTAssertEqual(packets.map(\.packet), [ip4, ip4, ip4])
        XCTAssertEqual(packets.map(\.timestamp.seconds), [1_700_000_000, 1_700_000_001, 5])
        XCTAssertEqual(packets[0].timestamp.microseconds, 123_456)
        XCTAssertEqual(packets.map(\.originalLength), [20, 1500, 20])
        XCTAssertEqual(packets.map(\.isTruncated), [false, true, false])
        XCTAssertTrue(packets.allSatisfy(\.isIP))
        XCTAssertNil(try reader.next(), "end of file is nil, not an error")
    }

    func testPcapFileWriterRefusesMismatchedLinkTypes() throws {
        let path = NSTemporaryDirectory() + "mtbt-unit-\(getpid())-\(UUID().uuidString).pcap"
        defer { unlink(path) }
        let writer = try PcapFileWriter(path: path, linkType: .ethernet)
        defer { try? writer.close() }
        let cooked = CapturedPacket(timestamp: PacketTimestamp(seconds: 0, microseconds: 0), linkType: .linuxSLL,
                                    frame: [UInt8](repeating: 0, count: 16) + ip4, originalLength: 36)
        XCTAssertThrowsError(try writer.write(cooked)) { XCTAssertEqual(($0 as? NetIOError)?.code, .pcapFile) }
        let raw = try PcapFileWriter(path: path + ".raw")
        defer { try? raw.close(); unlink(path + ".raw") }
        let junk = CapturedPacket(timestamp: PacketTimestamp(seconds: 0, microseconds: 0), linkType: LinkType(rawValue: 999),
                                  frame: [1, 2, 3], originalLength: 3)
        XCTAssertThrowsError(try raw.write(junk)) { XCTAssertEqual(($0 as? NetIOError)?.code, .pcapFile) }
    }

    func testReaderReportsGarbageFilesClearly() throws {
        let path = NSTemporaryDirectory() + "mtbt-unit-\(getpid())-\(UUID().uuidString).pcap"
        defer { unlink(path) }
        try Data("not a pcap file at all".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PcapFileReader(path: path)) { error in
            XCTAssertEqual((error as? NetIOError)?.code, .pcapFile)
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
    }

    func testPermissionHintsNameTheCapability() {
        XCTAssertTrue(errnoText(EPERM).contains("CAP_NET_RAW"))
        XCTAssertFalse(errnoText(ENODEV).contains("CAP_"))
        XCTAssertTrue(withPermissionHint("socket: Operation not permitted").contains("CAP_NET_RAW"))
    }
}
