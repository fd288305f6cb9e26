/// What an IP packet carries, decoded as far as the bytes allow.
public enum Transport: Hashable, Sendable {
    case tcp(TCPSegment)
    /// A TCP header cut short (an ICMP quote); at least the ports are there.
    case partialTCP(PartialTCPHeader)
    case udp(UDPDatagram)
    indirect case icmp(ICMPMessage)
    /// Any other protocol, or a transport too short to decode, as raw bytes.
    case other([UInt8])
}

/// An IPv4 or IPv6 packet with its transport.
public struct IPPacket: Hashable, Sendable {
    public var ip: IPHeader
    public var transport: Transport
    /// Bytes the IP length field promises beyond those present (non-zero in truncated quotes).
    public var missingBytes: Int = 0

    public init(ip: IPHeader, transport: Transport) {
        self.ip = ip
        self.transport = transport
    }

    public var tcp: TCPSegment? {
        if case .tcp(let s) = transport { return s }
        return nil
    }

    public var icmp: ICMPMessage? {
        if case .icmp(let m) = transport { return m }
        return nil
    }

    /// Parses an IP packet. Total over arbitrary bytes: returns a packet or throws a `WireError`.
    /// A packet shorter than its length field (an ICMP quote) still parses, as far as it goes,
    /// with `missingBytes` set; bytes beyond the length field (link padding) are ignored.
    public static func parse(_ bytes: [UInt8]) throws -> IPPacket {
        try parse(bytes, depth: 0)
    }

    static func parse(_ bytes: [UInt8], depth: Int) throws -> IPPacket {
        guard let first = bytes.first else { throw WireError.truncated("IP header", need: 20, have: 0) }
        var r = ByteReader(bytes)
        let ip: IPHeader
        let declaredEnd: Int
        switch first >> 4 {
        case 4:
            let h = try IPv4Header.parse(&r)
            guard Int(h.totalLength) >= h.headerLength else {
                throw WireError(.invalidField, "IPv4 header: total length \(h.totalLength) is below the header length \(h.headerLength)")
            }
            ip = .v4(h)
            declaredEnd = Int(h.totalLength)
        case 6:
            let h = try IPv6Header.parse(&r)
            ip = .v6(h)
            // A zero payload length (jumbogram) is taken as "everything present".
            declaredEnd = h.payloadLength == 0 ? bytes.count : 40 + Int(h.payloadLength)
            guard declaredEnd >= r.index || h.payloadLength == 0 else {
                throw WireError(.invalidField, "IPv6 header: payload length \(h.payloadLength) is shorter than its extension headers")
            }
        default:
            throw WireError(.invalidField, "IP header: version \(first >> 4) is neither 4 nor 6")
        }
        let end = min(declaredEnd, bytes.count)
        var packet = IPPacket(ip: ip, transport: .other([]))
        packet.missingBytes = max(0, declaredEnd - bytes.count)
        var t = ByteReader(bytes, range: r.index..<end)
        // Fragments after the first carry no transport header.
        if case .v4(let h) = ip, h.fragmentOffset != 0 {
            packet.transport = .other(t.readRemaining())
            return packet
        }
        switch ip.upperLayerProtocol {
        case .tcp:
            var attempt = t
            if let h = try? TCPHeader.parse(&attempt) {
                packet.transport = .tcp(TCPSegment(header: h, payload: attempt.readRemaining()))
            } else if let p = PartialTCPHeader.parse(t) {
                packet.transport = .partialTCP(p)
            } else {
                packet.transport = .other(t.readRemaining())
            }
        case .udp:
            var attempt = t
            if let u = try? UDPDatagram.parse(&attempt) { packet.transport = .udp(u) } else { packet.transport = .other(t.readRemaining()) }
        case .icmp where first >> 4 == 4, .icmpv6 where first >> 4 == 6:
            var attempt = t
            if let m = try? ICMPMessage.parse(family: first >> 4 == 4 ? .v4 : .v6, &attempt, depth: depth) {
                packet.transport = .icmp(m)
            } else {
                packet.transport = .other(t.readRemaining())
            }
        default:
            packet.transport = .other(t.readRemaining())
        }
        return packet
    }

    /// The packet with length fields and checksums set, as it will be on the wire.
    public func finalized() throws -> IPPacket {
        try IPPacket.parse(serialized(finalize: true))
    }

    /// The packet's bytes. With `finalize`, length fields and checksums (IPv4 header, TCP, UDP,
    /// ICMP, ICMPv6) are computed; otherwise every field is written as stored, so that
    /// `parse(b).serialized() == b` for any complete packet `b`.
    public func serialized(finalize: Bool = false) throws -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        switch ip {
        case .v4(let h): h.write(to: &w)
        case .v6(let h): h.write(to: &w)
        }
        let transportStart = w.count
        var checksumOffset: Int?
        switch transport {
        case .tcp(let s):
            try s.header.write(to: &w)
            w.write(contentsOf: s.payload)
            checksumOffset = 16
        case .partialTCP:
            throw WireError(.invalidField, "a partial TCP header (from a truncated quote) cannot be written")
        case .udp(let u):
            u.write(to: &w)
            checksumOffset = 6
        case .icmp(let m):
            m.write(to: &w)
            checksumOffset = 2
        case .other(let b):
            w.write(contentsOf: b)
        }
        guard finalize else { return w.bytes }

        var bytes = w.bytes
        let transportLength = bytes.count - transportStart
        switch ip {
        case .v4(let h):
            guard bytes.count <= Int(UInt16.max) else {
                throw WireError(.invalidField, "IPv4 packet of \(bytes.count) bytes exceeds 65535")
            }
            bytes.setUInt16(UInt16(bytes.count), at: 2)
            bytes.setUInt16(0, at: 10)
            bytes.setUInt16(Checksum.internet(bytes, range: 0..<h.headerLength), at: 10)
        case .v6:
            guard bytes.count - 40 <= Int(UInt16.max) else {
                throw WireError(.invalidField, "IPv6 payload of \(bytes.count - 40) bytes exceeds 65535")
            }
            bytes.setUInt16(UInt16(bytes.count - 40), at: 4)
        }
        if case .udp = transport {
            bytes.setUInt16(UInt16(truncatingIfNeeded: transportLength), at: transportStart + 4)
        }
        if let off = checksumOffset {
            let field = transportStart + off
            bytes.setUInt16(0, at: field)
            let value: UInt16
            if case .icmp(let m) = transport, m.family == .v4 {
                value = Checksum.internet(bytes, range: transportStart..<bytes.count)
            } else {
                var c = Checksum.pseudoHeader(source: ip.source, destination: ip.destination,
                                              protocol: ip.upperLayerProtocol.rawValue, length: transportLength)
                c.add(bytes, range: transportStart..<bytes.count)
                var v = c.value
                if case .udp = transport, v == 0 { v = 0xffff }
                value = v
            }
            bytes.setUInt16(value, at: field)
        }
        return bytes
    }
}
