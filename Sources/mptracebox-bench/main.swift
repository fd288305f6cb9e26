// Release-mode benchmarks: `swift run -c release mptracebox-bench MODE`.
// Each figure is printed as one `metric value` line.
import Foundation
import Lab

let args = Array(CommandLine.arguments.dropFirst())

/// `lab`: bring the six-hop, two-middlebox scenario up and down a few times (needs root).
func benchLab(runs: Int = 5) throws {
    var ups: [Double] = [], downs: [Double] = []
    for i in 0..<runs {
        let spec = try Scenario.named("sixhop").spec(name: "b\(getpid() % 100000)x\(i)")
        let lab = try Lab.up(spec, ephemeral: true)
        ups.append(lab.upSeconds)
        let t = Date()
        try lab.down()
        downs.append(Date().timeIntervalSince(t))
    }
    func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
    print("lab_up_sixhop_seconds_median \(String(format: "%.3f", median(ups)))")
    print("lab_up_sixhop_seconds_max \(String(format: "%.3f", ups.max() ?? 0))")
    print("lab_down_sixhop_seconds_median \(String(format: "%.3f", median(downs)))")
}

switch args.first {
case "lab":
    do { try benchLab() } catch {
        FileHandle.standardError.write(Data("mptracebox-bench lab: \(error)\n".utf8))
        exit(1)
    }
default:
    print("usage: mptracebox-bench wire|lab")
}
