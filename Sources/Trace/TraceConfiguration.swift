import Wire
import Probe

/// What to trace and how. Values only; the CLI fills it from flags.
public struct TraceConfiguration: Sendable {
    public var target: IPAddress
    public var source: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var probe: ProbeExpression
    public var minTTL: Int = 1
    public var maxTTL: Int = 30
    /// Seconds to wait for a probe's reply (in parallel mode: for the whole round).
    public var timeout: Double = 1.0
    /// Extra tries for probes that got no reply.
    public var retries: Int = 2
    /// Packets per second (all probes, retries included).
    public var rate: Double = 100
    /// One TTL at a time, like tracebox; otherwise every TTL at once.
    public var sequential: Bool = false
    /// Confirm a TCP answer with an ICMP echo at the same TTL (finds terminating proxies).
    public var checkProxy: Bool = true
    /// Re-run without the option that may be blackholed when the trace stalls.
    public var checkBlackhole: Bool = true
    /// Base values from which each probe's identity is derived (random in the CLI).
    public var sequenceBase: UInt32 = 0x4d50_0000
    public var identificationBase: UInt16 = 0x4d00
    /// The TSval put in timestamps options left at 0 in the probe.
    public var timestampValue: UInt32 = 0x4d50_5442

    public init(target: IPAddress, source: IPAddress, sourcePort: UInt16, destinationPort: UInt16,
                probe: ProbeExpression = .default) {
        self.target = target
        self.source = source
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.probe = probe
    }

    /// Checks ranges before anything is sent.
    public func validate() throws {
        guard (1...255).contains(minTTL), (1...255).contains(maxTTL), minTTL <= maxTTL else {
            throw TraceError.invalidConfiguration("TTL range \(minTTL)...\(maxTTL) must lie within 1...255 with min ≤ max")
        }
        guard timeout > 0, timeout <= 60 else { throw TraceError.invalidConfiguration("timeout \(timeout) s must be in (0, 60]") }
        guard (0...10).contains(retries) else { throw TraceError.invalidConfiguration("retries \(retries) must be 0 to 10") }
        guard rate > 0, rate <= 1_000_000 else { throw TraceError.invalidConfiguration("rate \(rate) must be in (0, 1000000] packets/s") }
        switch (source, target) {
        case (.v4, .v4), (.v6, .v6): break
        default: throw TraceError.invalidConfiguration("source \(source) and target \(target) are of different address families")
        }
    }
}

public enum TraceError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidConfiguration(String)
    case probe(String)
    case network(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let m): return m
        case .probe(let m): return "probe: \(m)"
        case .network(let m): return "network: \(m)"
        }
    }
}

/// How each probe is told apart from its siblings without changing what is tested.
///
/// The 5-tuple and every option stay identical across TTLs (so ECMP keeps one path and the
/// options under test are the same); the TTL and try number go into the TCP sequence number
/// and, for IPv4, the IP identification. Both survive an RFC 792 quote (IP header + 8 bytes);
/// the destination's answer acknowledges the sequence number. When a box rewrites sequence
/// numbers, the IP ID still identifies IPv4 probes, and the TCP window (0xFA00 + TTL) identifies
/// the TTL in any quote that reaches it (every ICMPv6 quote does: they are up to 1280 bytes).
public struct ProbeIdentity: Hashable, Sendable, Comparable {
    public var ttl: Int
    public var attempt: Int

    public init(ttl: Int, attempt: Int) {
        self.ttl = ttl
        self.attempt = attempt
    }

    var code: UInt32 { UInt32(attempt & 0xff) << 8 | UInt32(ttl & 0xff) }

    static func decode(_ code: UInt32) -> ProbeIdentity? {
        guard code < 1 << 16, code & 0xff != 0 else { return nil }
        return ProbeIdentity(ttl: Int(code & 0xff), attempt: Int(code >> 8))
    }

    public static func < (a: Self, b: Self) -> Bool { (a.ttl, a.attempt) < (b.ttl, b.attempt) }
}
