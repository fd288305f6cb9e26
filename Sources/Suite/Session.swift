import Wire
import Report

/// What a suite asks of the session engine (`connect`): one MPTCP session to the target.
public struct SessionRequest: Sendable {
    public var target: IPAddress
    public var source: IPAddress
    public var port: UInt16
    public var sourcePort: UInt16
    /// The probe's `connect:` settings after substitution (`join`, `add-addr`, `bytes`, `mode`,
    /// `timeout`, `checksum`, `version`), passed as written; the engine validates them.
    public var settings: [String: String]
}

/// The session engine's answer, in the contract's vocabulary (shared/contract.md: `mptcp`,
/// `fallback.*`, `join.*`, `add-addr.*`, `unreachable`/`refused`/`timeout`).
public struct SessionOutcome: Sendable {
    public var verdict: String
    /// One outcome per MP_JOIN subflow tried.
    public var joins: [String]
    public var addAddress: String?
    /// Short lines of evidence (which packet, why).
    public var evidence: [String]
    /// The session's own JSON document (`mptracebox.session/1`), embedded in the suite's JSON.
    public var document: JSON?

    public init(verdict: String, joins: [String] = [], addAddress: String? = nil, evidence: [String] = [], document: JSON? = nil) {
        self.verdict = verdict
        self.joins = joins
        self.addAddress = addAddress
        self.evidence = evidence
        self.document = document
    }

    var evidenceSuffix: String { evidence.isEmpty ? "" : " (" + evidence.prefix(3).joined(separator: "; ") + ")" }
}

/// Runs `connect` checks. The session engine implements it; a build without it has none, and
/// every connect expectation is then an error saying so (never a pretended result).
public protocol SessionChecker: Sendable {
    func run(_ request: SessionRequest) throws -> SessionOutcome
}

public enum SessionAvailability {
    public static let unavailable = "connect checks are not available in this build (the session engine is not part of it)"
}
