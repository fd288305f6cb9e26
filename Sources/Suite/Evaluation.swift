import Wire
import Diff
import Trace
import Report

/// How an expectation came out.
public enum Outcome: String, Hashable, Sendable, Comparable {
    case pass
    /// A `warn`-severity expectation that did not hold.
    case warn
    /// A `fail`-severity expectation that did not hold.
    case fail
    /// The expectation could not be evaluated (the check failed to run or is unavailable).
    case error

    var rank: Int { [.pass: 0, .warn: 1, .fail: 2, .error: 3][self]! }
    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }

    /// True when the run must exit non-zero.
    public var failsRun: Bool { self == .fail || self == .error }
}

public struct ExpectationResult: Sendable {
    public var expectation: Expectation
    public var outcome: Outcome
    /// What was seen: hops, addresses, finding ids, values.
    public var evidence: String
    /// The summary with variables substituted.
    public var summary: String
}

/// Evaluates expectations against a trace result and a session outcome. Pure.
public enum Evaluator {
    /// `trace`/`session` are nil when the check did not run; `traceError`/`sessionError` say why.
    public static func evaluate(_ e: Expectation, variables: Variables, trace: TraceResult?, traceError: String?,
                                session: SessionOutcome?, sessionError: String?) -> ExpectationResult {
        let summary = e.summary(with: variables)
        func result(_ holds: Bool, _ evidence: String) -> ExpectationResult {
            ExpectationResult(expectation: e, outcome: holds ? .pass : (e.severity == .warn ? .warn : .fail), evidence: evidence,
                              summary: summary)
        }
        func error(_ why: String) -> ExpectationResult {
            ExpectationResult(expectation: e, outcome: .error, evidence: why, summary: summary)
        }
        if e.needsSession {
            guard let s = session else { return error(sessionError ?? "the connect check did not run") }
            switch e.kind {
            case .verdict(let ids):
                return result(ids.contains(s.verdict), "verdict \(s.verdict)" + s.evidenceSuffix)
            case .join(let ids):
                guard !s.joins.isEmpty else { return result(false, "no MP_JOIN subflow was tried (connect: {join: true})") }
                let bad = s.joins.filter { !ids.contains($0) }
                return result(bad.isEmpty, "join outcome\(s.joins.count == 1 ? "" : "s") \(s.joins.joined(separator: ", "))")
            case .addAddress(let ids):
                guard let a = s.addAddress else { return result(false, "no ADD_ADDR outcome (connect: {add-addr: true})") }
                return result(ids.contains(a), "ADD_ADDR outcome \(a)")
            default: break
            }
        }
        guard let t = trace else { return error(traceError ?? "the trace did not run") }
        do {
            let (holds, evidence) = try evaluateTrace(e.kind, t, variables)
            return result(holds, evidence)
        } catch let err as SuiteError {
            return error(err.message)
        } catch {
            return ExpectationResult(expectation: e, outcome: .error, evidence: "\(error)", summary: summary)
        }
    }

    static func evaluateTrace(_ kind: Expectation.Kind, _ t: TraceResult, _ vars: Variables) throws -> (Bool, String) {
        switch kind {
        case .optionIntact(let o, let reach): return try optionIntact(o, reach, t, vars)
        case .noFinding(let p, let before, let o):
            let found = try matching(p, before, o, t, vars)
            if found.isEmpty { return (true, "no matching finding" + (t.findings.isEmpty ? "" : " (findings: \(ids(t.findings)))")) }
            return (false, found.map(describe).joined(separator: "; "))
        case .finding(let p, let before, let o):
            let found = try matching(p, before, o, t, vars)
            if found.isEmpty { return (false, "not found" + (t.findings.isEmpty ? " (no findings)" : " (findings: \(ids(t.findings)))")) }
            return (true, found.map(describe).joined(separator: "; "))
        case .destination(let d): return destination(d, t)
        case .mssAtLeast(let tmpl): return try mss(min: tmpl.integer(vars, in: 0...65535, what: "mss min"), t)
        case .verdict, .join, .addAddress: return (false, "not a trace expectation")
        }
    }

    static func ids(_ f: [Finding]) -> String { f.map(\.id.rawValue).joined(separator: ", ") }

