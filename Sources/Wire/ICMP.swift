/// One RFC 4884 extension object (class, c-type, payload).
public struct ICMPExtensionObject: Hashable, Sendable {
    public var classNumber: UInt8
    public var cType: UInt8
    public var payload: [UInt8]
    public init(classNumber: UInt8, cType: UInt8, payload: [UInt8]) {
        self.classNumber = classNumber
        self.cType = cType
        self.payload = payload
    }

    /// RFC 4950 MPLS label stack entries (class 1, c-type 1); nil for other objects.
    public var mplsLabelStack: [MPLSLabelStackEntry]? {
        guard classNumber == 1, cType == 1 else { return nil }
        var r = ByteReader(payload)
        var out: [MPLSLabelStackEntry] = []
        while let v = r.readUInt32() { out.append(MPLSLabelStackEntry(rawValue: v)) }
        return out
    }

    /// RFC 5837 interface information (class 2), kept raw.
    public var isInterfaceInformation: Bool { classNumber == 2 }
}

/// An MPLS label stack entry: label (20 bits), traffic class / EXP (3), bottom of stack (1), TTL (8).
public struct MPLSLabelStackEntry: Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(label: UInt32, exp: UInt8, bottomOfStack: Bool, ttl: UInt8) {
        rawValue = (label & 0xfffff) << 12 | UInt32(exp & 7) << 9 | (bottomOfStack ? 1 << 8 : 0) | UInt32(ttl)
    }
    public var label: UInt32 { rawValue >> 12 }
    public var exp: UInt8 { UInt8(truncatingIfNeeded: rawValue >> 9) & 7 }
    public var bottomOfStack: Bool { rawValue & 0x100 != 0 }
    public var ttl: UInt8 { UInt8(truncatingIfNeeded: rawValue) }
}

/// An RFC 4884 extension structure.
public struct ICMPExtensionStructure: Hashable, Sendable {
    public var version: UInt8
    public var checksum: UInt16
    public var objects: [ICMPExtensionObject]
    /// Whether the structure's checksum verified.
    public var checksumValid: Bool

    public init(objects: [ICMPExtensionObject]) {
        version = 2
        checksum = 0
        self.objects = objects
        checksumValid = true
    }

    /// Parses a structure; nil unless the version is 2 and the objects' lengths are consistent.
    public static func parse(_ bytes: [UInt8], range: Range<Int>) -> ICMPExtensionStructure? {
        var r = ByteReader(bytes, range: range)
        guard let vr = r.readUInt16(), vr >> 12 == 2, let csum = r.readUInt16() else { return nil }
        var objects: [ICMPExtensionObject] = []
        while !r.isAtEnd {
            guard let len = r.readUInt16(), len >= 4, let cls = r.readUInt8(), let ct = r.readUInt8(),
                  let payload = r.readBytes(Int(len) - 4) else { return nil }
            objects.append(ICMPExtensionObject(classNumber: cls, cType: ct, payload: payload))
        }
        var s = ICMPExtensionStructure(objects: objects)
        s.checksum = csum
        s.checksumValid = csum == 0 || Checksum.internet(bytes, range: range) == 0
        return s
    }

    /// The structure's bytes with a correct checksum.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.write(UInt16(version) << 12)
        w.write(UInt16(0))
        for o in objects {
            w.write(UInt16(truncatingIfNeeded: 4 + o.payload.count))
            w.write(o.classNumber)
            w.write(o.cType)
            w.write(contentsOf: o.payload)
        }
        var b = w.bytes
        b.setUInt16(Checksum.internet(b), at: 2)
        return b
    }
}

/// The datagram an ICMP error quotes, decoded as far as it goes.
public struct ICMPQuote: Hashable, Sendable {
    /// The quoted bytes (without RFC 4884 padding when the length field gives the original length).
    public var bytes: [UInt8]
    /// The quoted packet; its transport may be `.partialTCP` when the quote stops inside TCP.
    public var packet: IPPacket?
    /// Why decoding stopped short, when it did.
    public var error: WireError?

    /// A quote of `bytes`, decoded as far as it goes.
    public init(bytes: [UInt8]) {
        self.bytes = bytes
        do { packet = try IPPacket.parse(bytes, depth: 1) } catch let e as WireError { error = e } catch {}
    }

    init(bytes: [UInt8], packet: IPPacket?, error: WireError?) {
        self.bytes = bytes
        self.packet = packet
        self.error = error
    }
}

/// ICMP message types the tracer cares about (open set).
public enum ICMPv4Type {
    public static let echoReply: UInt8 = 0
    public static let destinationUnreachable: UInt8 = 3
    public static let sourceQuench: UInt8 = 4
    public static let redirect: UInt8 = 5
    public static let echoRequest: UInt8 = 8
    public static let timeExceeded: UInt8 = 11
    public static let parameterProblem: UInt8 = 12
}

