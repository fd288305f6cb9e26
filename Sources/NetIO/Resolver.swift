#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Wire

/// Which address families a name may resolve to.
public enum FamilyPreference: Sendable {
    case any, v4, v6
}

public struct ResolveError: Error, Hashable, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Name resolution and route look-ups, through the system resolver and the kernel's routing table.
public enum Resolver {
    /// Addresses for `name` (an address literal is returned as is, without a look-up).
    public static func resolve(_ name: String, family: FamilyPreference = .any) throws -> [IPAddress] {
        if let literal = IPAddress(name.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))) {
            switch (family, literal) {
            case (.v4, .v6): throw ResolveError(message: "\(name) is an IPv6 address but -4 was given")
            case (.v6, .v4): throw ResolveError(message: "\(name) is an IPv4 address but -6 was given")
            default: return [literal]
            }
        }
        var hints = addrinfo()
        hints.ai_family = family == .v4 ? AF_INET : family == .v6 ? AF_INET6 : AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, nil, &hints, &result)
        guard rc == 0, let first = result else {
            let why = rc == 0 ? "no address" : String(cString: gai_strerror(rc))
            throw ResolveError(message: "cannot resolve \(name): \(why)")
        }
        defer { freeaddrinfo(first) }
        var out: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            if let a = address(from: ai.pointee.ai_addr), !out.contains(a) { out.append(a) }
            cursor = ai.pointee.ai_next
        }
        guard !out.isEmpty else { throw ResolveError(message: "cannot resolve \(name): no usable address") }
        return out
    }

    /// The local address the kernel would use toward `destination` (a UDP connect sends nothing).
    public static func sourceAddress(toward destination: IPAddress) throws -> IPAddress {
        let family = destination.isV4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ResolveError(message: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var storage = sockaddrStorage(destination, port: 9)
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_storage>.size)) }
        }
        guard rc == 0 else {
            throw ResolveError(message: "no route to \(destination): \(String(cString: strerror(errno)))")
        }
        var local = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard let a = withUnsafePointer(to: &local, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address(from: $0) } }) else {
            throw ResolveError(message: "cannot tell the local address toward \(destination)")
        }
        return a
    }

    /// Reverse names for addresses, looked up in parallel; what is not answered within `timeout` seconds is left out.
    public static func reverseNames(_ addresses: [IPAddress], timeout: Double = 1.5) -> [IPAddress: String] {
        let names = NameTable()
        let group = DispatchGroup()
        for a in Set(addresses) {
            group.enter()
            DispatchQueue.global().async {
                defer { group.leave() }
                var storage = sockaddrStorage(a, port: 0)
                var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                let len = socklen_t(a.isV4 ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
                let rc = withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        getnameinfo($0, len, &host, socklen_t(host.count), nil, 0, NI_NAMEREQD)
                    }
                }
                if rc == 0 {
                    names.set(a, String(cString: host))
                }
            }
        }
        _ = group.wait(timeout: .now() + timeout)
        return names.snapshot()
    }

    static func address(from sa: UnsafePointer<sockaddr>?) -> IPAddress? {
        guard let sa else { return nil }
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                .v4(IPv4Address(rawValue: UInt32(bigEndian: $0.pointee.sin_addr.s_addr)))
            }
        case AF_INET6:
            return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                var a = p.pointee.sin6_addr
                let bytes = withUnsafeBytes(of: &a) { Array($0) }
                return IPv6Address(bytes: bytes).map { .v6($0) }
            }
        default: return nil
        }
    }

    static func sockaddrStorage(_ a: IPAddress, port: UInt16) -> sockaddr_storage {
        var storage = sockaddr_storage()
        switch a {
        case .v4(let v4):
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    p.pointee.sin_family = sa_family_t(AF_INET)
                    p.pointee.sin_port = port.bigEndian
                    p.pointee.sin_addr.s_addr = v4.rawValue.bigEndian
                }
            }
        case .v6(let v6):
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                    p.pointee.sin6_family = sa_family_t(AF_INET6)
                    p.pointee.sin6_port = port.bigEndian
                    withUnsafeMutableBytes(of: &p.pointee.sin6_addr) { raw in
                        for (i, b) in v6.bytes.enumerated() { raw[i] = b }
                    }
                }
            }
        }
        return storage
    }
}


/// Names found so far; look-ups that outlive the wait keep writing here harmlessly.
private final class NameTable: @unchecked Sendable {
    private let lock = NSLock()
    private var names: [IPAddress: String] = [:]
    func set(_ a: IPAddress, _ n: String) { lock.lock(); names[a] = n; lock.unlock() }
    func snapshot() -> [IPAddress: String] { lock.lock(); defer { lock.unlock() }; return names }
}
