/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fully specified generator, so the same seed
/// gives the same sequence on every machine and in every build. It is the one seeded generator
/// of the project: scans derive their `--shard/--seed` split and per-target sequence numbers from
/// it (a contract between vantage points, so its output must never change), the lab element its
/// loss/reordering decisions, tests their reproducible random inputs. Not for secrets.
public struct SplitMix64: RandomNumberGenerator, Hashable, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
