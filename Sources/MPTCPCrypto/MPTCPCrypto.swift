import CCrypto

/// The MPTCP protocol version: it picks the hash (RFC 6824 v0: SHA-1, RFC 8684 v1: SHA-256).
public enum MPTCPVersion: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case v0 = 0
    case v1 = 1

    public var description: String { self == .v0 ? "v0" : "v1" }
    var hash: HashAlgorithm { self == .v0 ? .sha1 : .sha256 }
}

/// A failure inside libcrypto or a malformed input. libcrypto's one-shot functions only fail
/// on allocation failure or a broken installation, but every return code is still checked.
public struct MPTCPCryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        /// A libcrypto call returned failure.
        case libcrypto(function: String)
        /// An ADD_ADDR address that is neither 4 (IPv4) nor 16 (IPv6) bytes.
        case badAddressLength(Int)
        /// No key found whose token avoids the given set within the attempt budget.
        case tokenSpaceExhausted(attempts: Int)
    }

    public let code: Code

    public var description: String {
        switch code {
        case .libcrypto(let function):
            return "\(function) failed in libcrypto: check that libssl3 is installed and not broken"
        case .badAddressLength(let n):
            return "ADD_ADDR address must be 4 (IPv4) or 16 (IPv6) bytes, got \(n)"
        case .tokenSpaceExhausted(let attempts):
            return "no random key with an unused token after \(attempts) attempts: too many tokens to avoid"
        }
    }
}

/// A 32-bit MPTCP connection token (RFC 8684 §3.2).
public struct MPTCPToken: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { hex(rawValue, width: 8) }
}

/// A 64-bit MPTCP key, as carried in MP_CAPABLE (network byte order on the wire).
public struct MPTCPKey: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Reads a key from its 8 wire bytes (big-endian); nil unless exactly 8 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 8 else { return nil }
        rawValue = bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The 8 bytes as they appear on the wire and as they are hashed.
    public var bytes: [UInt8] { bigEndianBytes(rawValue) }

    public var description: String { hex(rawValue, width: 16) }

    /// The token: the most significant 32 bits of hash(key).
    public func token(_ version: MPTCPVersion) throws -> MPTCPToken {
        let digest = try version.hash.digest(bytes)
        return MPTCPToken(rawValue: UInt32(truncatingIfNeeded: readBigEndian(digest[0..<4])))
    }

    /// The initial data sequence number: the least significant 64 bits of hash(key).
    public func idsn(_ version: MPTCPVersion) throws -> UInt64 {
        let digest = try version.hash.digest(bytes)
        return readBigEndian(digest[(digest.count - 8)...])
    }

    /// A fresh random key from libcrypto's CSPRNG. When `avoiding` is not empty, keys whose
    /// token (for `version`) is in that set are drawn again: a host must not reuse a token
    /// of one of its live connections (RFC 8684 §3.1).
    public static func random(version: MPTCPVersion = .v1, avoiding tokens: Set<MPTCPToken> = [],
                              maxAttempts: Int = 1024) throws -> MPTCPKey {
        for _ in 0..<max(0, maxAttempts) {
            var raw = [UInt8](repeating: 0, count: 8)
            let ok = raw.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, 8) }
            guard ok == 1 else { throw MPTCPCryptoError(code: .libcrypto(function: "RAND_bytes")) }
            guard let key = MPTCPKey(bytes: raw) else { continue }
            if tokens.isEmpty { return key }
            if try !tokens.contains(key.token(version)) { return key }
        }
        throw MPTCPCryptoError(code: .tokenSpaceExhausted(attempts: max(0, maxAttempts)))
    }
}

/// The HMACs of MP_JOIN and ADD_ADDR (RFC 8684 §3.2, §3.4.1).
///
/// Naming follows the RFC: host A initiates the subflow (sends the MP_JOIN SYN and the third
/// ACK), host B responds (sends the SYN/ACK). Nonces are the 32-bit random numbers of the
/// MP_JOIN SYN (A's) and SYN/ACK (B's).
public enum MPTCPHMAC {
    /// HMAC(key = keyA‖keyB, msg = nonceA‖nonceB), full length: 20 bytes (v0), 32 bytes (v1).
    /// Every join HMAC is this function with the roles ordered by who sends it.
    public static func join(_ version: MPTCPVersion, key first: MPTCPKey, _ second: MPTCPKey,
                            nonce firstNonce: UInt32, _ secondNonce: UInt32) throws -> [UInt8] {
        try version.hash.hmac(key: first.bytes + second.bytes,
                              message: bigEndianBytes(firstNonce) + bigEndianBytes(secondNonce))
    }

    /// The responder's full HMAC for the SYN/ACK: HMAC(KeyB‖KeyA, NonceB‖NonceA).
    public static func joinSynAckFull(_ version: MPTCPVersion, responderKey: MPTCPKey, initiatorKey: MPTCPKey,
                                      responderNonce: UInt32, initiatorNonce: UInt32) throws -> [UInt8] {
        try join(version, key: responderKey, initiatorKey, nonce: responderNonce, initiatorNonce)
    }

