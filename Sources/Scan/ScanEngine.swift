import Wire
import Report
import PacketIO

/// A target ready to probe: an address, a port, and where it came from.
public struct ScanTarget: Sendable, Hashable {
    public var address: IPAddress
    public var port: UInt16
    /// The name it was resolved from, when it came from a name.
    public var name: String?
    public var tag: String?
    /// `file:line` of the list line.
    public var origin: String

    public init(address: IPAddress, port: UInt16, name: String? = nil, tag: String? = nil, origin: String) {
        self.address = address
        self.port = port
        self.name = name
        self.tag = tag
        self.origin = origin
    }
}

/// What the engine's source has for it.
public enum ScanPull {
    case target(ScanTarget, source: IPAddress)
    /// Nothing right now (names still resolving); ask again soon.
    case pending
    case exhausted
}

/// One check's end: its finished task (document and summary are drawn from it when asked, so
/// the rendering can happen off the dispatcher's thread) or the error that stopped it.
public struct CheckOutcome {
    public var name: String
    public var task: ScanTask?
    public var error: String?

    public init(name: String, task: ScanTask?, error: String?) {
        self.name = name
        self.task = task
        self.error = error
    }

    public var document: JSON? { error == nil ? task?.document : nil }
    public var summary: CheckSummary? { error == nil ? task?.summary : nil }
}

/// A target's outcome: one document and summary per check, or the error that stopped a check.
/// Its tasks are finished and no longer touched by the engine: it may move to another thread.
public struct ScanOutcome: @unchecked Sendable {
    public var target: ScanTarget
    public var started: Double
    public var finished: Double
    public var checks: [CheckOutcome]
}

/// Counters of a run, for progress and the run's record.
public struct ScanCounters: Sendable {
    public var started = 0
    public var completed = 0
    public var packetsSent = 0
    public var packetsReceived = 0
    public var packetsUnrouted = 0
    public var sendErrors = 0
    /// The longest a captured packet waited before its task saw it (seconds): when this nears
    /// the timeout, the host cannot keep up with the rate.
    public var maxReplyLag = 0.0
    /// When the first and the last packet were sent (the sending period, for the achieved rate).
    public var firstSend: Double?
    public var lastSend: Double?

    /// Packets per second over the sending period.
    public var sendRate: Double {
        guard let a = firstSend, let b = lastSend, b > a, packetsSent > 1 else { return 0 }
        return Double(packetsSent - 1) / (b - a)
    }
}

/// Runs many checks at once over one `PacketNetwork` (one capture, one injector): a dispatcher
/// in the zmap/scamper style. Tasks wait in a time-ordered heap; a global token bucket paces
/// every packet; captured packets are routed to their task by (remote address, local port).
public final class ScanEngine {
    public struct Options: Sendable {
        /// Packets per second, all targets and checks together.
        public var rate: Double
        /// Targets in flight at once.
        public var concurrency: Int
        /// Local ports handed out to tasks (never the kernel's ephemeral range by default).
        public var localPorts: ClosedRange<UInt16>

        public init(rate: Double = 100, concurrency: Int = 64, localPorts: ClosedRange<UInt16> = 61000...65535) {
            self.rate = rate
            self.concurrency = concurrency
            self.localPorts = localPorts
        }
    }

    struct RouteKey: Hashable {
        var remote: IPAddress
        var port: UInt16
    }

    final class Job {
        let target: ScanTarget
        let started: Double
        let portBlock: UInt16
        var slots: [Int] = []
        var results: [CheckOutcome?]
        var remaining: Int

        init(target: ScanTarget, started: Double, portBlock: UInt16, checks: Int) {
            self.target = target
            self.started = started
            self.portBlock = portBlock
            results = Array(repeating: nil, count: checks)
            remaining = checks
        }
    }

    struct Slot {
        var job: Job
        var index: Int
        var name: String
        var task: ScanTask
        var generation: Int
        var routes: [RouteKey]
    }

    public let network: PacketNetwork
    public let checks: [ScanCheck]
    public let options: Options
    public private(set) var counters = ScanCounters()

