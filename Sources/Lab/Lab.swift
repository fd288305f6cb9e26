// A running lab: namespaces, links, rule sets and servers made from a `LabSpec`.
//
//   let lab = try Lab.up(spec, ephemeral: true)   // torn down when `lab` is released
//   try lab.check(.client, ["ping", "-c1", lab.serverIPv4])
//   try lab.down()

import Foundation

public final class Lab: @unchecked Sendable {
    public let spec: LabSpec
    /// Seconds `up` took (namespaces to servers ready).
    public let upSeconds: Double
    /// Torn down on deinit (labs made by tests); CLI labs outlive the process.
    public let ephemeral: Bool
    private let lock = NSLock()
    private var isDown = false

    /// Namespace prefix: every namespace of the lab is `mtb-<name>-<node>`.
    public static func namespacePrefix(_ name: String) -> String { "mtb-\(name)-" }

    public var name: String { spec.name }
    public var stateDirectory: String { LabState.directory(of: spec.name) }

    public func namespace(_ node: Node) -> String { Self.namespacePrefix(spec.name) + node.name }

    // MARK: Addresses

    /// The server's path-0 addresses (what the client connects to).
    public var serverIPv4: String { Addressing.serverIPv4(spec) }
    public var serverIPv6: String { Addressing.serverIPv6(spec) }
    public var clientIPv4: String { Addressing.clientIPv4() }
    public var clientIPv6: String { Addressing.clientIPv6() }
    /// The interfaces and addresses of a node (`left`/`right` in hops, `p0`/`p1` at the ends).
    public func addresses(_ node: Node) -> [LinkEnd] { Addressing.ends(of: node, in: spec) }
    public var links: [Link] { Addressing.links(of: spec) }

    private init(spec: LabSpec, upSeconds: Double, ephemeral: Bool) {
        self.spec = spec
        self.upSeconds = upSeconds
        self.ephemeral = ephemeral
    }

    deinit {
        if ephemeral { try? down() }
    }

    /// Reattaches to a lab that is up (e.g. from another CLI invocation).
    public static func attach(_ name: String) throws -> Lab {
        let record = try LabState.read(name)
        let spec = try LabSpec(commandLine: record.spec, name: name)
        return Lab(spec: spec, upSeconds: record.upSeconds ?? 0, ephemeral: false)
    }

    // MARK: Up