    static func describe(_ f: Finding) -> String {
        var s = "\(f.id.rawValue) at hop \(f.hop)"
        if let a = f.after { s += " (intact at hop \(a))" }
        if let k = f.detail.kind { s += " [\(WireText.optionName(kind: k, subtype: f.detail.subtype))]" }
        if let field = f.detail.field, let sent = f.detail.sent, let rec = f.detail.received {
            s += " \(field) \(WireText.value(sent)) → \(WireText.value(rec))"
        }
        if let n = f.detail.note { s += ": \(n)" }
        return s
    }

    static func matching(_ pattern: String, _ before: Template?, _ o: OptionRef?, _ t: TraceResult, _ vars: Variables) throws -> [Finding] {
        let limit = try before?.integer(vars, in: 1...256, what: "before")
        return t.findings.filter { f in
            let id = f.id.rawValue
            let idMatches = pattern == "*" || (pattern.hasSuffix("*") ? id.hasPrefix(String(pattern.dropLast())) : id == pattern)
            guard idMatches else { return false }
            if let l = limit, f.hop >= l { return false }
            if let o { return o.matches(kind: f.detail.kind, subtype: f.detail.subtype) }
            return true
        }
    }

    /// Per hop (in TTL order), what its quote says about the option.
    static func observations(_ o: OptionRef, _ t: TraceResult) -> [(hop: HopResult, observation: Observation)] {
        t.hops.sorted { $0.ttl < $1.ttl }.compactMap { h in
            guard let diff = h.diff else { return nil }
            let seen = diff.observations.filter { key, _ in
                if case .option(let k, let s) = key { return o.matches(kind: k, subtype: s) }
                return false
            }.map(\.value)
            if let changed = seen.first(where: { if case .changed = $0 { return true }; return false }) { return (h, changed) }
            return seen.isEmpty ? nil : (h, .intact)
        }
    }

    static func at(_ h: HopResult) -> String { "hop \(h.ttl)" + (h.address.map { " (\($0))" } ?? "") }

    static func optionIntact(_ o: OptionRef, _ reach: Reach, _ t: TraceResult, _ vars: Variables) throws -> (Bool, String) {
        let sentOptions = t.sent.tcp?.header.options.options ?? []
        guard sentOptions.contains(where: { o.matches(kind: $0.kind.rawValue, subtype: $0.mptcpSubtype?.rawValue) }) else {
            throw SuiteError("the probe does not send option \(o)", at: nil)
        }
        let obs = observations(o, t)
        let limit: Int?
        if case .hop(let tmpl) = reach { limit = try tmpl.integer(vars, in: 1...255, what: "intact hop") } else { limit = nil }
        let considered = obs.filter { limit == nil || $0.hop.ttl <= limit! }
        if let (h, obsv) = considered.first(where: { if case .changed = $0.observation { return true }; return false }),
           case .changed(let c) = obsv {
            let intactBefore = obs.last { $0.hop.ttl < h.ttl && $0.observation == .intact }.map { ", intact at \(at($0.hop))" } ?? ""
            return (false, "\(o) \(c.change.rawValue) at \(at(h))\(intactBefore): \(WireText.change(c))")
        }
        let blackhole = t.findings.first { $0.id == .optionBlackhole && $0.detail.kind == o.kind }
        switch reach {
        case .hop:
            let n = limit!
            if let later = obs.first(where: { $0.hop.ttl >= n }) {
                guard later.observation == .intact else {
                    return (true, "intact up to hop \(n); changed only later, at \(at(later.hop))")
                }
                return (true, "intact in the quote of \(at(later.hop))")
            }
            if let b = blackhole, b.hop <= n { return (false, describe(b)) }
            let last = obs.last.map { "; last quote with the option: \(at($0.hop))" } ?? ""
            return (false, "no quote from hop \(n) or later shows the option\(last)")
        case .lastQuote:
            if let b = blackhole { return (false, describe(b)) }
            guard let last = obs.last else { return (false, "no hop quoted the options (\(quoteSummary(t)))") }
            return (true, "intact in every quote, the last from \(at(last.hop))")
        case .destination:
            if let b = blackhole { return (false, describe(b)) }
            guard t.destination.reached else { return (false, "the destination was not reached (stop: \(t.stopReason.rawValue))") }
            if let proxy = t.findings.first(where: { $0.id == .pathProxy }) { return (false, describe(proxy)) }
            guard let last = obs.last else {
                return (false, "destination reached at TTL \(t.destination.ttl ?? 0), but no hop quoted the options (\(quoteSummary(t)))")
            }
            return (true, "intact in every quote (the last from \(at(last.hop))); destination answered \(t.destination.reply.rawValue) at TTL \(t.destination.ttl ?? 0)")
        }
    }

