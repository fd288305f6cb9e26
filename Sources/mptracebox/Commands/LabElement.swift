import ArgumentParser
import Foundation
import Lab
import Synchronization

/// Set by SIGTERM/SIGINT; the element's loop looks at it at least every 100 ms.
private let stopRequested = Atomic<Bool>(false)

/// `mptracebox lab _element`: the lab's userspace middlebox on one NFQUEUE queue. Started by the
/// lab inside a hop's namespace; hidden from help because nobody runs it by hand.
struct LabElementCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "_element",
        abstract: "Run the lab's NFQUEUE middlebox element (started by `mptracebox lab up`).",
        discussion: """
            Reads packets from NFQUEUE queue N (iptables -j NFQUEUE --queue-num N in the mangle \
            table), applies the behaviours in order and gives verdicts; packets it makes itself \
            leave through a raw socket marked 0x4d50, which the queue rules must exclude. \
            Behaviours: \(ElementBehaviour.grammar.joined(separator: ", ")). \
            Stops cleanly on SIGTERM or SIGINT and prints its counters.
            """,
        shouldDisplay: false)

    @Option(help: "The NFQUEUE queue number (0-65535).")
    var queue: UInt16

    @Option(name: .customLong("behaviour"), help: "A behaviour, e.g. strip:30/2@data (repeatable; applied in order).")
    var behaviours: [String] = []

    @Option(help: "Seed for every random choice (loss, sequence offsets, keys), for reproducible runs.")
    var seed: UInt64 = 1

    @Flag(help: "Log every packet's verdict to standard error.")
    var verbose = false

    @Flag(help: "Print the iptables rules that feed this element, then exit.")
    var printRules = false

    func validate() throws {
        guard !behaviours.isEmpty else { throw ValidationError("give at least one --behaviour") }
        for b in behaviours {
            do { _ = try ElementBehaviour(parsing: b) } catch let e as ElementBehaviourError {
                throw ValidationError(e.description)
            }
        }
    }

    func run() throws {
        let parsed = try behaviours.map(ElementBehaviour.init(parsing:))
        if printRules {
            for r in ElementBehaviour.queueRules(for: parsed, queue: queue) {
                print(r.addArguments.joined(separator: " "))
            }
            return
        }
        func log(_ s: String) { FileHandle.standardError.write(Data("element[\(queue)]: \(s)\n".utf8)) }
        for sig in [SIGTERM, SIGINT] {
            signal(sig) { _ in stopRequested.store(true, ordering: .relaxed) }
        }
        let runtime: ElementRuntime
        do {
            runtime = try ElementRuntime(queue: queue, behaviours: parsed, seed: seed, verbose: verbose, log: log)
        } catch let e as ElementIOError {
            log("cannot start: \(e)")
            throw ExitCode(2)
        }
        log("ready on queue \(queue): \(parsed.map(\.description).joined(separator: " "))")
        do {
            try runtime.run { stopRequested.load(ordering: .relaxed) }
        } catch {
            log("stopped on error: \(error); \(runtime.stats)")
            throw ExitCode(1)
        }
        log("stopped: \(runtime.stats)")
    }
}
