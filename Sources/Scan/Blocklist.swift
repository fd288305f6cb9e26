import Wire

/// Address blocks never probed: a sorted table of disjoint ranges, looked up by binary search.
public struct Blocklist: Sendable {
    private var ranges: [(first: AddressKey, last: AddressKey, reason: String)] = []

    /// Ranges that are never a unicast host: refused whatever the blocklist file says.
    public static let builtIn: [(String, String)] = [
        ("0.0.0.0/8", "unspecified (this network)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved or broadcast"),
        ("::/128", "unspecified"),
        ("ff00::/8", "multicast"),
    ]

    /// A blocklist holding the built-in refusals and `prefixes`.
    public init(prefixes: [(IPPrefix, String)] = []) {
        var all = Self.builtIn.compactMap { p, why in IPPrefix(p).map { ($0, why) } }
        all += prefixes
        let sorted = all.map { p, why -> (AddressKey, AddressKey, String) in let (a, b) = p.range; return (a, b, why) }
            .sorted { $0.0 < $1.0 }
        for (first, last, why) in sorted {
            // Merge overlapping ranges (the earlier reason stays) and touching ones with the same reason.
            if let prev = ranges.last, prev.first.family == first.family,
               first <= prev.last || (prev.last.successor == first && prev.reason == why) {
                if last > prev.last { ranges[ranges.count - 1].last = last }
                continue
            }
            ranges.append((first, last, why))
        }
    }

    /// Parses a blocklist file's text: one prefix or address per line, `#` comments.
    public init(text: String, origin: String) throws {
        var prefixes: [(IPPrefix, String)] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first
                .map { $0.trimmingSpaces } ?? ""
            if line.isEmpty { continue }
            let token = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) ?? line
            if let p = IPPrefix(token) { prefixes.append((p, "blocklist \(origin):\(n + 1)")); continue }
            if let a = IPAddress(token), let p = IPPrefix(address: a, length: a.isV4 ? 32 : 128) {
                prefixes.append((p, "blocklist \(origin):\(n + 1)"))
                continue
            }
            throw ScanInputError(location: "\(origin):\(n + 1)", message: "'\(token)' is not an address or prefix (e.g. 198.18.0.0/16, 2001:db8::/32)")
        }
        self.init(prefixes: prefixes)
    }

    /// Why `address` must not be probed, or nil when it may be.
    public func reason(_ address: IPAddress) -> String? {
        let key = AddressKey(address)
        // The last range starting at or before the key.
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].first <= key { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let r = ranges[lo - 1]
        return key <= r.last ? r.reason : nil
    }

    public func contains(_ address: IPAddress) -> Bool { reason(address) != nil }

    /// Disjoint ranges held (for tests and diagnostics).
    public var rangeCount: Int { ranges.count }
}

extension Substring {
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}
