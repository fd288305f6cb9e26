/// MPTCP option subtypes (RFC 8684 §7.2) as an open set.
public struct MPTCPSubtype: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0xf }
    public init(_ v: UInt8) { rawValue = v & 0xf }

    public static let capable = MPTCPSubtype(0)
    public static let join = MPTCPSubtype(1)
    public static let dss = MPTCPSubtype(2)
    public static let addAddress = MPTCPSubtype(3)
    public static let removeAddress = MPTCPSubtype(4)
    public static let priority = MPTCPSubtype(5)
    public static let fail = MPTCPSubtype(6)
    public static let fastClose = MPTCPSubtype(7)
    public static let reset = MPTCPSubtype(8)
    public static let experimental = MPTCPSubtype(15)

    public var name: String {
        switch rawValue {
        case 0: return "MP_CAPABLE"
        case 1: return "MP_JOIN"
        case 2: return "DSS"
        case 3: return "ADD_ADDR"
        case 4: return "REMOVE_ADDR"
        case 5: return "MP_PRIO"
        case 6: return "MP_FAIL"
        case 7: return "MP_FASTCLOSE"
        case 8: return "MP_TCPRST"
        case 15: return "MP_EXPERIMENTAL"
        default: return "MPTCP_SUBTYPE_\(rawValue)"
        }
    }

    /// The lengths the format allows, for error messages.
    var allowedLengths: String {
        switch rawValue {
        case 0: return "4, 12, 20, 22 or 24"
        case 1: return "12, 16 or 24"
        case 2: return "4 + Data ACK (0/4/8) + mapping (0, or DSN 4/8 + 6, + 2 with checksum)"
        case 3: return "8, 10, 16, 18 (IPv4) or 20, 22, 28, 30 (IPv6)"
        case 4: return "at least 4"
        case 5: return "3 or 4"
        case 6, 7: return "12"
        case 8: return "4"
        default: return "at least 3"
        }
    }

    public var description: String { name }
}

/// MP_CAPABLE (RFC 8684 §3.1). Which fields are present follows from the length:
/// 4 (v1 SYN), 12 (sender key), 20 (both keys), 22 (+ data-level length), 24 (+ checksum).
public struct MPCapable: Hashable, Sendable {
    public var version: UInt8
    /// Flags A..H: A = 0x80 checksum required, B = 0x40 extensibility, C = 0x20 no more
    /// subflows to this address, H = 0x01 HMAC-SHA256 (v1) / HMAC-SHA1 (v0).
    public var flags: UInt8
    public var senderKey: UInt64?
    public var receiverKey: UInt64?
    public var dataLevelLength: UInt16?
    public var checksum: UInt16?

    public static let checksumRequired: UInt8 = 0x80
    public static let extensibility: UInt8 = 0x40
    public static let noMoreSubflows: UInt8 = 0x20
    public static let hmacSHA: UInt8 = 0x01

    public init(version: UInt8 = 1, flags: UInt8 = MPCapable.hmacSHA, senderKey: UInt64? = nil,
                receiverKey: UInt64? = nil, dataLevelLength: UInt16? = nil, checksum: UInt16? = nil) {
        self.version = version
        self.flags = flags
        self.senderKey = senderKey
        self.receiverKey = receiverKey
        self.dataLevelLength = dataLevelLength
        self.checksum = checksum
    }

    public var encodedLength: Int {
        4 + (senderKey != nil ? 8 : 0) + (receiverKey != nil ? 8 : 0)
            + (dataLevelLength != nil ? 2 : 0) + (checksum != nil ? 2 : 0)
    }

    static func parse(length: UInt8, flagsByte b2: UInt8, _ r: inout ByteReader) -> MPCapable? {
        guard let flags = r.readUInt8() else { return nil }
        var m = MPCapable(version: b2 & 0xf, flags: flags)
        switch length {
        case 4: break
        case 12: m.senderKey = r.readUInt64()
        case 20, 22, 24:
            m.senderKey = r.readUInt64()
            m.receiverKey = r.readUInt64()
            if length >= 22 { m.dataLevelLength = r.readUInt16() }
            if length == 24 { m.checksum = r.readUInt16() }
        default: return nil
        }
        return m
    }

