/// Why bytes could not be parsed or a packet could not be built.
///
/// Parsers never trap: any input yields a value or one of these. The message says what was wrong
/// and where, in terms a user reading a probe file or a capture can act on.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: Hashable, Sendable {
        /// Fewer bytes than the header needs.
        case truncated
        /// A field holds a value the format does not allow (version, header length...).
        case invalidField
        /// Options do not fit the 40-byte TCP option space (or 40-byte IPv4 option space).
        case optionSpaceExceeded
        /// A structure's fields do not form a valid encoding (e.g. a receiver key without a sender key).
        case invalidCombination
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    static func truncated(_ what: String, need: Int, have: Int) -> WireError {
        WireError(.truncated, "\(what): needs \(need) bytes, only \(have) present")
    }
}
