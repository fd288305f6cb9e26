import XCTest
import TestSupport
@testable import Lab

/// Up, down, crash recovery, and what the kernel's MPTCP stack does through each box (nstat
/// counters: the ground truth the probe engines are later measured against).
final class LabLifecycleTests: XCTestCase {
    private func leftovers(_ name: String) throws -> [String] {
        let prefix = Lab.namespacePrefix(name)
        var found = try TestShell.check(["ip", "netns", "list"]).split(separator: "\n")
            .map { String($0.split(separator: " ")[0]) }.filter { $0.hasPrefix(prefix) }
        // Processes whose command line names the lab's state directory (servers, proxies).
        let ps = try TestShell.check(["ps", "-eo", "stat=,args="]).split(separator: "\n")
            .filter { !$0.hasPrefix("Z") && $0.contains("/labs/\(name)/") }.map(String.init)
        found += ps
        if FileManager.default.fileExists(atPath: LabState.directory(of: name)) { found.append("state dir") }
        return found
    }

    /// A `sleep 30` child, killed at the end of the test if still running.
    private func sleeper() throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sleep")
        p.arguments = ["30"]
        try p.run()
        addTeardownBlock { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        return p
    }

    func testDownLeavesNothingBehind() throws {
        let lab = try makeLab(self, hops: ["router", "strip:30@syn", "nat", "proxy", "synproxy"],
                              servers: ["mptcp:80", "tcp:81"], secondPath: ["router"])
        XCTAssertEqual(try KernelClient.exchange(lab, port: 81, proto: "tcp", bytes: 10, chunk: 10), 10)
        let hostLinks = try TestShell.check(["ip", "-o", "link"])
        XCTAssertFalse(hostLinks.contains("left@") || hostLinks.contains("right@"), "no lab veth in the host namespace")
        XCTAssertFalse(try leftovers(lab.name).isEmpty)
        let ns = lab.namespace(.hop(path: 0, index: 2))
        XCTAssertTrue(try TestShell.check(["ip", "netns", "exec", ns, "nft", "list", "tables"]).contains("mptracebox"))
        try lab.down()
        XCTAssertEqual(try leftovers(lab.name), [])
        XCTAssertFalse(try TestShell.check(["ip", "-o", "link"]).contains("mtb-"))
    }

    func testCrashedLabIsRemovedByTheNextUp() throws {
        try TestEnvironment.requireRoot()
        // A lab owned by a process that then dies (as a SIGKILLed test run would).
        let owner = try sleeper()
        let name = uniqueLabName()
        let lab = try Lab.up(try LabSpec(name: name, hops: ["router"]))
        // Hand the lab to the short-lived owner.
        var record = try LabState.read(name)
        record.ownerPid = owner.processIdentifier
        record.ownerStart = ProcessInfoProbe.startTime(of: owner.processIdentifier)
        try LabState.write(record)
        XCTAssertFalse(try LabState.read(name).isStale)
        kill(owner.processIdentifier, SIGKILL)
        owner.waitUntilExit()
        XCTAssertTrue(try LabState.read(name).isStale)
        let other = try makeLab(self, hops: ["router"])
        XCTAssertEqual(try leftovers(name), [], "the next up removed the crashed lab")
        XCTAssertTrue(FileManager.default.fileExists(atPath: other.stateDirectory))
        _ = lab
    }

