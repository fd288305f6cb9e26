import XCTest
import Foundation
import Wire
@testable import Scan

final class TargetLineTests: XCTestCase {
    func entry(_ line: String) -> TargetEntry? {
        guard case .success(let e) = TargetLineParser.parse(line) else { return nil }
        return e
    }

    func error(_ line: String) -> String? {
        guard case .failure(let m) = TargetLineParser.parse(line) else { return nil }
        return m.message
    }

    func testEveryFormIsRead() {
        XCTAssertEqual(entry("198.18.0.1"), TargetEntry(host: .address(IPAddress("198.18.0.1")!)))
        XCTAssertEqual(entry("198.18.0.1:8080 web"), TargetEntry(host: .address(IPAddress("198.18.0.1")!), port: 8080, tag: "web"))
        XCTAssertEqual(entry("  Example.COM\t# a comment"), TargetEntry(host: .name("example.com")))
        XCTAssertEqual(entry("example.com:443 fe-1"), TargetEntry(host: .name("example.com"), port: 443, tag: "fe-1"))
        XCTAssertEqual(entry("2001:db8::1"), TargetEntry(host: .address(IPAddress("2001:db8::1")!)))
        XCTAssertEqual(entry("[2001:db8::1]:443"), TargetEntry(host: .address(IPAddress("2001:db8::1")!), port: 443))
        XCTAssertEqual(entry("198.18.0.7/30:81 lab"), TargetEntry(host: .prefix(IPPrefix("198.18.0.4/30")!), port: 81, tag: "lab"))
        XCTAssertEqual(entry("2001:db8::/126"), TargetEntry(host: .prefix(IPPrefix("2001:db8::/126")!)))
        XCTAssertEqual(entry("[2001:db8::/126]:80")?.port, 80)
        XCTAssertEqual(entry("198.18.0.4/30")?.count, 4)
        for blank in ["# only a comment", "   ", ""] {
            guard case .success(nil) = TargetLineParser.parse(blank) else { return XCTFail("'\(blank)' is not blank") }
        }
    }

    func testBadLinesSayWhy() {
        XCTAssertEqual(error("198.18.0.1:0"), "port '0' must be a number from 1 to 65535")
        XCTAssertNotNil(error("198.18.0.1:65536"))
        XCTAssertEqual(error("198.18.0.300"), "'198.18.0.300' is not a valid IPv4 address")
        XCTAssertNotNil(error("a b c"))
        XCTAssertNotNil(error("[2001:db8::1"))
        XCTAssertNotNil(error("[198.18.0.1]:80"))
        XCTAssertNotNil(error("bad_-.example..com"))
        XCTAssertNotNil(error("-lead.example"))
        XCTAssertNotNil(error("198.18.0.0/33"))
        XCTAssertNotNil(error("host tag\u{7}bell"))
        XCTAssertNotNil(error("2001:db8::zz"))
        XCTAssertNotNil(error(":80"))
    }

