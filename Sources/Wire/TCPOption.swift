/// TCP option kinds as an open set (unknown kinds survive a round trip).
public struct TCPOptionKind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ v: UInt8) { rawValue = v }

    public static let endOfList = TCPOptionKind(0)
    public static let noOperation = TCPOptionKind(1)
    public static let maximumSegmentSize = TCPOptionKind(2)
    public static let windowScale = TCPOptionKind(3)
    public static let sackPermitted = TCPOptionKind(4)
    public static let sack = TCPOptionKind(5)
    public static let timestamps = TCPOptionKind(8)
    public static let md5Signature = TCPOptionKind(19)
    public static let authentication = TCPOptionKind(29)
    public static let mptcp = TCPOptionKind(30)
    public static let fastOpen = TCPOptionKind(34)
    public static let experimental1 = TCPOptionKind(253)
    public static let experimental2 = TCPOptionKind(254)

    /// The experiment identifier of the pre-RFC 7413 TFO option (kind 254).
    public static let fastOpenExID: UInt16 = 0xF989

    public var name: String {
        switch rawValue {
        case 0: return "EOL"
        case 1: return "NOP"
        case 2: return "MSS"
        case 3: return "WindowScale"
        case 4: return "SACKPermitted"
        case 5: return "SACK"
        case 8: return "Timestamps"
        case 19: return "MD5"
        case 29: return "TCP-AO"
        case 30: return "MPTCP"
        case 34: return "TFO"
        case 253, 254: return "Experimental"
        default: return "Kind\(rawValue)"
        }
    }

    public var description: String { name }
}

/// One SACK block (left and right edge).
public struct SACKBlock: Hashable, Sendable {
    public var left: UInt32
    public var right: UInt32
    public init(left: UInt32, right: UInt32) { self.left = left; self.right = right }
}

/// An option whose bytes do not form a valid option; the bytes are kept for diffing and output.
public struct MalformedTCPOption: Hashable, Sendable, CustomStringConvertible {
    public enum Reason: Hashable, Sendable {
        /// The kind byte is the last byte of the option space.
        case missingLength
        /// The length byte is 0 or 1 (an option is at least kind + length).
        case lengthBelowTwo(UInt8)
        /// The length runs past the end of the option space.
        case overrun(declared: UInt8, available: Int)
        /// A known kind (or MPTCP subtype) with a length its format does not allow.
        case badLength(expected: String, got: UInt8)
    }

    public var kind: UInt8
    /// The bytes attributed to this option: from its kind byte to its declared end, or to the
    /// end of the option space when the length cannot be trusted.
    public var bytes: [UInt8]
    public var reason: Reason

    public init(kind: UInt8, bytes: [UInt8], reason: Reason) {
        self.kind = kind
        self.bytes = bytes
        self.reason = reason
    }

    public var description: String {
        let name = TCPOptionKind(kind).name
        switch reason {
        case .missingLength: return "\(name): kind byte without a length byte"
        case .lengthBelowTwo(let l): return "\(name): length \(l) is below 2"
        case .overrun(let d, let a): return "\(name): length \(d) runs past the option space (\(a) bytes left)"
        case .badLength(let e, let g): return "\(name): length \(g), expected \(e)"
        }
    }
}

/// A TCP option, decoded where the format is known and kept raw where it is not.
public enum TCPOption: Hashable, Sendable {
    case endOfList
    case noOperation
    case maximumSegmentSize(UInt16)
    case windowScale(UInt8)
    case sackPermitted
    case sack([SACKBlock])
    case timestamps(value: UInt32, echoReply: UInt32)
    /// RFC 2385 signature (16-byte digest).
    case md5Signature([UInt8])
    /// RFC 7413 Fast Open (kind 34); an empty cookie is a cookie request.
    case fastOpen(cookie: [UInt8])
    /// RFC 6994 shared experimental option (kind 253/254) with its 2-byte ExID; TFO's
    /// pre-standard form is kind 254 with ExID 0xF989.
    case experimental(kind: UInt8, exid: UInt16, data: [UInt8])
    case mptcp(MPTCPOption)
    /// Any other kind (TCP-AO and unknown kinds), kept as its data bytes after kind and length.
    case raw(kind: UInt8, data: [UInt8])
    case malformed(MalformedTCPOption)

