import Foundation

/// A tiny packet builder for the tests only (independent of Wire): IPv4/IPv6 + TCP SYN.
enum TestPackets {
    static func ipv4(_ text: String) -> [UInt8] {
        var a = in_addr()
        precondition(inet_pton(AF_INET, text, &a) == 1, "bad IPv4 literal \(text)")
        return withUnsafeBytes(of: &a) { Array($0) }
    }

    static func ipv6(_ text: String) -> [UInt8] {
        var a = in6_addr()
        precondition(inet_pton(AF_INET6, text, &a) == 1, "bad IPv6 literal \(text)")
        return withUnsafeBytes(of: &a) { Array($0) }
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    static func be32(_ v: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> $0) } }

    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count { sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// A TCP SYN with MSS 1460, SACK-permitted, window scale 7 and `extraOptions` (padded).
    static func tcpSyn(sport: UInt16, dport: UInt16, seq: UInt32, extraOptions: [UInt8] = []) -> [UInt8] {
        var options: [UInt8] = [2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7] + extraOptions
        while options.count % 4 != 0 { options.append(1) }
        let offset = UInt8((20 + options.count) / 4) << 4
        return be16(sport) + be16(dport) + be32(seq) + be32(0) + [offset, 0x02] + be16(64240) + [0, 0, 0, 0] + options
    }

    static func ipv4Packet(src: String, dst: String, ttl: UInt8, id: UInt16, tcp segment: [UInt8]) -> [UInt8] {
        let s = ipv4(src), d = ipv4(dst)
        var tcp = segment
        let pseudo = s + d + [0, 6] + be16(UInt16(tcp.count))
        let c = checksum(pseudo + tcp)
        tcp[16] = UInt8(c >> 8); tcp[17] = UInt8(c & 0xff)
        var header: [UInt8] = [0x45, 0] + be16(UInt16(20 + tcp.count)) + be16(id) + [0x40, 0, ttl, 6, 0, 0] + s + d
        let hc = checksum(header)
        header[10] = UInt8(hc >> 8); header[11] = UInt8(hc & 0xff)
        return header + tcp
    }

    static func ipv6Packet(src: String, dst: String, hopLimit: UInt8, flowLabel: UInt32, tcp segment: [UInt8]) -> [UInt8] {
        let s = ipv6(src), d = ipv6(dst)
        var tcp = segment
        let pseudo = s + d + be32(UInt32(tcp.count)) + [0, 0, 0, 6]
        let c = checksum(pseudo + tcp)
        tcp[16] = UInt8(c >> 8); tcp[17] = UInt8(c & 0xff)
        let first = be32(0x6000_0000 | (flowLabel & 0xfffff))
        return first + be16(UInt16(tcp.count)) + [6, hopLimit] + s + d + tcp
    }
}
