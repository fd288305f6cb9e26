import CLibnet
#if canImport(Glibc)
import Glibc
#endif

/// The IP version of a packet or socket.
public enum IPFamily: Sendable, Hashable, CustomStringConvertible {
    case v4, v6
    public var description: String { self == .v4 ? "IPv4" : "IPv6" }
}

/// Sends complete IP packets (header and payload built by the caller, e.g. by Wire) through
/// libnet's advanced raw mode: the bytes go to the wire as given, TTL / hop limit included.
///
/// What the Linux kernel still does to an IPv4 packet on a header-including raw socket:
/// it recomputes the header checksum, fills the source address when it is 0.0.0.0 and may pick
/// an IP ID when the ID is 0 and DF is clear. Packets whose IPv4 total length (or IPv6 payload
/// length) disagrees with their size are refused, because they would not leave unchanged.
/// IPv6 packets leave exactly as given (IPPROTO_RAW implies IPV6_HDRINCL on Linux).
///
/// Not thread-safe: use one injector per thread or serialise sends.
public final class RawInjector {
    /// Options for the raw sockets.
    public struct Options: Sendable, Equatable {
        /// SO_MARK on the sockets, so firewall rules (the kernel-RST guard) can tell our packets apart.
        public var mark: UInt32?
        /// SO_BINDTODEVICE: leave through this interface whatever the routing table says.
        public var interface: String?
        /// Which families to open.
        public var families: Set<IPFamily>

        public init(mark: UInt32? = nil, interface: String? = nil, families: Set<IPFamily> = [.v4, .v6]) {
            self.mark = mark
            self.interface = interface
            self.families = families
        }
    }

    public let options: Options
    private var v4: UnsafeMutablePointer<libnet_t>?
    private var v6: UnsafeMutablePointer<libnet_t>?

