/// The engines' view of the network: protocols the I/O layer (NetIO) implements and tests fake.
///
/// Engines (trace, session) are written against these, never against libnet or libpcap, so they
/// run unchanged on a simulated path in unit tests and on raw sockets in the CLI.

/// A packet seen on the wire: network-layer bytes (IPv4 or IPv6 header first) and when.
public struct ReceivedPacket: Sendable, Hashable {
    public var bytes: [UInt8]
    /// Seconds on the same clock as `PacketNetwork.now()`.
    public var time: Double

    public init(bytes: [UInt8], time: Double) {
        self.bytes = bytes
        self.time = time
    }
}

/// Sends crafted IP packets and receives what comes back.
public protocol PacketNetwork: AnyObject {
    /// Sends one complete IP packet (header included), exactly as given.
    func send(_ packet: [UInt8]) throws
    /// The next captured packet, or nil when `deadline` (on `now()`'s clock) passes first.
    func receive(until deadline: Double) throws -> ReceivedPacket?
    /// The current time in seconds (the capture timestamps' clock).
    func now() -> Double
}

/// Failures of the network edge, as engines see them.
public struct PacketIOError: Error, Hashable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
