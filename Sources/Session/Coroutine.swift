import PacketIO

/// The session engine's view of the network: `PacketNetwork` with calls that may suspend.
///
/// The engine is a sequential program (send, wait for the answer, decide). Written as async
/// functions it runs unchanged on a blocking network (the CLI: nothing ever suspends) and as a
/// coroutine of a scan's dispatcher (a send or a wait suspends until the dispatcher acts).
public protocol AsyncPacketNetwork: AnyObject {
    func send(_ packet: [UInt8]) async throws
    func receive(until deadline: Double) async throws -> ReceivedPacket?
    func now() -> Double
}

/// A blocking `PacketNetwork` seen as an `AsyncPacketNetwork`: its calls never suspend.
public final class BlockingNetwork: AsyncPacketNetwork {
    public let network: PacketNetwork

    public init(_ network: PacketNetwork) { self.network = network }

    public func send(_ packet: [UInt8]) async throws { try network.send(packet) }
    public func receive(until deadline: Double) async throws -> ReceivedPacket? { try network.receive(until: deadline) }
    public func now() -> Double { network.now() }
}

/// A task executor that runs jobs only when drained, on the thread that drains it: an async
/// function started on it is a coroutine of that thread. Resuming one of its continuations
/// enqueues the task's next job here; `drain()` then runs it up to its next suspension.
/// Not thread-safe: one thread enqueues, resumes and drains.
public final class InlineExecutor: TaskExecutor, @unchecked Sendable {
    private var jobs: [UnownedJob] = []
    private var head = 0

    public init() {}

    public func enqueue(_ job: consuming ExecutorJob) {
        jobs.append(UnownedJob(job))
    }

    /// Runs every job there is, including those the jobs enqueue.
    public func drain() {
        while head < jobs.count {
            let job = jobs[head]
            head += 1
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
        jobs.removeAll(keepingCapacity: true)
        head = 0
    }

    /// Runs `body` to its end on the calling thread. Every suspension inside it must be resumed
    /// by the body itself (a blocking network never suspends); one left pending is a programming
    /// error, reported rather than waited for.
    public static func runToCompletion<T>(_ body: @escaping () async throws -> T) throws -> T {
        let executor = InlineExecutor()
        let box = ResultBox<T>()
        _ = Task(executorPreference: executor) {
            do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        }
        executor.drain()
        guard let result = box.result else {
            throw SessionError.network("internal: the session waited on something outside its executor")
        }
        return try result.get()
    }
}

/// Where a task run inline leaves its result (read on the same thread after the drain).
final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}
