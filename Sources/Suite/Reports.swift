import Wire
import Trace
import Report

/// The run as text, JUnit XML, TAP and JSON. Pure: strings in, strings out.
public enum SuiteReport {
    public static let schema = "mptracebox.suite/1"

    // MARK: Text

    /// One line per expectation with its evidence, a line per probe, totals at the end.
    public static func text(_ r: RunResult, color: Bool = false) -> String {
        func paint(_ s: String, _ code: String) -> String { color ? "\u{1b}[\(code)m\(s)\u{1b}[0m" : s }
        func tag(_ o: Outcome) -> String {
            switch o {
            case .pass: return paint("PASS ", "32")
            case .warn: return paint("WARN ", "33")
            case .fail: return paint("FAIL ", "31")
            case .error: return paint("ERROR", "31;1")
            }
        }
        var out = ""
        for s in r.suites {
            out += "suite \(s.suite.name)" + (s.suite.description.map { ": \($0)" } ?? "") + "\n"
            for p in s.probes {
                var head = "  \(tag(p.outcome)) \(p.probe.spec.name)"
                head += "  → \(p.probe.target)" + (p.address.map { $0.description != p.probe.target ? " (\($0))" : "" } ?? "") + ":\(p.probe.port)"
                if let e = p.probe.expression { head += "  \(e.text)" }
                out += head + "\n"
                if let t = p.trace {
                    let reached = t.destination.reached ? "destination reached at TTL \(t.destination.ttl ?? 0) (\(t.destination.reply.rawValue))"
                        : "destination not reached (\(t.stopReason.rawValue))"
                    let findings = t.findings.filter { $0.id != .quotePartial }.map(\.id.rawValue)
                    out += "         trace: \(t.hops.count) hops, \(reached)" + (findings.isEmpty ? "" : "; findings: \(findings.joined(separator: ", "))") + "\n"
                }
                if let e = p.traceError { out += "         \(e)\n" }
                if let s = p.session { out += "         connect: verdict \(s.verdict)\n" }
                for x in p.expectations {
                    out += "    \(tag(x.outcome)) \(x.summary)\n"
                    if x.outcome != .pass || !x.evidence.isEmpty { out += "           \(x.evidence)\n" }
                }
            }
        }
        let counts = [Outcome.pass, .warn, .fail, .error].map { "\(r.count($0)) \($0.rawValue)" }
        out += "\n\(counts.joined(separator: ", ")) in \(r.suites.reduce(0) { $0 + $1.probes.count }) probes"
        out += " (\(formatSeconds(r.durationSeconds)) s): " + (r.failed ? paint("FAILED", "31;1") : paint("OK", "32;1")) + "\n"
        return out
    }

    // MARK: JUnit

    /// JUnit XML as CI servers read it: a testsuite per suite, a testcase per expectation
    /// (classname `suite.probe`). Failed `fail` expectations are `<failure>`, expectations that
    /// could not be evaluated `<error>`; failed `warn` expectations pass, with the warning in
    /// `<system-out>` and a `severity` property.
    public static func junit(_ r: RunResult, hostname: String = "localhost", timestamp: String? = nil) -> String {
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        let all = r.suites.flatMap(\.probes).flatMap(\.expectations)
        out += "<testsuites name=\"mptracebox suite\" tests=\"\(all.count)\" failures=\"\(r.count(.fail))\" errors=\"\(r.count(.error))\" "
        out += "time=\"\(formatSeconds(r.durationSeconds))\">\n"
        for (i, s) in r.suites.enumerated() {
            let xs = s.probes.flatMap(\.expectations)
            out += "  <testsuite name=\"\(xml(s.suite.name))\" id=\"\(i)\" package=\"mptracebox\" tests=\"\(xs.count)\" "
            out += "failures=\"\(xs.filter { $0.outcome == .fail }.count)\" errors=\"\(xs.filter { $0.outcome == .error }.count)\" "
            out += "skipped=\"0\" time=\"\(formatSeconds(s.durationSeconds))\" hostname=\"\(xml(hostname))\""
            if let ts = timestamp { out += " timestamp=\"\(xml(ts))\"" }
            out += ">\n"
            out += "    <properties>\n"
            out += "      <property name=\"file\" value=\"\(xml(s.suite.location.file))\"/>\n"
            if let p = s.probes.first { out += "      <property name=\"target\" value=\"\(xml(p.probe.target))\"/>\n" }
            out += "    </properties>\n"
            for p in s.probes {
                let classname = "\(s.suite.name).\(p.probe.spec.name)"
                let perCase = p.expectations.isEmpty ? 0 : p.durationSeconds / Double(p.expectations.count)
                for x in p.expectations {
                    out += "    <testcase name=\"\(xml(x.summary))\" classname=\"\(xml(classname))\" time=\"\(formatSeconds(perCase))\">\n"
                    let message = xml(x.evidence)
                    switch x.outcome {
                    case .fail:
                        out += "      <failure message=\"\(message)\" type=\"expectation\">\(xml(x.expectation.location.description)): \(message)</failure>\n"
                    case .error:
                        out += "      <error message=\"\(message)\" type=\"error\">\(xml(x.expectation.location.description)): \(message)</error>\n"
                    case .warn:
                        out += "      <system-out>WARN \(xml(x.expectation.location.description)): \(message)</system-out>\n"
                    case .pass:
                        out += "      <system-out>\(message)</system-out>\n"
                    }
                    out += "    </testcase>\n"
                }
            }
            out += "  </testsuite>\n"
        }
        out += "</testsuites>\n"
        return out
    }

