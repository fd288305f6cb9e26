/// A token bucket on a caller-given clock: `rate` tokens per second, at most `burst` saved up.
/// The scan takes one token per packet, so the long-run send rate never exceeds `rate`.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var last: Double

    public init(rate: Double, burst: Double? = nil, now: Double) {
        self.rate = rate
        // Ten milliseconds' worth by default: enough to ride over a poll() wake-up, small enough to stay smooth.
        self.burst = max(1, burst ?? rate / 100)
        tokens = 1
        last = now
    }

    private mutating func refill(_ now: Double) {
        if now > last {
            tokens = min(burst, tokens + (now - last) * rate)
            last = now
        }
    }

    /// Takes one token if there is one.
    public mutating func take(now: Double) -> Bool {
        refill(now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// True when a token is there (without taking it).
    public mutating func hasToken(now: Double) -> Bool {
        refill(now)
        return tokens >= 1
    }

    /// When the next token will be there (now when one is; strictly later when none is, even
    /// when the wait is below the clock's resolution).
    public mutating func nextToken(now: Double) -> Double {
        refill(now)
        return tokens >= 1 ? now : max(now + (1 - tokens) / rate, now.nextUp)
    }
}

/// Remembers the last `capacity` keys, to drop repeats in a stream without holding it all.
/// The store's unique key catches repeats further apart.
public struct RecentKeys<Key: Hashable>: Sendable where Key: Sendable {
    public let capacity: Int
    private var set: Set<Key> = []
    private var ring: [Key] = []
    private var next = 0

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        ring.reserveCapacity(min(self.capacity, 1 << 16))
    }

    /// True when `key` was not among the recent keys (it is now).
    public mutating func insert(_ key: Key) -> Bool {
        guard !set.contains(key) else { return false }
        if ring.count < capacity {
            ring.append(key)
        } else {
            set.remove(ring[next])
            ring[next] = key
            next = (next + 1) % capacity
        }
        set.insert(key)
        return true
    }
}