    public var kind: TCPOptionKind {
        switch self {
        case .endOfList: return .endOfList
        case .noOperation: return .noOperation
        case .maximumSegmentSize: return .maximumSegmentSize
        case .windowScale: return .windowScale
        case .sackPermitted: return .sackPermitted
        case .sack: return .sack
        case .timestamps: return .timestamps
        case .md5Signature: return .md5Signature
        case .fastOpen: return .fastOpen
        case .experimental(let k, _, _): return TCPOptionKind(k)
        case .mptcp: return .mptcp
        case .raw(let k, _): return TCPOptionKind(k)
        case .malformed(let m): return TCPOptionKind(m.kind)
        }
    }

    /// MPTCP subtype, for MPTCP options.
    public var mptcpSubtype: MPTCPSubtype? {
        if case .mptcp(let m) = self { return m.subtype }
        if case .malformed(let m) = self, m.kind == 30, m.bytes.count >= 3 { return MPTCPSubtype(m.bytes[2] >> 4) }
        return nil
    }

    /// Bytes this option takes on the wire.
    public var encodedLength: Int {
        switch self {
        case .endOfList, .noOperation: return 1
        case .maximumSegmentSize: return 4
        case .windowScale: return 3
        case .sackPermitted: return 2
        case .sack(let b): return 2 + 8 * b.count
        case .timestamps: return 10
        case .md5Signature(let d): return 2 + d.count
        case .fastOpen(let c): return 2 + c.count
        case .experimental(_, _, let d): return 4 + d.count
        case .mptcp(let m): return m.encodedLength
        case .raw(_, let d): return 2 + d.count
        case .malformed(let m): return m.bytes.count
        }
    }

    /// Writes the option. Lengths over 255 cannot be encoded and are reported.
    public func write(to w: inout ByteWriter) throws {
        let len = encodedLength
        guard len <= 255 else {
            throw WireError(.invalidField, "\(kind.name) option: \(len) bytes do not fit a one-byte length")
        }
        let l = UInt8(len)
        switch self {
        case .endOfList: w.write(UInt8(0))
        case .noOperation: w.write(UInt8(1))
        case .maximumSegmentSize(let v): w.write(UInt8(2)); w.write(l); w.write(v)
        case .windowScale(let v): w.write(UInt8(3)); w.write(l); w.write(v)
        case .sackPermitted: w.write(UInt8(4)); w.write(l)
        case .sack(let blocks):
            w.write(UInt8(5)); w.write(l)
            for b in blocks { w.write(b.left); w.write(b.right) }
        case .timestamps(let v, let e): w.write(UInt8(8)); w.write(l); w.write(v); w.write(e)
        case .md5Signature(let d): w.write(UInt8(19)); w.write(l); w.write(contentsOf: d)
        case .fastOpen(let c): w.write(UInt8(34)); w.write(l); w.write(contentsOf: c)
        case .experimental(let k, let exid, let d): w.write(k); w.write(l); w.write(exid); w.write(contentsOf: d)
        case .mptcp(let m): try m.write(to: &w)
        case .raw(let k, let d): w.write(k); w.write(l); w.write(contentsOf: d)
        case .malformed(let m): w.write(contentsOf: m.bytes)
        }
    }

    /// The option's wire bytes.
    public func encoded() throws -> [UInt8] {
        var w = ByteWriter(capacity: encodedLength)
        try write(to: &w)
        return w.bytes
    }
}

/// The options area of a TCP header: the options in order, and any bytes after an EOL.
public struct TCPOptions: Hashable, Sendable {
    public var options: [TCPOption]
    /// Bytes after an end-of-list option (padding; normally zeros, kept exactly).
    public var trailer: [UInt8]

    public init(_ options: [TCPOption] = [], trailer: [UInt8] = []) {
        self.options = options
        self.trailer = trailer
    }