    func write(to w: inout ByteWriter) throws {
        guard version <= 0xf else { throw WireError(.invalidField, "MP_CAPABLE: version \(version) does not fit 4 bits") }
        let valid: Bool
        switch (senderKey, receiverKey, dataLevelLength, checksum) {
        case (nil, nil, nil, nil), (.some, nil, nil, nil), (.some, .some, nil, nil),
             (.some, .some, .some, nil), (.some, .some, .some, .some): valid = true
        default: valid = false
        }
        guard valid else {
            throw WireError(.invalidCombination,
                            "MP_CAPABLE: fields must be added in order: sender key, receiver key, data-level length, checksum")
        }
        w.write(MPTCPSubtype.capable.rawValue << 4 | version)
        w.write(flags)
        if let k = senderKey { w.write(k) }
        if let k = receiverKey { w.write(k) }
        if let l = dataLevelLength { w.write(l) }
        if let c = checksum { w.write(c) }
    }
}

/// MP_JOIN (RFC 8684 §3.2): 12 bytes in a SYN, 16 in a SYN/ACK, 24 in the third ACK.
public struct MPJoin: Hashable, Sendable {
    public enum Stage: Hashable, Sendable {
        case syn(receiverToken: UInt32, senderNonce: UInt32)
        case synAck(truncatedHMAC: UInt64, senderNonce: UInt32)
        /// The initiator's HMAC, 20 bytes (leftmost 160 bits).
        case ack(hmac: [UInt8])
    }

    /// The low four bits of byte 2: reserved bits and B (backup, 0x01).
    public var flags: UInt8
    /// Address id in SYN and SYN/ACK; a reserved byte in the ACK.
    public var addressID: UInt8
    public var stage: Stage

    public init(flags: UInt8 = 0, addressID: UInt8 = 0, stage: Stage) {
        self.flags = flags
        self.addressID = addressID
        self.stage = stage
    }

    public var backup: Bool { flags & 1 != 0 }

    public var encodedLength: Int {
        switch stage {
        case .syn: return 12
        case .synAck: return 16
        case .ack: return 24
        }
    }

    static func parse(length: UInt8, flagsByte b2: UInt8, _ r: inout ByteReader) -> MPJoin? {
        guard let b3 = r.readUInt8() else { return nil }
        switch length {
        case 12:
            guard let t = r.readUInt32(), let n = r.readUInt32() else { return nil }
            return MPJoin(flags: b2 & 0xf, addressID: b3, stage: .syn(receiverToken: t, senderNonce: n))
        case 16:
            guard let h = r.readUInt64(), let n = r.readUInt32() else { return nil }
            return MPJoin(flags: b2 & 0xf, addressID: b3, stage: .synAck(truncatedHMAC: h, senderNonce: n))
        case 24:
            guard let h = r.readBytes(20) else { return nil }
            return MPJoin(flags: b2 & 0xf, addressID: b3, stage: .ack(hmac: h))
        default: return nil
        }
    }

    func write(to w: inout ByteWriter) throws {
        w.write(MPTCPSubtype.join.rawValue << 4 | (flags & 0xf))
        w.write(addressID)
        switch stage {
        case let .syn(t, n): w.write(t); w.write(n)
        case let .synAck(h, n): w.write(h); w.write(n)
        case let .ack(h):
            guard h.count == 20 else {
                throw WireError(.invalidField, "MP_JOIN ACK: the HMAC is 20 bytes, not \(h.count)")
            }
            w.write(contentsOf: h)
        }
    }
}

/// DSS (RFC 8684 §3.3): Data ACK and/or mapping; the flags byte says which and how wide.
public struct DSS: Hashable, Sendable {
    public struct Mapping: Hashable, Sendable {
        public var dataSequenceNumber: UInt64
        public var subflowSequenceNumber: UInt32
        /// 0 means an infinite mapping (fallback).
        public var dataLevelLength: UInt16
        public var checksum: UInt16?
        public init(dataSequenceNumber: UInt64, subflowSequenceNumber: UInt32, dataLevelLength: UInt16, checksum: UInt16? = nil) {
            self.dataSequenceNumber = dataSequenceNumber
            self.subflowSequenceNumber = subflowSequenceNumber
            self.dataLevelLength = dataLevelLength
            self.checksum = checksum
        }
    }