    private var slots: [Int: Slot] = [:]
    private var nextSlot = 0
    private var routes: [RouteKey: Int] = [:]
    private var heap = WakeHeap()
    /// Tasks with a packet due but no token, in arrival order: each token wakes one of them,
    /// not all (so the cost per packet does not grow with the number in flight).
    private var blocked: [(slot: Int, generation: Int)] = []
    private var blockedHead = 0
    private var freeBlocks: [UInt16]
    private var activeJobs = 0
    private var bucket: TokenBucket
    private let blockSize: Int

    public init(network: PacketNetwork, checks: [ScanCheck], options: Options) throws {
        guard !checks.isEmpty else { throw ScanError.usage("no check to run") }
        guard options.rate > 0, options.rate <= 1_000_000 else { throw ScanError.usage("--rate must be in (0, 1000000] packets/s") }
        guard options.concurrency >= 1 else { throw ScanError.usage("--concurrency must be at least 1") }
        self.network = network
        self.checks = checks
        self.options = options
        let blockSize = checks.reduce(0) { $0 + $1.portsPerTarget }
        self.blockSize = blockSize
        let ports = Int(options.localPorts.upperBound) - Int(options.localPorts.lowerBound) + 1
        let blocks = ports / blockSize
        guard blocks >= options.concurrency else {
            throw ScanError.usage("--concurrency \(options.concurrency) needs \(options.concurrency * blockSize) local ports; the range \(options.localPorts.lowerBound)-\(options.localPorts.upperBound) has \(ports)")
        }
        freeBlocks = (0..<blocks).reversed().map { options.localPorts.lowerBound + UInt16($0 * blockSize) }
        bucket = TokenBucket(rate: options.rate, now: network.now())
    }

    /// Every local port range the tasks of check `index` may use (for a firewall rule scoped to
    /// them, like the kernel-RST guard of session checks): one range per port block.
    public func portRanges(ofCheck index: Int) -> [ClosedRange<UInt16>] {
        let offset = checks[..<index].reduce(0) { $0 + $1.portsPerTarget }
        let count = checks[index].portsPerTarget
        let ports = Int(options.localPorts.upperBound) - Int(options.localPorts.lowerBound) + 1
        return (0..<(ports / blockSize)).map { b in
            let low = Int(options.localPorts.lowerBound) + b * blockSize + offset
            return UInt16(low)...UInt16(low + count - 1)
        }
    }

    /// Runs until `source` is exhausted and every target is done, or `shouldStop` says so (then
    /// targets in flight are abandoned, to be probed again on resume). `complete` gets each
    /// target's outcome as soon as its checks are done.
    public func run(source: () -> ScanPull, shouldStop: () -> Bool = { false },
                    complete: (ScanOutcome) throws -> Void) throws {
        var exhausted = false
        bucket = TokenBucket(rate: options.rate, now: network.now())
        // Targets still in flight when the run stops are abandoned (probed again on resume).
        defer { abandonInFlight() }
        while true {
            if shouldStop() { return }
            var now = network.now()
            // Admit new targets.
            var waitingForInput = false
            while !exhausted && activeJobs < options.concurrency {
                switch source() {
                case .target(let t, let src): try admit(t, source: src, now: now, complete: complete)
                case .pending: waitingForInput = true
                case .exhausted: exhausted = true
                }
                if waitingForInput { break }
            }
            if exhausted && activeJobs == 0 { return }

            // Hand the tokens there are to the tasks that wait for one, oldest first.
            while blockedHead < blocked.count, bucket.hasToken(now: now) {
                let e = blocked[blockedHead]
                blockedHead += 1
                guard let slot = slots[e.slot], slot.generation == e.generation else { continue }
                try drive(e.slot, now: now, complete: complete)
                now = network.now()
            }
            if blockedHead > 4096, blockedHead * 2 > blocked.count {
                blocked.removeFirst(blockedHead)
                blockedHead = 0
            }

            // Drive the tasks whose time has come, for a few milliseconds at most: then the
            // capture is drained, so a reply that came before its deadline is routed before the
            // timer that would declare it lost.
            let driveUntil = now + 0.002
            while let top = heap.peek(), top.time <= now, now < driveUntil {
                heap.pop()
                guard let slot = slots[top.slot], slot.generation == top.generation else { continue }
                try drive(top.slot, now: now, complete: complete)
                now = network.now()
            }

            // Wait for packets until the next thing to do.
            var deadline = heap.peek()?.time ?? (now + 0.05)
            if blockedHead < blocked.count { deadline = min(deadline, bucket.nextToken(now: now)) }
            if waitingForInput { deadline = min(deadline, now + 0.005) }
            deadline = min(max(deadline, now + 0.0002), now + 0.05)
            // Then take everything already captured: replies must not queue up behind the sends
            // (a reply handled late is a reply timed out).
            do {
                var packet = try network.receive(until: deadline)
                var taken = 0
                while let p = packet {
                    route(p)
                    taken += 1
                    guard taken < 512 else { break }
                    let t = network.now()
                    // Routed packets wake their tasks at time 0: those wait for the drain to
                    // end. Only a timer that is late (a timeout, a retry, a send) cuts it short.
                    if taken % 16 == 0, let top = heap.peek(), top.time > 0, top.time <= t - 0.002 { break }
                    packet = try network.receive(until: t + 0.00001)
                }
            } catch { throw ScanError.network("\(error)") }
        }
    }

