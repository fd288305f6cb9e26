// Release-mode benchmarks: `swift run -c release mptracebox-bench wire`.
// Each figure is printed as one `metric value` line.
let args = Array(CommandLine.arguments.dropFirst())
print("usage: mptracebox-bench wire")
