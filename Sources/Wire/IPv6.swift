/// An IPv6 extension header kept as raw bytes (next header, and the whole header).
public struct IPv6ExtensionHeader: Hashable, Sendable {
    /// The type of this header (the previous header's next-header value).
    public var type: IPProtocol
    /// The whole header, including its own next-header and length bytes.
    public var bytes: [UInt8]
    public init(type: IPProtocol, bytes: [UInt8]) { self.type = type; self.bytes = bytes }
}

/// An IPv6 header (RFC 8200) with its extension headers skipped to the transport header.
public struct IPv6Header: Hashable, Sendable {
    public var trafficClass: UInt8 = 0
    public var flowLabel: UInt32 = 0     // 20 bits
    public var payloadLength: UInt16 = 0 // as on the wire; recomputed when building
    /// The fixed header's next-header field.
    public var nextHeader: IPProtocol = .tcp
    public var hopLimit: UInt8 = 64
    public var source: IPv6Address
    public var destination: IPv6Address
    public var extensionHeaders: [IPv6ExtensionHeader] = []

    public init(source: IPv6Address, destination: IPv6Address, nextHeader: IPProtocol = .tcp, hopLimit: UInt8 = 64) {
        self.source = source
        self.destination = destination
        self.nextHeader = nextHeader
        self.hopLimit = hopLimit
    }

    public var dscp: UInt8 { trafficClass >> 2 }
    public var ecn: UInt8 { trafficClass & 3 }

    /// The protocol after all extension headers.
    public var upperLayerProtocol: IPProtocol {
        guard let last = extensionHeaders.last else { return nextHeader }
        return IPProtocol(last.bytes.first ?? IPProtocol.ipv6NoNext.rawValue)
    }

    public var headerLength: Int { 40 + extensionHeaders.reduce(0) { $0 + $1.bytes.count } }

    static func isExtension(_ p: IPProtocol) -> Bool {
        switch p.rawValue {
        case 0, 43, 44, 60, 51, 135, 139, 140: return true
        default: return false
        }
    }

    /// Parses the fixed header and the extension headers; the reader ends at the upper layer.
    /// At most 16 extension headers are followed (a loop bound for hostile input).
    public static func parse(_ r: inout ByteReader) throws -> IPv6Header {
        guard r.remaining >= 40 else { throw WireError.truncated("IPv6 header", need: 40, have: r.remaining) }
        let word = r.readUInt32()!
        guard word >> 28 == 6 else { throw WireError(.invalidField, "IPv6 header: version is \(word >> 28), not 6") }
        let plen = r.readUInt16()!
        let next = r.readUInt8()!
        let hlim = r.readUInt8()!
        let s1 = r.readUInt64()!, s2 = r.readUInt64()!
        let d1 = r.readUInt64()!, d2 = r.readUInt64()!
        var h = IPv6Header(source: IPv6Address(high: s1, low: s2), destination: IPv6Address(high: d1, low: d2),
                           nextHeader: IPProtocol(next), hopLimit: hlim)
        h.trafficClass = UInt8(truncatingIfNeeded: word >> 20)
        h.flowLabel = word & 0xfffff
        h.payloadLength = plen
        var type = IPProtocol(next)
        var count = 0
        while isExtension(type) && count < 16 {
            guard let nh = r.peekUInt8(), let lenByte = r.peekUInt8(at: 1) else {
                throw WireError.truncated("IPv6 extension header \(type.rawValue)", need: 2, have: r.remaining)
            }
            // AH counts its length in 4-byte units minus 2; the others in 8-byte units minus 1.
            let len = type == .ah ? (Int(lenByte) + 2) * 4 : (Int(lenByte) + 1) * 8
            let fixedLen = type == .ipv6Fragment ? 8 : len
            guard let bytes = r.readBytes(fixedLen) else {
                throw WireError.truncated("IPv6 extension header \(type.rawValue)", need: fixedLen, have: r.remaining)
            }
            h.extensionHeaders.append(IPv6ExtensionHeader(type: type, bytes: bytes))
            type = IPProtocol(nh)
            count += 1
        }
        return h
    }

    public func write(to w: inout ByteWriter) {
        w.write(UInt32(6) << 28 | UInt32(trafficClass) << 20 | (flowLabel & 0xfffff))
        w.write(payloadLength)
        w.write(nextHeader.rawValue)
        w.write(hopLimit)
        w.write(source.high); w.write(source.low)
        w.write(destination.high); w.write(destination.low)
        for e in extensionHeaders { w.write(contentsOf: e.bytes) }
    }
}

/// Either IP header.
public enum IPHeader: Hashable, Sendable {
    case v4(IPv4Header)
    case v6(IPv6Header)

    public var source: IPAddress {
        switch self {
        case .v4(let h): return .v4(h.source)
        case .v6(let h): return .v6(h.source)
        }
    }

    public var destination: IPAddress {
        switch self {
        case .v4(let h): return .v4(h.destination)
        case .v6(let h): return .v6(h.destination)
        }
    }

    /// TTL or hop limit.
    public var ttl: UInt8 {
        switch self {
        case .v4(let h): return h.ttl
        case .v6(let h): return h.hopLimit
        }
    }

    public var upperLayerProtocol: IPProtocol {
        switch self {
        case .v4(let h): return h.protocol
        case .v6(let h): return h.upperLayerProtocol
        }
    }

    public var headerLength: Int {
        switch self {
        case .v4(let h): return h.headerLength
        case .v6(let h): return h.headerLength
        }
    }
}
