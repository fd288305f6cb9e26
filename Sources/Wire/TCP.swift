/// TCP flags: the 12 bits after the data offset (3 reserved bits, AE/NS, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN).
public struct TCPFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue & 0x0fff }

    public static let fin = TCPFlags(rawValue: 0x001)
    public static let syn = TCPFlags(rawValue: 0x002)
    public static let rst = TCPFlags(rawValue: 0x004)
    public static let psh = TCPFlags(rawValue: 0x008)
    public static let ack = TCPFlags(rawValue: 0x010)
    public static let urg = TCPFlags(rawValue: 0x020)
    public static let ece = TCPFlags(rawValue: 0x040)
    public static let cwr = TCPFlags(rawValue: 0x080)
    /// AE (accurate ECN; formerly NS).
    public static let ae = TCPFlags(rawValue: 0x100)

    public var description: String {
        let names: [(TCPFlags, String)] = [(.syn, "S"), (.ack, "A"), (.fin, "F"), (.rst, "R"), (.psh, "P"),
                                           (.urg, "U"), (.ece, "E"), (.cwr, "C"), (.ae, "AE")]
        var s = names.filter { contains($0.0) }.map(\.1).joined()
        if rawValue & 0xe00 != 0 { s += "+rsv\(rawValue >> 9)" }
        return s.isEmpty ? "." : s
    }
}

/// A TCP header (RFC 9293) with its options.
public struct TCPHeader: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequenceNumber: UInt32 = 0
    public var acknowledgmentNumber: UInt32 = 0
    public var flags: TCPFlags = .syn
    public var window: UInt16 = 65535
    public var checksum: UInt16 = 0
    public var urgentPointer: UInt16 = 0
    public var options: TCPOptions = TCPOptions()

    /// The TCP option space: 40 bytes (data offset 15).
    public static let maximumOptionSpace = 40

    public init(sourcePort: UInt16, destinationPort: UInt16, sequenceNumber: UInt32 = 0,
                acknowledgmentNumber: UInt32 = 0, flags: TCPFlags = .syn, window: UInt16 = 65535,
                options: [TCPOption] = []) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.sequenceNumber = sequenceNumber
        self.acknowledgmentNumber = acknowledgmentNumber
        self.flags = flags
        self.window = window
        self.options = TCPOptions(options)
    }

    /// Header length in bytes: 20 plus options padded to a multiple of 4.
    public var headerLength: Int { 20 + (options.encodedLength + 3) / 4 * 4 }

    /// Parses a complete header; the reader ends at the payload.
    public static func parse(_ r: inout ByteReader) throws -> TCPHeader {
        let have = r.remaining
        guard have >= 20 else { throw WireError.truncated("TCP header", need: 20, have: have) }
        var h = TCPHeader(sourcePort: r.readUInt16()!, destinationPort: r.readUInt16()!)
        h.sequenceNumber = r.readUInt32()!
        h.acknowledgmentNumber = r.readUInt32()!
        let offFlags = r.readUInt16()!
        h.flags = TCPFlags(rawValue: offFlags)
        h.window = r.readUInt16()!
        h.checksum = r.readUInt16()!
        h.urgentPointer = r.readUInt16()!
        let dataOffset = Int(offFlags >> 12)
        guard dataOffset >= 5 else {
            throw WireError(.invalidField, "TCP header: data offset \(dataOffset) is below the minimum of 5")
        }
        guard let optionArea = r.readSlice(dataOffset * 4 - 20) else {
            throw WireError.truncated("TCP header with options (data offset \(dataOffset))", need: dataOffset * 4, have: have)
        }
        h.options = TCPOptions.parse(optionArea)
        return h
    }

    /// Writes the header. Options beyond the 40-byte space are an error that says by how much;
    /// options not ending on a 4-byte boundary are padded with zero bytes (EOL).
    public func write(to w: inout ByteWriter) throws {
        let optLen = options.encodedLength
        guard optLen <= Self.maximumOptionSpace else {
            throw WireError(.optionSpaceExceeded,
                            "TCP options need \(optLen) bytes, \(optLen - Self.maximumOptionSpace) more than the 40-byte option space")
        }
        let padded = (optLen + 3) / 4 * 4
        w.write(sourcePort)
        w.write(destinationPort)
        w.write(sequenceNumber)
        w.write(acknowledgmentNumber)
        w.write(UInt16((20 + padded) / 4) << 12 | flags.rawValue)
        w.write(window)
        w.write(checksum)
        w.write(urgentPointer)
        try options.write(to: &w)
        w.write(zeros: padded - optLen)
    }
}

