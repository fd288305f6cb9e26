// The element process: NFQUEUE in, pipeline decisions out, with timers for held verdicts
// (delay, reorder), delayed injections and coalesce flushes.

import Foundation
import Wire

/// Counters the element prints when it stops (and tests read).
public struct ElementStats: Hashable, Sendable, CustomStringConvertible {
    public var queued = 0
    public var accepted = 0
    public var modified = 0
    public var dropped = 0
    public var injected = 0
    public var sendErrors = 0

    public var description: String {
        "queued=\(queued) accepted=\(accepted) modified=\(modified) dropped=\(dropped) injected=\(injected) send_errors=\(sendErrors)"
    }
}

public final class ElementRuntime {
    enum Action {
        case verdict(UInt32, NFQueue.Verdict)
        case inject([UInt8])
    }

    private var pipeline: ElementPipeline
    private let queue: NFQueue
    private let injector: ElementInjector
    private var timers: [(due: UInt64, seq: Int, action: Action)] = []
    private var timerSeq = 0
    private var interfaces: [UInt32: [IPAddress]]
    private var local: Set<IPAddress>
    private let log: (String) -> Void
    private let verbose: Bool
    public private(set) var stats = ElementStats()

    public init(queue number: UInt16, behaviours: [ElementBehaviour], seed: UInt64, verbose: Bool = false,
                log: @escaping (String) -> Void) throws {
        pipeline = ElementPipeline(behaviours: behaviours, seed: seed)
        injector = try ElementInjector()
        queue = try NFQueue(number: number)
        interfaces = try InterfaceAddresses.current()
        local = Set(interfaces.values.flatMap { $0 })
        self.verbose = verbose
        self.log = log
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// Runs until `shouldStop` says so (checked at least every 100 ms), then releases every held
    /// packet so nothing stays queued.
    public func run(shouldStop: () -> Bool) throws {
        while !shouldStop() {
            let now = Self.now()
            var wait: UInt64 = 100
            if let due = timers.map(\.due).min() { wait = min(wait, due > now ? due - now : 0) }
            if let due = pipeline.nextDeadline { wait = min(wait, due > now ? due - now : 0) }
            for p in try queue.receive(timeout: Int32(wait)) { try handle(p) }
            try fireTimers(upTo: Self.now())
        }
        try fireTimers(upTo: .max)
        for e in pipeline.flush(now: .max) { send(e.bytes) }
    }

    private func handle(_ p: QueuedPacket) throws {
        stats.queued += 1
        guard let hook = p.hook else {
            try queue.setVerdict(id: p.id, .accept)
            stats.accepted += 1
            return
        }
        if interfaces[p.inputInterface] == nil, p.inputInterface != 0 {
            // An interface that appeared after start (the lab adds links while elements run).
            if let fresh = try? InterfaceAddresses.current() {
                interfaces = fresh
                local = Set(fresh.values.flatMap { $0 })
            }
        }
        let now = Self.now()
        let context = PacketContext(hook: hook, now: now, incomingAddresses: interfaces[p.inputInterface] ?? [],
                                    localAddresses: local)
        let d = pipeline.process(p.bytes, context: context)
        let verdict: NFQueue.Verdict
        switch d.verdict {
        case .accept: verdict = .accept; stats.accepted += 1
        case .acceptModified(let b): verdict = .acceptModified(b); stats.modified += 1
        case .drop: verdict = .drop; stats.dropped += 1
        }
        if verbose {
            log("packet \(p.id) hook=\(hook) len=\(p.bytes.count): \(d.verdict.summary) hold=\(d.verdictDelay)ms inject=\(d.injections.map(\.bytes.count))")
        }
        if d.verdictDelay > 0 {
            schedule(now + UInt64(d.verdictDelay), .verdict(p.id, verdict))
        } else {
            try queue.setVerdict(id: p.id, verdict)
        }
        for e in d.injections {
            if e.delay > 0 { schedule(now + UInt64(e.delay), .inject(e.bytes)) } else { send(e.bytes) }
        }
    }

    private func schedule(_ due: UInt64, _ a: Action) {
        timerSeq += 1
        timers.append((due, timerSeq, a))
    }

    private func fireTimers(upTo now: UInt64) throws {
        let due = timers.filter { $0.due <= now }.sorted { ($0.due, $0.seq) < ($1.due, $1.seq) }
        timers.removeAll { $0.due <= now }
        for t in due {
            switch t.action {
            case .verdict(let id, let v): try queue.setVerdict(id: id, v)
            case .inject(let b): send(b)
            }
        }
        for e in pipeline.flush(now: now) { send(e.bytes) }
    }

    private func send(_ bytes: [UInt8]) {
        do {
            try injector.send(bytes)
            stats.injected += 1
        } catch {
            // One packet the kernel refused (too big, no route) is a lost packet, not a dead element.
            stats.sendErrors += 1
            log("inject failed: \(error)")
        }
    }
}

extension ElementDecision.Verdict {
    var summary: String {
        switch self {
        case .accept: return "accept"
        case .acceptModified(let b): return "accept modified (\(b.count) bytes)"
        case .drop: return "drop"
        }
    }
}