    /// `lab up` SIGKILLed while it waits for its element, and the lab's namespaces then deleted
    /// under the processes (the element, reparented to init, keeps its namespace alive unnamed,
    /// where `ip netns pids` cannot see it): the stale sweep still kills every process the lab
    /// started, from the lab's process record.
    func testProcessesOrphanedByAKilledUpAndDeletedNamespacesAreKilled() throws {
        try TestEnvironment.requireRoot()
        let binary = try LabBinary.path()
        XCTAssertTrue(LabBinary.hasElement(binary), "this build has the element")
        let name = uniqueLabName()
        let up = Process()
        up.executableURL = URL(fileURLWithPath: binary)
        up.arguments = ["lab", "up", "--name", name, "--hop", "delay:10", "--server", "tcp:80"]
        up.standardOutput = FileHandle.nullDevice
        up.standardError = FileHandle.nullDevice
        try up.run()
        addTeardownBlock {
            if up.isRunning { kill(up.processIdentifier, SIGKILL) }
            try? Lab.down(name: name)
        }
        func commandLine(_ pid: Int32) -> String {
            let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
            return String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        }
        // Kill `up` as soon as it has spawned the element, before it has seen the queue bound.
        let deadline = Date().addingTimeInterval(20)
        var element: LabState.Process?
        while element == nil, up.isRunning, Date() < deadline {
            element = LabState.processes(name).first { commandLine($0.pid).contains("lab _element") }
            if element == nil { usleep(1_000) }
        }
        kill(up.processIdentifier, SIGKILL)
        up.waitUntilExit()
        let orphan = try XCTUnwrap(element, "lab up recorded its element")
        let recorded = LabState.processes(name)
        XCTAssertGreaterThanOrEqual(recorded.count, 2, "the server and the element")
        XCTAssertEqual(try LabState.read(name).phase, .starting)

        // The namespaces go, their processes stay: nothing of the lab is visible to `ip netns`.
        for ns in try LabState.read(name).namespaces {
            _ = try TestShell.run(["ip", "netns", "del", ns])
        }
        XCTAssertFalse(try TestShell.check(["ip", "netns", "list"]).contains(Lab.namespacePrefix(name)))
        XCTAssertTrue(orphan.isAlive, "the element outlived its namespace")
        let stat = try String(contentsOfFile: "/proc/\(orphan.pid)/stat", encoding: .utf8)
        let parent = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")[1]
        XCTAssertNotEqual(Int32(parent), up.processIdentifier, "orphaned: reparented away from the dead `up`")

        XCTAssertTrue(Lab.removeStale().contains(name), "the sweep found the lab of a dead `up`")
        for p in recorded {
            // Gone from /proc, or a zombie init has yet to reap: nothing runs.
            let gone = Date().addingTimeInterval(2)
            while ProcessInfoProbe.isRunning(p.pid) && Date() < gone { usleep(5_000) }
            XCTAssertFalse(p.isAlive, "pid \(p.pid) (\(commandLine(p.pid))) was killed")
        }
        XCTAssertEqual(try leftovers(name), [])
    }

    /// A recorded pid that now belongs to another process (another start time) is never killed.
    func testARecordedPidReusedByAnotherProcessIsSpared() throws {
        try TestEnvironment.requireRoot()
        let sleeper = try sleeper()
        let pid = sleeper.processIdentifier
        let start = try XCTUnwrap(ProcessInfoProbe.startTime(of: pid))

        let name = uniqueLabName()
        XCTAssertTrue(try LabState.reserve(name))
        try LabState.recordProcess(name, LabState.Process(pid: pid, start: start + 1))
        try Lab.down(name: name)
        XCTAssertTrue(sleeper.isRunning, "a pid recorded with another start time is someone else's")
        XCTAssertFalse(FileManager.default.fileExists(atPath: LabState.directory(of: name)))

        XCTAssertTrue(try LabState.reserve(name))
        try LabState.recordProcess(name, LabState.Process(pid: pid, start: start))
        try Lab.down(name: name)
        sleeper.waitUntilExit()
        XCTAssertEqual(sleeper.terminationReason, .uncaughtSignal)
        XCTAssertEqual(sleeper.terminationStatus, SIGTERM)
    }

