import ArgumentParser

@main
struct MPTraceBox: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "mptracebox",
        abstract: "Find where on a network path middleboxes interfere with TCP and Multipath TCP.",
        discussion: """
            Probes a path hop by hop with crafted TCP/MPTCP segments and increasing TTL, diffs the \
            ICMP quotes against what was sent, and runs complete MPTCP sessions to classify fallback.
            Crafting and capturing need CAP_NET_RAW; the lab and the kernel-RST guard need CAP_NET_ADMIN.
            """,
        version: version,
        subcommands: [TraceCommand.self, ConnectCommand.self, ScanCommand.self, LabCommand.self, SuiteCommand.self]
    )
}