    static func quoteSummary(_ t: TraceResult) -> String {
        let kinds = t.hops.compactMap { h in h.diff.map { "\(h.ttl):\($0.kind.rawValue)" } }
        return kinds.isEmpty ? "no ICMP quotes" : "quotes " + kinds.joined(separator: " ")
    }

    static func destination(_ d: DestinationCheck, _ t: TraceResult) -> (Bool, String) {
        let dest = t.destination
        var problems: [String] = []
        var seen = dest.reached ? "answered \(dest.reply.rawValue) at TTL \(dest.ttl ?? 0)" : "not reached (stop: \(t.stopReason.rawValue))"
        if let r = d.reached, r != dest.reached { problems.append(r ? "destination not reached" : "destination reached") }
        if !d.replies.isEmpty, !d.replies.contains(dest.reply.rawValue) { problems.append("answer is \(dest.reply.rawValue)") }
        let answer = t.hops.first { $0.ttl == dest.ttl }?.tcpReply
        if let a = answer {
            seen += " with flags \(a.header.flags)"
            let opts = a.header.options.options.filter { $0 != .noOperation && $0 != .endOfList }
            if !opts.isEmpty { seen += ", options \(opts.map(WireText.option).joined(separator: " "))" }
        }
        if !d.flags.isEmpty || !d.options.isEmpty || !d.withoutOptions.isEmpty {
            if let a = answer {
                for f in d.flags where a.header.flags.rawValue & (DestinationCheck.flagNames[f] ?? 0) == 0 { problems.append("no \(f.uppercased()) flag") }
                let carried = a.header.options.options
                for o in d.options where !carried.contains(where: { o.matches(kind: $0.kind.rawValue, subtype: $0.mptcpSubtype?.rawValue) }) {
                    problems.append("no \(o) option")
                }
                for o in d.withoutOptions where carried.contains(where: { o.matches(kind: $0.kind.rawValue, subtype: $0.mptcpSubtype?.rawValue) }) {
                    problems.append("\(o) option present")
                }
            } else {
                problems.append("no TCP answer to inspect")
            }
        }
        return (problems.isEmpty, problems.isEmpty ? seen : problems.joined(separator: "; ") + " — " + seen)
    }

    static func mss(min: Int, _ t: TraceResult) throws -> (Bool, String) {
        guard let sentMSS = t.sent.tcp?.header.options.options.compactMap({ o -> UInt16? in
            if case .maximumSegmentSize(let v) = o { return v }
            return nil
        }).first else { throw SuiteError("the probe does not send an MSS option", at: nil) }
        var lowest: (value: Int, hop: HopResult)?
        var quoted = 0
        for h in t.hops.sorted(by: { $0.ttl < $1.ttl }) {
            guard let diff = h.diff else { continue }
            var value: Int?
            if let c = diff.changes.first(where: { if case .optionField(2, _, _) = $0.field { return true }; return false }),
               case .number(let v) = c.received {
                value = Int(v)
            } else if let c = diff.changes.first(where: { $0.field == .option(kind: 2, subtype: nil) }) {
                value = c.change == .modified ? nil : 0  // removed or stripped: no MSS left
            } else if diff.observations[.option(kind: 2, subtype: nil)] == .intact {
                value = Int(sentMSS)
            }
            guard let v = value else { continue }
            quoted += 1
            if lowest == nil || v < lowest!.value { lowest = (v, h) }
        }
        guard let low = lowest else { return (false, "no hop quoted the MSS option (\(quoteSummary(t)))") }
        let where_ = low.value == Int(sentMSS) ? "as sent, in \(quoted) quote\(quoted == 1 ? "" : "s")" : "at \(at(low.hop))"
        let shown = low.value == 0 ? "MSS option removed" : "lowest MSS \(low.value)"
        return (low.value >= min, "\(shown) (sent \(sentMSS)) \(where_)")
    }
}
