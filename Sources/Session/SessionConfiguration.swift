import Wire

/// Which MPTCP version the crafted client speaks.
public enum VersionChoice: String, Sendable, CaseIterable {
    case v0 = "0"
    case v1 = "1"
    /// v1, and when a v1 SYN gets a plain SYN/ACK, a second try with v0 (RFC 8684 §3.1).
    case auto
}

/// Everything a crafted session needs; validated by `validate()`.
public struct SessionConfiguration: Sendable {
    public var target: IPAddress
    public var source: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var version: VersionChoice = .v1
    /// Ask for DSS checksums (flag A in our MP_CAPABLE). Either side asking turns them on.
    public var checksum: Bool = true
    /// The data sent at the data level (half on the initial subflow, half on the join when there is one).
    public var payload: [UInt8] = SessionConfiguration.defaultPayload(4000)
    /// Payload bytes per segment.
    public var segmentSize: Int = 1200
    /// First retransmission timeout in seconds (doubles per retry).
    public var timeout: Double = 1.0
    /// Retransmissions before a step is given up as unanswered.
    public var retries: Int = 3
    /// Open a second subflow with MP_JOIN.
    public var join: Bool = true
    /// Local address of the joined subflow (another interface / path); default: `source`.
    public var joinSource: IPAddress?
    public var joinSourcePort: UInt16?
    /// Send an ADD_ADDR (v1, with HMAC) and expect its echo.
    public var addAddress: Bool = true
    /// Send MP_PRIO (backup) on the initial subflow.
    public var priority: Bool = false
    /// End with MP_FASTCLOSE instead of DATA_FIN.
    public var fastClose: Bool = false
    /// Locate fallbacks with TTL-limited copies of the session's own segments, and check for proxies.
    public var inspectPath: Bool = true
    /// Expect the payload echoed back (the lab's echo servers); otherwise just read what comes.
    public var expectEcho: Bool = true
    /// Seconds to keep reading after the data exchange (server's ADD_ADDR, late data).
    public var linger: Double = 0.2
    /// Fixed randomness for tests (nil: fresh random values).
    public var localKey: UInt64?
    public var initialSequence: UInt32?
    public var joinNonce: UInt32?

    public init(target: IPAddress, source: IPAddress, sourcePort: UInt16, destinationPort: UInt16) {
        self.target = target
        self.source = source
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
    }

    /// The join subflow's source port.
    public var effectiveJoinPort: UInt16 { joinSourcePort ?? (sourcePort == 65535 ? 1025 : sourcePort &+ 1) }
    /// The port of the retry with a plain SYN or a v0 SYN (a separate connection).
    public var retryPort: UInt16 { sourcePort >= 65534 ? 1026 : sourcePort &+ 2 }

    /// Every local port the session may use (for the kernel-RST guard and the capture filter).
    public var localPorts: [UInt16] { [sourcePort, effectiveJoinPort, retryPort] }

    public func validate() throws {
        guard sameFamily(source, target) else {
            throw SessionError.configuration("source \(source) and target \(target) are of different families")
        }
        if let j = joinSource, !sameFamily(j, target) {
            throw SessionError.configuration("--join-from \(j) is not of the target's family")
        }
        guard payload.count <= 10_000_000 else { throw SessionError.configuration("payload of \(payload.count) bytes exceeds 10 MB") }
        guard (100...1400).contains(segmentSize) else { throw SessionError.configuration("segment size \(segmentSize) must be within 100...1400") }
        guard timeout > 0, timeout <= 60 else { throw SessionError.configuration("timeout must be in (0, 60] seconds") }
        guard (0...10).contains(retries) else { throw SessionError.configuration("retries must be 0 to 10") }
        let ports = localPorts
        guard Set(ports).count == ports.count else {
            throw SessionError.configuration("the join port \(effectiveJoinPort) collides with another port of the session")
        }
    }

    private func sameFamily(_ a: IPAddress, _ b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4, .v4), (.v6, .v6): return true
        default: return false
        }
    }

    /// The payload for web servers: `GET /` for `host`, closing after the answer.
    public static func httpRequest(host: String, userAgent: String) -> [UInt8] {
        Array("GET / HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\nUser-Agent: \(userAgent)\r\n\r\n".utf8)
    }

    /// A recognisable default payload: "mptracebox " repeated, cut to `count` bytes.
    public static func defaultPayload(_ count: Int) -> [UInt8] {
        let unit = Array("mptracebox session data 0123456789\n".utf8)
        return (0..<count).map { unit[$0 % unit.count] }
    }
}

/// Failures that stop a session before it can produce a verdict.
public enum SessionError: Error, Equatable, Sendable, CustomStringConvertible {
    case configuration(String)
    case network(String)

    public var description: String {
        switch self {
        case .configuration(let m): return "session: \(m)"
        case .network(let m): return "network: \(m)"
        }
    }
}