    /// Brings a lab up. Labs left behind by dead owners are removed first. With `ephemeral`,
    /// the lab belongs to this process: it is taken down on deinit, and by the next `up` on
    /// this machine if the process dies without doing it.
    /// Whether the effective capability set (/proc/self/status CapEff) holds these bits
    /// (12 = CAP_NET_ADMIN, 21 = CAP_SYS_ADMIN): root without them cannot build a lab.
    static func hasCapabilities(_ bits: [Int]) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let value = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16) else { return false }
        return bits.allSatisfy { value & (UInt64(1) << UInt64($0)) != 0 }
    }

    public static func up(_ spec: LabSpec, ephemeral: Bool = false) throws -> Lab {
        let start = Date()
        try spec.validate()
        guard geteuid() == 0, Self.hasCapabilities([12, 21]) else { throw LabError.notRoot }
        let elementBehaviours = spec.paths.flatMap { $0.hops.flatMap(\.behaviours) }.filter(\.isElement)
        var binary: String?
        if !elementBehaviours.isEmpty {
            let bin = try LabBinary.path()
            guard LabBinary.hasElement(bin) else {
                throw LabError.elementUnavailable(elementBehaviours.map(\.description))
            }
            binary = bin
        }
        for tool in ["ip", "nft", "sysctl", "ethtool", "python3"] where Runner.which(tool) == nil {
            throw LabError.toolMissing(tool)
        }
        removeStale()

        guard try LabState.reserve(spec.name) else { throw LabError.labExists(spec.name) }
        let me = getpid()
        let namespaces = spec.nodes.map { namespacePrefix(spec.name) + $0.name }
        var record = LabRecord(
            name: spec.name, spec: spec.commandLine, namespaces: namespaces, phase: .starting,
            creatorPid: me, creatorStart: ProcessInfoProbe.startTime(of: me),
            ownerPid: ephemeral ? me : nil, ownerStart: ephemeral ? ProcessInfoProbe.startTime(of: me) : nil,
            created: Date(), upSeconds: nil)
        do {
            try LabState.write(record)
            let lab = Lab(spec: spec, upSeconds: 0, ephemeral: false)
            try lab.build(binary: binary)
            record.phase = .up
            record.upSeconds = Date().timeIntervalSince(start)
            try LabState.write(record)
            return Lab(spec: spec, upSeconds: record.upSeconds!, ephemeral: ephemeral)
        } catch {
            try? Self.down(name: spec.name)
            throw error
        }
    }

    private func build(binary: String?) throws {
        let plans = NodePlanner.plans(for: spec)
        // 1. Namespaces and veth pairs, one `ip -batch` in the root namespace.
        var root = spec.nodes.map { "netns add \(namespace($0))" }
        for l in links {
            root.append("link add \(l.leftEnd.interface) netns \(namespace(l.left)) type veth peer name \(l.rightEnd.interface) netns \(namespace(l.right))")
        }
        try Runner.check(["ip", "-batch", "-"], input: root.joined(separator: "\n") + "\n")

        // 2. Each namespace configured concurrently by one script.
        try Runner.concurrently(plans) { plan in
            try Runner.script(Self.script(for: plan), in: self.namespace(plan.node))
        }

        // 3. Daemons, one after the other (no concurrent spawns: no inherited pipes).
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let daemon = "\(stateDirectory)/\(LabDaemon.fileName)"
        try LabDaemon.source.write(toFile: daemon, atomically: true, encoding: .utf8)
        var waits: [(Node, String, String, Int32)] = []
        for s in spec.servers where s.kind != .closed {
            let tag = "server-\(s.port)"
            let pid = try spawn(.server, ["python3", daemon, "serve", "--proto", s.kind.rawValue, "--port", "\(s.port)",
                                          "--echo", s.echo ? "1" : "0", "--log", serverLogPath(port: s.port),
                                          "--ready", "\(stateDirectory)/\(tag).ready"], log: "\(stateDirectory)/\(tag).out")
            waits.append((.server, tag, "\(stateDirectory)/\(tag).ready", pid))
        }
        for plan in plans {
            if let port = plan.proxyPort {
                let tag = "proxy-\(plan.node.name)"
                let pid = try spawn(plan.node, ["python3", daemon, "proxy", "--port", "\(port)",
                                                "--log", "\(stateDirectory)/\(tag).jsonl",
                                                "--ready", "\(stateDirectory)/\(tag).ready"], log: "\(stateDirectory)/\(tag).out")
                waits.append((plan.node, tag, "\(stateDirectory)/\(tag).ready", pid))
            }
            for e in plan.elements {
                guard let binary else { continue }
                let tag = "element-\(plan.node.name)-\(e.queue)"
                let pid = try spawn(plan.node, [binary, "lab", "_element", "--queue", "\(e.queue)",
                                                "--behaviour", e.behaviour.elementArgument],
                                    log: "\(stateDirectory)/\(tag).out")
                waits.append((plan.node, tag, "queue:\(e.queue)", pid))
            }
        }
        try waitReady(waits)
    }

    /// The configuration script of one namespace.
    static func script(for plan: NodePlan) -> String {
        func heredoc(_ cmd: String, _ body: String) -> String { "\(cmd) <<'MTB_EOF'\n\(body)\nMTB_EOF\n" }
        var s = "sysctl -q " + plan.sysctls.map { "-w \($0.0)=\($0.1)" }.joined(separator: " ") + "\n"
        s += heredoc("ip -batch -", plan.ipBatch.joined(separator: "\n"))
        if !plan.ip6Batch.isEmpty { s += heredoc("ip -6 -batch -", plan.ip6Batch.joined(separator: "\n")) }
        for i in plan.interfaces {
            s += "ethtool -K \(i) tso off gso off gro off tx off rx off >/dev/null\n"
        }
        if !plan.nftables.isEmpty { s += heredoc("nft -f -", plan.nftables) }
        if !plan.iptables.isEmpty { s += heredoc("iptables-restore", plan.iptables) }
        if !plan.ip6tables.isEmpty { s += heredoc("ip6tables-restore", plan.ip6tables) }
        if !plan.lateSysctls.isEmpty {
            s += "sysctl -q " + plan.lateSysctls.map { "-w \($0.0)=\($0.1)" }.joined(separator: " ") + "\n"
        }
        if !plan.interfaces.isEmpty {
            // The kernel gives an interface its IPv6 link-local address only once it has seen the
            // carrier come up, which the link watcher may report up to a second later. Until
            // then neighbour discovery cannot answer and the first IPv6 packets wait ~1 s: wait
            // here instead (3 s at most), so a lab that is up forwards IPv6 at once.
            let ifs = plan.interfaces.joined(separator: " ")
            s += "for _ in $(seq 150); do ok=1; for i in \(ifs); do ip -6 -o addr show dev $i scope link | grep -q inet6 || ok=0; done; "
                + "[ $ok = 1 ] && break; sleep 0.02; done\n"
        }
        return s
    }

    /// Starts a background process in a node's namespace, detached (own session), output to
    /// `log`; returns its pid. It stops at `down` (every process in the namespaces is killed,
    /// and every process the lab recorded, wherever it is now).
    @discardableResult
    public func spawn(_ node: Node, _ argv: [String], log: String) throws -> Int32 {
        // `ip netns exec` execs the command itself, so the pid (and start time) is the daemon's.
        let pid = try Runner.spawnDetached(["ip", "netns", "exec", namespace(node)] + argv, log: log)
        // Recorded before anything waits on it. Not yet reaped, so /proc/PID exists even if it died.
        if let start = ProcessInfoProbe.startTime(of: pid) {
            try LabState.recordProcess(spec.name, LabState.Process(pid: pid, start: start))
        }
        return pid
    }

    private func waitReady(_ waits: [(Node, String, String, Int32)]) throws {
        let deadline = Date().addingTimeInterval(15)
        var pending = waits
        while !pending.isEmpty {
            pending.removeAll { w in
                if w.2.hasPrefix("queue:") {
                    return Self.queueBound(pid: w.3, queue: String(w.2.dropFirst(6)))
                }
                return FileManager.default.fileExists(atPath: w.2)
            }
            guard let w = pending.first else { break }
            if !ProcessInfoProbe.isRunning(w.3) || Date() > deadline {
                let log = (try? String(contentsOfFile: "\(stateDirectory)/\(w.1).out", encoding: .utf8)) ?? ""
                throw LabError.daemonFailed(node: w.0.name, what: w.1, log: log)
            }
            usleep(2_000)
        }
    }

    /// True when a process of the namespace (seen through its /proc/PID/net) has bound the queue.
    static func queueBound(pid: Int32, queue: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/net/netfilter/nfnetlink_queue", encoding: .utf8)
        else { return false }
        return text.split(separator: "\n").contains { $0.split(separator: " ", omittingEmptySubsequences: true).first == Substring(queue) }
    }

    static func shellQuote(_ s: String) -> String {
        if !s.isEmpty, s.allSatisfy({ $0.isLetter || $0.isNumber || "-_./:=@,+%".contains($0) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    // MARK: Running things

    /// Runs a command in a node's namespace (`ip netns exec`).
    @discardableResult
    public func run(_ node: Node, _ argv: [String], input: String? = nil, environment: [String: String] = [:]) throws -> CommandOutput {
        let env = environment.isEmpty ? [] : ["env"] + environment.map { "\($0)=\($1)" }
        return try Runner.run(["ip", "netns", "exec", namespace(node)] + env + argv, input: input)
    }

    /// Runs a command in a node's namespace and throws when it fails; returns stdout.
    @discardableResult
    public func check(_ node: Node, _ argv: [String], input: String? = nil, environment: [String: String] = [:]) throws -> String {
        let r = try run(node, argv, input: input, environment: environment)
        guard r.status == 0 else {
            throw LabError.commandFailed(command: "[\(namespace(node))] " + argv.joined(separator: " "),
                                         status: r.status, stderr: r.stderr)
        }
        return r.stdout
    }

    /// The kernel's MPTCP and TCP counters of a node (absolute values, `nstat -az MPTcpExt*
    /// TcpExt*`, plus TcpPassiveOpens and TcpInSegs: whether any connection or segment arrived).
    public func mptcpCounters(_ node: Node) throws -> [String: UInt64] {
        let out = try check(node, ["nstat", "-az", "MPTcpExt*", "TcpExt*", "TcpPassiveOpens", "TcpInSegs"],
                            environment: ["NSTAT_HISTORY": "\(stateDirectory)/nstat-\(node.name)"])
        var counters: [String: UInt64] = [:]
        for line in out.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 2, let v = UInt64(f[1]) { counters[String(f[0])] = v }
        }
        return counters
    }

    /// The server's connection log (one record per connection event).
    public func serverLogPath(port: UInt16) -> String { "\(stateDirectory)/server-\(port).jsonl" }

    public func serverConnections(port: UInt16) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: serverLogPath(port: port), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    /// The node names, for the CLI.
    public var nodeNames: [String] { spec.nodes.map(\.name) }

    public func node(named name: String) throws -> Node {
        guard let n = Node(name: name), spec.nodes.contains(n) else {
            throw LabError.unknownNode(name, lab: spec.name, known: nodeNames)
        }
        return n
    }

    // MARK: Down

    /// Takes the lab down: kills every process in its namespaces, deletes the namespaces (and
    /// with them the veths and rule sets) and the state directory.
    public func down() throws {
        lock.lock()
        defer { lock.unlock() }
        guard !isDown else { return }
        try Self.down(name: spec.name)
        isDown = true
    }

    /// Takes a lab down by name, also a half-built or crashed one.
    public static func down(name: String) throws {
        let record = try? LabState.read(name)
        let prefix = namespacePrefix(name)
        let existing = (try? Runner.check(["ip", "netns", "list"])) ?? ""
        var namespaces = Set(record?.namespaces ?? [])
        for line in existing.split(separator: "\n") {
            let ns = String(line.split(separator: " ").first ?? "")
            if ns.hasPrefix(prefix) { namespaces.insert(ns) }
        }
        let live = namespaces.filter { ns in existing.split(separator: "\n").contains { $0.split(separator: " ").first == Substring(ns) } }
        // Every process in the lab's namespaces is ours, and so is every process the lab
        // recorded that still runs (with its start time: a reused pid is someone else's), even
        // one left in a namespace that was already deleted.
        var procs = Set(LabState.processes(name).filter(\.isAlive))
        for ns in live {
            let out = (try? Runner.check(["ip", "netns", "pids", ns])) ?? ""
            for pid in out.split(separator: "\n").compactMap({ Int32($0.trimmingCharacters(in: .whitespaces)) }) {
                if let start = ProcessInfoProbe.startTime(of: pid) { procs.insert(LabState.Process(pid: pid, start: start)) }
            }
        }
        for p in procs { kill(p.pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(2)
        while procs.contains(where: \.isAlive) && Date() < deadline { usleep(5_000) }
        for p in procs where p.isAlive { kill(p.pid, SIGKILL) }
        if !live.isEmpty {
            try Runner.check(["ip", "-force", "-batch", "-"], input: live.sorted().map { "netns del \($0)" }.joined(separator: "\n") + "\n")
        }
        try? FileManager.default.removeItem(atPath: LabState.directory(of: name))
    }

    /// Takes down every lab on the machine; returns their names.
    @discardableResult
    public static func downAll() throws -> [String] {
        var names = Set(LabState.names())
        let existing = (try? Runner.check(["ip", "netns", "list"])) ?? ""
        for line in existing.split(separator: "\n") {
            let ns = String(line.split(separator: " ").first ?? "")
            // mtb-<name>-<node>: a namespace left without a record.
            if ns.hasPrefix("mtb-"), let dash = ns.dropFirst(4).lastIndex(of: "-") {
                names.insert(String(ns[ns.index(ns.startIndex, offsetBy: 4)..<dash]))
            }
        }
        for n in names { try down(name: n) }
        return names.sorted()
    }

    /// Removes labs whose owner died, or whose creator died while bringing them up.
    @discardableResult
    public static func removeStale() -> [String] {
        var removed: [String] = []
        for name in LabState.names() {
            let stale: Bool
            if let r = try? LabState.read(name) {
                stale = r.isStale
            } else {
                // A directory without a record: a crash between reserving the name and writing.
                let attrs = try? FileManager.default.attributesOfItem(atPath: LabState.directory(of: name))
                let age = (attrs?[.modificationDate] as? Date).map { Date().timeIntervalSince($0) } ?? 0
                stale = age > 30
            }
            if stale, (try? down(name: name)) != nil { removed.append(name) }
        }
        return removed
    }

    /// Every lab with a record.
    public static func list() -> [LabRecord] {
        LabState.names().compactMap { try? LabState.read($0) }
    }
}

/// Finds the mptracebox binary (for the element subcommand).
public enum LabBinary {
    /// MPTRACEBOX_BIN, else `mptracebox` next to the running executable (the CLI itself, or the
    /// test bundle / bench binary in the same .build directory).
    public static func path() throws -> String {
        if let env = ProcessInfo.processInfo.environment["MPTRACEBOX_BIN"] {
            guard FileManager.default.isExecutableFile(atPath: env) else {
                throw LabError.binaryNotFound("MPTRACEBOX_BIN=\(env) is not an executable")
            }
            return env
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // Test bundles live in .build/<config>/X.xctest (a file on Linux, a directory elsewhere).
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        let candidate = dir.appendingPathComponent("mptracebox").path
        guard FileManager.default.isExecutableFile(atPath: candidate) else {
            throw LabError.binaryNotFound("no \(candidate)")
        }
        return candidate
    }

    /// True when the binary has the `lab _element` subcommand (its usage line names it; a
    /// binary without it prints the `lab` usage instead).
    public static func hasElement(_ binary: String) -> Bool {
        guard let r = try? Runner.run([binary, "lab", "_element", "--help"]), r.status == 0 else { return false }
        return (r.stdout + r.stderr).contains("lab _element")
    }
}
