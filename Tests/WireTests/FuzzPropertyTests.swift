import XCTest
@testable import Wire

/// Parsers must be total: random and mutated packets never trap, and whatever parses completely
/// serializes back to the same bytes. (Longer runs: `make fuzz`, a libFuzzer target.)
final class FuzzPropertyTests: XCTestCase {
    /// The shared generator (`Wire.SplitMix64`) gives the published SplitMix64 outputs: scans'
    /// `--shard/--seed` splits and reproducible lab runs rely on it never changing.
    func testSplitMix64GivesThePublishedOutputs() {
        var reference = SplitMix64(seed: 1_234_567)
        XCTAssertEqual((0..<5).map { _ in reference.next() },
                       [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423,
                        4_593_380_528_125_082_431, 16_408_922_859_458_223_821])
        var zero = SplitMix64(seed: 0)
        XCTAssertEqual(zero.next(), 0xe220_a839_7b1d_cdaf)
    }

    func seeds() throws -> [[UInt8]] {
        var out: [[UInt8]] = [try Fixtures.syn4().serialized(finalize: true), try Fixtures.syn6().serialized(finalize: true)]
        for (_, o) in Fixtures.mptcpVariants {
            out.append(try Fixtures.syn4(options: [.mptcp(o)], payload: [1, 2, 3]).serialized(finalize: true))
            out.append(try Fixtures.syn6(options: [.mptcp(o)]).serialized(finalize: true))
        }
        let probe = out[0]
        let icmp = ICMPMessage.error(family: .v4, type: 11, code: 0, quoting: probe)
        out.append(try IPPacket(ip: .v4(IPv4Header(source: IPv4Address(198, 18, 1, 1), destination: Fixtures.client4, protocol: .icmp)),
                                transport: .icmp(icmp)).serialized(finalize: true))
        let icmp6 = ICMPMessage.error(family: .v6, type: 3, code: 0, quoting: out[1])
        out.append(try IPPacket(ip: .v6(IPv6Header(source: IPv6Address("2001:db8:1::1")!, destination: Fixtures.client6, nextHeader: .icmpv6)),
                                transport: .icmp(icmp6)).serialized(finalize: true))
        return out
    }

    /// Checks the round-trip property for one input; returns whether it parsed.
    @discardableResult
    func check(_ input: [UInt8], seed: UInt64) -> Bool {
        guard let p = try? IPPacket.parse(input) else { return false }
        if let out = try? p.serialized() {
            // What was present, up to the IP length field, comes back byte for byte.
            if out != Array(input.prefix(out.count)) || out.count > input.count {
                XCTFail("round trip differs (seed \(seed)): in \(input.hexString) out \(out.hexString)")
            }
        }
        // Decoded views must be usable without trapping either.
        if case .icmp(let m) = p.transport { _ = m.quote?.packet?.transport; _ = m.extensions?.objects.first?.mplsLabelStack }
        return true
    }

    func testHundredThousandRandomAndMutatedPackets() throws {
        let base = try seeds()
        let seed: UInt64 = UInt64(ProcessInfo.processInfo.environment["WIRE_FUZZ_SEED"] ?? "") ?? 0x5eed_2026
        var rng = SplitMix64(seed: seed)
        var parsed = 0
        let cases = 100_000
        for i in 0..<cases {
            var bytes: [UInt8]
            switch i % 4 {
            case 0:
                // Pure random bytes with an IP version nibble, so parsing gets past the first byte.
                let n = Int.random(in: 0...120, using: &rng)
                bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if !bytes.isEmpty { bytes[0] = (Bool.random(using: &rng) ? 0x45 : 0x60) | (bytes[0] & 0x0f) }
            default:
                // Mutations of valid packets: flip bytes (lengths and option bytes especially), cut, extend.
                bytes = base[Int.random(in: 0..<base.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...6, using: &rng) where !bytes.isEmpty {
                    let at = Int.random(in: 0..<bytes.count, using: &rng)
                    bytes[at] = UInt8.random(in: 0...255, using: &rng)
                }
                if Bool.random(using: &rng) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng))) }
                if Int.random(in: 0..<8, using: &rng) == 0 { bytes += (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
            }
            if check(bytes, seed: seed) { parsed += 1 }
        }
        // Most mutations of valid packets still parse; if none did, the generator is broken.
        XCTAssertGreaterThan(parsed, cases / 3)
    }

    func testOptionAreasOfEveryLengthAndByte() {
        // Exhaustive over short option areas: every kind/length pair in 2-byte and 3-byte areas.
        for a in 0...255 { for b in 0...255 {
            let area: [UInt8] = [UInt8(a), UInt8(b), 0x10]
            let parsed = TCPOptions.parse(ByteReader(area))
            var w = ByteWriter()
            XCTAssertNoThrow(try parsed.write(to: &w))
            XCTAssertEqual(w.bytes, area)
        } }
    }
}
