/// The Internet checksum (RFC 1071), accumulated over pieces.
///
/// Pieces are summed as 16-bit big-endian words; a piece of odd length is padded with a zero
/// byte, so every piece but the last must have even length (true of every header we sum).
public struct InternetChecksum: Sendable {
    @usableFromInline var sum: UInt64 = 0

    public init() {}

    @inlinable
    public mutating func add(_ word: UInt16) { sum &+= UInt64(word) }

    public mutating func add(_ v: UInt32) {
        sum &+= UInt64(v >> 16) &+ UInt64(v & 0xffff)
    }

    public mutating func add(_ v: UInt64) {
        add(UInt32(truncatingIfNeeded: v >> 32))
        add(UInt32(truncatingIfNeeded: v))
    }

    public mutating func add(_ bytes: [UInt8]) { add(bytes, range: 0..<bytes.count) }

    public mutating func add(_ bytes: [UInt8], range: Range<Int>) {
        let lo = max(0, range.lowerBound), hi = min(bytes.count, range.upperBound)
        guard lo < hi else { return }
        bytes.withUnsafeBufferPointer { p in
            var i = lo
            var s: UInt64 = 0
            while i + 1 < hi {
                s &+= UInt64(p[i]) << 8 | UInt64(p[i + 1])
                i += 2
            }
            if i < hi { s &+= UInt64(p[i]) << 8 }
            sum &+= s
        }
    }

    /// The one's-complement of the folded sum: the value to put in the checksum field.
    public var value: UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xffff) &+ (s >> 16) }
        return ~UInt16(truncatingIfNeeded: s)
    }
}

public enum Checksum {
    /// Checksum of `bytes[range]`.
    public static func internet(_ bytes: [UInt8], range: Range<Int>? = nil) -> UInt16 {
        var c = InternetChecksum()
        c.add(bytes, range: range ?? 0..<bytes.count)
        return c.value
    }

    /// A pseudo-header sum for TCP, UDP or ICMPv6 (RFC 793 / RFC 8200 §8.1).
    public static func pseudoHeader(source: IPAddress, destination: IPAddress,
                                    protocol proto: UInt8, length: Int) -> InternetChecksum {
        var c = InternetChecksum()
        switch (source, destination) {
        case let (.v4(s), .v4(d)):
            c.add(s.rawValue)
            c.add(d.rawValue)
            c.add(UInt16(proto))
            c.add(UInt16(truncatingIfNeeded: length))
        case let (.v6(s), .v6(d)):
            c.add(s.high); c.add(s.low)
            c.add(d.high); c.add(d.low)
            c.add(UInt32(truncatingIfNeeded: length))
            c.add(UInt32(proto))
        default:
            // Mixed families cannot occur in one packet; sum the bytes so the result is still defined.
            c.add(source.bytes)
            c.add(destination.bytes)
            c.add(UInt32(truncatingIfNeeded: length))
            c.add(UInt32(proto))
        }
        return c
    }

    /// TCP/UDP/ICMPv6 checksum of a transport segment whose checksum field holds `checksumFieldOffset`
    /// bytes into `segment[range]`; the field is treated as zero.
    public static func transport(source: IPAddress, destination: IPAddress, protocol proto: UInt8,
                                 segment: [UInt8], range: Range<Int>? = nil,
                                 checksumFieldOffset: Int) -> UInt16 {
        let r = range ?? 0..<segment.count
        var c = pseudoHeader(source: source, destination: destination, protocol: proto, length: r.count)
        c.add(segment, range: r)
        // Remove whatever the field holds: summing it and then its value again is the same as zero.
        let field = r.lowerBound + checksumFieldOffset
        if let v = segment.uint16(at: field), field + 2 <= r.upperBound {
            c.add(~v)
        }
        let out = c.value
        return out
    }

    /// RFC 1624 (eqn. 3): the new checksum after a 16-bit word changes from `old` to `new`.
    public static func incrementalUpdate(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        var s = UInt32(~checksum) + UInt32(~old) + UInt32(new)
        while s >> 16 != 0 { s = (s & 0xffff) + (s >> 16) }
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// RFC 1624 for a 32-bit field (two words).
    public static func incrementalUpdate(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        let c = incrementalUpdate(checksum, old: UInt16(truncatingIfNeeded: old >> 16),
                                  new: UInt16(truncatingIfNeeded: new >> 16))
        return incrementalUpdate(c, old: UInt16(truncatingIfNeeded: old), new: UInt16(truncatingIfNeeded: new))
    }

    /// MPTCP DSS checksum (RFC 8684 §3.3.1): pseudo-header of DSN (64 bits), subflow sequence
    /// number, data-level length and a zero checksum word, followed by the mapped payload.
    public static func dss(dataSequenceNumber dsn: UInt64, subflowSequenceNumber ssn: UInt32,
                           dataLevelLength: UInt16, payload: [UInt8], range: Range<Int>? = nil) -> UInt16 {
        var c = InternetChecksum()
        c.add(dsn)
        c.add(ssn)
        c.add(dataLevelLength)
        c.add(UInt16(0))
        c.add(payload, range: range ?? 0..<payload.count)
        return c.value
    }
}
