import ArgumentParser
import Foundation
import Lab

struct LabStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a lab's nodes, addresses, processes and middlebox rule counters.")

    @Argument(help: "The lab.")
    var name: String

    func run() throws {
        do {
            let lab = try Lab.attach(name)
            print(LabReport.summary(lab))
            print("\nprocesses:")
            for node in lab.spec.nodes {
                let out = (try? Runner.check(["ip", "netns", "pids", lab.namespace(node)])) ?? ""
                for pid in out.split(separator: "\n") {
                    let cmd = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?
                        .replacingOccurrences(of: "\0", with: " ") ?? "?"
                    print("  \(node.name): \(pid) \(cmd)")
                }
            }
            print("\nmiddlebox rules (with counters):")
            for node in lab.spec.nodes where lab.spec.hop(node)?.isMiddlebox == true {
                let rules = (try? lab.check(node, ["nft", "list", "table", "inet", "mptracebox"])) ?? ""
                print("  \(node.name):")
                for line in rules.split(separator: "\n") where line.contains("counter") {
                    print("    " + line.trimmingCharacters(in: .whitespaces))
                }
            }
        } catch { throw labFailure(error) }
    }
}
