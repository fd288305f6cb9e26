import Foundation
import Wire

/// Which addresses a name (or a literal) gives targets for.
public enum ScanFamily: String, Sendable {
    /// The first address the resolver returns (its preferred order).
    case any
    case v4
    case v6
    /// The first IPv4 and the first IPv6 address: two targets per name.
    case both

    func pick(_ addresses: [IPAddress]) -> [IPAddress] {
        switch self {
        case .any: return Array(addresses.prefix(1))
        case .v4: return Array(addresses.filter(\.isV4).prefix(1))
        case .v6: return Array(addresses.filter { !$0.isV4 }.prefix(1))
        case .both: return Array(addresses.filter(\.isV4).prefix(1)) + Array(addresses.filter { !$0.isV4 }.prefix(1))
        }
    }
}

/// Reads list files (or stdin, `-`) line by line without holding them: one line in memory at a time.
public struct LineReader {
    public let inputs: [String]

    public init(inputs: [String]) { self.inputs = inputs }

    /// Calls `body(origin, lineNumber, line)` for every line; stops early when it returns false.
    public func forEachLine(_ body: (String, Int, Substring) throws -> Bool) throws {
        for path in inputs {
            let file: UnsafeMutablePointer<FILE>?
            if path == "-" { file = stdin } else { file = fopen(path, "r") }
            guard let f = file else {
                throw ScanError.input("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            defer { if path != "-" { fclose(f) } }
            let name = path == "-" ? "stdin" : path
            var buffer: UnsafeMutablePointer<CChar>?
            var capacity = 0
            defer { free(buffer) }
            var n = 0
            while true {
                let length = getline(&buffer, &capacity, f)
                if length < 0 { break }
                n += 1
                guard let b = buffer else { continue }
                // Invalid UTF-8 is repaired (U+FFFD) and then refused by the grammar, never trapped on.
                let raw = UnsafeBufferPointer(start: UnsafeRawPointer(b).assumingMemoryBound(to: UInt8.self), count: length)
                var line = String(decoding: raw, as: UTF8.self)
                if line.hasSuffix("\n") { line.removeLast() }
                if !(try body(name, n, Substring(line))) { return }
            }
            if ferror(f) != 0 { throw ScanError.input("error reading \(name): \(String(cString: strerror(errno)))") }
        }
    }
}

/// What the feed hands the scan, in the order it has it.
public enum FeedItem: Sendable {
    case target(ScanTarget)
    /// A line that is not a target (with `file:line`).
    case badLine(ScanInputError)
    /// A name that gave no usable address.
    case unresolved(name: String, port: UInt16, tag: String?, origin: String, message: String)
    case blocked(IPAddress, reason: String)
    /// Dropped: repeated within the dedup window, or of a family not asked for.
    case duplicate
    case filtered
    case end
}

/// What the feed is told.
public struct FeedSettings: Sendable {
    public var inputs: [String]
    public var defaultPort: UInt16
    public var family: ScanFamily
    public var blocklist: Blocklist
    public var shard: Shard
    public var seed: UInt64
    /// The most addresses one CIDR line may expand to.
    public var maxExpand: UInt64
    public var resolverTimeout: Double
    public var resolverConcurrency: Int
    public var dedupWindow: Int

    public init(inputs: [String], defaultPort: UInt16 = 80, family: ScanFamily = .any, blocklist: Blocklist = Blocklist(),
                shard: Shard = .all, seed: UInt64 = 0, maxExpand: UInt64 = 65536, resolverTimeout: Double = 5,
                resolverConcurrency: Int = 16, dedupWindow: Int = 1 << 16) {
        self.inputs = inputs
        self.defaultPort = defaultPort
        self.family = family
        self.blocklist = blocklist
        self.shard = shard
        self.seed = seed
        self.maxExpand = maxExpand
        self.resolverTimeout = resolverTimeout
        self.resolverConcurrency = resolverConcurrency
        self.dedupWindow = dedupWindow
    }
}

/// A pass over the lists that counts target indices and bad lines (for sharding, --strict and
/// the progress bar's total) without keeping anything.
public struct ListCount: Sendable {
    public var indices: UInt64 = 0
    public var badLines = 0
    public var firstErrors: [ScanInputError] = []

    public static func count(_ settings: FeedSettings) throws -> ListCount {
        var c = ListCount()
        try LineReader(inputs: settings.inputs).forEachLine { origin, n, line in
            switch TargetFeed.parse(line, origin: origin, line: n, maxExpand: settings.maxExpand) {
            case .success(let e?): c.indices += e.count
            case .success(nil): break
            case .failure(let e):
                c.badLines += 1
                if c.firstErrors.count < 20 { c.firstErrors.append(e) }
            }
            return true
        }
        return c
    }
}

/// The input pipeline, on its own thread: lines → entries → shard → addresses (names resolved
/// by a bounded pool with a timeout) → blocklist → dedup window → a bounded queue the scan pulls
/// from. The queue's bound keeps memory flat whatever the list's size.
public final class TargetFeed: @unchecked Sendable {
    public let settings: FeedSettings
    private let resolve: @Sendable (String) throws -> [IPAddress]
    private let queue: BoundedQueue<FeedItem>
    private let membership: ShardMembership?
    private let lock = NSLock()
    private var recent: RecentKeys<DedupKey>
    private var thread: Thread?

    struct DedupKey: Hashable, Sendable {
        var address: AddressKey
        var port: UInt16
    }

    /// `indices` is the list's target count (from `ListCount`), needed when sharding.
    public init(settings: FeedSettings, indices: UInt64?, resolve: @escaping @Sendable (String) throws -> [IPAddress]) throws {
        self.settings = settings
        self.resolve = resolve
        queue = BoundedQueue(capacity: 4096)
        recent = RecentKeys(capacity: settings.dedupWindow)
        if settings.shard.count > 1 {
            guard let n = indices else { throw ScanError.usage("--shard needs the list's size: give list files, not stdin") }
            membership = ShardMembership(size: n, shard: settings.shard, seed: settings.seed)
        } else {
            membership = nil
        }
    }

    public func start() {
        let t = Thread { [self] in
            do { try produce() } catch {
                queue.push(.badLine(ScanInputError(location: "input", message: "\(error)")))
            }
            queue.push(.end)
        }
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// The next item if one is ready (never blocks).
    public func poll() -> FeedItem? { queue.tryPop() }

    /// Waits up to `timeout` seconds for the next item.
    public func next(timeout: Double) -> FeedItem? { queue.pop(timeout: timeout) }

    static func parse(_ line: Substring, origin: String, line n: Int, maxExpand: UInt64) -> Result<TargetEntry?, ScanInputError> {
        switch TargetLineParser.parse(line) {
        case .success(let e?):
            if case .prefix(let p) = e.host, p.addressCount > maxExpand {
                return .failure(ScanInputError(location: "\(origin):\(n)",
                    message: "\(p) expands to \(p.addressCount == .max ? "more than 2^64" : String(p.addressCount)) addresses, over the cap of \(maxExpand) (--max-expand)"))
            }
            return .success(e)
        case .success(nil): return .success(nil)
        case .failure(let m): return .failure(ScanInputError(location: "\(origin):\(n)", message: m.message))
        }
    }

    private func produce() throws {
        var index: UInt64 = 0
        let slots = DispatchSemaphore(value: max(1, settings.resolverConcurrency))
        let group = DispatchGroup()
        try LineReader(inputs: settings.inputs).forEachLine { origin, n, line in
            switch Self.parse(line, origin: origin, line: n, maxExpand: settings.maxExpand) {
            case .success(nil): break
            case .failure(let e): queue.push(.badLine(e))
            case .success(let e?):
                let port = e.port ?? settings.defaultPort
                let where_ = "\(origin):\(n)"
                switch e.host {
                case .address(let a):
                    if mine(index) { offer(a, port: port, name: nil, tag: e.tag, origin: where_, literal: true) }
                    index += 1
                case .prefix(let p):
                    for i in 0..<p.addressCount {
                        if mine(index) { offer(p.address(at: i), port: port, name: nil, tag: e.tag, origin: where_, literal: true) }
                        index += 1
                    }
                case .name(let name):
                    if mine(index) { lookUp(name, port: port, tag: e.tag, origin: where_, slots: slots, group: group) }
                    index += 1
                }
            }
            return true
        }
        group.wait()
    }

    private func mine(_ index: UInt64) -> Bool { membership?.contains(index) ?? true }

    private func offer(_ a: IPAddress, port: UInt16, name: String?, tag: String?, origin: String, literal: Bool) {
        if literal {
            switch (settings.family, a) {
            case (.v4, .v6), (.v6, .v4): queue.push(.filtered); return
            default: break
            }
        }
        if let why = settings.blocklist.reason(a) { queue.push(.blocked(a, reason: why)); return }
        lock.lock()
        let new = recent.insert(DedupKey(address: AddressKey(a), port: port))
        lock.unlock()
        queue.push(new ? .target(ScanTarget(address: a, port: port, name: name, tag: tag, origin: origin)) : .duplicate)
    }

    /// Resolves on the pool; gives up after the timeout (the look-up's thread finishes on its own).
    private func lookUp(_ name: String, port: UInt16, tag: String?, origin: String, slots: DispatchSemaphore, group: DispatchGroup) {
        slots.wait()
        group.enter()
        let once = Once()
        let deliver: @Sendable (Result<[IPAddress], Error>) -> Void = { [self] result in
            guard once.claim() else { return }
            switch result {
            case .success(let all):
                let picked = settings.family.pick(all)
                if picked.isEmpty {
                    queue.push(.unresolved(name: name, port: port, tag: tag, origin: origin,
                                           message: "\(name) has no \(settings.family == .v6 ? "IPv6" : settings.family == .v4 ? "IPv4" : "") address"))
                }
                for a in picked { offer(a, port: port, name: name, tag: tag, origin: origin, literal: false) }
            case .failure(let e):
                queue.push(.unresolved(name: name, port: port, tag: tag, origin: origin, message: "\(e)"))
            }
            slots.signal()
            group.leave()
        }
        let resolve = self.resolve
        DispatchQueue.global().async { deliver(Result { try resolve(name) }) }
        let timeout = settings.resolverTimeout
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
            deliver(.failure(ScanError.input("cannot resolve \(name): no answer within \(timeout) s")))
        }
    }
}

/// True the first time only (thread-safe).
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    func claim() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if done { return false }
        done = true
        return true
    }
}

/// A fixed-capacity FIFO between threads: producers wait when it is full.
final class BoundedQueue<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [T?]
    private var head = 0
    private var count = 0

    init(capacity: Int) { items = Array(repeating: nil, count: max(1, capacity)) }

    func push(_ item: T) {
        condition.lock()
        while count == items.count { condition.wait() }
        items[(head + count) % items.count] = item
        count += 1
        condition.broadcast()
        condition.unlock()
    }

    func tryPop() -> T? {
        condition.lock()
        defer { condition.unlock() }
        return takeLocked()
    }

    func pop(timeout: Double) -> T? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while count == 0 {
            if !condition.wait(until: deadline) { return nil }
        }
        return takeLocked()
    }

    private func takeLocked() -> T? {
        guard count > 0 else { return nil }
        let item = items[head]
        items[head] = nil
        head = (head + 1) % items.count
        count -= 1
        condition.broadcast()
        return item
    }
}