    func admit(_ t: ScanTarget, source: IPAddress, now: Double, complete: (ScanOutcome) throws -> Void) throws {
        guard let block = freeBlocks.popLast() else { return }
        let job = Job(target: t, started: now, portBlock: block, checks: checks.count)
        activeJobs += 1
        counters.started += 1
        var port = block
        for (i, check) in checks.enumerated() {
            do {
                let task = try check.makeTask(target: t.address, source: source, port: t.port, firstLocalPort: port)
                let id = nextSlot
                nextSlot += 1
                let keys = task.localPorts.map { RouteKey(remote: t.address, port: $0) }
                for k in keys { routes[k] = id }
                slots[id] = Slot(job: job, index: i, name: check.name, task: task, generation: 0, routes: keys)
                job.slots.append(id)
                heap.push(WakeHeap.Entry(time: now, slot: id, generation: 0))
            } catch {
                job.results[i] = CheckOutcome(name: check.name, task: nil, error: "\(error)")
                job.remaining -= 1
            }
            port &+= UInt16(check.portsPerTarget)
        }
        if job.remaining == 0 { try finish(job, now: now, complete: complete) }
    }

    func abandonInFlight() {
        for slot in slots.values { slot.task.cancel() }
        slots.removeAll()
        routes.removeAll()
    }

    /// Steps one task until it waits, is blocked by the rate, or finishes.
    func drive(_ id: Int, now: Double, complete: (ScanOutcome) throws -> Void) throws {
        guard var slot = slots[id] else { return }
        var now = now
        while true {
            let step: ScanStep
            do {
                step = try slot.task.step(now: now, maySend: bucket.hasToken(now: now))
            } catch {
                try finishSlot(id, error: "\(error)", now: now, complete: complete)
                return
            }
            switch step {
            case .send(let bytes):
                _ = bucket.take(now: now)
                do {
                    try network.send(bytes)
                    counters.packetsSent += 1
                    if counters.firstSend == nil { counters.firstSend = now }
                    counters.lastSend = now
                } catch {
                    // One lost probe is what a lossy path does too; the task's retries cover it.
                    counters.sendErrors += 1
                }
                now = network.now()
            case .wait(let until):
                slot.generation += 1
                slots[id] = slot
                heap.push(WakeHeap.Entry(time: until, slot: id, generation: slot.generation))
                return
            case .blocked:
                slot.generation += 1
                slots[id] = slot
                blocked.append((id, slot.generation))
                return
            case .finished:
                try finishSlot(id, error: nil, now: now, complete: complete)
                return
            }
        }
    }

