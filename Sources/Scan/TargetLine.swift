import Wire

/// What a line of a target list names.
public enum TargetHost: Hashable, Sendable {
    case address(IPAddress)
    case prefix(IPPrefix)
    case name(String)
}

/// One parsed line: a host, an optional port (else the scan's `--dport`) and an optional tag.
public struct TargetEntry: Hashable, Sendable {
    public var host: TargetHost
    public var port: UInt16?
    public var tag: String?

    public init(host: TargetHost, port: UInt16? = nil, tag: String? = nil) {
        self.host = host
        self.port = port
        self.tag = tag
    }

    /// How many targets the line stands for (a name counts once, whatever it resolves to).
    public var count: UInt64 {
        if case .prefix(let p) = host { return p.addressCount }
        return 1
    }
}

/// A line that could not be read, with where it is (`file:line`).
public struct ScanInputError: Error, Hashable, Sendable, CustomStringConvertible {
    public var location: String
    public var message: String
    public init(location: String, message: String) {
        self.location = location
        self.message = message
    }
    public var description: String { "\(location): \(message)" }
}

/// Why a line was not read (a message for a person; the location is added by the reader).
public struct LineProblem: Error, Hashable, Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    public var message: String
    public init(stringLiteral value: String) { message = value }
    public init(stringInterpolation: DefaultStringInterpolation) { message = String(stringInterpolation: stringInterpolation) }
    public var description: String { message }
}

/// The target-list line grammar. Total: every input gives an entry, nothing (blank or comment)
/// or a message, never a trap.
///
///     line    := [target [WS tag]] [WS] ['#' comment]
///     target  := name | ipv4 | name ':' port | ipv4 ':' port | ipv6 | '[' ipv6 ']' [':' port]
///              | ipv4 '/' len [':' port] | ipv6 '/' len | '[' ipv6 '/' len ']' [':' port]
///     tag     := 1 to 64 characters of [A-Za-z0-9._:/=+-]
public enum TargetLineParser {
    public static let maxTagLength = 64

    /// The entry on `line`, nil for blank and comment lines; the error message otherwise.
    public static func parse<S: StringProtocol>(_ line: S) -> Result<TargetEntry?, LineProblem> {
        let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map { Substring($0).trimmingSpaces } ?? ""
        if content.isEmpty { return .success(nil) }
        let tokens = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard tokens.count <= 2 else {
            return .failure("expected 'target [tag]', found \(tokens.count) fields")
        }
        var tag: String?
        if tokens.count == 2 {
            let t = String(tokens[1])
            guard t.count <= maxTagLength, t.unicodeScalars.allSatisfy(isTagScalar) else {
                return .failure("tag '\(printable(t))' must be 1 to \(maxTagLength) characters of letters, digits and ._:/=+-")
            }
            tag = t
        }
        switch parseTarget(String(tokens[0])) {
        case .success(let (host, port)): return .success(TargetEntry(host: host, port: port, tag: tag))
        case .failure(let m): return .failure(m)
        }
    }

    static func parseTarget(_ token: String) -> Result<(TargetHost, UInt16?), LineProblem> {
        var hostText = token
        var port: UInt16?
        if token.hasPrefix("[") {
            guard let close = token.firstIndex(of: "]") else { return .failure("'\(printable(token))': missing ']'") }
            hostText = String(token[token.index(after: token.startIndex)..<close])
            let rest = token[token.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return .failure("'\(printable(token))': expected ':port' after ']'") }
                switch parsePort(rest.dropFirst()) {
                case .success(let p): port = p
                case .failure(let m): return .failure(m)
                }
            }
            guard hostText.contains(":") else { return .failure("'\(printable(token))': brackets are for IPv6 addresses") }
        } else {
            let colons = token.filter { $0 == ":" }.count
            if colons == 1 {
                let parts = token.split(separator: ":", omittingEmptySubsequences: false)
                hostText = String(parts[0])
                switch parsePort(parts[1]) {
                case .success(let p): port = p
                case .failure(let m): return .failure(m)
                }
            }
            // Two or more colons: a bare IPv6 address or prefix, no port (write [v6]:port for one).
        }
        if hostText.isEmpty { return .failure("'\(printable(token))': empty host") }
        if hostText.contains("/") {
            guard let p = IPPrefix(hostText) else {
                return .failure("'\(printable(hostText))' is not a valid prefix (e.g. 198.18.0.0/24 or 2001:db8::/120)")
            }
            return .success((.prefix(p), port))
        }
        if let a = IPAddress(hostText) {
            if hostText.contains(":") || !token.hasPrefix("[") { return .success((.address(a), port)) }
        }
        if hostText.contains(":") { return .failure("'\(printable(hostText))' is not a valid IPv6 address") }
        if hostText.allSatisfy({ $0.isASCIIDigit || $0 == "." }) {
            return .failure("'\(printable(hostText))' is not a valid IPv4 address")
        }
        if let why = nameProblem(hostText) { return .failure(LineProblem(stringLiteral: why)) }
        return .success((.name(hostText.lowercased()), port))
    }

    static func parsePort(_ text: Substring) -> Result<UInt16, LineProblem> {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy(\.isASCIIDigit), let v = Int(text), (1...65535).contains(v) else {
            return .failure("port '\(printable(String(text)))' must be a number from 1 to 65535")
        }
        return .success(UInt16(v))
    }

    /// Why `name` is not a host name (RFC 1123 labels; underscores tolerated), or nil.
    static func nameProblem(_ name: String) -> String? {
        let n = name.hasSuffix(".") ? String(name.dropLast()) : name
        guard !n.isEmpty, n.utf8.count <= 253 else { return "'\(printable(name))' is not a host name (1 to 253 characters)" }
        for label in n.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty, label.utf8.count <= 63 else {
                return "'\(printable(name))' is not a host name (empty or over-long label)"
            }
            guard label.unicodeScalars.allSatisfy({ $0.isASCII && (isAlnum($0) || $0 == "-" || $0 == "_") }),
                  label.first != "-", label.last != "-" else {
                return "'\(printable(name))' is not a host name (letters, digits, '-' and '.' only)"
            }
        }
        return nil
    }

    static func isAlnum(_ u: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u)
    }

    static func isTagScalar(_ u: Unicode.Scalar) -> Bool {
        u.isASCII && (isAlnum(u) || "._:/=+-".unicodeScalars.contains(u))
    }

    /// The text with control and non-ASCII characters escaped, for error messages.
    static func printable(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars.prefix(80) {
            if u.value >= 0x20 && u.value < 0x7f { out.unicodeScalars.append(u) } else { out += "\\u{\(String(u.value, radix: 16))}" }
        }
        return s.unicodeScalars.count > 80 ? out + "…" : out
    }
}
