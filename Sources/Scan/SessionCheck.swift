import Wire
import PacketIO
import Report
import Session

// MARK: The session check

/// The `connect` check (with `join` / `add-addr` turning on the session's MP_JOIN and ADD_ADDR
/// steps): one crafted MPTCP session per target, on three local ports (initial, join, retry).
public struct SessionCheck: ScanCheck {
    public var name: String { "connect" }
    public var portsPerTarget: Int { 3 }
    /// A template: target, source and ports are filled per target.
    public var template: SessionConfiguration
    /// Builds the payload for a target (e.g. an HTTP request naming it); nil keeps the template's.
    public var payload: (@Sendable (IPAddress) -> [UInt8])?

    public init(template: SessionConfiguration, payload: (@Sendable (IPAddress) -> [UInt8])? = nil) {
        self.template = template
        self.payload = payload
    }

    public func makeTask(target: IPAddress, source: IPAddress, port: UInt16, firstLocalPort: UInt16) throws -> ScanTask {
        var c = template
        c.target = target
        c.source = source
        c.destinationPort = port
        c.sourcePort = firstLocalPort
        c.joinSource = nil
        c.joinSourcePort = firstLocalPort &+ 1
        if let payload { c.payload = payload(target) }
        try c.validate()
        return SessionCheckTask(configuration: c)
    }
}

/// What a finished session says in the scan's terms: the session verdict, the join and
/// ADD_ADDR outcomes as findings, and the hop where a fallback was located.
public enum SessionSummary {
    public static func summary(_ r: SessionRecord, _ v: SessionVerdicts) -> CheckSummary {
        var findings: [String] = []
        if let j = v.join { findings.append(j.id) }
        if let a = v.addAddress { findings.append(a.id) }
        var interference: [CheckSummary.Interference] = []
        for i in r.facts.inspections {
            guard let hop = i.firstChanged else { continue }
            // The ADD_ADDR's copies explain the ADD_ADDR outcome; the others the session's.
            let finding = i.segment == "add-addr" ? (v.addAddress?.id ?? "add-addr") : v.session.id
            interference.append(.init(finding: finding, ttl: hop.ttl, address: hop.router.map { "\($0)" }
                                        ?? i.lastIntactBefore?.router.map { "after \($0)" }))
        }
        if let p = r.facts.proxyHop, !interference.contains(where: { $0.finding == v.session.id }) {
            interference.append(.init(finding: v.session.id, ttl: p, address: nil))
        }
        return CheckSummary(verdict: v.session.id, findings: findings, interference: interference)
    }
}

/// Runs a `SessionEngine` as a scan task.
///
/// The engine is a sequential program (send, wait for the answer, decide), which keeps its
/// protocol logic readable; the dispatcher needs a task it can step. So the engine runs as a
/// coroutine of the dispatcher: an async task on an `InlineExecutor` that only this task drains.
/// Its network is a mailbox: a send or a wait suspends the engine and leaves a request, which
/// `step` turns into what the dispatcher does (send when the rate allows, wake at the deadline
/// or when a packet is routed here); resuming the engine runs it on the dispatcher's thread up
/// to its next suspension. No thread of its own, no locks: everything happens inside `step`.
final class SessionCheckTask: ScanTask {
    /// What the suspended engine asked for.
    enum Request {
        case none
        case send([UInt8])
        case wait(until: Double)
        case done(Result<SessionRecord, Error>)
    }

    let configuration: SessionConfiguration
    private let executor = InlineExecutor()
    private var request = Request.none
    private var continuation: CheckedContinuation<Void, Error>?
    /// The packet of a `.send` request was handed to the dispatcher (it sends it before stepping again).
    private var sendTaken = false
    private var inbox: [ReceivedPacket] = []
    private var inboxHead = 0
    private var clock = 0.0
    private var started = false
    private var cancelled = false
    private var result: (record: SessionRecord, verdicts: SessionVerdicts)?

    init(configuration: SessionConfiguration) {
        self.configuration = configuration
    }

    var localPorts: [UInt16] { configuration.localPorts }

    func step(now: Double, maySend: Bool) throws -> ScanStep {
        clock = now
        if !started {
            started = true
            let engine = SessionEngine(configuration: configuration, network: Mailbox(task: self))
            _ = Task(executorPreference: executor) { [self] in
                let outcome: Result<SessionRecord, Error>
                do {
                    let record = try await engine.runAsync()
                    result = (record, SessionClassifier.classify(record))
                    outcome = .success(record)
                } catch {
                    outcome = .failure(error)
                }
                request = .done(outcome)
            }
            executor.drain()
        }
        while true {
            switch request {
            case .none:
                // Only before the task's first job ran; the drain above runs it.
                throw ScanError.network("internal: the session engine did not start")
            case .send(let bytes):
                if sendTaken {
                    sendTaken = false
                    resume()
                } else if maySend {
                    sendTaken = true
                    return .send(bytes)
                } else {
                    return .blocked
                }
            case .wait(let until):
                if inboxHead < inbox.count || now >= until {
                    resume()
                } else {
                    return .wait(until: until)
                }
            case .done(.success):
                return .finished
            case .done(.failure(let error)):
                throw error
            }
        }
    }

    func handle(_ packet: ReceivedPacket) {
        inbox.append(packet)
    }

    /// Ends a session the scan abandons (it stops): the suspended engine gets an error and ends.
    func cancel() {
        cancelled = true
        if let c = continuation {
            continuation = nil
            c.resume(throwing: PacketIOError("the scan stopped"))
            executor.drain()
        }
    }

    /// The engine's task has returned (finished, failed or cancelled).
    var hasEnded: Bool {
        if case .done = request { return true }
        return false
    }

    var document: JSON? { result.map { SessionReport.json($0.record, $0.verdicts) } }

    var summary: CheckSummary? { result.map { SessionSummary.summary($0.record, $0.verdicts) } }

    /// Lets the engine run up to its next suspension (or its end).
    private func resume() {
        guard let c = continuation else { return }
        continuation = nil
        c.resume()
        executor.drain()
    }

    /// The engine's side: leaves a request and suspends until `step` resumes it.
    fileprivate func suspend(_ r: Request) async throws {
        guard !cancelled else { throw PacketIOError("the scan stopped") }
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            request = r
            continuation = c
        }
    }

    fileprivate func nextPacket(until deadline: Double) async throws -> ReceivedPacket? {
        while true {
            if inboxHead < inbox.count {
                let p = inbox[inboxHead]
                inboxHead += 1
                if inboxHead == inbox.count {
                    inbox.removeAll(keepingCapacity: true)
                    inboxHead = 0
                }
                return p
            }
            if clock >= deadline { return nil }
            try await suspend(.wait(until: deadline))
        }
    }

    /// The engine's network: sends and receives by suspending the engine and letting the dispatcher act.
    final class Mailbox: AsyncPacketNetwork {
        unowned let task: SessionCheckTask

        init(task: SessionCheckTask) { self.task = task }

        func send(_ packet: [UInt8]) async throws { try await task.suspend(.send(packet)) }

        func receive(until deadline: Double) async throws -> ReceivedPacket? { try await task.nextPacket(until: deadline) }

        /// The dispatcher's clock as of the engine's turn (the engine only runs inside `step`).
        func now() -> Double { task.clock }
    }
}