public enum ICMPv6Type {
    public static let destinationUnreachable: UInt8 = 1
    public static let packetTooBig: UInt8 = 2
    public static let timeExceeded: UInt8 = 3
    public static let parameterProblem: UInt8 = 4
    public static let echoRequest: UInt8 = 128
    public static let echoReply: UInt8 = 129
}

/// An ICMP or ICMPv6 message. `body` (everything after the first 8 bytes) is authoritative for
/// writing; `quote` and `extensions` are decoded views of it for error messages.
public struct ICMPMessage: Hashable, Sendable {
    public enum Family: Hashable, Sendable { case v4, v6 }

    public var family: Family
    public var type: UInt8
    public var code: UInt8
    public var checksum: UInt16
    /// Bytes 4-7: unused, pointer, next-hop MTU, RFC 4884 length, echo id/sequence.
    public var rest: UInt32
    public var body: [UInt8]
    public var quote: ICMPQuote?
    public var extensions: ICMPExtensionStructure?

    public init(family: Family, type: UInt8, code: UInt8, rest: UInt32 = 0, body: [UInt8] = []) {
        self.family = family
        self.type = type
        self.code = code
        self.checksum = 0
        self.rest = rest
        self.body = body
    }

    /// Whether the type is an error that quotes a datagram.
    public var isError: Bool {
        switch family {
        case .v4: return [3, 4, 5, 11, 12].contains(type)
        case .v6: return (1...4).contains(type)
        }
    }

    /// The RFC 4884 length of the original datagram in bytes (0 when not given).
    public var rfc4884Length: Int {
        switch family {
        case .v4:
            guard [3, 11, 12].contains(type) else { return 0 }
            return Int(UInt8(truncatingIfNeeded: rest >> 16)) * 4
        case .v6:
            guard type == 1 || type == 3 else { return 0 }
            return Int(UInt8(truncatingIfNeeded: rest >> 24)) * 8
        }
    }

    /// Next-hop MTU (ICMPv4 fragmentation needed) or MTU (ICMPv6 packet too big).
    public var mtu: UInt32? {
        switch family {
        case .v4: return type == 3 && code == 4 ? rest & 0xffff : nil
        case .v6: return type == 2 ? rest : nil
        }
    }

    static func parse(family: Family, _ r: inout ByteReader, depth: Int) throws -> ICMPMessage {
        let what = family == .v4 ? "ICMP header" : "ICMPv6 header"
        guard r.remaining >= 8 else { throw WireError.truncated(what, need: 8, have: r.remaining) }
        var m = ICMPMessage(family: family, type: r.readUInt8()!, code: r.readUInt8()!)
        m.checksum = r.readUInt16()!
        m.rest = r.readUInt32()!
        let bodyStart = r.index
        m.body = r.readRemaining()
        guard m.isError else { return m }
        _ = bodyStart

        // RFC 4884: a length field gives where the quote ends and an extension structure begins.
        // Without it, some routers still put a structure after a 128-byte quote (RFC 4884 §5).
        var quoteEnd = m.body.count
        let declared = m.rfc4884Length
        if declared > 0, declared <= m.body.count {
            quoteEnd = declared
            if m.body.count >= declared + 4 {
                m.extensions = ICMPExtensionStructure.parse(m.body, range: declared..<m.body.count)
            }
        } else if declared == 0, m.body.count >= 128 + 8,
                  let ext = ICMPExtensionStructure.parse(m.body, range: 128..<m.body.count),
                  ext.checksumValid, ext.checksum != 0 {
            quoteEnd = 128
            m.extensions = ext
        }
        let quoted = Array(m.body[0..<quoteEnd])
        var q = ICMPQuote(bytes: quoted, packet: nil, error: nil)
        if depth < 2 {
            do { q.packet = try IPPacket.parse(quoted, depth: depth + 1) } catch let e as WireError { q.error = e }
        }
        m.quote = q
        return m
    }

    public func write(to w: inout ByteWriter) {
        w.write(type)
        w.write(code)
        w.write(checksum)
        w.write(rest)
        w.write(contentsOf: body)
    }

    /// An error message quoting `datagram`, with optional RFC 4884 extensions (the quote is padded
    /// to 128 bytes and its length set, as RFC 4884 asks).
    public static func error(family: Family, type: UInt8, code: UInt8, quoting datagram: [UInt8],
                             extensions: ICMPExtensionStructure? = nil) -> ICMPMessage {
        guard let ext = extensions else {
            return ICMPMessage(family: family, type: type, code: code, rest: 0, body: datagram)
        }
        let unit = family == .v4 ? 4 : 8
        var padded = datagram
        let target = max(128, (datagram.count + unit - 1) / unit * unit)
        padded += [UInt8](repeating: 0, count: target - datagram.count)
        let words = UInt32(min(255, target / unit))
        let rest: UInt32 = family == .v4 ? words << 16 : words << 24
        return ICMPMessage(family: family, type: type, code: code, rest: rest, body: padded + ext.encoded())
    }
}
