#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Keeps the local kernel from resetting crafted connections.
///
/// A crafted SYN's SYN/ACK reaches a kernel that knows no such connection, and it answers RST.
/// The guard is an nftables table `inet mptracebox_guard_<pid>_<n>` in the output hook that accepts
/// packets carrying our socket mark (the crafted ones) and drops TCP RSTs from the probe's source
/// ports only. It is removed by `remove()`, on deinit, on SIGINT/SIGTERM, and, after a SIGKILL,
/// by the next guard's startup sweep (tables whose pid is dead).
public final class RSTGuard: @unchecked Sendable {
    /// The SO_MARK our injected packets carry ("MT").
    public static let mark: UInt32 = 0x4d54
    public static let tablePrefix = "mptracebox_guard_"

    public let table: String
    /// The guarded local ports, as sorted disjoint ranges.
    public let ports: [ClosedRange<UInt16>]
    private let lock = NSLock()
    private var installed = false

    /// Installs the guard for these local TCP ports. Sweeps stale guards first.
    public convenience init(ports: [UInt16], mark: UInt32 = RSTGuard.mark) throws {
        try self.init(portRanges: ports.map { $0...$0 }, mark: mark)
    }

    /// Installs the guard for these ranges of local TCP ports (a scan's session ports).
    /// `removeOnSignal`: on SIGINT/SIGTERM remove the table and exit 128+signal. A caller that
    /// handles those signals itself (a scan stops gracefully and removes the guard on its way
    /// out) passes false, or its own handler would never run.
    public init(portRanges: [ClosedRange<UInt16>], mark: UInt32 = RSTGuard.mark, removeOnSignal: Bool = true) throws {
        guard !portRanges.isEmpty else { throw NetIOError(.firewall, "the kernel-RST guard needs at least one port") }
        try Privileges.require([.netAdmin], for: "installing the kernel-RST guard (nftables)")
        _ = Self.sweepStale()
        ports = Self.merged(portRanges)
        // One table per guard (pid and a serial number): guards of concurrent sessions in one
        // process (a suite's parallel connect checks) must not replace or remove each other's.
        table = Self.tablePrefix + String(getpid()) + "_" + String(Self.nextSerial())
        _ = try? Self.nft(["delete", "table", "inet", table])
        try Self.nft(input: Self.ruleset(table: table, ranges: ports, mark: mark))
        installed = true
        if removeOnSignal { SignalCleanup.shared.register(self) }
    }

    private static let serialLock = NSLock()
    nonisolated(unsafe) private static var serial = 0

    private static func nextSerial() -> Int {
        serialLock.lock()
        defer { serialLock.unlock() }
        serial += 1
        return serial
    }

    /// The process a guard table belongs to: `mptracebox_guard_<pid>` or `..._<pid>_<serial>`.
    static func owner(ofTable name: String) -> Int32? {
        guard name.hasPrefix(tablePrefix) else { return nil }
        return Int32(name.dropFirst(tablePrefix.count).split(separator: "_", omittingEmptySubsequences: false).first ?? "")
    }

    /// Sorted, with overlapping and adjacent ranges joined (nft refuses overlapping set elements).
    public static func merged(_ ranges: [ClosedRange<UInt16>]) -> [ClosedRange<UInt16>] {
        var out: [ClosedRange<UInt16>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, Int(r.lowerBound) <= Int(last.upperBound) + 1 {
                out[out.count - 1] = last.lowerBound...max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    deinit { remove() }

    /// The nft script of a guard (pure, for tests and docs).
    public static func ruleset(table: String, ports: [UInt16], mark: UInt32) -> String {
        ruleset(table: table, ranges: merged(ports.map { $0...$0 }), mark: mark)
    }

    public static func ruleset(table: String, ranges: [ClosedRange<UInt16>], mark: UInt32) -> String {
        let set = ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ", ")
        return """
            table inet \(table) {
                chain output {
                    type filter hook output priority -300; policy accept;
                    meta mark 0x\(String(mark, radix: 16)) accept
                    tcp sport { \(set) } tcp flags rst drop
                }
            }

            """
    }

    /// Removes the table (idempotent).
    public func remove() {
        lock.lock()
        defer { lock.unlock() }
        guard installed else { return }
        installed = false
        _ = try? Self.nft(["delete", "table", "inet", table])
        SignalCleanup.shared.unregister(self)
    }

    /// Guard tables of this network namespace (names).
    public static func existingTables() -> [String] {
        guard let out = try? nft(["list", "tables", "inet"]) else { return [] }
        return out.split(separator: "\n").compactMap { line -> String? in
            let f = line.split(separator: " ")
            guard f.count == 3, f[2].hasPrefix(tablePrefix) else { return nil }
            return String(f[2])
        }
    }

    /// Deletes guard tables whose owning process is gone; returns their names.
    @discardableResult
    public static func sweepStale() -> [String] {
        var removed: [String] = []
        for name in existingTables() {
            guard let pid = owner(ofTable: name) else { continue }
            if pid != getpid(), kill(pid, 0) != 0, errno == ESRCH {
                if (try? nft(["delete", "table", "inet", name])) != nil { removed.append(name) }
            }
        }
        return removed
    }

    @discardableResult
    static func nft(_ args: [String] = [], input: String? = nil) throws -> String {
        let p = Process()
        guard let path = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw NetIOError(.firewall, "nft (nftables) is not installed; the kernel-RST guard needs it (apt-get install nftables)")
        }
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = input == nil ? args : ["-f", "-"]
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        do { try p.run() } catch { throw NetIOError(.firewall, "cannot run nft: \(error)") }
        if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
        try? inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let text = String(decoding: e, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw NetIOError(.firewall, "nft \(input == nil ? args.joined(separator: " ") : "-f -") failed: \(withPermissionHint(text, capability: .netAdmin))")
        }
        return String(decoding: o, as: UTF8.self)
    }
}

/// Removes live guards when SIGINT or SIGTERM arrives, then exits with 128 + signal.
/// Dispatch signal sources run the cleanup on a queue thread (not in a signal handler), so
/// spawning nft is safe there.
final class SignalCleanup: @unchecked Sendable {
    static let shared = SignalCleanup()
    private let lock = NSLock()
    private var guards: [ObjectIdentifier: RSTGuard] = [:]
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "mptracebox.signal-cleanup")

    func register(_ g: RSTGuard) {
        lock.lock()
        defer { lock.unlock() }
        guards[ObjectIdentifier(g)] = g
        guard sources.isEmpty else { return }
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            s.setEventHandler { [weak self] in self?.fire(sig) }
            s.resume()
            sources.append(s)
        }
    }

    func unregister(_ g: RSTGuard) {
        lock.lock()
        guards[ObjectIdentifier(g)] = nil
        lock.unlock()
    }

    private func fire(_ sig: Int32) {
        lock.lock()
        let live = Array(guards.values)
        guards = [:]
        lock.unlock()
        for g in live { g.remove() }
        exit(128 + sig)
    }
}
