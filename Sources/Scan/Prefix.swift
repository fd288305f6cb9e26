import Wire

/// An address block (`198.18.0.0/24`, `2001:db8::/120`). Host bits given in the text are
/// cleared, as zmap does, so `198.18.0.7/24` means `198.18.0.0/24`.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let network: IPAddress
    public let length: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(String(parts[0])),
              parts[1].count <= 3, parts[1].allSatisfy(\.isASCIIDigit), let length = Int(parts[1]) else { return nil }
        self.init(address: address, length: length)
    }

    public init?(address: IPAddress, length: Int) {
        switch address {
        case .v4(let a):
            guard (0...32).contains(length) else { return nil }
            network = .v4(IPv4Address(rawValue: a.rawValue & Self.mask32(length)))
        case .v6(let a):
            guard (0...128).contains(length) else { return nil }
            let (h, l) = Self.mask128(length)
            network = .v6(IPv6Address(high: a.high & h, low: a.low & l))
        }
        self.length = length
    }

    public var description: String { "\(network)/\(length)" }

    /// How many addresses the block holds, saturating at `UInt64.max`.
    public var addressCount: UInt64 {
        let bits = (network.isV4 ? 32 : 128) - length
        return bits >= 64 ? .max : 1 << UInt64(bits)
    }

    public func contains(_ a: IPAddress) -> Bool {
        switch (network, a) {
        case let (.v4(n), .v4(x)): return x.rawValue & Self.mask32(length) == n.rawValue
        case let (.v6(n), .v6(x)):
            let (h, l) = Self.mask128(length)
            return x.high & h == n.high && x.low & l == n.low
        default: return false
        }
    }

    /// The `i`-th address of the block (`i` < `addressCount`).
    public func address(at i: UInt64) -> IPAddress {
        switch network {
        case .v4(let n): return .v4(IPv4Address(rawValue: n.rawValue | UInt32(truncatingIfNeeded: i)))
        case .v6(let n): return .v6(IPv6Address(high: n.high, low: n.low | i))
        }
    }

    /// The first and last address as ordered keys (for range tables).
    var range: (AddressKey, AddressKey) {
        switch network {
        case .v4(let n):
            let last = n.rawValue | ~Self.mask32(length)
            return (AddressKey(.v4(n)), AddressKey(.v4(IPv4Address(rawValue: last))))
        case .v6(let n):
            let (h, l) = Self.mask128(length)
            return (AddressKey(.v6(n)), AddressKey(.v6(IPv6Address(high: n.high | ~h, low: n.low | ~l))))
        }
    }

    static func mask32(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << UInt32(32 - length) }

    static func mask128(_ length: Int) -> (UInt64, UInt64) {
        if length <= 64 { return (length == 0 ? 0 : UInt64.max << UInt64(64 - length), 0) }
        return (UInt64.max, length == 128 ? UInt64.max : UInt64.max << UInt64(128 - length))
    }
}

/// An address as a totally ordered key: family first, then the bits.
struct AddressKey: Comparable, Hashable {
    var family: UInt8
    var high: UInt64
    var low: UInt64

    init(_ a: IPAddress) {
        switch a {
        case .v4(let v): family = 4; high = 0; low = UInt64(v.rawValue)
        case .v6(let v): family = 6; high = v.high; low = v.low
        }
    }

    static func < (a: Self, b: Self) -> Bool { (a.family, a.high, a.low) < (b.family, b.high, b.low) }

    /// The next key within the family, or nil at the family's last address.
    var successor: AddressKey? {
        var k = self
        if family == 4 { guard low < UInt64(UInt32.max) else { return nil }; k.low += 1; return k }
        if low == .max { guard high < .max else { return nil }; k.high += 1; k.low = 0; return k }
        k.low += 1
        return k
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