    func testNameClashAndBadInputAreTypedErrors() throws {
        let lab = try makeLab(self, hops: [])
        XCTAssertThrowsError(try Lab.up(lab.spec)) { e in
            guard case LabError.labExists = e else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(try KernelClient.exchange(lab, bytes: 10, chunk: 10), 10, "zero-hop lab works; the clash did not harm it")
        XCTAssertThrowsError(try lab.node(named: "hop9"))
    }

    func testElementBehavioursFailClearlyUntilTheElementExists() throws {
        try TestEnvironment.requireRoot()
        let available = (try? LabBinary.path()).map(LabBinary.hasElement) ?? false
        let name = uniqueLabName()
        let spec = try LabSpec(name: name, hops: ["router", "delay:10"])
        if available {
            // With the element, the hop queues to a running element process.
            let lab = try Lab.up(spec, ephemeral: true)
            addTeardownBlock { try? lab.down() }
            let rules = try lab.check(.hop(path: 0, index: 2), ["iptables-save", "-t", "mangle"])
            XCTAssertTrue(rules.contains("NFQUEUE --queue-num 100"), rules)
            XCTAssertEqual(try KernelClient.exchange(lab, proto: "tcp", bytes: 100, chunk: 100), 100)
        } else {
            XCTAssertThrowsError(try Lab.up(spec)) { e in
                XCTAssertTrue("\(e)".contains("not yet available"), "\(e)")
            }
            XCTAssertEqual(try leftovers(name), [])
        }
    }

    /// The `lab up` figure: a 6-hop path with two middleboxes (printed, not asserted).
    func testSixHopLabUpTime() throws {
        try TestEnvironment.requireRoot()
        let spec = try Scenario.named("sixhop").spec(name: uniqueLabName())
        let lab = try Lab.up(spec, ephemeral: true)
        addTeardownBlock { try? lab.down() }
        print("lab up (sixhop: 6 hops, 2 middleboxes, 2 servers): \(String(format: "%.3f", lab.upSeconds)) s")
        XCTAssertEqual(try KernelClient.exchange(lab, port: 81, proto: "tcp", bytes: 100, chunk: 100), 100)
    }

    /// When `up` returns, every interface has its IPv6 link-local address, so neighbour discovery
    /// answers at once (without it the first IPv6 packets through the lab waited ~1 s, which the
    /// demo's IPv6 trace showed as 1,000 ms round trips).
    func testEveryInterfaceHasItsLinkLocalAddressWhenUpReturns() throws {
        try TestEnvironment.requireRoot()
        let spec = try Scenario.named("sixhop").spec(name: uniqueLabName())
        let lab = try Lab.up(spec, ephemeral: true)
        addTeardownBlock { try? lab.down() }
        for node in spec.nodes {
            let links = try lab.check(node, ["ip", "-o", "link", "show", "type", "veth"]).split(separator: "\n").count
            let lladdrs = try lab.check(node, ["ip", "-6", "-o", "addr", "show", "scope", "link"]).split(separator: "\n").count
            XCTAssertGreaterThan(links, 0, node.name)
            XCTAssertEqual(lladdrs, links, "\(node.name): \(links) veths, \(lladdrs) link-local addresses")
        }
    }

    // MARK: Kernel MPTCP counters through the boxes

    func testCleanPathStaysMPTCP() throws {
        let lab = try makeLab(self, hops: ["router", "router"], servers: ["mptcp:80,csum"])
        XCTAssertEqual(try KernelClient.exchange(lab), 3000)
        let c = try lab.mptcpCounters(.client), s = try lab.mptcpCounters(.server)
        XCTAssertEqual(c["MPTcpExtMPCapableSYNACKRX"], 1)
        XCTAssertEqual(s["MPTcpExtMPCapableACKRX"], 1)
        XCTAssertEqual(c["MPTcpExtMPCapableFallbackSYNACK"], 0)
        XCTAssertEqual(s["MPTcpExtDataCsumErr"], 0)
        XCTAssertEqual(lab.serverConnections(port: 80).last?["mptcp_at_close"] as? Bool, true)
        XCTAssertEqual(try lab.check(.server, ["sysctl", "-n", "net.mptcp.checksum_enabled"]).trimmingCharacters(in: .whitespacesAndNewlines), "1")
    }

    func testStrippedSYNFallsBack() throws {
        let lab = try makeLab(self, hops: ["router", "strip:30@syn"])
        XCTAssertEqual(try KernelClient.exchange(lab), 3000)
        let c = try lab.mptcpCounters(.client), s = try lab.mptcpCounters(.server)
        XCTAssertEqual(c["MPTcpExtMPCapableSYNTX"], 1)
        XCTAssertEqual(c["MPTcpExtMPCapableFallbackSYNACK"], 1)
        XCTAssertEqual(s["MPTcpExtMPCapableSYNRX"], 0, "the server never saw MP_CAPABLE")
        XCTAssertEqual(lab.serverConnections(port: 80).last?["mptcp"] as? Bool, false)
    }

    func testStrippedSYNACKFallsBackOnBothSides() throws {
        let lab = try makeLab(self, hops: ["strip:30@synack"])
        XCTAssertEqual(try KernelClient.exchange(lab), 3000)
        let c = try lab.mptcpCounters(.client), s = try lab.mptcpCounters(.server)
        XCTAssertEqual(s["MPTcpExtMPCapableSYNRX"], 1)
        XCTAssertEqual(c["MPTcpExtMPCapableFallbackSYNACK"], 1)
        XCTAssertEqual(s["MPTcpExtMPCapableFallbackACK"], 1)
    }

    func testStrippedNonSYNMakesTheServerFallBack() throws {
        let lab = try makeLab(self, hops: ["strip:30@nonsyn"])
        XCTAssertEqual(try KernelClient.exchange(lab), 3000)
        let c = try lab.mptcpCounters(.client), s = try lab.mptcpCounters(.server)
        XCTAssertEqual(c["MPTcpExtMPCapableSYNACKRX"], 1, "the handshake itself was MPTCP")
        XCTAssertEqual(s["MPTcpExtMPCapableFallbackACK"], 1, "third ACK lost MP_CAPABLE")
    }

    func testJoinOnAStrippingSecondPathIsReset() throws {
        let lab = try makeLab(self, hops: ["router"], servers: ["mptcp:80,addaddr"], secondPath: ["strip:30@syn"])
        XCTAssertEqual(try KernelClient.exchange(lab, bytes: 10000, chunk: 1000), 10000)
        let c = try lab.mptcpCounters(.client), s = try lab.mptcpCounters(.server)
        XCTAssertGreaterThanOrEqual(c["MPTcpExtMPJoinSynTx"] ?? 0, 1)
        XCTAssertGreaterThanOrEqual(c["MPTcpExtMPRstTx"] ?? 0, 1, "the join got a plain SYN/ACK and was reset")
        XCTAssertEqual(s["MPTcpExtMPJoinSynRx"], 0)
        XCTAssertEqual(c["MPTcpExtAddAddr"], 1, "ADD_ADDR arrived over the first path")
        XCTAssertEqual(lab.serverConnections(port: 80).last?["mptcp_at_close"] as? Bool, true, "the first subflow stayed MPTCP")
    }

    func testJoinOnACleanSecondPathSucceeds() throws {
        let lab = try makeLab(self, hops: ["router"], secondPath: ["router"])
        XCTAssertEqual(try KernelClient.exchange(lab, bytes: 10000, chunk: 1000), 10000)
        let s = try lab.mptcpCounters(.server)
        XCTAssertGreaterThanOrEqual(s["MPTcpExtMPJoinAckRx"] ?? 0, 1)
    }

    /// An element behaviour wired by the lab: DSS removed from data segments only.
    func testStrippedDSSOnDataFallsBackThroughTheElement() throws {
        let lab = try makeLab(self, hops: ["router", "strip:30/2@data"])
        XCTAssertEqual(try KernelClient.exchange(lab, bytes: 2500, chunk: 500), 2500)
        let s = try lab.mptcpCounters(.server)
        XCTAssertEqual(s["MPTcpExtMPCapableACKRX"], 1, "the handshake was MPTCP")
        XCTAssertGreaterThanOrEqual(s["MPTcpExtDssFallback"] ?? 0, 1, "data without DSS made the server fall back")
        let pids = try TestShell.check(["ip", "netns", "pids", lab.namespace(.hop(path: 0, index: 2))])
        XCTAssertFalse(pids.isEmpty, "the element runs in the hop")
    }

    func testDroppedJoinNeverReachesTheServer() throws {
        let lab = try makeLab(self, hops: ["router"], secondPath: ["drop:30/1@syn"])
        XCTAssertEqual(try KernelClient.exchange(lab, bytes: 5000, chunk: 1000), 5000)
        let c = try lab.mptcpCounters(.client), s = try lab.mptcpCounters(.server)
        XCTAssertGreaterThanOrEqual(c["MPTcpExtMPJoinSynTx"] ?? 0, 1)
        XCTAssertEqual(s["MPTcpExtMPJoinSynRx"], 0)
        XCTAssertEqual(s["MPTcpExtMPCapableACKRX"], 1, "MP_CAPABLE (subtype 0) passed the subtype filter")
    }
}
