/// A string from a file that may hold `${variable}` references, with where it was written.
///
/// `${name}` is replaced by the variable's value, `${name:-default}` falls back to `default`,
/// `$$` is a literal `$`. Substitution keeps, for every output character, the column it came
/// from, so an error in the substituted text (a bad probe expression) points into the file.
public struct Template: Hashable, Sendable, CustomStringConvertible {
    public var text: String
    public var location: SourceLocation
    /// Columns of `text` map one to one onto the file from `location` on (single-line plain or
    /// quoted scalars without escapes); otherwise errors point at `location`.
    public var exactColumns: Bool

    public init(_ text: String, at location: SourceLocation, exactColumns: Bool = true) {
        self.text = text
        self.location = location
        self.exactColumns = exactColumns
    }

    public var description: String { text }

    /// The location of the character at `index` (0-based) of `text`.
    public func location(ofCharacter index: Int) -> SourceLocation {
        exactColumns ? location.advanced(by: max(0, index)) : location
    }

    /// Names referenced, in order.
    public var references: [String] {
        (try? scan().compactMap { if case .variable(let n, _, _) = $0 { return n } else { return nil } }) ?? []
    }

    enum Piece {
        case literal(Character, Int)
        case variable(String, fallback: String?, start: Int)
    }

    func scan() throws -> [Piece] {
        let chars = Array(text)
        var out: [Piece] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            guard c == "$" else { out.append(.literal(c, i)); i += 1; continue }
            if i + 1 < chars.count, chars[i + 1] == "$" { out.append(.literal("$", i)); i += 2; continue }
            guard i + 1 < chars.count, chars[i + 1] == "{" else {
                throw SuiteError("'$' starts a variable reference: write ${name}, or $$ for a literal '$'", at: location(ofCharacter: i))
            }
            guard let close = chars[(i + 2)...].firstIndex(of: "}") else {
                throw SuiteError("missing '}' to close '${'", at: location(ofCharacter: i))
            }
            let body = String(chars[(i + 2)..<close])
            let name: String, fallback: String?
            if let r = body.range(of: ":-") {
                name = String(body[..<r.lowerBound])
                fallback = String(body[r.upperBound...])
            } else {
                name = body
                fallback = nil
            }
            guard Variables.isValidName(name) else {
                throw SuiteError("'\(name)' is not a variable name (letters, digits, '_' and '-', starting with a letter or '_')",
                                 at: location(ofCharacter: i + 2))
            }
            out.append(.variable(name, fallback: fallback, start: i))
            i = close + 1
        }
        return out
    }

    /// The text with every reference replaced, and for each output character its index in `text`.
    public func resolve(_ variables: Variables) throws -> (text: String, origins: [Int]) {
        var out = ""
        var origins: [Int] = []
        for piece in try scan() {
            switch piece {
            case .literal(let c, let i):
                out.append(c)
                origins.append(i)
            case .variable(let name, let fallback, let start):
                guard let value = variables[name] ?? fallback else {
                    let known = variables.names.joined(separator: ", ")
                    throw SuiteError("undefined variable '\(name)' (defined: \(known.isEmpty ? "none" : known); "
                                     + "set it with --var \(name)=VALUE or in the file's vars:)", at: location(ofCharacter: start))
                }
                for _ in value { origins.append(start) }
                out += value
            }
        }
        return (out, origins)
    }

    public func resolved(_ variables: Variables) throws -> String { try resolve(variables).text }

    /// The value as an integer in `range` (after substitution).
    public func integer(_ variables: Variables, in range: ClosedRange<Int>, what: String) throws -> Int {
        let s = try resolved(variables).trimmingCharacters(in: " ")
        guard let v = Int(s), range.contains(v) else {
            throw SuiteError("\(what) must be an integer in \(range.lowerBound)...\(range.upperBound), not '\(s)'", at: location)
        }
        return v
    }

    public func number(_ variables: Variables, in range: ClosedRange<Double>, what: String) throws -> Double {
        let s = try resolved(variables).trimmingCharacters(in: " ")
        guard let v = Double(s), range.contains(v) else {
            throw SuiteError("\(what) must be a number in \(range.lowerBound)...\(range.upperBound), not '\(s)'", at: location)
        }
        return v
    }
}

/// Variable values by name. Later layers win: built-in defaults, the probe's `vars:`, the
/// suite's `vars:`, then `--var` on the command line.
public struct Variables: Hashable, Sendable {
    public private(set) var values: [String: String]

    public init(_ values: [String: String] = [:]) { self.values = values }

    public subscript(name: String) -> String? {
        get { values[name] }
        set { values[name] = newValue }
    }

    public var names: [String] { values.keys.sorted() }

    /// `other`'s values replace ours.
    public func overlaid(with other: Variables) -> Variables {
        Variables(values.merging(other.values) { _, new in new })
    }

    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || (first.properties.isAlphabetic && first.isASCII) else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-") }
    }

    /// Parses `name=value` (the command line's `--var`).
    public static func assignment(_ text: String) throws -> (String, String) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw SuiteError("--var needs NAME=VALUE, e.g. --var port=8080, not '\(text)'", at: nil)
        }
        let name = String(text[..<eq])
        guard isValidName(name) else { throw SuiteError("--var: '\(name)' is not a variable name", at: nil) }
        return (name, String(text[text.index(after: eq)...]))
    }

    /// What every run starts with.
    public static let builtins = Variables(["port": "80"])
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set || s.first == "\t" { s = s.dropFirst() }
        while s.last == set || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
