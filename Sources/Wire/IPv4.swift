/// IP protocol numbers as an open set: unknown values survive a round trip.
public struct IPProtocol: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ v: UInt8) { rawValue = v }

    public static let icmp = IPProtocol(1)
    public static let tcp = IPProtocol(6)
    public static let udp = IPProtocol(17)
    public static let ipv6Route = IPProtocol(43)
    public static let ipv6Fragment = IPProtocol(44)
    public static let icmpv6 = IPProtocol(58)
    public static let ipv6NoNext = IPProtocol(59)
    public static let ipv6HopByHop = IPProtocol(0)
    public static let ipv6DestinationOptions = IPProtocol(60)
    public static let ah = IPProtocol(51)
    public static let mobility = IPProtocol(135)

    public var description: String {
        switch rawValue {
        case 1: return "icmp"
        case 6: return "tcp"
        case 17: return "udp"
        case 58: return "icmpv6"
        default: return "proto-\(rawValue)"
        }
    }
}

/// An IPv4 header (RFC 791), options kept as raw bytes.
public struct IPv4Header: Hashable, Sendable {
    public var dscp: UInt8 = 0            // 6 bits
    public var ecn: UInt8 = 0             // 2 bits
    public var totalLength: UInt16 = 20   // as on the wire; recomputed when building
    public var identification: UInt16 = 0
    public var reservedFlag: Bool = false
    public var dontFragment: Bool = false
    public var moreFragments: Bool = false
    public var fragmentOffset: UInt16 = 0 // 13 bits, in 8-byte units
    public var ttl: UInt8 = 64
    public var `protocol`: IPProtocol = .tcp
    public var checksum: UInt16 = 0
    public var source: IPv4Address
    public var destination: IPv4Address
    public var options: [UInt8] = []

    public init(source: IPv4Address, destination: IPv4Address, protocol proto: IPProtocol = .tcp, ttl: UInt8 = 64) {
        self.source = source
        self.destination = destination
        self.protocol = proto
        self.ttl = ttl
    }

    /// Header length in bytes (20 plus options, padded to 4).
    public var headerLength: Int { 20 + (options.count + 3) / 4 * 4 }

    public var typeOfService: UInt8 { dscp << 2 | (ecn & 3) }

    /// Parses a header at the reader; the reader ends up at the payload.
    public static func parse(_ r: inout ByteReader) throws -> IPv4Header {
        let start = r.index
        guard r.remaining >= 20 else { throw WireError.truncated("IPv4 header", need: 20, have: r.remaining) }
        let vihl = r.readUInt8()!
        guard vihl >> 4 == 4 else { throw WireError(.invalidField, "IPv4 header: version is \(vihl >> 4), not 4") }
        let ihl = Int(vihl & 0xf)
        guard ihl >= 5 else { throw WireError(.invalidField, "IPv4 header: IHL \(ihl) is below the minimum of 5") }
        let tos = r.readUInt8()!
        let total = r.readUInt16()!
        let id = r.readUInt16()!
        let ff = r.readUInt16()!
        let ttl = r.readUInt8()!
        let proto = r.readUInt8()!
        let csum = r.readUInt16()!
        let src = r.readUInt32()!
        let dst = r.readUInt32()!
        let optLen = ihl * 4 - 20
        guard let opts = r.readBytes(optLen) else {
            throw WireError.truncated("IPv4 header with options (IHL \(ihl))", need: ihl * 4, have: r.endIndex - start)
        }
        var h = IPv4Header(source: IPv4Address(rawValue: src), destination: IPv4Address(rawValue: dst),
                           protocol: IPProtocol(proto), ttl: ttl)
        h.dscp = tos >> 2
        h.ecn = tos & 3
        h.totalLength = total
        h.identification = id
        h.reservedFlag = ff & 0x8000 != 0
        h.dontFragment = ff & 0x4000 != 0
        h.moreFragments = ff & 0x2000 != 0
        h.fragmentOffset = ff & 0x1fff
        h.checksum = csum
        h.options = opts
        return h
    }

    /// Writes the header as it is (checksum and total length as stored).
    public func write(to w: inout ByteWriter) {
        let ihl = UInt8(headerLength / 4)
        w.write(UInt8(0x40) | ihl)
        w.write(typeOfService)
        w.write(totalLength)
        w.write(identification)
        var ff = fragmentOffset & 0x1fff
        if reservedFlag { ff |= 0x8000 }
        if dontFragment { ff |= 0x4000 }
        if moreFragments { ff |= 0x2000 }
        w.write(ff)
        w.write(ttl)
        w.write(`protocol`.rawValue)
        w.write(checksum)
        w.write(source.rawValue)
        w.write(destination.rawValue)
        w.write(contentsOf: options)
        w.write(zeros: headerLength - 20 - options.count)
    }

    /// The header checksum this header should carry.
    public var computedChecksum: UInt16 {
        var copy = self
        copy.checksum = 0
        var w = ByteWriter(capacity: copy.headerLength)
        copy.write(to: &w)
        return Checksum.internet(w.bytes)
    }
}