    public static let dataACKPresent: UInt8 = 0x01
    public static let dataACKIs8Bytes: UInt8 = 0x02
    public static let mappingPresent: UInt8 = 0x04
    public static let dsnIs8Bytes: UInt8 = 0x08
    public static let dataFIN: UInt8 = 0x10

    /// Byte 3 as on the wire (reserved bits, F, m, M, a, A).
    public var flags: UInt8
    /// The low four bits of byte 2 (reserved).
    public var reserved: UInt8 = 0
    public var dataACK: UInt64?
    public var mapping: Mapping?

    /// A DSS whose flags follow from the fields present.
    public init(dataACK: UInt64? = nil, dataACK64: Bool = false, mapping: Mapping? = nil,
                dsn64: Bool = true, dataFIN: Bool = false) {
        var f: UInt8 = 0
        if dataACK != nil { f |= Self.dataACKPresent | (dataACK64 ? Self.dataACKIs8Bytes : 0) }
        if mapping != nil { f |= Self.mappingPresent | (dsn64 ? Self.dsnIs8Bytes : 0) }
        if dataFIN { f |= Self.dataFIN }
        self.flags = f
        self.dataACK = dataACK
        self.mapping = mapping
    }

    /// A DSS with the flags byte given as is (fields must agree with it).
    public init(flags: UInt8, reserved: UInt8 = 0, dataACK: UInt64?, mapping: Mapping?) {
        self.flags = flags
        self.reserved = reserved
        self.dataACK = dataACK
        self.mapping = mapping
    }

    public var isDataFIN: Bool { flags & Self.dataFIN != 0 }
    public var dataACKWidth: Int { flags & Self.dataACKPresent == 0 ? 0 : (flags & Self.dataACKIs8Bytes != 0 ? 8 : 4) }
    public var dsnWidth: Int { flags & Self.mappingPresent == 0 ? 0 : (flags & Self.dsnIs8Bytes != 0 ? 8 : 4) }

    public var encodedLength: Int {
        4 + dataACKWidth + (mapping.map { dsnWidth + 6 + ($0.checksum != nil ? 2 : 0) } ?? 0)
    }

    static func parse(length: UInt8, flagsByte b2: UInt8, _ r: inout ByteReader) -> DSS? {
        guard let f = r.readUInt8() else { return nil }
        var d = DSS(flags: f, reserved: b2 & 0xf, dataACK: nil, mapping: nil)
        let base = 4 + d.dataACKWidth + (f & mappingPresent != 0 ? d.dsnWidth + 6 : 0)
        let hasChecksum: Bool
        if Int(length) == base { hasChecksum = false } else if f & mappingPresent != 0 && Int(length) == base + 2 {
            hasChecksum = true
        } else { return nil }
        switch d.dataACKWidth {
        case 4: guard let a = r.readUInt32() else { return nil }; d.dataACK = UInt64(a)
        case 8: guard let a = r.readUInt64() else { return nil }; d.dataACK = a
        default: break
        }
        if f & mappingPresent != 0 {
            let dsn: UInt64
            if d.dsnWidth == 8 { guard let v = r.readUInt64() else { return nil }; dsn = v } else {
                guard let v = r.readUInt32() else { return nil }; dsn = UInt64(v)
            }
            guard let ssn = r.readUInt32(), let len = r.readUInt16() else { return nil }
            var m = Mapping(dataSequenceNumber: dsn, subflowSequenceNumber: ssn, dataLevelLength: len)
            if hasChecksum { guard let c = r.readUInt16() else { return nil }; m.checksum = c }
            d.mapping = m
        }
        return d
    }

