import Foundation
import Report

/// `scan report`: what a run found, from the store.
public struct ScanRunReport: Sendable {
    public var run: ScanRunInfo
    public var total: Int
    public var statuses: [(String, Int)]
    public var verdicts: [(String, Int)]
    public var findings: [(String, Int)]
    /// Routers where interference shows: address, finding, how many targets.
    public var hops: [(address: String, finding: String, targets: Int)]

    public static func load(_ store: ScanStore, run id: Int64, topHops: Int = 10) throws -> ScanRunReport {
        guard let run = try store.run(id) else { throw ScanError.usage("no run \(id) in \(store.db.path)") }
        let db = store.db
        let counts: (String) throws -> [(String, Int)] = { column in
            try db.prepare("SELECT coalesce(\(column), '-'), count(*) FROM results WHERE run = ? GROUP BY 1 ORDER BY 2 DESC, 1")
                .query([.int(id)]) { ($0.text(0) ?? "-", Int($0.int(1))) }
        }
        let statuses = try counts("status")
        // Targets without a verdict (unresolved, errors) are counted under their status.
        let verdicts = try counts("coalesce(verdict, status)")
        var findingCounts: [String: Int] = [:]
        try db.prepare("SELECT findings FROM results WHERE run = ? AND findings != ''").forEach([.int(id)]) { row in
            for f in (row.text(0) ?? "").split(separator: " ") { findingCounts[String(f), default: 0] += 1 }
        }
        let findings = findingCounts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { ($0.key, $0.value) }
        let hops = try db.prepare("""
            SELECT coalesce(address, '?'), finding, count(DISTINCT target || ' ' || port) FROM interference
            WHERE run = ? GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT ?
            """).query([.int(id), .int(Int64(topHops))]) { (address: $0.text(0) ?? "?", finding: $0.text(1) ?? "", targets: Int($0.int(2))) }
        return ScanRunReport(run: run, total: statuses.reduce(0) { $0 + $1.1 }, statuses: statuses, verdicts: verdicts,
                             findings: findings, hops: hops)
    }

    public var json: JSON {
        func table(_ rows: [(String, Int)]) -> JSON { .object(rows.map { ($0.0, .number($0.1)) }) }
        return .object([
            ("schema", "mptracebox.scan-report/1"), ("run", .int(run.id)), ("status", .string(run.status)),
            ("started", .double(run.started)), ("finished", run.finished.map { .double($0) } ?? .null),
            ("targets", .number(total)), ("statuses", table(statuses)), ("verdicts", table(verdicts)),
            ("findings", table(findings)),
            ("hops", .array(hops.map { .object([("address", .string($0.address)), ("finding", .string($0.finding)), ("targets", .number($0.targets))]) })),
        ])
    }

    public var text: String {
        var out = "run \(run.id): \(run.status), started \(Self.date(run.started))"
        if let f = run.finished { out += ", \(String(format: "%.1f", f - run.started)) s" }
        out += ", \(total) targets recorded\n"
        out += "status:   " + statuses.map { "\($0.0) \($0.1)" }.joined(separator: ", ") + "\n"
        out += "\nverdicts:\n"
        for (v, n) in verdicts { out += "  \(v.padding(toLength: 30, withPad: " ", startingAt: 0)) \(String(n).leftPad(7))  \(Self.percent(n, total))\n" }
        out += "\nfindings (targets):\n"
        if findings.isEmpty { out += "  none\n" }
        for (f, n) in findings { out += "  \(f.padding(toLength: 30, withPad: " ", startingAt: 0)) \(String(n).leftPad(7))  \(Self.percent(n, total))\n" }
        out += "\nhops where interference appears:\n"
        if hops.isEmpty { out += "  none\n" }
        for h in hops { out += "  \(h.address.padding(toLength: 40, withPad: " ", startingAt: 0)) \(h.finding.padding(toLength: 24, withPad: " ", startingAt: 0)) \(h.targets) targets\n" }
        return out
    }

    static func percent(_ n: Int, _ total: Int) -> String {
        total == 0 ? "" : String(format: "%5.1f%%", 100 * Double(n) / Double(total))
    }

    static func date(_ t: Double) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: t))
    }
}

/// `scan diff`: targets whose verdict or findings differ between two runs, and targets only one
/// run has. Streams rows; holds only the changes.
public struct ScanRunDiff: Sendable {
    public struct Change: Sendable {
        public var target: String
        public var port: Int
        public var kind: String // changed | only-a | only-b
        public var verdictA: String?
        public var verdictB: String?
        public var findingsA: [String]
        public var findingsB: [String]
    }

