/// Tokenizing the probe language: `layer(arg, key=value)/layer/...`.
///
/// Syntax is separate from meaning: this file turns text into `RawLayer`s with column
/// positions, `ProbeExpression` gives them meaning, so every error can point at a column.

/// A syntax or meaning error in a probe expression, with the 1-based column it refers to.
public struct ProbeError: Error, Hashable, Sendable, CustomStringConvertible {
    public let message: String
    public let column: Int
    public init(_ message: String, column: Int) {
        self.message = message
        self.column = column
    }
    public var description: String { "column \(column): \(message)" }
}

/// One argument: `value` or `key=value`.
public struct RawArgument: Hashable, Sendable {
    public var key: String?
    public var value: String
    public var column: Int
}

/// One layer: `name` or `name(args)`.
public struct RawLayer: Hashable, Sendable {
    public var name: String
    public var arguments: [RawArgument]
    public var column: Int
}

enum ProbeSyntax {
    /// Splits an expression into layers. Quotes ("...") protect `/`, `,`, `(` and `)` inside values.
    static func parse(_ text: String) throws -> [RawLayer] {
        let chars = Array(text)
        var i = 0
        var layers: [RawLayer] = []
        func skipSpaces() { while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 } }

        while true {
            skipSpaces()
            let start = i
            var name = ""
            while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "_" || chars[i] == "-" {
                name.append(chars[i]); i += 1
            }
            guard !name.isEmpty else {
                let what = i < chars.count ? "'\(chars[i])'" : "the end"
                throw ProbeError("expected a layer or option name, found \(what)", column: i + 1)
            }
            var args: [RawArgument] = []
            skipSpaces()
            if i < chars.count, chars[i] == "(" {
                i += 1
                var argStart = i
                var current = ""
                var inQuotes = false
                var closed = false
                func finishArgument() throws {
                    let trimmed = current.trimmingSpaces()
                    defer { current = "" }
                    if trimmed.isEmpty {
                        if args.isEmpty && chars[i] == ")" { return }
                        throw ProbeError("empty argument in \(name)(...)", column: argStart + 1)
                    }
                    if let eq = trimmed.firstIndex(of: "="), !trimmed.hasPrefix("\"") {
                        let key = String(trimmed[..<eq]).trimmingSpaces()
                        let value = String(trimmed[trimmed.index(after: eq)...]).trimmingSpaces()
                        guard !key.isEmpty else { throw ProbeError("missing name before '='", column: argStart + 1) }
                        args.append(RawArgument(key: key.lowercased(), value: value.unquoted(), column: argStart + 1))
                    } else {
                        args.append(RawArgument(key: nil, value: trimmed.unquoted(), column: argStart + 1))
                    }
                }
                while i < chars.count {
                    let c = chars[i]
                    if c == "\"" { inQuotes.toggle(); current.append(c); i += 1; continue }
                    if !inQuotes && c == "," { try finishArgument(); i += 1; argStart = i; continue }
                    if !inQuotes && c == ")" { try finishArgument(); i += 1; closed = true; break }
                    if !inQuotes && c == "(" { throw ProbeError("unexpected '(' inside \(name)(...)", column: i + 1) }
                    current.append(c)
                    i += 1
                }
                if inQuotes { throw ProbeError("unterminated quote in \(name)(...)", column: argStart + 1) }
                if !closed { throw ProbeError("missing ')' to close \(name)(", column: start + 1) }
            }
            layers.append(RawLayer(name: name.lowercased(), arguments: args, column: start + 1))
            skipSpaces()
            if i >= chars.count { break }
            guard chars[i] == "/" else { throw ProbeError("expected '/' between layers, found '\(chars[i])'", column: i + 1) }
            i += 1
        }
        return layers
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }

    func unquoted() -> String {
        if count >= 2, hasPrefix("\""), hasSuffix("\"") { return String(dropFirst().dropLast()) }
        return self
    }
}