    func finishSlot(_ id: Int, error: String?, now: Double, complete: (ScanOutcome) throws -> Void) throws {
        guard let slot = slots.removeValue(forKey: id) else { return }
        for k in slot.routes where routes[k] == id { routes[k] = nil }
        let job = slot.job
        job.results[slot.index] = CheckOutcome(name: slot.name, task: slot.task, error: error)
        job.remaining -= 1
        if job.remaining == 0 { try finish(job, now: now, complete: complete) }
    }

    func finish(_ job: Job, now: Double, complete: (ScanOutcome) throws -> Void) throws {
        activeJobs -= 1
        freeBlocks.append(job.portBlock)
        counters.completed += 1
        let results = job.results.enumerated().map { i, r in r ?? CheckOutcome(name: checks[i].name, task: nil, error: "not run") }
        try complete(ScanOutcome(target: job.target, started: job.started, finished: now, checks: results))
    }

    /// Hands a captured packet to its task and schedules the task right away.
    func route(_ p: ReceivedPacket) {
        counters.packetsReceived += 1
        counters.maxReplyLag = max(counters.maxReplyLag, network.now() - p.time)
        guard let key = Self.routeKey(p.bytes), let id = routes[key], var slot = slots[id] else {
            counters.packetsUnrouted += 1
            return
        }
        slot.task.handle(p)
        slot.generation += 1
        slots[id] = slot
        heap.push(WakeHeap.Entry(time: 0, slot: id, generation: slot.generation))
    }

    /// The (remote address, local port) a captured packet is about: a TCP answer's source and
    /// destination port, an ICMP error's quoted destination and source port (or echo
    /// identifier), an echo reply's source and identifier.
    static func routeKey(_ bytes: [UInt8]) -> RouteKey? {
        guard let packet = try? IPPacket.parse(bytes) else { return nil }
        switch packet.transport {
        case .tcp(let seg):
            return RouteKey(remote: packet.ip.source, port: seg.header.destinationPort)
        case .icmp(let m):
            if m.isError {
                guard let inner = m.quote?.packet else { return nil }
                switch inner.transport {
                case .tcp(let s): return RouteKey(remote: inner.ip.destination, port: s.header.sourcePort)
                case .partialTCP(let s): return RouteKey(remote: inner.ip.destination, port: s.sourcePort)
                case .icmp(let q): return RouteKey(remote: inner.ip.destination, port: UInt16(truncatingIfNeeded: q.rest >> 16))
                default: return nil
                }
            }
            return RouteKey(remote: packet.ip.source, port: UInt16(truncatingIfNeeded: m.rest >> 16))
        default:
            return nil
        }
    }
}

/// A binary min-heap of wake-ups; stale entries (older generations) are skipped when popped.
struct WakeHeap {
    struct Entry {
        var time: Double
        var slot: Int
        var generation: Int
    }

    private var items: [Entry] = []
    private var order: [Int] = [] // tie-break: insertion sequence
    private var sequence = 0

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }

    func peek() -> Entry? { items.first }

    private func less(_ i: Int, _ j: Int) -> Bool {
        items[i].time < items[j].time || (items[i].time == items[j].time && order[i] < order[j])
    }

    private mutating func swapAt(_ i: Int, _ j: Int) {
        items.swapAt(i, j)
        order.swapAt(i, j)
    }

    mutating func push(_ e: Entry) {
        items.append(e)
        order.append(sequence)
        sequence += 1
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { break }
            swapAt(i, parent)
            i = parent
        }
    }

    @discardableResult
    mutating func pop() -> Entry? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        swapAt(0, items.count - 1)
        items.removeLast()
        order.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, less(l, m) { m = l }
            if r < items.count, less(r, m) { m = r }
            if m == i { break }
            swapAt(i, m)
            i = m
        }
        return top
    }
}

/// Errors of the scan, each mapped to an exit status by the CLI.
public enum ScanError: Error, CustomStringConvertible {
    case usage(String)
    case input(String)
    case store(String)
    case output(String)
    case network(String)

    public var description: String {
        switch self {
        case .usage(let m), .input(let m), .network(let m): return m
        case .store(let m): return "database: \(m)"
        case .output(let m): return "output: \(m)"
        }
    }
}

