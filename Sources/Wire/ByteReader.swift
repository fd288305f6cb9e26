/// A bounds-checked, zero-copy cursor over a range of a byte array.
///
/// Every read returns nil when too few bytes remain, so a parser over arbitrary input is a chain
/// of `guard let` and never traps. Multi-byte integers are big-endian (network order).
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    /// Index of the next byte to read.
    public private(set) var index: Int
    /// One past the last readable byte.
    public let endIndex: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.index = 0
        self.endIndex = bytes.count
    }

    /// A reader over `bytes[range]`, clamped to the array.
    public init(_ bytes: [UInt8], range: Range<Int>) {
        self.bytes = bytes
        self.index = max(0, min(range.lowerBound, bytes.count))
        self.endIndex = max(index, min(range.upperBound, bytes.count))
    }

    public var remaining: Int { endIndex - index }
    public var isAtEnd: Bool { index >= endIndex }

    @inlinable
    public func peekUInt8(at offset: Int = 0) -> UInt8? {
        let i = index + offset
        guard offset >= 0, i < endIndex else { return nil }
        return bytes[i]
    }

    public mutating func readUInt8() -> UInt8? {
        guard index < endIndex else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    public mutating func readUInt16() -> UInt16? {
        guard remaining >= 2 else { return nil }
        defer { index += 2 }
        return UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])
    }

    public mutating func readUInt32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { index += 4 }
        return UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16
            | UInt32(bytes[index + 2]) << 8 | UInt32(bytes[index + 3])
    }

    public mutating func readUInt64() -> UInt64? {
        guard remaining >= 8, let hi = readUInt32(), let lo = readUInt32() else { return nil }
        return UInt64(hi) << 32 | UInt64(lo)
    }

    /// Copies the next `count` bytes out.
    public mutating func readBytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, remaining >= count else { return nil }
        defer { index += count }
        return Array(bytes[index..<(index + count)])
    }

    /// A reader over the next `count` bytes (no copy); advances past them.
    public mutating func readSlice(_ count: Int) -> ByteReader? {
        guard count >= 0, remaining >= count else { return nil }
        defer { index += count }
        return ByteReader(bytes, range: index..<(index + count))
    }

    /// Copies everything that remains.
    public mutating func readRemaining() -> [UInt8] {
        defer { index = endIndex }
        return Array(bytes[index..<endIndex])
    }

    public mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, remaining >= count else { return false }
        index += count
        return true
    }

    /// The readable range, in indices of `bytes`.
    public var range: Range<Int> { index..<endIndex }
}

/// Appends big-endian fields to a byte array.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func write(_ v: UInt8) { bytes.append(v) }

    public mutating func write(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    public mutating func write(_ v: UInt32) {
        write(UInt16(truncatingIfNeeded: v >> 16))
        write(UInt16(truncatingIfNeeded: v))
    }

    public mutating func write(_ v: UInt64) {
        write(UInt32(truncatingIfNeeded: v >> 32))
        write(UInt32(truncatingIfNeeded: v))
    }

    public mutating func write<C: Collection>(contentsOf c: C) where C.Element == UInt8 {
        bytes.append(contentsOf: c)
    }

    public mutating func write(zeros count: Int) {
        if count > 0 { bytes.append(contentsOf: repeatElement(0, count: count)) }
    }

    /// Overwrites a 16-bit field already written (lengths and checksums known only at the end).
    public mutating func patch(_ v: UInt16, at offset: Int) {
        bytes[offset] = UInt8(truncatingIfNeeded: v >> 8)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: v)
    }

    public mutating func patch(_ v: UInt8, at offset: Int) { bytes[offset] = v }
}

extension Array where Element == UInt8 {
    /// Big-endian 16-bit value at `offset`, or nil past the end.
    @inlinable
    public func uint16(at offset: Int) -> UInt16? {
        guard offset >= 0, offset + 1 < count else { return nil }
        return UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    @inlinable
    public func uint32(at offset: Int) -> UInt32? {
        guard offset >= 0, offset + 3 < count else { return nil }
        return UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16
            | UInt32(self[offset + 2]) << 8 | UInt32(self[offset + 3])
    }

    /// Writes a big-endian 16-bit value at `offset` (must be in bounds).
    public mutating func setUInt16(_ v: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: v)
    }

    public mutating func setUInt32(_ v: UInt32, at offset: Int) {
        setUInt16(UInt16(truncatingIfNeeded: v >> 16), at: offset)
        setUInt16(UInt16(truncatingIfNeeded: v), at: offset + 2)
    }

    /// Lower-case hex, for messages and JSON.
    public var hexString: String {
        let digits: [UInt8] = Swift.Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(count * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses hex ("0a1b", optional "0x", spaces and colons ignored); nil on a bad digit or odd length.
    public init?(hexString: String) {
        var digits = Substring(hexString)
        if digits.hasPrefix("0x") || digits.hasPrefix("0X") { digits = digits.dropFirst(2) }
        var out: [UInt8] = []
        var high: UInt8?
        for c in digits.utf8 {
            if c == UInt8(ascii: " ") || c == UInt8(ascii: ":") { continue }
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        guard high == nil else { return nil }
        self = out
    }
}
