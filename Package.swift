// swift-tools-version:5.9
// mptracebox: find where on a path middleboxes interfere with TCP and MPTCP.
//
// Dependencies point one way: wire formats <- engines <- scans/suites <- CLI.
// C libraries come from Debian packages through the C* system-library targets;
// only NetIO (libnet, libpcap), MPTCPCrypto (libcrypto) and Lab (NFQUEUE) use them.
import PackageDescription

let package = Package(
    name: "mptracebox",
    products: [
        .executable(name: "mptracebox", targets: ["mptracebox"]),
        .executable(name: "mptracebox-bench", targets: ["mptracebox-bench"]),
        .library(name: "Wire", targets: ["Wire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C system libraries (Debian packages).
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        .systemLibrary(name: "CLibnet", providers: [.apt(["libnet1-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CNetfilterQueue", pkgConfig: "libnetfilter_queue",
                       providers: [.apt(["libnetfilter-queue-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // Pure core: packet formats, options, checksums. Standard library only.
        .target(name: "Wire"),
        // The probe language: text -> the segment to send.
        .target(name: "Probe", dependencies: ["Wire"]),
        // Sent-versus-quoted comparison: typed changes, quote kinds and trace findings.
        .target(name: "Diff", dependencies: ["Wire"]),
        // Protocols for the network edge that engines own and NetIO implements.
        .target(name: "PacketIO"),
        // Ordered JSON and renderers of wire values shared by the output of every command.
        .target(name: "Report", dependencies: ["Wire", "Diff"]),
        // The trace engine: TTL-limited probes, reply matching, per-hop diffs, findings.
        .target(name: "Trace", dependencies: ["Wire", "Probe", "Diff", "PacketIO", "Report"]),
        // The session engine: a crafted MPTCP client over PacketIO, and the fallback classifier.
        .target(name: "Session", dependencies: ["Wire", "PacketIO", "MPTCPCrypto", "Report"]),
        // Scripted probe and suite files (YAML): parsing, expectations, the runner and its reports.
        .target(name: "Suite", dependencies: ["Wire", "Probe", "Diff", "PacketIO", "Report", "Trace",
                                              .product(name: "Yams", package: "Yams")]),
        // MPTCP keys, tokens, IDSNs and HMACs over libcrypto.
        .target(name: "MPTCPCrypto", dependencies: ["CCrypto", "Wire"]),
        // The I/O edge: raw injection (libnet), capture and pcap files (libpcap), privileges.
        .target(name: "NetIO", dependencies: ["CPcap", "CLibnet", "Wire", "PacketIO"]),
        // Scans of target lists: parsing, sharding, pacing, many traces on one capture, SQLite history.
        .target(name: "Scan", dependencies: ["Wire", "Probe", "Trace", "Session", "PacketIO", "Report", "CSQLite"]),
        // The network-namespace testbed: routers, middleboxes, servers.
        .target(name: "Lab", dependencies: ["Wire", "CNetfilterQueue", .product(name: "Yams", package: "Yams")]),

        .executableTarget(
            name: "mptracebox",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "Wire", "Probe", "Trace", "Report", "MPTCPCrypto", "NetIO", "Lab", "Suite", "Scan", "Session",
            ]),
        .executableTarget(name: "mptracebox-bench", dependencies: ["Wire", "MPTCPCrypto", "Lab", "Scan", "Trace", "NetIO", "PacketIO", "Session"]),

        // Shared test helpers: privilege checks that fail (not skip) under CI=true, tshark, netns.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "WireTests", dependencies: ["Wire", "MPTCPCrypto", "NetIO", "TestSupport"]),
        .testTarget(name: "ProbeTests", dependencies: ["Probe", "Wire"]),
        .testTarget(name: "DiffTests", dependencies: ["Diff", "Probe", "Wire"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
        .testTarget(name: "TraceLabTests", dependencies: ["Lab", "TestSupport"]),
        .testTarget(name: "TraceTests", dependencies: ["Trace", "Diff", "Probe", "Wire", "PacketIO", "Report"]),
        .testTarget(name: "SuiteTests",
                    dependencies: ["Suite", "Trace", "Diff", "Probe", "Wire", "PacketIO", "Lab", "TestSupport"],
                    // Read by path (#filePath) by the JUnit report test, not bundled.
                    exclude: ["Resources"]),
        .testTarget(name: "OracleTests",
                    dependencies: ["Wire", "MPTCPCrypto", "NetIO", "Lab", "TestSupport"]),
        .testTarget(name: "SessionTests",
                    dependencies: ["Session", "Scan", "Wire", "MPTCPCrypto", "PacketIO", "NetIO", "Lab", "Report", "TestSupport"]),
        .testTarget(name: "ScanTests", dependencies: ["Scan", "Trace", "Wire", "PacketIO", "Report", "TestSupport"]),
        .testTarget(name: "LabTests", dependencies: ["Lab", "Wire", "NetIO", "TestSupport"]),
    ]
)