    func write(to w: inout ByteWriter) throws {
        guard (dataACK != nil) == (flags & Self.dataACKPresent != 0),
              (mapping != nil) == (flags & Self.mappingPresent != 0) else {
            throw WireError(.invalidCombination, "DSS: flags 0x\(String(flags, radix: 16)) disagree with the fields present")
        }
        if dataACKWidth == 4, let a = dataACK, a > UInt64(UInt32.max) {
            throw WireError(.invalidField, "DSS: Data ACK \(a) does not fit 4 bytes (set the 8-byte flag)")
        }
        if dsnWidth == 4, let m = mapping, m.dataSequenceNumber > UInt64(UInt32.max) {
            throw WireError(.invalidField, "DSS: DSN \(m.dataSequenceNumber) does not fit 4 bytes (set the 8-byte flag)")
        }
        w.write(MPTCPSubtype.dss.rawValue << 4 | (reserved & 0xf))
        w.write(flags)
        if let a = dataACK {
            if dataACKWidth == 8 { w.write(a) } else { w.write(UInt32(truncatingIfNeeded: a)) }
        }
        if let m = mapping {
            if dsnWidth == 8 { w.write(m.dataSequenceNumber) } else { w.write(UInt32(truncatingIfNeeded: m.dataSequenceNumber)) }
            w.write(m.subflowSequenceNumber)
            w.write(m.dataLevelLength)
            if let c = m.checksum { w.write(c) }
        }
    }
}

/// ADD_ADDR (RFC 8684 §3.4.1; v0: RFC 6824 §3.4.1).
public struct AddAddress: Hashable, Sendable {
    public enum Encoding: Hashable, Sendable {
        /// RFC 6824: byte 2's low nibble is the IP version, no HMAC.
        case v0
        /// RFC 8684: byte 2's low nibble holds E (echo, 0x01); an HMAC unless echo.
        case v1
    }

    public var encoding: Encoding
    /// v1: the low nibble of byte 2 (E = 0x01, other bits reserved). Unused for v0 (derived from the address).
    public var flags: UInt8
    public var addressID: UInt8
    public var address: IPAddress
    public var port: UInt16?
    /// The truncated HMAC (v1, normally present when E = 0).
    public var hmac: UInt64?

    public init(encoding: Encoding = .v1, echo: Bool = false, addressID: UInt8, address: IPAddress,
                port: UInt16? = nil, hmac: UInt64? = nil) {
        self.encoding = encoding
        self.flags = echo ? 1 : 0
        self.addressID = addressID
        self.address = address
        self.port = port
        self.hmac = hmac
    }

    public var isEcho: Bool { encoding == .v1 && flags & 1 != 0 }

    public var encodedLength: Int {
        let addr: Int
        switch address { case .v4: addr = 4; case .v6: addr = 16 }
        return 4 + addr + (port != nil ? 2 : 0) + (hmac != nil ? 8 : 0)
    }

    static func parse(length: UInt8, flagsByte b2: UInt8, _ r: inout ByteReader) -> AddAddress? {
        guard let id = r.readUInt8() else { return nil }
        let nibble = b2 & 0xf
        let encoding: Encoding
        let isV6: Bool, hasPort: Bool, hasHMAC: Bool
        switch (nibble, length) {
        case (4, 8), (4, 10): encoding = .v0; isV6 = false; hasPort = length == 10; hasHMAC = false
        case (6, 20), (6, 22): encoding = .v0; isV6 = true; hasPort = length == 22; hasHMAC = false
        default:
            encoding = .v1
            switch length {
            case 8: isV6 = false; hasPort = false; hasHMAC = false
            case 10: isV6 = false; hasPort = true; hasHMAC = false
            case 16: isV6 = false; hasPort = false; hasHMAC = true
            case 18: isV6 = false; hasPort = true; hasHMAC = true
            case 20: isV6 = true; hasPort = false; hasHMAC = false
            case 22: isV6 = true; hasPort = true; hasHMAC = false
            case 28: isV6 = true; hasPort = false; hasHMAC = true
            case 30: isV6 = true; hasPort = true; hasHMAC = true
            default: return nil
            }
        }
        let address: IPAddress
        if isV6 {
            guard let h = r.readUInt64(), let l = r.readUInt64() else { return nil }
            address = .v6(IPv6Address(high: h, low: l))
        } else {
            guard let a = r.readUInt32() else { return nil }
            address = .v4(IPv4Address(rawValue: a))
        }
        var out = AddAddress(encoding: encoding, addressID: id, address: address)
        out.flags = encoding == .v1 ? nibble : 0
        if hasPort { guard let p = r.readUInt16() else { return nil }; out.port = p }
        if hasHMAC { guard let h = r.readUInt64() else { return nil }; out.hmac = h }
        return out
    }