/// What a (possibly truncated) quote shows of a TCP header: RFC 792 routers quote only 8 bytes
/// (ports and sequence number); every field past what was quoted is nil.
public struct PartialTCPHeader: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequenceNumber: UInt32?
    public var acknowledgmentNumber: UInt32?
    public var dataOffset: UInt8?
    public var flags: TCPFlags?
    public var window: UInt16?
    public var checksum: UInt16?
    public var urgentPointer: UInt16?
    /// Options decoded from the quoted part of the option area (the last may be malformed by the cut).
    public var options: TCPOptions?
    /// How many bytes of the TCP segment the quote holds.
    public var quotedBytes: Int

    /// Parses what is there; needs at least the 4 bytes of ports.
    public static func parse(_ r: ByteReader) -> PartialTCPHeader? {
        var r = r
        let have = r.remaining
        guard let sp = r.readUInt16(), let dp = r.readUInt16() else { return nil }
        var h = PartialTCPHeader(sourcePort: sp, destinationPort: dp, quotedBytes: have)
        h.sequenceNumber = r.readUInt32()
        h.acknowledgmentNumber = r.readUInt32()
        if let of = r.readUInt16() {
            h.dataOffset = UInt8(of >> 12)
            h.flags = TCPFlags(rawValue: of)
        }
        h.window = r.readUInt16()
        h.checksum = r.readUInt16()
        h.urgentPointer = r.readUInt16()
        if let off = h.dataOffset, off > 5, !r.isAtEnd {
            let declared = Int(off) * 4 - 20
            h.options = TCPOptions.parse(ByteReader(r.bytes, range: r.index..<(r.index + min(declared, r.remaining))))
        }
        return h
    }

    /// The full header, when the quote holds all of it.
    public init(_ h: TCPHeader, quotedBytes: Int) {
        sourcePort = h.sourcePort
        destinationPort = h.destinationPort
        sequenceNumber = h.sequenceNumber
        acknowledgmentNumber = h.acknowledgmentNumber
        dataOffset = UInt8(h.headerLength / 4)
        flags = h.flags
        window = h.window
        checksum = h.checksum
        urgentPointer = h.urgentPointer
        options = h.options
        self.quotedBytes = quotedBytes
    }

    init(sourcePort: UInt16, destinationPort: UInt16, quotedBytes: Int) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.quotedBytes = quotedBytes
    }
}

/// A TCP segment: header and payload.
public struct TCPSegment: Hashable, Sendable {
    public var header: TCPHeader
    public var payload: [UInt8]
    public init(header: TCPHeader, payload: [UInt8] = []) { self.header = header; self.payload = payload }
}

/// A UDP header and payload.
public struct UDPDatagram: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var length: UInt16
    public var checksum: UInt16
    public var payload: [UInt8]

    public init(sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8] = []) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = UInt16(truncatingIfNeeded: 8 + payload.count)
        self.checksum = 0
        self.payload = payload
    }

    /// Parses a header and what remains as payload (a quote may cut it short).
    public static func parse(_ r: inout ByteReader) throws -> UDPDatagram {
        guard r.remaining >= 8 else { throw WireError.truncated("UDP header", need: 8, have: r.remaining) }
        var u = UDPDatagram(sourcePort: r.readUInt16()!, destinationPort: r.readUInt16()!)
        u.length = r.readUInt16()!
        u.checksum = r.readUInt16()!
        u.payload = r.readRemaining()
        return u
    }

    public func write(to w: inout ByteWriter) {
        w.write(sourcePort)
        w.write(destinationPort)
        w.write(length)
        w.write(checksum)
        w.write(contentsOf: payload)
    }
}
