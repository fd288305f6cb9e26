import ArgumentParser
import Foundation
import Lab

struct LabExec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a node of a lab: mptracebox lab exec NAME NODE -- CMD ...")

    @Argument(help: "The lab.")
    var name: String

    @Argument(help: "client, server, hopN (first path) or altN (second path).")
    var node: String

    @Argument(parsing: .postTerminator, help: "The command and its arguments.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the command after --") }
    }

    func run() throws {
        let ns: String
        do {
            let lab = try Lab.attach(name)
            ns = lab.namespace(try lab.node(named: node))
        } catch { throw labFailure(error) }
        // Replace this process so the command is interactive and its exit status is ours.
        let argv = ["ip", "netns", "exec", ns] + command
        guard let ip = Runner.which("ip") else { throw labFailure(LabError.toolMissing("ip")) }
        var cargs = argv.map { strdup($0) } + [nil]
        execv(ip, &cargs)
        throw labFailure(LabError.commandFailed(command: argv.joined(separator: " "), status: -1,
                                                stderr: String(cString: strerror(errno))))
    }
}
