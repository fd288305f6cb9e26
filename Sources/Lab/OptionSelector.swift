// The TCP option a lab option behaviour (`strip:30/1`, `drop:mptcp/mp_join`) acts on: one type
// and one name table for the hop grammar (`HopBehaviour`) and the element (`ElementBehaviour`).

import Wire

/// A TCP option kind, optionally narrowed to one MPTCP subtype (kind 30).
public struct OptionSelector: Sendable, Hashable, Codable, CustomStringConvertible {
    public var kind: UInt8
    public var mptcpSubtype: UInt8?

    public init(kind: UInt8, mptcpSubtype: UInt8? = nil) {
        self.kind = kind
        self.mptcpSubtype = mptcpSubtype
    }

    /// Names accepted in place of kind numbers.
    public static let kindNames: [String: UInt8] = [
        "eol": 0, "nop": 1, "mss": 2, "wscale": 3, "sackok": 4, "sack": 5, "ts": 8,
        "md5": 19, "ao": 29, "mptcp": 30, "fastopen": 34,
    ]
    /// Names accepted in place of MPTCP subtype numbers (RFC 8684 §3).
    public static let subtypeNames: [String: UInt8] = [
        "mp_capable": 0, "mp_join": 1, "dss": 2, "add_addr": 3, "remove_addr": 4,
        "mp_prio": 5, "mp_fail": 6, "mp_fastclose": 7, "mp_tcprst": 8,
    ]

    /// The canonical text, by number: `30` or `30/1`.
    public var description: String {
        if let sub = mptcpSubtype { return "\(kind)/\(sub)" }
        return "\(kind)"
    }

    /// Whether a parsed option is the one selected.
    public func matches(_ o: TCPOption) -> Bool {
        guard o.kind.rawValue == kind else { return false }
        guard let sub = mptcpSubtype else { return true }
        return o.mptcpSubtype?.rawValue == sub
    }

    /// Parses `KIND` or `KIND/SUBTYPE`, by number or name (`mptcp/mp_join`), for the hop grammar.
    public init(parsing text: String) throws {
        try self.init(parsing: text) { LabSpecError.badBehaviour(text, $0) }
    }

    /// Parses `KIND` or `KIND/SUBTYPE`; `failure` turns a reason into the caller's own error,
    /// so each grammar reports the text the user wrote.
    init(parsing text: String, failure: (String) -> Error) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2, let kindText = parts.first, !kindText.isEmpty else {
            throw failure("expected KIND or KIND/SUBTYPE, e.g. 30 or 30/1")
        }
        guard let kind = UInt8(kindText) ?? Self.kindNames[kindText.lowercased()] else {
            throw failure("unknown option kind '\(kindText)' (0-255 or one of \(Self.kindNames.keys.sorted().joined(separator: ", ")))")
        }
        self.kind = kind
        if parts.count == 2 {
            guard kind == 30 else {
                throw failure("a subtype is only meaningful for the MPTCP option (kind 30)")
            }
            guard let sub = UInt8(parts[1]).flatMap({ $0 < 16 ? $0 : nil }) ?? Self.subtypeNames[parts[1].lowercased()] else {
                throw failure("unknown MPTCP subtype '\(parts[1])' (0-15 or a name such as mp_join)")
            }
            self.mptcpSubtype = sub
        } else {
            self.mptcpSubtype = nil
        }
    }
}