    func write(to w: inout ByteWriter) throws {
        let nibble: UInt8
        switch encoding {
        case .v0:
            guard hmac == nil else { throw WireError(.invalidCombination, "ADD_ADDR v0 carries no HMAC") }
            if case .v4 = address { nibble = 4 } else { nibble = 6 }
        case .v1: nibble = flags & 0xf
        }
        w.write(MPTCPSubtype.addAddress.rawValue << 4 | nibble)
        w.write(addressID)
        w.write(contentsOf: address.bytes)
        if let p = port { w.write(p) }
        if let h = hmac { w.write(h) }
    }
}

/// REMOVE_ADDR (RFC 8684 §3.4.2): one or more address ids.
public struct RemoveAddress: Hashable, Sendable {
    public var reserved: UInt8 = 0
    public var addressIDs: [UInt8]
    public init(addressIDs: [UInt8], reserved: UInt8 = 0) { self.addressIDs = addressIDs; self.reserved = reserved }
    public var encodedLength: Int { 3 + addressIDs.count }
}

/// MP_PRIO (RFC 8684 §3.3.8): B flag; v0 may carry an address id.
public struct MPPriority: Hashable, Sendable {
    /// The low nibble of byte 2 (B = 0x01, other bits reserved).
    public var flags: UInt8
    public var addressID: UInt8?
    public init(backup: Bool, addressID: UInt8? = nil) { flags = backup ? 1 : 0; self.addressID = addressID }
    public var backup: Bool { flags & 1 != 0 }
    public var encodedLength: Int { addressID == nil ? 3 : 4 }
}

/// MP_FAIL (RFC 8684 §3.7) and MP_FASTCLOSE (§3.5) share a shape: 12 reserved bits and 8 bytes.
public struct MPFail: Hashable, Sendable {
    public var reserved: UInt16 = 0   // 12 bits: low nibble of byte 2 and byte 3
    public var dataSequenceNumber: UInt64
    public init(dataSequenceNumber: UInt64) { self.dataSequenceNumber = dataSequenceNumber }
}

public struct MPFastClose: Hashable, Sendable {
    public var reserved: UInt16 = 0
    public var receiverKey: UInt64
    public init(receiverKey: UInt64) { self.receiverKey = receiverKey }
}

/// MP_TCPRST (RFC 8684 §3.6): flags U V W T and a reason code.
public struct MPTCPReset: Hashable, Sendable {
    public enum Reason: UInt8, Sendable {
        case unspecified = 0, mptcpSpecific = 1, lackOfResources = 2, administrativelyProhibited = 3
        case tooMuchOutstandingData = 4, unacceptablePerformance = 5, middleboxInterference = 6
    }
    public var flags: UInt8  // low nibble; T (transient) = 0x01
    public var reason: UInt8
    public init(transient: Bool = false, reason: UInt8) { flags = transient ? 1 : 0; self.reason = reason }
    public var isTransient: Bool { flags & 1 != 0 }
    public var knownReason: Reason? { Reason(rawValue: reason) }
}

/// MP_EXPERIMENTAL and unassigned subtypes, kept as their bytes after byte 2.
public struct MPTCPRawOption: Hashable, Sendable {
    public var subtype: MPTCPSubtype
    public var flags: UInt8   // the low nibble of byte 2
    public var data: [UInt8]
    public init(subtype: MPTCPSubtype, flags: UInt8 = 0, data: [UInt8]) {
        self.subtype = subtype
        self.flags = flags
        self.data = data
    }
}

/// An MPTCP option (TCP option kind 30).
public enum MPTCPOption: Hashable, Sendable {
    case capable(MPCapable)
    case join(MPJoin)
    case dss(DSS)
    case addAddress(AddAddress)
    case removeAddress(RemoveAddress)
    case priority(MPPriority)
    case fail(MPFail)
    case fastClose(MPFastClose)
    case reset(MPTCPReset)
    case other(MPTCPRawOption)

    public var subtype: MPTCPSubtype {
        switch self {
        case .capable: return .capable
        case .join: return .join
        case .dss: return .dss
        case .addAddress: return .addAddress
        case .removeAddress: return .removeAddress
        case .priority: return .priority
        case .fail: return .fail
        case .fastClose: return .fastClose
        case .reset: return .reset
        case .other(let o): return o.subtype
        }
    }

