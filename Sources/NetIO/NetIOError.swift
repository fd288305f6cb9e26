#if canImport(Glibc)
import Glibc
#endif

/// A failure at the I/O edge (libnet, libpcap, sockets), with a message a user can act on.
public struct NetIOError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Matchable kinds; the message carries the detail.
    public enum Code: Equatable, Sendable {
        /// The process lacks a capability (see `Privileges`).
        case privileges
        /// libnet_init or the raw socket could not be opened.
        case injectorOpen
        /// A packet was not sent (libnet write, short write).
        case injectorSend
        /// A packet given to the injector is not one the kernel would send unchanged.
        case badPacket
        /// setsockopt on the raw socket failed (SO_MARK, SO_BINDTODEVICE).
        case socketOption
        /// pcap_create / pcap_activate / options failed.
        case captureOpen
        /// The BPF filter did not compile or could not be installed.
        case captureFilter
        /// Reading from a live capture or a file failed.
        case captureRead
        /// Opening, writing or flushing a pcap file failed.
        case pcapFile
        /// The handle was already closed.
        case closed
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// The text of an errno value, with the capability hint that makes EPERM/EACCES actionable.
func errnoText(_ value: Int32, capability: Capability? = .netRaw) -> String {
    let text = String(cString: strerror(value))
    if let capability, value == EPERM || value == EACCES {
        return "\(text) (needs \(capability.name): run as root or setcap)"
    }
    return text
}

/// Adds the capability hint to a C library's error text when it reports a permission failure.
func withPermissionHint(_ text: String, capability: Capability = .netRaw) -> String {
    let lower = text.lowercased()
    if lower.contains("not permitted") || lower.contains("permission denied") || lower.contains("eperm") {
        return "\(text) (needs \(capability.name): run as root or setcap)"
    }
    return text
}

/// A C error buffer as a Swift string, without trailing newlines (libnet ends messages with "\n").
func cString(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    var text = String(decoding: bytes, as: UTF8.self)
    while text.hasSuffix("\n") { text.removeLast() }
    return text
}
