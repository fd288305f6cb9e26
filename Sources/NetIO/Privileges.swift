#if canImport(Glibc)
import Glibc
#endif

/// A Linux capability the tool may need.
public struct Capability: Hashable, Sendable, CustomStringConvertible {
    public let bit: Int
    public let name: String

    /// Raw sockets: crafting probes (libnet) and capturing (libpcap).
    public static let netRaw = Capability(bit: 13, name: "CAP_NET_RAW")
    /// Firewall rules (the kernel-RST guard), namespaces and interfaces (the lab).
    public static let netAdmin = Capability(bit: 12, name: "CAP_NET_ADMIN")

    public var description: String { name }
}

/// Missing capabilities, with a message a user can act on.
public struct PrivilegeError: Error, Equatable, Sendable, CustomStringConvertible {
    public let missing: [Capability]
    public let purpose: String

    public var description: String {
        let names = missing.map(\.name).joined(separator: " and ")
        return "\(purpose) needs \(names), which this process does not have. "
            + "Run as root (sudo), or grant them: sudo setcap cap_net_raw,cap_net_admin+ep $(which mptracebox)"
    }
}

public enum Privileges {
    /// The effective capability set, parsed from a /proc/self/status text ("CapEff:\t000001ffffffffff").
    public static func effectiveCapabilities(statusText: String) -> UInt64? {
        for line in statusText.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).trimmingCharacters(in: " \t")
            return UInt64(hex, radix: 16)
        }
        return nil
    }

    /// Which of `required` are absent from `effective`.
    public static func missing(_ required: [Capability], effective: UInt64) -> [Capability] {
        required.filter { effective & (UInt64(1) << UInt64($0.bit)) == 0 }
    }

    /// Throws a `PrivilegeError` naming each missing capability.
    public static func require(_ required: [Capability], for purpose: String) throws {
        let effective = readEffective() ?? 0
        let absent = missing(required, effective: effective)
        if !absent.isEmpty { throw PrivilegeError(missing: absent, purpose: purpose) }
    }

    static func readEffective() -> UInt64? {
        guard let text = readSmallFile("/proc/self/status") else { return nil }
        return effectiveCapabilities(statusText: text)
    }
}

/// Reads a small text file without Foundation (procfs files report size 0, so read until EOF).
func readSmallFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if n <= 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return s
    }
}
