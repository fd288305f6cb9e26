import Foundation
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
            interference.append(.init(finding: v.session.id, ttl: hop.ttl, address: hop.router.map { "\($0)" }
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
/// coroutine on a thread of its own, and the two strictly take turns: the engine runs only
/// inside `step`, while the dispatcher waits, and parks whenever it sends a packet or waits for
/// one. Its packets still go through the scan's one injector and token bucket, and its replies
/// come from the one capture; nothing of the engine runs concurrently with the dispatcher.
final class SessionCheckTask: ScanTask {
    /// What the parked engine asked for.
    enum Request {
        case none
        case send([UInt8])
        case wait(until: Double)
        case done(Result<SessionRecord, Error>)
    }

    enum Turn { case dispatcher, engine }

    let configuration: SessionConfiguration
    private let condition = NSCondition()
    private var turn = Turn.dispatcher
    private var request = Request.none
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
        condition.lock()
        defer { condition.unlock() }
        clock = now
        if !started {
            started = true
            let thread = Thread { [self] in engineMain() }
            thread.stackSize = 4 << 20
            thread.name = "mptracebox-session"
            thread.start()
            resumeEngine()
        }
        while true {
            switch request {
            case .none:
                resumeEngine()
            case .send(let bytes):
                if sendTaken {
                    sendTaken = false
                    resumeEngine()
                } else if maySend {
                    sendTaken = true
                    return .send(bytes)
                } else {
                    return .blocked
                }
            case .wait(let until):
                if inboxHead < inbox.count || now >= until {
                    resumeEngine()
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
        condition.lock()
        inbox.append(packet)
        condition.unlock()
    }

    /// Ends a session the scan abandons (it stops): the parked engine gets an error and its thread ends.
    func cancel() {
        condition.lock()
        defer { condition.unlock() }
        cancelled = true
        if started, case .done = request { return }
        if started { resumeEngine() }
    }

    /// The engine's coroutine has returned (finished, failed or cancelled).
    var hasEnded: Bool {
        condition.lock()
        defer { condition.unlock() }
        if case .done = request { return true }
        return false
    }

    var document: JSON? { result.map { SessionReport.json($0.record, $0.verdicts) } }

    var summary: CheckSummary? { result.map { SessionSummary.summary($0.record, $0.verdicts) } }

    // MARK: Turn-taking (called with the condition locked)

    /// Lets the engine run until it parks again (or ends).
    private func resumeEngine() {
        turn = .engine
        condition.broadcast()
        while turn != .dispatcher { condition.wait() }
    }

    /// The engine's side: publishes a request and waits for its next turn.
    private func park(_ r: Request) {
        request = r
        turn = .dispatcher
        condition.broadcast()
        while turn != .engine { condition.wait() }
    }

    private func engineMain() {
        condition.lock()
        while turn != .engine { condition.wait() }
        condition.unlock()
        let outcome: Result<SessionRecord, Error>
        do {
            let record = try SessionEngine(configuration: configuration, network: Mailbox(task: self)).run()
            result = (record, SessionClassifier.classify(record))
            outcome = .success(record)
        } catch {
            outcome = .failure(error)
        }
        condition.lock()
        request = .done(outcome)
        turn = .dispatcher
        condition.broadcast()
        condition.unlock()
    }

    /// The engine's network: sends and receives by parking the engine and letting the dispatcher act.
    final class Mailbox: PacketNetwork {
        unowned let task: SessionCheckTask

        init(task: SessionCheckTask) { self.task = task }

        func send(_ packet: [UInt8]) throws {
            task.condition.lock()
            defer { task.condition.unlock() }
            guard !task.cancelled else { throw PacketIOError("the scan stopped") }
            task.park(.send(packet))
            guard !task.cancelled else { throw PacketIOError("the scan stopped") }
        }

        func receive(until deadline: Double) throws -> ReceivedPacket? {
            task.condition.lock()
            defer { task.condition.unlock() }
            while true {
                guard !task.cancelled else { throw PacketIOError("the scan stopped") }
                if task.inboxHead < task.inbox.count {
                    let p = task.inbox[task.inboxHead]
                    task.inboxHead += 1
                    if task.inboxHead == task.inbox.count {
                        task.inbox.removeAll(keepingCapacity: true)
                        task.inboxHead = 0
                    }
                    return p
                }
                if task.clock >= deadline { return nil }
                task.park(.wait(until: deadline))
            }
        }

        /// The dispatcher's clock as of the engine's turn (the engine only runs inside `step`).
        func now() -> Double {
            task.condition.lock()
            defer { task.condition.unlock() }
            return task.clock
        }
    }
}
