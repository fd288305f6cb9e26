import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct NamespaceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum NetworkNamespace {
    /// Runs `body` on this thread inside the named network namespace (/run/netns/NAME): sockets,
    /// captures and nftables calls made there act in it, and sockets stay in it after the thread
    /// switches back. Subprocesses started by `body` inherit it too.
    public static func inside<T>(_ name: String, _ body: () throws -> T) throws -> T {
        let original = open("/proc/thread-self/ns/net", O_RDONLY)
        guard original >= 0 else { throw NamespaceError("cannot open the current network namespace") }
        defer { close(original) }
        let target = open("/run/netns/\(name)", O_RDONLY)
        guard target >= 0 else { throw NamespaceError("cannot open namespace \(name)") }
        defer { close(target) }
        guard c_setns(target, cloneNewNet) == 0 else { throw NamespaceError("setns(\(name)) failed: errno \(errno)") }
        defer {
            if c_setns(original, cloneNewNet) != 0 { fatalError("cannot return to the original network namespace") }
        }
        return try body()
    }
}

private let cloneNewNet: Int32 = 0x4000_0000

@_silgen_name("setns")
private func c_setns(_ fd: Int32, _ nstype: Int32) -> Int32