    public var encodedLength: Int { options.reduce(trailer.count) { $0 + $1.encodedLength } }

    /// Parses an options area. Total: any bytes give a list, malformed parts kept as `.malformed`.
    public static func parse(_ r: ByteReader) -> TCPOptions {
        var r = r
        var out: [TCPOption] = []
        out.reserveCapacity(8)
        while let kind = r.peekUInt8() {
            if kind == 0 {
                _ = r.readUInt8()
                out.append(.endOfList)
                return TCPOptions(out, trailer: r.readRemaining())
            }
            if kind == 1 {
                _ = r.readUInt8()
                out.append(.noOperation)
                continue
            }
            guard let len = r.peekUInt8(at: 1) else {
                out.append(.malformed(MalformedTCPOption(kind: kind, bytes: r.readRemaining(), reason: .missingLength)))
                break
            }
            guard len >= 2 else {
                out.append(.malformed(MalformedTCPOption(kind: kind, bytes: r.readRemaining(), reason: .lengthBelowTwo(len))))
                break
            }
            guard var body = r.readSlice(Int(len)) else {
                let available = r.remaining
                out.append(.malformed(MalformedTCPOption(kind: kind, bytes: r.readRemaining(),
                                                         reason: .overrun(declared: len, available: available))))
                break
            }
            let start = body.index
            _ = body.skip(2)
            out.append(decode(kind: kind, length: len, body: body, whole: start..<(start + Int(len)), in: r.bytes))
        }
        return TCPOptions(out)
    }

    private static func decode(kind: UInt8, length len: UInt8, body: ByteReader,
                               whole: Range<Int>, in bytes: [UInt8]) -> TCPOption {
        var b = body
        func bad(_ expected: String) -> TCPOption {
            .malformed(MalformedTCPOption(kind: kind, bytes: Array(bytes[whole]), reason: .badLength(expected: expected, got: len)))
        }
        switch kind {
        case 2:
            guard len == 4, let v = b.readUInt16() else { return bad("4") }
            return .maximumSegmentSize(v)
        case 3:
            guard len == 3, let v = b.readUInt8() else { return bad("3") }
            return .windowScale(v)
        case 4:
            guard len == 2 else { return bad("2") }
            return .sackPermitted
        case 5:
            guard len >= 10, (len - 2) % 8 == 0 else { return bad("2 + 8n (n ≥ 1)") }
            var blocks: [SACKBlock] = []
            while let l = b.readUInt32(), let r = b.readUInt32() { blocks.append(SACKBlock(left: l, right: r)) }
            return .sack(blocks)
        case 8:
            guard len == 10, let v = b.readUInt32(), let e = b.readUInt32() else { return bad("10") }
            return .timestamps(value: v, echoReply: e)
        case 19:
            guard len == 18 else { return bad("18") }
            return .md5Signature(b.readRemaining())
        case 30:
            guard let m = MPTCPOption.parse(length: len, body: b) else {
                let subtype = MPTCPSubtype((b.peekUInt8() ?? 0) >> 4)
                return bad(len < 3 ? "at least 3" : subtype.allowedLengths)
            }
            return .mptcp(m)
        case 34:
            // Length 2 is a cookie request; a cookie is 4 to 16 bytes, in multiples of 2 (RFC 7413 §4.1.1).
            guard len == 2 || (len >= 6 && len <= 18 && len % 2 == 0) else { return bad("2, or 6 to 18 (even)") }
            return .fastOpen(cookie: b.readRemaining())
        case 253, 254:
            guard len >= 4, let exid = b.readUInt16() else { return .raw(kind: kind, data: b.readRemaining()) }
            return .experimental(kind: kind, exid: exid, data: b.readRemaining())
        default:
            return .raw(kind: kind, data: b.readRemaining())
        }
    }

    /// Writes the options and the trailer (no padding; see `TCPHeader`).
    public func write(to w: inout ByteWriter) throws {
        for o in options { try o.write(to: &w) }
        w.write(contentsOf: trailer)
    }
}