    /// Opens one libnet raw context per requested family. Throws `.privileges` without CAP_NET_RAW.
    public init(options: Options = Options()) throws {
        self.options = options
        try Privileges.require([.netRaw], for: "Sending crafted packets (raw sockets)")
        do {
            if options.families.contains(.v4) { v4 = try Self.open(.v4, options) }
            if options.families.contains(.v6) { v6 = try Self.open(.v6, options) }
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Closes the sockets. Idempotent; sends afterwards throw `.closed`.
    public func close() {
        if let v4 { libnet_destroy(v4) }
        if let v6 { libnet_destroy(v6) }
        v4 = nil
        v6 = nil
    }

    /// Sends one packet; the family comes from its version nibble. Returns the bytes written.
    @discardableResult
    public func send(_ packet: [UInt8]) throws -> Int {
        let family = try Self.validate(packet)
        guard let context = family == .v4 ? v4 : v6 else {
            if options.families.contains(family) { throw NetIOError(.closed, "the raw injector is closed") }
            throw NetIOError(.injectorOpen, "the raw injector was opened without \(family); add it to Options.families")
        }
        let written = packet.withUnsafeBufferPointer { buffer -> Int32 in
            errno = 0
            return family == .v4
                ? libnet_adv_write_raw_ipv4(context, buffer.baseAddress, UInt32(buffer.count))
                : libnet_write_raw_ipv6(context, buffer.baseAddress, UInt32(buffer.count))
        }
        let savedErrno = errno
        guard written >= 0 else {
            let detail = savedErrno != 0 ? errnoText(savedErrno) : withPermissionHint(libnetError(context))
            throw NetIOError(.injectorSend, "sending a \(packet.count)-byte \(family) packet failed: \(detail)"
                + (savedErrno == EMSGSIZE ? " (larger than the path MTU of the outgoing interface)" : ""))
        }
        guard Int(written) == packet.count else {
            throw NetIOError(.injectorSend, "short write: \(written) of \(packet.count) bytes of an \(family) packet")
        }
        return Int(written)
    }

    /// Checks that the kernel will send `packet` unchanged (apart from the IPv4 checksum) and
    /// returns its family.
    public static func validate(_ packet: [UInt8]) throws -> IPFamily {
        guard let first = packet.first else { throw NetIOError(.badPacket, "empty packet: nothing to send") }
        switch first >> 4 {
        case 4:
            guard packet.count >= 20 else {
                throw NetIOError(.badPacket, "IPv4 packet of \(packet.count) bytes is shorter than the 20-byte header")
            }
            let headerLength = Int(first & 0x0f) * 4
            guard headerLength >= 20, headerLength <= packet.count else {
                throw NetIOError(.badPacket, "IPv4 header length \(headerLength) does not fit a \(packet.count)-byte packet")
            }
            let total = Int(packet[2]) << 8 | Int(packet[3])
            guard total == packet.count else {
                throw NetIOError(.badPacket, "IPv4 total length field says \(total) but the packet has \(packet.count) bytes; "
                    + "the kernel would rewrite it")
            }
            guard packet.count <= 65535 else { throw NetIOError(.badPacket, "IPv4 packet larger than 65535 bytes") }
            return .v4
        case 6:
            guard packet.count >= 40 else {
                throw NetIOError(.badPacket, "IPv6 packet of \(packet.count) bytes is shorter than the 40-byte header")
            }
            let payload = Int(packet[4]) << 8 | Int(packet[5])
            guard payload == packet.count - 40 else {
                throw NetIOError(.badPacket, "IPv6 payload length field says \(payload) but the packet carries \(packet.count - 40) bytes")
            }
            return .v6
        default:
            throw NetIOError(.badPacket, "IP version \(first >> 4) in the first byte: only IPv4 and IPv6 can be sent")
        }
    }

    private static func open(_ family: IPFamily, _ options: Options) throws -> UnsafeMutablePointer<libnet_t> {
        var errorBuffer = [CChar](repeating: 0, count: Int(LIBNET_ERRBUF_SIZE))
        let type = family == .v4 ? LIBNET_RAW4_ADV : LIBNET_RAW6_ADV
        guard let context = libnet_init(type, nil, &errorBuffer) else {
            throw NetIOError(.injectorOpen, "libnet_init (\(family) raw socket) failed: "
                + withPermissionHint(cString(errorBuffer)))
        }
        let fd = libnet_getfd(context)
        do {
            guard fd >= 0 else { throw NetIOError(.injectorOpen, "libnet_getfd returned no socket for \(family)") }
            if let mark = options.mark {
                var value = mark
                try setOption(fd, SO_MARK, &value, socklen_t(MemoryLayout<UInt32>.size), what: "SO_MARK \(mark)",
                              capability: .netAdmin)
            }
            if let name = options.interface {
                guard !name.isEmpty, name.utf8.count < Int(IFNAMSIZ) else {
                    throw NetIOError(.socketOption, "interface name '\(name)' must be 1 to \(IFNAMSIZ - 1) bytes")
                }
                var bytes = Array(name.utf8CString)
                try setOption(fd, SO_BINDTODEVICE, &bytes, socklen_t(bytes.count), what: "SO_BINDTODEVICE \(name)",
                              capability: .netRaw)
            }
        } catch {
            libnet_destroy(context)
            throw error
        }
        return context
    }

    private static func setOption(_ fd: Int32, _ option: Int32, _ value: UnsafeRawPointer, _ length: socklen_t,
                                  what: String, capability: Capability) throws {
        guard setsockopt(fd, SOL_SOCKET, option, value, length) == 0 else {
            let code = errno
            let hint = code == ENODEV ? " (no such interface)" : ""
            throw NetIOError(.socketOption, "setsockopt \(what) failed: \(errnoText(code, capability: capability))\(hint)")
        }
    }

    private func libnetError(_ context: UnsafeMutablePointer<libnet_t>) -> String {
        guard let text = libnet_geterror(context) else { return "unknown libnet error" }
        return cString(Array(String(cString: text).utf8CString))
    }
}
