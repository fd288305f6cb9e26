/// Where something was written: file, 1-based line and column (columns count Unicode scalars,
/// like YAML marks).
public struct SourceLocation: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: Self, b: Self) -> Bool { (a.file, a.line, a.column) < (b.file, b.line, b.column) }

    /// The same line, `n` columns further.
    func advanced(by n: Int) -> SourceLocation { SourceLocation(file: file, line: line, column: column + n) }
}

/// A problem with a probe or suite file, or with running it, at a place the user can open.
public struct SuiteError: Error, Hashable, Sendable, CustomStringConvertible {
    public let location: SourceLocation?
    public let message: String

    public init(_ message: String, at location: SourceLocation?) {
        self.message = message
        self.location = location
    }

    /// `file:line:column: message`, the form editors and CI annotators understand.
    public var description: String { location.map { "\($0): \(message)" } ?? message }
}

/// Several problems found in one pass (so `suite check` reports every bad file at once).
public struct SuiteErrors: Error, Sendable, CustomStringConvertible {
    public let errors: [SuiteError]
    public init(_ errors: [SuiteError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
