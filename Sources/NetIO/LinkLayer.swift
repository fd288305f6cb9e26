/// A pcap link-layer header type (DLT_* on a live handle, LINKTYPE_* in a file). Unknown values
/// survive as raw numbers.
public struct LinkType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// BSD loopback: 4-byte address family in host byte order.
    public static let null = LinkType(rawValue: 0)
    public static let ethernet = LinkType(rawValue: 1)
    /// Raw IP as libpcap names it on Linux (DLT_RAW 12); files store it as LINKTYPE_RAW 101.
    public static let raw = LinkType(rawValue: 12)
    /// LINKTYPE_RAW as read back from a file on some libpcap builds.
    public static let rawFile = LinkType(rawValue: 101)
    /// Linux "cooked" capture v1 (16-byte header): the "any" device.
    public static let linuxSLL = LinkType(rawValue: 113)
    public static let ipv4 = LinkType(rawValue: 228)
    public static let ipv6 = LinkType(rawValue: 229)
    /// Linux cooked capture v2 (20-byte header, carries the interface index).
    public static let linuxSLL2 = LinkType(rawValue: 276)

    public var description: String {
        switch self {
        case .null: return "NULL"
        case .ethernet: return "EN10MB"
        case .raw, .rawFile: return "RAW"
        case .linuxSLL: return "LINUX_SLL"
        case .linuxSLL2: return "LINUX_SLL2"
        case .ipv4: return "IPV4"
        case .ipv6: return "IPV6"
        default: return "DLT \(rawValue)"
        }
    }
}

/// Which way a captured packet went, from the Linux cooked header's packet type.
public enum PacketDirection: Sendable, Hashable {
    /// Addressed to this host (PACKET_HOST), or broadcast/multicast/other host (received).
    case incoming
    /// Sent by this host (PACKET_OUTGOING).
    case outgoing
}

/// The network-layer view of one link-layer frame.
public struct NetworkPacket: Sendable, Equatable {
    /// The EtherType of what follows the link header (0x0800 IPv4, 0x86DD IPv6, 0x0806 ARP, …).
    public var etherType: UInt16
    /// The bytes after the link-layer header.
    public var bytes: [UInt8]
    /// Interface index (Linux cooked v2 only).
    public var interfaceIndex: Int?
    public var direction: PacketDirection?
    /// How many bytes of link header were removed.
    public var linkHeaderLength: Int
}

public enum LinkLayer {
    public static let etherTypeIPv4: UInt16 = 0x0800
    public static let etherTypeIPv6: UInt16 = 0x86DD

    /// Strips the link-layer header of `frame`; nil when the link type is unknown or the frame is
    /// too short for its header. Pure: no libpcap involved.
    public static func strip(_ frame: [UInt8], linkType: LinkType) -> NetworkPacket? {
        func u16(_ i: Int) -> UInt16 { UInt16(frame[i]) << 8 | UInt16(frame[i + 1]) }
        func direction(_ packetType: UInt8) -> PacketDirection { packetType == 4 ? .outgoing : .incoming }
        switch linkType {
        case .raw, .rawFile, .ipv4, .ipv6:
            guard let first = frame.first else { return nil }
            let type: UInt16 = first >> 4 == 6 ? etherTypeIPv6 : first >> 4 == 4 ? etherTypeIPv4 : 0
            return NetworkPacket(etherType: type, bytes: frame, linkHeaderLength: 0)
        case .ethernet:
            guard frame.count >= 14 else { return nil }
            var offset = 12
            // 802.1Q / 802.1ad tags sit between the MAC addresses and the EtherType.
            while offset + 2 <= frame.count, [0x8100, 0x88A8].contains(u16(offset)) { offset += 4 }
            guard offset + 2 <= frame.count else { return nil }
            return NetworkPacket(etherType: u16(offset), bytes: Array(frame[(offset + 2)...]),
                                 linkHeaderLength: offset + 2)
        case .linuxSLL:
            guard frame.count >= 16 else { return nil }
            return NetworkPacket(etherType: u16(14), bytes: Array(frame[16...]),
                                 direction: direction(frame[1]), linkHeaderLength: 16)
        case .linuxSLL2:
            guard frame.count >= 20 else { return nil }
            let index = Int(frame[4]) << 24 | Int(frame[5]) << 16 | Int(frame[6]) << 8 | Int(frame[7])
            return NetworkPacket(etherType: u16(0), bytes: Array(frame[20...]), interfaceIndex: index,
                                 direction: direction(frame[10]), linkHeaderLength: 20)
        case .null:
            guard frame.count >= 4 else { return nil }
            // The family is in host byte order of the capturing machine; 2 is AF_INET everywhere,
            // IPv6 families differ by OS, so read the version nibble instead.
            let body = Array(frame[4...])
            let type: UInt16 = body.first.map { $0 >> 4 == 6 ? etherTypeIPv6 : $0 >> 4 == 4 ? etherTypeIPv4 : 0 } ?? 0
            return NetworkPacket(etherType: type, bytes: body, linkHeaderLength: 4)
        default:
            return nil
        }
    }
}

/// A capture timestamp (microsecond resolution, as libpcap's default).
public struct PacketTimestamp: Sendable, Hashable, Comparable {
    public var seconds: Int
    public var microseconds: Int

    public init(seconds: Int, microseconds: Int) {
        self.seconds = seconds
        self.microseconds = microseconds
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.seconds, a.microseconds) < (b.seconds, b.microseconds)
    }

    /// Seconds as a floating-point number, for display and RTT arithmetic.
    public var timeInterval: Double { Double(seconds) + Double(microseconds) / 1e6 }
}

/// One packet from a live capture or a pcap file.
public struct CapturedPacket: Sendable, Equatable {
    public var timestamp: PacketTimestamp
    public var linkType: LinkType
    /// The whole frame as captured (link header included).
    public var frame: [UInt8]
    /// The length of the frame on the wire (may exceed `frame.count` when the snap length cut it).
    public var originalLength: Int
    /// The network-layer view; nil for an unknown link type or a runt frame.
    public var network: NetworkPacket?

    /// The network-layer bytes (the IP packet for IPv4/IPv6), or nil.
    public var packet: [UInt8]? { network?.bytes }
    /// True when the snap length cut the frame.
    public var isTruncated: Bool { frame.count < originalLength }

    public init(timestamp: PacketTimestamp, linkType: LinkType, frame: [UInt8], originalLength: Int) {
        self.timestamp = timestamp
        self.linkType = linkType
        self.frame = frame
        self.originalLength = originalLength
        self.network = LinkLayer.strip(frame, linkType: linkType)
    }

    /// True for IPv4 and IPv6 packets.
    public var isIP: Bool {
        network.map { $0.etherType == LinkLayer.etherTypeIPv4 || $0.etherType == LinkLayer.etherTypeIPv6 } ?? false
    }
}
