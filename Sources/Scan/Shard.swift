import Wire

/// Splits a target index space across machines, the zmap way.
///
/// The indices 0..<M of a list's targets (in input order; a CIDR line counts every address it
/// expands to, a name counts once) are permuted by walking the multiplicative group of Z_p,
/// where p is the smallest prime above M: x_0 = s, x_{k+1} = x_k · g mod p, with the generator
/// g and the start s derived from the seed (SplitMix64). The walk visits every value 1..p-1 exactly
/// once; value x stands for index x-1 and values above M are skipped. Shard I of N (1-based)
/// takes the walk positions k with k ≡ I-1 (mod N), so the N shards partition the list exactly
/// for any seed; every vantage point must use the same seed and the same list.
public struct Shard: Hashable, Sendable, CustomStringConvertible {
    public var index: Int
    public var count: Int

    public init?(index: Int, count: Int) {
        guard count >= 1, (1...count).contains(index) else { return nil }
        self.index = index
        self.count = count
    }

    /// Parses `I/N`.
    public init?(_ text: String) {
        let p = text.split(separator: "/", omittingEmptySubsequences: false)
        guard p.count == 2, let i = Int(p[0]), let n = Int(p[1]) else { return nil }
        self.init(index: i, count: n)
    }

    public var description: String { "\(index)/\(count)" }

    public static let all = Shard(index: 1, count: 1)!
}

/// Which indices of 0..<size belong to one shard: a bit set filled by one walk of the cycle
/// (size/8 bytes; 125 kB for a million targets).
public struct ShardMembership: Sendable {
    public let size: UInt64
    public let shard: Shard
    public let prime: UInt64
    public let generator: UInt64
    public let start: UInt64
    private var bits: [UInt64]

    public init(size: UInt64, shard: Shard, seed: UInt64) {
        self.size = size
        self.shard = shard
        let p = Self.prime(above: size)
        prime = p
        var rng = SplitMix64(seed: seed)
        generator = Self.primitiveRoot(p, startingAt: p > 3 ? 2 + rng.next() % (p - 3) : 1)
        start = p > 2 ? 1 + rng.next() % (p - 1) : 1
        bits = [UInt64](repeating: 0, count: Int((size + 63) / 64))
        if shard.count == 1 {
            for i in 0..<bits.count { bits[i] = .max }
            return
        }
        var x = start
        let n = UInt64(shard.count), mine = UInt64(shard.index - 1)
        var k: UInt64 = 0
        while k < p - 1 {
            if x <= size, k % n == mine {
                let i = x - 1
                bits[Int(i / 64)] |= 1 << (i % 64)
            }
            x = Self.mulmod(x, generator, p)
            k += 1
        }
    }

    public func contains(_ index: UInt64) -> Bool {
        guard index < size else { return false }
        return bits[Int(index / 64)] & (1 << (index % 64)) != 0
    }

    public var memberCount: Int { bits.reduce(0) { $0 + $1.nonzeroBitCount } - (shard.count == 1 ? bits.count * 64 - Int(size) : 0) }

    static func mulmod(_ a: UInt64, _ b: UInt64, _ m: UInt64) -> UInt64 {
        let (hi, lo) = a.multipliedFullWidth(by: b)
        return m.dividingFullWidth((hi % m, lo)).remainder
    }

    static func powmod(_ base: UInt64, _ exp: UInt64, _ m: UInt64) -> UInt64 {
        var result: UInt64 = 1 % m, b = base % m, e = exp
        while e > 0 {
            if e & 1 == 1 { result = mulmod(result, b, m) }
            b = mulmod(b, b, m)
            e >>= 1
        }
        return result
    }

    static func isPrime(_ n: UInt64) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d: UInt64 = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }

    /// The smallest prime strictly above `n` (at least 2).
    static func prime(above n: UInt64) -> UInt64 {
        var c = n + 1
        while !isPrime(c) { c += 1 }
        return c
    }

    static func primeFactors(_ n: UInt64) -> [UInt64] {
        var out: [UInt64] = [], m = n, d: UInt64 = 2
        while d * d <= m {
            if m % d == 0 { out.append(d); while m % d == 0 { m /= d } }
            d += 1
        }
        if m > 1 { out.append(m) }
        return out
    }

    /// The first generator of Z_p* at or after `candidate` (wrapping), so the seed picks it.
    static func primitiveRoot(_ p: UInt64, startingAt candidate: UInt64) -> UInt64 {
        if p <= 3 { return p == 3 ? 2 : 1 }
        let factors = primeFactors(p - 1)
        var g = candidate
        while true {
            if g < 2 || g >= p { g = 2 }
            if factors.allSatisfy({ powmod(g, (p - 1) / $0, p) != 1 }) { return g }
            g += 1
        }
    }
}
