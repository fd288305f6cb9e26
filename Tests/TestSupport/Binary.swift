import Foundation

/// The built `mptracebox` binary, for tests that run the CLI as a user would.
public enum TestBinary {
    /// MPTRACEBOX_BIN, else the `mptracebox` beside the running test bundle.
    public static func path() throws -> String {
        if let env = ProcessInfo.processInfo.environment["MPTRACEBOX_BIN"] { return env }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        let candidate = dir.appendingPathComponent("mptracebox").path
        guard FileManager.default.isExecutableFile(atPath: candidate) else {
            throw ShellError(argv: [candidate], status: -1, stderr: "the mptracebox binary is not built (swift build)")
        }
        return candidate
    }
}