    /// The SYN/ACK's truncated HMAC: the leftmost 64 bits of `joinSynAckFull`.
    public static func joinSynAck(_ version: MPTCPVersion, responderKey: MPTCPKey, initiatorKey: MPTCPKey,
                                  responderNonce: UInt32, initiatorNonce: UInt32) throws -> UInt64 {
        let full = try joinSynAckFull(version, responderKey: responderKey, initiatorKey: initiatorKey,
                                      responderNonce: responderNonce, initiatorNonce: initiatorNonce)
        return readBigEndian(full[0..<8])
    }

    /// The initiator's full HMAC for the third ACK: HMAC(KeyA‖KeyB, NonceA‖NonceB).
    public static func joinAckFull(_ version: MPTCPVersion, initiatorKey: MPTCPKey, responderKey: MPTCPKey,
                                   initiatorNonce: UInt32, responderNonce: UInt32) throws -> [UInt8] {
        try join(version, key: initiatorKey, responderKey, nonce: initiatorNonce, responderNonce)
    }

    /// The third ACK's HMAC field: the leftmost 160 bits (20 bytes) of `joinAckFull`.
    public static func joinAck(_ version: MPTCPVersion, initiatorKey: MPTCPKey, responderKey: MPTCPKey,
                               initiatorNonce: UInt32, responderNonce: UInt32) throws -> [UInt8] {
        let full = try joinAckFull(version, initiatorKey: initiatorKey, responderKey: responderKey,
                                   initiatorNonce: initiatorNonce, responderNonce: responderNonce)
        return Array(full[0..<20])
    }

    /// The full ADD_ADDR HMAC-SHA256 sent by host X (v1 only: v0 ADD_ADDR has no HMAC):
    /// HMAC(key = KeyX‖KeyPeer, msg = address id ‖ address (4 or 16 bytes) ‖ port (2 bytes, 0 if absent)).
    public static func addAddrFull(senderKey: MPTCPKey, peerKey: MPTCPKey, addressID: UInt8,
                                   address: [UInt8], port: UInt16?) throws -> [UInt8] {
        guard address.count == 4 || address.count == 16 else {
            throw MPTCPCryptoError(code: .badAddressLength(address.count))
        }
        let message = [addressID] + address + bigEndianBytes(port ?? 0)
        return try HashAlgorithm.sha256.hmac(key: senderKey.bytes + peerKey.bytes, message: message)
    }

    /// The ADD_ADDR option's 64-bit truncated HMAC: the rightmost 64 bits of `addAddrFull`.
    public static func addAddr(senderKey: MPTCPKey, peerKey: MPTCPKey, addressID: UInt8,
                               address: [UInt8], port: UInt16?) throws -> UInt64 {
        let full = try addAddrFull(senderKey: senderKey, peerKey: peerKey, addressID: addressID,
                                   address: address, port: port)
        return readBigEndian(full[(full.count - 8)...])
    }
}

/// The two hashes MPTCP uses, over libcrypto's one-shot functions.
enum HashAlgorithm {
    case sha1, sha256

    var size: Int { self == .sha1 ? 20 : 32 }
    var name: String { self == .sha1 ? "SHA-1" : "SHA-256" }

    private var md: OpaquePointer? { self == .sha1 ? EVP_sha1() : EVP_sha256() }

    func digest(_ data: [UInt8]) throws -> [UInt8] {
        guard let md else { throw MPTCPCryptoError(code: .libcrypto(function: "EVP_\(name)")) }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var outLength: UInt32 = 0
        let ok = data.withUnsafeBytes { input in
            out.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &outLength, md, nil)
            }
        }
        guard ok == 1, Int(outLength) == size else {
            throw MPTCPCryptoError(code: .libcrypto(function: "EVP_Digest(\(name))"))
        }
        return Array(out[0..<size])
    }

    func hmac(key: [UInt8], message: [UInt8]) throws -> [UInt8] {
        guard let md else { throw MPTCPCryptoError(code: .libcrypto(function: "EVP_\(name)")) }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var outLength: UInt32 = 0
        let result = key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                out.withUnsafeMutableBufferPointer { o in
                    HMAC(md, k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self),
                         m.count, o.baseAddress, &outLength)
                }
            }
        }
        guard result != nil, Int(outLength) == size else {
            throw MPTCPCryptoError(code: .libcrypto(function: "HMAC(\(name))"))
        }
        return Array(out[0..<size])
    }
}

func bigEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<T.bitWidth / 8).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
}

func readBigEndian<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
    bytes.reduce(0) { $0 << 8 | UInt64($1) }
}

private func hex<T: FixedWidthInteger>(_ value: T, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}