    /// XML text and attribute escaping; characters XML 1.0 forbids become U+FFFD.
    static func xml(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\n": out += "&#10;"
            case "\t": out += "&#9;"
            default:
                let v = u.value
                let allowed = v == 0x9 || v == 0xA || v == 0xD || (0x20...0xD7FF).contains(v) || (0xE000...0xFFFD).contains(v)
                    || (0x10000...0x10FFFF).contains(v)
                out.unicodeScalars.append(allowed ? u : "\u{FFFD}")
            }
        }
        return out
    }

    // MARK: TAP

    /// TAP version 13: one test point per expectation; failed `warn` expectations are
    /// `not ok ... # TODO` (reported, not failing); evidence in a YAML diagnostic block.
    public static func tap(_ r: RunResult) -> String {
        let items = r.suites.flatMap { s in s.probes.flatMap { p in p.expectations.map { (s, p, $0) } } }
        var out = "TAP version 13\n1..\(items.count)\n"
        for (n, (s, p, x)) in items.enumerated() {
            let desc = tapText("\(s.suite.name)/\(p.probe.spec.name): \(x.summary)")
            switch x.outcome {
            case .pass: out += "ok \(n + 1) - \(desc)\n"
            case .warn: out += "not ok \(n + 1) - \(desc) # TODO warn: \(tapText(x.evidence))\n"
            case .fail, .error: out += "not ok \(n + 1) - \(desc)\n"
            }
            out += "  ---\n"
            out += "  outcome: \(x.outcome.rawValue)\n"
            out += "  severity: \(x.expectation.severity.rawValue)\n"
            out += "  evidence: \(yamlQuoted(x.evidence))\n"
            out += "  at: \(yamlQuoted(x.expectation.location.description))\n"
            out += "  ...\n"
        }
        return out
    }

    /// A TAP description cannot hold `#` (it starts a directive) or a newline.
    static func tapText(_ s: String) -> String {
        s.replacingAll("#", with: "\\#").replacingAll("\n", with: " ")
    }

    static func yamlQuoted(_ s: String) -> String {
        "\"" + s.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"").replacingAll("\n", with: "\\n") + "\""
    }

    // MARK: JSON

    /// `mptracebox.suite/1`: suites, probes (each with its trace document) and expectations.
    public static func json(_ r: RunResult) -> JSON {
        let suites: [JSON] = r.suites.map { s in
            let probes: [JSON] = s.probes.map { p in
                var m: [(String, JSON)] = [
                    ("name", .string(p.probe.spec.name)),
                    ("file", .string(p.probe.spec.location.description)),
                    ("target", .string(p.probe.target)),
                    ("address", p.address.map { .string($0.description) } ?? .null),
                    ("port", .number(p.probe.port)),
                    ("probe", p.probe.expression.map { .string($0.text) } ?? .null),
                    ("outcome", .string(p.outcome.rawValue)),
                    ("expectations", .array(p.expectations.map { x in
                        .object([("summary", .string(x.summary)), ("outcome", .string(x.outcome.rawValue)),
                                 ("severity", .string(x.expectation.severity.rawValue)), ("evidence", .string(x.evidence)),
                                 ("at", .string(x.expectation.location.description))])
                    })),
                ]
                if let e = p.traceError { m.append(("trace_error", .string(e))) }
                if let e = p.sessionError { m.append(("connect_error", .string(e))) }
                if let t = p.trace { m.append(("trace", TraceReport.json(t))) }
                if let sess = p.session {
                    m.append(("connect", sess.document ?? .object([("verdict", .string(sess.verdict)),
                                                                   ("joins", .array(sess.joins.map { .string($0) })),
                                                                   ("add_addr", sess.addAddress.map { .string($0) } ?? .null)])))
                }
                return .compact(m)
            }
            return .object([("name", .string(s.suite.name)), ("file", .string(s.suite.location.file)),
                            ("outcome", .string(s.outcome.rawValue)), ("probes", .array(probes))])
        }
        return .object([
            ("schema", .string(schema)),
            ("outcome", .string(r.failed ? "failed" : "passed")),
            ("counts", .object([Outcome.pass, .warn, .fail, .error].map { ($0.rawValue, .number(r.count($0))) })),
            ("duration_s", .double(r.durationSeconds)),
            ("suites", .array(suites)),
        ])
    }

    static func formatSeconds(_ v: Double) -> String {
        let ms = Int((v * 1000).rounded())
        let frac = String(ms % 1000)
        return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
    }
}

extension String {
    func replacingAll(_ a: String, with b: String) -> String {
        guard !a.isEmpty else { return self }
        return components(separatedByString: a).joined(separator: b)
    }

    func components(separatedByString sep: String) -> [String] {
        var parts: [String] = []
        var rest = Substring(self)
        while let r = rest.range(of: sep) {
            parts.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }
}