    public var runA: Int64
    public var runB: Int64
    public var common: Int
    public var changes: [Change]

    public static func load(_ store: ScanStore, _ a: Int64, _ b: Int64) throws -> ScanRunDiff {
        for id in [a, b] where try store.run(id) == nil { throw ScanError.usage("no run \(id) in \(store.db.path)") }
        let db = store.db
        var changes: [Change] = []
        let split: (String?) -> [String] = { ($0 ?? "").split(separator: " ").map(String.init) }
        try db.prepare("""
            SELECT a.target, a.port, a.verdict, a.findings, b.verdict, b.findings FROM results a JOIN results b
              ON a.target = b.target AND a.port = b.port
            WHERE a.run = ? AND b.run = ? AND (coalesce(a.verdict, '') != coalesce(b.verdict, '') OR a.findings != b.findings)
            ORDER BY a.target, a.port
            """).forEach([.int(a), .int(b)]) { r in
            changes.append(Change(target: r.text(0) ?? "", port: Int(r.int(1)), kind: "changed", verdictA: r.text(2), verdictB: r.text(4),
                                  findingsA: split(r.text(3)), findingsB: split(r.text(5))))
        }
        for (x, y, kind) in [(a, b, "only-a"), (b, a, "only-b")] {
            try db.prepare("""
                SELECT x.target, x.port, x.verdict, x.findings FROM results x
                WHERE x.run = ? AND NOT EXISTS (SELECT 1 FROM results y WHERE y.run = ? AND y.target = x.target AND y.port = x.port)
                ORDER BY x.target, x.port
                """).forEach([.int(x), .int(y)]) { r in
                let v = r.text(2), f = split(r.text(3))
                changes.append(Change(target: r.text(0) ?? "", port: Int(r.int(1)), kind: kind,
                                      verdictA: kind == "only-a" ? v : nil, verdictB: kind == "only-b" ? v : nil,
                                      findingsA: kind == "only-a" ? f : [], findingsB: kind == "only-b" ? f : []))
            }
        }
        let common = Int(try db.prepare("""
            SELECT count(*) FROM results a JOIN results b ON a.target = b.target AND a.port = b.port WHERE a.run = ? AND b.run = ?
            """).query([.int(a), .int(b)]) { $0.int(0) }.first ?? 0)
        return ScanRunDiff(runA: a, runB: b, common: common, changes: changes)
    }

    public var json: JSON {
        .object([
            ("schema", "mptracebox.scan-diff/1"), ("run_a", .int(runA)), ("run_b", .int(runB)), ("common_targets", .number(common)),
            ("changes", .array(changes.map { c in
                .compact([("target", .string(c.target)), ("port", .number(c.port)), ("change", .string(c.kind)),
                          ("verdict_a", c.verdictA.map { .string($0) } ?? .null), ("verdict_b", c.verdictB.map { .string($0) } ?? .null),
                          ("findings_a", .array(c.findingsA.map { .string($0) })), ("findings_b", .array(c.findingsB.map { .string($0) })),
                          ("findings_added", .array(c.findingsB.filter { !c.findingsA.contains($0) }.map { .string($0) })),
                          ("findings_removed", .array(c.findingsA.filter { !c.findingsB.contains($0) }.map { .string($0) }))])
            })),
        ])
    }

    public var text: String {
        let changed = changes.filter { $0.kind == "changed" }.count
        var out = "run \(runA) → run \(runB): \(common) targets in both, \(changed) changed, "
            + "\(changes.filter { $0.kind == "only-a" }.count) only in \(runA), \(changes.filter { $0.kind == "only-b" }.count) only in \(runB)\n"
        for c in changes {
            let where_ = c.target.contains(":") ? "[\(c.target)]:\(c.port)" : "\(c.target):\(c.port)"
            switch c.kind {
            case "changed":
                var line = "  \(where_)  \(c.verdictA ?? "-") → \(c.verdictB ?? "-")"
                let added = c.findingsB.filter { !c.findingsA.contains($0) }, removed = c.findingsA.filter { !c.findingsB.contains($0) }
                if !added.isEmpty { line += "  +" + added.joined(separator: " +") }
                if !removed.isEmpty { line += "  -" + removed.joined(separator: " -") }
                out += line + "\n"
            case "only-a": out += "  \(where_)  only in run \(runA) (\(c.verdictA ?? "-"))\n"
            default: out += "  \(where_)  only in run \(runB) (\(c.verdictB ?? "-"))\n"
            }
        }
        return out
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
