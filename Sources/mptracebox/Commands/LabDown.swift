import ArgumentParser
import Lab

struct LabDown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Take a lab down: its processes, namespaces, links and rules.")

    @Argument(help: "The lab to take down.")
    var name: String?

    @Flag(help: "Take down every lab on this machine, including crashed ones.")
    var all = false

    func validate() throws {
        guard (name != nil) != all else { throw ValidationError("give a lab name or --all") }
    }

    func run() throws {
        do {
            if all {
                let names = try Lab.downAll()
                print(names.isEmpty ? "no lab was up" : "removed: \(names.joined(separator: ", "))")
            } else if let name {
                guard LabState.names().contains(name) else { throw LabError.labNotFound(name) }
                try Lab.down(name: name)
                print("removed: \(name)")
            }
        } catch { throw labFailure(error) }
    }
}
