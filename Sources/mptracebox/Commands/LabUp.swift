import ArgumentParser
import Dispatch
import Foundation
import Lab
import Glibc

struct LabUp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Bring a lab up (with no arguments: the demo lab).",
        discussion: """
            Hops: `router`, or behaviours joined by ',': silent, ratelimit[:MS], rfc792, \
            strip:KIND[/SUB][@syn|@synack|@nonsyn|@data|@all][@pre], remove:KIND[/SUB][@CLASS][@pre], drop:KIND[/SUB][@CLASS][@pre], \
            eol:KIND[@CLASS], mss:N, mss:clamp[:N], dscp:N, ecn:clear|ect0|ect1|ce, ttl:N, nat, \
            synproxy, proxy, seqrand, payload:FIND=REPLACE, split:N, coalesce, echo-mpc, delay:MS, \
            loss:P, dup:P, reorder:P.
            Servers: mptcp[:PORT][,csum][,addaddr][,noecho], tcp[:PORT], closed[:PORT].
            Example: mptracebox lab up --name t1 --hop router --hop 'strip:30@syn' --hop router --server mptcp
            """)

    @Option(help: "Lab name (1-12 of a-z 0-9 -); prefixes its namespaces as mtb-NAME-.")
    var name: String?

    @Option(help: "A named scenario (see `mptracebox lab list --scenarios`).")
    var scenario: String?

    @Option(help: "A YAML lab file (see docs/lab.md).")
    var file: String?

    @Option(name: .customLong("hop"), help: "A hop of the first path, client side first (repeatable).")
    var hops: [String] = []

    @Option(name: .customLong("hop2"), help: "A hop of the second path (dual-homed client; repeatable).")
    var hops2: [String] = []

    @Option(name: .customLong("server"), help: "A server in the server namespace (repeatable; default mptcp:80).")
    var servers: [String] = []

    @Flag(help: "Answer on every address of 198.18.128.0/20 and 2001:db8:a::/64 (scan tests).")
    var anyip = false

    @Flag(help: "Disable kernel MPTCP in the client namespace.")
    var noClientMptcp = false

    func validate() throws {
        let sources = [scenario != nil, file != nil, !(hops.isEmpty && hops2.isEmpty && servers.isEmpty && !anyip)]
        guard sources.filter({ $0 }).count <= 1 else {
            throw ValidationError("give either --scenario, --file or --hop/--server, not several")
        }
        _ = try spec()
    }

    func spec() throws -> LabSpec {
        do {
            let labName = name ?? (file == nil ? "demo" : nil)
            var s: LabSpec
            if let scenario {
                s = try Scenario.named(scenario).spec(name: labName ?? scenario)
            } else if let file {
                s = try LabSpec(yamlFile: file, name: labName)
            } else if hops.isEmpty && hops2.isEmpty && servers.isEmpty && !anyip {
                s = try Scenario.named("demo").spec(name: labName ?? "demo")
            } else {
                var args: [String] = []
                for h in hops { args += ["--hop", h] }
                for h in hops2 { args += ["--hop2", h] }
                for v in servers { args += ["--server", v] }
                if anyip { args.append("--anyip") }
                s = try LabSpec(commandLine: args, name: labName ?? "demo")
            }
            if noClientMptcp { s.clientMPTCP = false }
            try s.validate()
            return s
        } catch let e as LabSpecError {
            throw ValidationError(e.description)
        }
    }

    func run() throws {
        let spec = try spec()
        // Ctrl-C or SIGTERM while the lab is being built: take down what exists, then exit.
        let sources = [Int32(SIGINT), Int32(SIGTERM)].map { sig -> DispatchSourceSignal in
            _ = Glibc.signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler {
                try? Lab.down(name: spec.name)
                FileHandleStderr.write("interrupted: lab \(spec.name) removed\n")
                Glibc.exit(130)
            }
            src.resume()
            return src
        }
        defer { sources.forEach { $0.cancel() } }
        let lab: Lab
        do { lab = try Lab.up(spec) } catch { throw labFailure(error) }
        print(LabReport.summary(lab))
        print("""

            Try it:
              mptracebox lab exec \(lab.name) client -- ping -c1 \(lab.serverIPv4)
              mptracebox lab exec \(lab.name) client -- ping -c1 \(lab.serverIPv6)
              mptracebox lab status \(lab.name)
            """)
        if MPTraceBox.configuration.subcommands.contains(where: { $0.configuration.commandName == "trace" }) {
            print("  mptracebox lab exec \(lab.name) client -- mptracebox trace -n --dport \(spec.servers.first?.port ?? 80) \(lab.serverIPv4)")
        }
        print("Take it down:\n  mptracebox lab down \(lab.name)")
    }
}

/// Human-readable views of a lab.
enum LabReport {
    static func summary(_ lab: Lab) -> String {
        var s = "lab \(lab.name) up in \(String(format: "%.2f", lab.upSeconds)) s\n"
        for (p, path) in lab.spec.paths.enumerated() {
            let chain = ["client"] + path.hops.enumerated().map { i, h in
                Node.hop(path: p, index: i + 1).name + (h.behaviours.isEmpty ? "" : " [\(h)]")
            } + ["server"]
            s += "  path \(p + 1): " + chain.joined(separator: " -> ") + "\n"
        }
        s += "\n  node      iface  IPv4             IPv6\n"
        for node in lab.spec.nodes {
            for e in lab.addresses(node) {
                s += "  " + node.name.padding(toLength: 9, withPad: " ", startingAt: 0) + " "
                    + e.interface.padding(toLength: 6, withPad: " ", startingAt: 0) + " "
                    + "\(e.ipv4)/24".padding(toLength: 16, withPad: " ", startingAt: 0) + " \(e.ipv6)/64\n"
            }
        }
        s += "\n"
        for srv in lab.spec.servers {
            s += "  server \(srv) at \(lab.serverIPv4) and [\(lab.serverIPv6)]"
            s += srv.kind == .closed ? " (no listener: RST)\n" : ", log \(lab.serverLogPath(port: srv.port))\n"
        }
        if lab.spec.anyIP {
            s += "  AnyIP: the server answers on \(Addressing.anyIPv4Prefix) and \(Addressing.anyIPv6Prefix)\n"
        }
        s += "  namespaces: \(Lab.namespacePrefix(lab.name)){\(lab.nodeNames.joined(separator: ","))}"
        return s
    }
}
