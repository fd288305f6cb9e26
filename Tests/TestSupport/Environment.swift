import Foundation
import XCTest

/// Test-environment facts and guards shared by the test targets.
public enum TestEnvironment {
    /// True under CI (`CI=true`), where a test that cannot run is a failure, not a skip.
    public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    public static var isRoot: Bool { geteuid() == 0 }

    /// Skips (locally) or fails (under CI) when a requirement is not met.
    public static func require(_ condition: Bool, _ why: @autoclosure () -> String,
                               file: StaticString = #filePath, line: UInt = #line) throws {
        guard !condition else { return }
        if isCI {
            XCTFail("required under CI=true: \(why())", file: file, line: line)
            throw XCTSkip("failed requirement: \(why())")
        }
        throw XCTSkip(why())
    }

    /// Root, for tests that create namespaces, raw sockets or firewall rules.
    public static func requireRoot(file: StaticString = #filePath, line: UInt = #line) throws {
        try require(isRoot, "this test needs root (network namespaces, raw sockets)", file: file, line: line)
    }

    /// An executable on PATH, e.g. tshark.
    public static func requireTool(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        try require(which(name) != nil, "\(name) is not installed (make deps)", file: file, line: line)
    }

    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin:/usr/sbin:/sbin"
        // map(String.init): without it the + below infers [[Character]] and every lookup fails.
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"] {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