    /// The parser is total: arbitrary bytes and near-miss mutations of valid lines give an entry,
    /// nothing or a message, never a trap; and a valid entry re-parses from its canonical text.
    func testFuzzedLinesNeverTrap() {
        var rng = SplitMix64(seed: 42)
        let seeds = ["198.18.0.1:80 tag", "[2001:db8::1]:443", "example.com", "198.18.0.0/24", "2001:db8::/120", "# c"]
        let alphabet = Array("0123456789abcdef:./[]# \t-_xyz\u{0}\u{7f}é😀")
        var parsed = 0
        for i in 0..<20_000 {
            var chars: [Character]
            if i % 2 == 0 {
                chars = (0..<Int(rng.next() % 40)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            } else {
                chars = Array(seeds[Int(rng.next() % UInt64(seeds.count))])
                for _ in 0..<(1 + rng.next() % 3) where !chars.isEmpty {
                    let at = Int(rng.next() % UInt64(chars.count))
                    switch rng.next() % 3 {
                    case 0: chars.remove(at: at)
                    case 1: chars.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                    default: chars[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                    }
                }
            }
            let line = String(chars)
            switch TargetLineParser.parse(line) {
            case .success(let e?):
                parsed += 1
                if case .address(let a) = e.host {
                    let text = a.isV4 ? a.description : "[\(a)]"
                    let again = TargetLineParser.parse(text + (e.port.map { ":\($0)" } ?? ""))
                    XCTAssertEqual(try? again.get()?.host, e.host, "\(line)")
                }
            case .success(nil): break
            case .failure(let m): XCTAssertFalse(m.message.isEmpty)
            }
        }
        XCTAssertGreaterThan(parsed, 100)
    }
}

final class PrefixAndBlocklistTests: XCTestCase {
    func testPrefixArithmetic() {
        let p = IPPrefix("198.18.1.77/24")!
        XCTAssertEqual(p.description, "198.18.1.0/24")
        XCTAssertEqual(p.addressCount, 256)
        XCTAssertEqual(p.address(at: 255), IPAddress("198.18.1.255"))
        XCTAssertTrue(p.contains(IPAddress("198.18.1.9")!))
        XCTAssertFalse(p.contains(IPAddress("198.18.2.0")!))
        let q = IPPrefix("2001:db8:a::ff/120")!
        XCTAssertEqual(q.description, "2001:db8:a::/120")
        XCTAssertEqual(q.address(at: 5), IPAddress("2001:db8:a::5"))
        XCTAssertEqual(IPPrefix("2001:db8::/64")!.addressCount, UInt64.max)
        XCTAssertEqual(IPPrefix("0.0.0.0/0")!.addressCount, 1 << 32)
        XCTAssertNil(IPPrefix("198.18.0.0/-1"))
        XCTAssertNil(IPPrefix("2001:db8::/129"))
    }

    func testBuiltInRefusalsAndFilePrefixes() throws {
        let b = try Blocklist(text: "198.18.4.0/22 # lab\n\n2001:db8:bad::/48\n198.18.9.9\n198.18.5.0/24\n", origin: "bl.txt")
        XCTAssertEqual(b.reason(IPAddress("198.18.5.5")!), "blocklist bl.txt:1")
        XCTAssertEqual(b.reason(IPAddress("198.18.9.9")!), "blocklist bl.txt:4")
        XCTAssertNil(b.reason(IPAddress("198.18.9.10")!))
        XCTAssertNil(b.reason(IPAddress("198.18.8.0")!))
        XCTAssertNotNil(b.reason(IPAddress("198.18.7.255")!))
        XCTAssertNotNil(b.reason(IPAddress("2001:db8:bad:ffff::1")!))
        XCTAssertNil(b.reason(IPAddress("2001:db8:bae::1")!))
        XCTAssertEqual(b.reason(IPAddress("224.0.0.1")!), "multicast")
        XCTAssertEqual(b.reason(IPAddress("255.255.255.255")!), "reserved or broadcast")
        XCTAssertEqual(b.reason(IPAddress("0.0.0.0")!), "unspecified (this network)")
        XCTAssertEqual(b.reason(IPAddress("::")!), "unspecified")
        XCTAssertEqual(b.reason(IPAddress("ff02::1")!), "multicast")
        XCTAssertNil(b.reason(IPAddress("::1")!))
        XCTAssertThrowsError(try Blocklist(text: "198.18.0.0/24\nnot-a-prefix\n", origin: "x")) { e in
            XCTAssertEqual((e as? ScanInputError)?.location, "x:2")
        }
    }

    /// The range table agrees with a plain scan of the prefixes on random addresses.
    func testBlocklistMatchesBruteForce() {
        var rng = SplitMix64(seed: 7)
        var prefixes: [IPPrefix] = []
        for _ in 0..<200 {
            let a = IPAddress.v4(IPv4Address(rawValue: 0xC612_0000 | UInt32(truncatingIfNeeded: rng.next() & 0xffff)))
            prefixes.append(IPPrefix(address: a, length: 16 + Int(rng.next() % 17))!)
        }
        let b = Blocklist(prefixes: prefixes.map { ($0, "x") })
        for _ in 0..<20_000 {
            let a = IPAddress.v4(IPv4Address(rawValue: 0xC612_0000 | UInt32(truncatingIfNeeded: rng.next() & 0xffff)))
            XCTAssertEqual(b.contains(a), prefixes.contains { $0.contains(a) }, "\(a)")
        }
    }
}

final class ShardTests: XCTestCase {
    func testShardsPartitionTheIndexSpaceForAnySeed() {
        for size in [1, 2, 3, 10, 997, 1000, 4099] as [UInt64] {
            for n in [1, 2, 3, 7] {
                for seed in [0, 1, 0xdead_beef] as [UInt64] {
                    var owners = [Int](repeating: 0, count: Int(size))
                    var counts: [Int] = []
                    for i in 1...n {
                        let m = ShardMembership(size: size, shard: Shard(index: i, count: n)!, seed: seed)
                        var c = 0
                        for j in 0..<size where m.contains(j) { owners[Int(j)] += 1; c += 1 }
                        XCTAssertEqual(c, m.memberCount)
                        counts.append(c)
                    }
                    XCTAssertEqual(owners.filter { $0 != 1 }.count, 0, "size \(size) shards \(n) seed \(seed)")
                    // Balanced within a few percent (the skipped values of the cycle spread evenly).
                    if size >= 997 { XCTAssertLessThan(counts.max()! - counts.min()!, Int(size) / 10, "\(counts)") }
                }
            }
        }
    }

    func testSeedChangesTheSplitAndIsDeterministic() {
        let a = ShardMembership(size: 1000, shard: Shard("1/3")!, seed: 1)
        let b = ShardMembership(size: 1000, shard: Shard("1/3")!, seed: 1)
        let c = ShardMembership(size: 1000, shard: Shard("1/3")!, seed: 2)
        XCTAssertEqual((0..<1000).filter { a.contains($0) }, (0..<1000).filter { b.contains($0) })
        XCTAssertNotEqual((0..<1000).filter { a.contains($0) }, (0..<1000).filter { c.contains($0) })
        XCTAssertEqual(a.prime, 1009)
        XCTAssertNil(Shard("0/3"))
        XCTAssertNil(Shard("4/3"))
        XCTAssertNil(Shard("1/0"))
        XCTAssertNil(Shard("x"))
    }

    /// `--shard/--seed` is a contract between vantage points: a seed must split a list the same
    /// way in every build. The generator is pinned in WireTests (published SplitMix64 outputs);
    /// here the walk it seeds, against values recorded from the split as scans have shipped it.
    func testTheSplitOfASeedIsPinned() {
        let m = ShardMembership(size: 1000, shard: Shard("2/5")!, seed: 0xdead_beef)
        XCTAssertEqual([m.prime, m.generator, m.start], [1009, 65, 99])
        XCTAssertEqual(Array((0..<1000).filter { m.contains($0) }.prefix(12)), [16, 18, 20, 21, 30, 34, 35, 36, 47, 58, 59, 74])
        let one = ShardMembership(size: 100, shard: Shard("1/3")!, seed: 1)
        XCTAssertEqual([one.generator, one.start], [53, 20])
        XCTAssertEqual((0..<100).filter { one.contains($0) },
                       [3, 6, 7, 10, 11, 16, 18, 19, 20, 32, 34, 35, 39, 46, 50, 51, 52, 54, 56, 57, 59, 61, 62, 63, 69, 70,
                        72, 78, 82, 84, 87, 90, 94, 98])
    }

    func testGeneratorIsPrimitive() {
        for p in [5, 7, 11, 1009, 10007, 1_000_003] as [UInt64] {
            let g = ShardMembership.primitiveRoot(p, startingAt: 2)
            var x: UInt64 = 1, order: UInt64 = 0
            repeat { x = ShardMembership.mulmod(x, g, p); order += 1 } while x != 1
            XCTAssertEqual(order, p - 1)
        }
    }
}

final class PacingTests: XCTestCase {
    func testTokenBucketHoldsTheRateOnAFakeClock() {
        var bucket = TokenBucket(rate: 1000, now: 0)
        var sent = 0
        var t = 0.0
        while t < 10 {
            while bucket.take(now: t) { sent += 1 }
            t = bucket.nextToken(now: t) + 0.0003 // a driver that wakes late
        }
        XCTAssertEqual(Double(sent), 10_000, accuracy: 20)
        var idle = TokenBucket(rate: 1000, now: 0)
        var burst = 0
        while idle.take(now: 60) { burst += 1 }
        XCTAssertEqual(burst, 10) // a long idle saves only the burst
        // A token just short of whole (clock rounding) is not a token.
        var edge = TokenBucket(rate: 100, now: 1000)
        XCTAssertTrue(edge.take(now: 1000))
        XCTAssertEqual(edge.hasToken(now: 1000.01), edge.take(now: 1000.01))
        XCTAssertGreaterThan(edge.nextToken(now: 1000.01), 1000.01)
    }

    func testRecentKeysForgetsTheOldest() {
        var r = RecentKeys<Int>(capacity: 3)
        XCTAssertTrue(r.insert(1)); XCTAssertTrue(r.insert(2)); XCTAssertFalse(r.insert(1))
        XCTAssertTrue(r.insert(3)); XCTAssertTrue(r.insert(4))
        XCTAssertTrue(r.insert(1)) // evicted
        XCTAssertFalse(r.insert(4))
    }
}

final class FeedTests: XCTestCase {
    func testFamilyChoiceAndCountPass() throws {
        let v4 = IPAddress("198.18.0.1")!, v4b = IPAddress("198.18.0.2")!, v6 = IPAddress("2001:db8::1")!
        XCTAssertEqual(ScanFamily.any.pick([v6, v4, v4b]), [v6])
        XCTAssertEqual(ScanFamily.v4.pick([v6, v4, v4b]), [v4])
        XCTAssertEqual(ScanFamily.v6.pick([v4]), [])
        XCTAssertEqual(ScanFamily.both.pick([v6, v4, v4b]), [v4, v6])

        let path = NSTemporaryDirectory() + "feed-\(getpid()).txt"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "198.18.0.0/30\n2001:db8::5\nname.test\n198.18.0.0/14\n# c\n\u{ff}\u{fe}bad\n".write(toFile: path, atomically: true, encoding: .utf8)
        var settings = FeedSettings(inputs: [path], family: .v4, maxExpand: 1024)
        let count = try ListCount.count(settings)
        XCTAssertEqual(count.indices, 4 + 1 + 1)
        XCTAssertEqual(count.badLines, 2)
        XCTAssertEqual(count.firstErrors.first?.location, "\(path):4")
        XCTAssertTrue(count.firstErrors.first?.message.contains("over the cap of 1024") == true)

        settings.resolverTimeout = 1
        let feed = try TargetFeed(settings: settings, indices: count.indices) { name in
            guard name == "name.test" else { throw ScanError.input("no") }
            return [IPAddress("2001:db8::9")!, IPAddress("198.18.9.9")!]
        }
        feed.start()
        var targets: [String] = [], filtered = 0, bad = 0
        loop: while let item = feed.next(timeout: 5) {
            switch item {
            case .target(let t): targets.append(t.address.description)
            case .filtered: filtered += 1
            case .badLine: bad += 1
            case .end: break loop
            default: break
            }
        }
        XCTAssertEqual(Set(targets), ["198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.9.9"])
        XCTAssertEqual(filtered, 1)
        XCTAssertEqual(bad, 2)
        XCTAssertThrowsError(try TargetFeed(settings: FeedSettings(inputs: ["-"], shard: Shard("1/2")!), indices: nil) { _ in [] })
    }

    func testResolverTimeoutGivesUp() throws {
        let path = NSTemporaryDirectory() + "feed-slow-\(getpid()).txt"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "slow.test\n".write(toFile: path, atomically: true, encoding: .utf8)
        var settings = FeedSettings(inputs: [path])
        settings.resolverTimeout = 0.2
        let feed = try TargetFeed(settings: settings, indices: nil) { _ in
            usleep(1_500_000)
            return [IPAddress("198.18.0.1")!]
        }
        let start = Date()
        feed.start()
        guard case .unresolved(let name, _, _, _, let message)? = feed.next(timeout: 1) else { return XCTFail("no timeout reported") }
        XCTAssertEqual(name, "slow.test")
        XCTAssertTrue(message.contains("no answer within 0.2 s"), message)
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
    }
}
