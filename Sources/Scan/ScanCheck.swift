import Wire
import Probe
import Diff
import Trace
import Report
import PacketIO

/// What a check task asks its driver to do next (the scan's view of `TraceTask.Step`).
public enum ScanStep: Equatable {
    case send([UInt8])
    case wait(until: Double)
    case blocked
    case finished
}

/// One measurement of one target, driven by the scan's dispatcher: it owns no I/O, takes the
/// packets routed to it by (target address, local port) and ends with a JSON document.
public protocol ScanTask: AnyObject {
    /// Local ports (TCP source ports, ICMP echo identifiers) whose replies belong to this task.
    var localPorts: [UInt16] { get }
    func step(now: Double, maySend: Bool) throws -> ScanStep
    func handle(_ packet: ReceivedPacket)
    /// The check's document (the contract's trace or session JSON) once finished.
    var document: JSON? { get }
    /// The verdict and findings once finished.
    var summary: CheckSummary? { get }
    /// The scan abandons the task unfinished (it stops): release what it holds.
    func cancel()
}

extension ScanTask {
    public func cancel() {}
}

/// A kind of measurement run per target (`--checks`): makes one task per target.
public protocol ScanCheck: Sendable {
    /// The name used in `--checks`, in records (`checks.<name>`) and in the store.
    var name: String { get }
    /// How many consecutive local ports a task uses.
    var portsPerTarget: Int { get }
    func makeTask(target: IPAddress, source: IPAddress, port: UInt16, firstLocalPort: UInt16) throws -> ScanTask
}

/// What a finished check says, in the vocabulary of the output contract.
public struct CheckSummary: Sendable, Hashable {
    public var verdict: String
    public var findings: [String]
    /// Where interference shows: finding id, the hop (TTL) and the router's address when known.
    public var interference: [Interference]

    public struct Interference: Sendable, Hashable {
        public var finding: String
        public var ttl: Int
        public var address: String?
    }

    public init(verdict: String, findings: [String], interference: [Interference] = []) {
        self.verdict = verdict
        self.findings = findings
        self.interference = interference
    }
}

/// The check names `--checks` accepts, and which of them this build can run.
public enum CheckName: String, CaseIterable, Sendable {
    case trace
    case connect
    case join
    case addAddr = "add-addr"

    public static func parseList(_ text: String) throws -> [CheckName] {
        var out: [CheckName] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false).map({ String($0).trimmingCharacters(in: " ") }) {
            guard let c = CheckName(rawValue: part) else {
                throw ScanError.usage("unknown check '\(part)' in --checks (known: \(allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            if !out.contains(c) { out.append(c) }
        }
        guard !out.isEmpty else { throw ScanError.usage("--checks names no check") }
        return out
    }

    /// Whether the check runs a crafted session (`join` and `add-addr` are steps of the session).
    public var isSession: Bool { self != .trace }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

// MARK: The trace check

/// The `trace` check: one `TraceTask` per target with the scan's probe and trace options, on
/// two ports (the probe's and the blackhole check's control flow).
public struct TraceCheck: ScanCheck {
    public var name: String { "trace" }
    public var portsPerTarget: Int { 2 }
    /// A template: target, source and ports are filled per target.
    public var template: TraceConfiguration
    /// Seeds the per-target sequence and IP ID bases (deterministic in tests).
    public var seed: UInt64

    public init(template: TraceConfiguration, seed: UInt64 = UInt64.random(in: 0...UInt64.max)) {
        self.template = template
        self.seed = seed
    }

    public func makeTask(target: IPAddress, source: IPAddress, port: UInt16, firstLocalPort: UInt16) throws -> ScanTask {
        var c = template
        c.target = target
        c.source = source
        c.destinationPort = port
        c.sourcePort = firstLocalPort
        var rng = SplitMix64(seed: seed ^ UInt64(AddressKeyHash.of(target)) ^ UInt64(port) << 48)
        c.sequenceBase = UInt32(truncatingIfNeeded: rng.next()) & 0xffff_0000
        c.identificationBase = UInt16(truncatingIfNeeded: rng.next()) & 0xff00
        c.timestampValue = UInt32(truncatingIfNeeded: rng.next()) | 1
        return TraceCheckTask(try TraceTask(configuration: c))
    }
}

enum AddressKeyHash {
    /// A stable (not per-process randomised) hash of an address.
    static func of(_ a: IPAddress) -> UInt64 {
        let k = AddressKey(a)
        var rng = SplitMix64(seed: k.high ^ (k.low &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(k.family))
        return rng.next()
    }
}

final class TraceCheckTask: ScanTask {
    let task: TraceTask

    init(_ task: TraceTask) { self.task = task }

    var localPorts: [UInt16] { task.localPorts }

    func step(now: Double, maySend: Bool) throws -> ScanStep {
        switch try task.step(now: now, maySend: maySend) {
        case .send(let b): return .send(b)
        case .wait(let t): return .wait(until: t)
        case .blocked: return .blocked
        case .finished: return .finished
        }
    }

    func handle(_ packet: ReceivedPacket) { task.handle(packet) }

    var document: JSON? { task.result.map { TraceReport.json($0) } }

    var summary: CheckSummary? { task.result.map(TraceVerdict.summary) }
}

/// A verdict drawn from a trace alone, in the session vocabulary of the output contract, so a
/// scan without the `connect` check still says which targets can be reached with MPTCP.
public enum TraceVerdict {
    public static func summary(_ r: TraceResult) -> CheckSummary {
        let ids = r.findings.map(\.id)
        let mptcpTouched = r.findings.contains { f in
            [.optionRemoved, .optionNopped, .optionEOLReplaced].contains(f.id) && f.detail.kind == 30
        }
        let verdict: String
        if ids.contains(.pathProxy) {
            verdict = "fallback.proxy"
        } else if r.destination.reached && r.destination.reply == .synack {
            if ids.contains(.destMPCapableEchoed) { verdict = "fallback.echoed" }
            else if ids.contains(.destMPCapable) { verdict = "mptcp" }
            else if mptcpTouched { verdict = "fallback.syn-stripped" }
            else { verdict = "fallback.not-mptcp-server" }
        } else if r.destination.reached && r.destination.reply == .rst {
            verdict = "refused"
        } else if r.destination.reply == .unreachable {
            verdict = "unreachable"
        } else if r.findings.contains(where: { $0.id == .optionBlackhole && $0.detail.kind == 30 }) {
            verdict = "fallback.syn-dropped"
        } else {
            verdict = "timeout"
        }
        let hopAddress = Dictionary(r.hops.compactMap { h in h.address.map { (h.ttl, $0.description) } }, uniquingKeysWith: { a, _ in a })
        let interference = r.findings.filter { !$0.id.rawValue.hasPrefix("dest.") && $0.id != .quotePartial }.map {
            // A blackhole shows at a silent hop: name the last hop that answered instead.
            CheckSummary.Interference(finding: $0.id.rawValue, ttl: $0.hop,
                                      address: hopAddress[$0.hop] ?? $0.after.flatMap { hopAddress[$0] }.map { "after \($0)" })
        }
        var seen = Set<String>()
        let findings = ids.map(\.rawValue).filter { seen.insert($0).inserted }
        return CheckSummary(verdict: verdict, findings: findings, interference: interference)
    }
}