    public var encodedLength: Int {
        switch self {
        case .capable(let o): return o.encodedLength
        case .join(let o): return o.encodedLength
        case .dss(let o): return o.encodedLength
        case .addAddress(let o): return o.encodedLength
        case .removeAddress(let o): return o.encodedLength
        case .priority(let o): return o.encodedLength
        case .fail, .fastClose: return 12
        case .reset: return 4
        case .other(let o): return 3 + o.data.count
        }
    }

    /// Decodes the option from its bytes after kind and length; nil when the length does not fit the subtype.
    static func parse(length: UInt8, body: ByteReader) -> MPTCPOption? {
        var r = body
        guard length >= 3, let b2 = r.readUInt8() else { return nil }
        let subtype = MPTCPSubtype(b2 >> 4)
        switch subtype.rawValue {
        case 0: return MPCapable.parse(length: length, flagsByte: b2, &r).map(MPTCPOption.capable)
        case 1: return MPJoin.parse(length: length, flagsByte: b2, &r).map(MPTCPOption.join)
        case 2: return DSS.parse(length: length, flagsByte: b2, &r).map(MPTCPOption.dss)
        case 3: return AddAddress.parse(length: length, flagsByte: b2, &r).map(MPTCPOption.addAddress)
        case 4:
            guard length >= 4 else { return nil }
            return .removeAddress(RemoveAddress(addressIDs: r.readRemaining(), reserved: b2 & 0xf))
        case 5:
            var p = MPPriority(backup: false)
            p.flags = b2 & 0xf
            switch length {
            case 3: break
            case 4: p.addressID = r.readUInt8()
            default: return nil
            }
            return .priority(p)
        case 6, 7:
            guard length == 12, let b3 = r.readUInt8(), let v = r.readUInt64() else { return nil }
            let reserved = UInt16(b2 & 0xf) << 8 | UInt16(b3)
            if subtype == .fail {
                var f = MPFail(dataSequenceNumber: v); f.reserved = reserved; return .fail(f)
            }
            var f = MPFastClose(receiverKey: v); f.reserved = reserved; return .fastClose(f)
        case 8:
            guard length == 4, let reason = r.readUInt8() else { return nil }
            var rst = MPTCPReset(reason: reason)
            rst.flags = b2 & 0xf
            return .reset(rst)
        default:
            return .other(MPTCPRawOption(subtype: subtype, flags: b2 & 0xf, data: r.readRemaining()))
        }
    }

    /// Writes kind, length and body.
    func write(to w: inout ByteWriter) throws {
        w.write(TCPOptionKind.mptcp.rawValue)
        w.write(UInt8(truncatingIfNeeded: encodedLength))
        switch self {
        case .capable(let o): try o.write(to: &w)
        case .join(let o): try o.write(to: &w)
        case .dss(let o): try o.write(to: &w)
        case .addAddress(let o): try o.write(to: &w)
        case .removeAddress(let o):
            guard !o.addressIDs.isEmpty else { throw WireError(.invalidField, "REMOVE_ADDR needs at least one address id") }
            w.write(MPTCPSubtype.removeAddress.rawValue << 4 | (o.reserved & 0xf))
            w.write(contentsOf: o.addressIDs)
        case .priority(let o):
            w.write(MPTCPSubtype.priority.rawValue << 4 | (o.flags & 0xf))
            if let id = o.addressID { w.write(id) }
        case .fail(let o):
            w.write(MPTCPSubtype.fail.rawValue << 4 | UInt8(truncatingIfNeeded: o.reserved >> 8) & 0xf)
            w.write(UInt8(truncatingIfNeeded: o.reserved))
            w.write(o.dataSequenceNumber)
        case .fastClose(let o):
            w.write(MPTCPSubtype.fastClose.rawValue << 4 | UInt8(truncatingIfNeeded: o.reserved >> 8) & 0xf)
            w.write(UInt8(truncatingIfNeeded: o.reserved))
            w.write(o.receiverKey)
        case .reset(let o):
            w.write(MPTCPSubtype.reset.rawValue << 4 | (o.flags & 0xf))
            w.write(o.reason)
        case .other(let o):
            w.write(o.subtype.rawValue << 4 | (o.flags & 0xf))
            w.write(contentsOf: o.data)
        }
    }
}
