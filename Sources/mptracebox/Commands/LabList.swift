import ArgumentParser
import Foundation
import Lab

struct LabList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the labs that are up (or the named scenarios).")

    @Flag(help: "List the scenarios that ship with the tool instead.")
    var scenarios = false

    func run() throws {
        if scenarios {
            for s in Scenario.all {
                print(s.name.padding(toLength: 14, withPad: " ", startingAt: 0) + s.summary)
                print("              " + s.args.joined(separator: " "))
            }
            return
        }
        let labs = Lab.list()
        if labs.isEmpty { print("no lab is up"); return }
        for r in labs {
            let state = r.isStale ? "stale (owner gone; removed by the next `lab up` or `lab down --all`)" : r.phase.rawValue
            print("\(r.name.padding(toLength: 13, withPad: " ", startingAt: 0)) \(state)  \(r.spec.joined(separator: " "))")
        }
    }
}
