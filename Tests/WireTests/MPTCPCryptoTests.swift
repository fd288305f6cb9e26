import Foundation
import XCTest
import MPTCPCrypto
import TestSupport

final class MPTCPCryptoTests: XCTestCase {
    /// The kernel's KUnit vectors (net/mptcp/crypto_test.c): HMAC-SHA256 with key = key1‖key2 and
    /// msg = nonce1‖nonce2, where each field is the ASCII text of the vector read as big-endian bytes.
    func testKernelKUnitJoinVectors() throws {
        let vectors: [(key: String, msg: String, result: String)] = [
            ("0b0b0b0b0b0b0b0b", "48692054", "8385e24fb4235ac37556b6b886db106284a1da671699f46db1f235ec622dcafa"),
            ("aaaaaaaaaaaaaaaa", "dddddddd", "2c5e219164ff1dca1c4a92318d847bb6b9d44492984e1eb71aff9022f71046e9"),
            ("0102030405060708", "cdcdcdcd", "e73b9ba9969969cefb04aa0d6df18ec2fcc075b6f23b4d8c4da736a5dbbc6e7d"),
        ]
        for v in vectors {
            let k = Array(v.key.utf8), m = Array(v.msg.utf8)
            let key1 = try XCTUnwrap(MPTCPKey(bytes: Array(k[0..<8])))
            let key2 = try XCTUnwrap(MPTCPKey(bytes: Array(k[8..<16])))
            let nonce1 = m[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let nonce2 = m[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let full = try MPTCPHMAC.joinAckFull(.v1, initiatorKey: key1, responderKey: key2,
                                                 initiatorNonce: nonce1, responderNonce: nonce2)
            XCTAssertEqual(hexString(full), v.result)
            let third = try MPTCPHMAC.joinAck(.v1, initiatorKey: key1, responderKey: key2,
                                              initiatorNonce: nonce1, responderNonce: nonce2)
            XCTAssertEqual(hexString(third), String(v.result.prefix(40)))
            // The SYN/ACK form is the same function with the roles swapped.
            let synAck = try MPTCPHMAC.joinSynAck(.v1, responderKey: key1, initiatorKey: key2,
                                                  responderNonce: nonce1, initiatorNonce: nonce2)
            XCTAssertEqual(String(synAck, radix: 16).leftPadded(16), String(v.result.prefix(16)))
        }
    }

    func testKeyBytesAreBigEndian() throws {
        let key = MPTCPKey(rawValue: 0x0102_0304_0506_0708)
        XCTAssertEqual(key.bytes, [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(MPTCPKey(bytes: key.bytes), key)
        XCTAssertNil(MPTCPKey(bytes: [1, 2, 3]))
        XCTAssertEqual(key.description, "0102030405060708")
        XCTAssertEqual(MPTCPToken(rawValue: 0xab).description, "000000ab")
    }

    func testAddAddrRejectsBadAddressLength() {
        XCTAssertThrowsError(try MPTCPHMAC.addAddr(senderKey: MPTCPKey(rawValue: 1), peerKey: MPTCPKey(rawValue: 2),
                                                   addressID: 1, address: [1, 2, 3], port: nil)) { error in
            XCTAssertEqual((error as? MPTCPCryptoError)?.code, .badAddressLength(3))
            XCTAssertTrue("\(error)".contains("4 (IPv4) or 16 (IPv6)"))
        }
    }

    func testRandomKeysAvoidGivenTokens() throws {
        var seen = Set<MPTCPKey>()
        for _ in 0..<64 { seen.insert(try MPTCPKey.random()) }
        XCTAssertGreaterThan(seen.count, 60, "64 draws of a 64-bit CSPRNG should not repeat")
        let avoid = Set(try seen.map { try $0.token(.v1) })
        for _ in 0..<64 {
            let key = try MPTCPKey.random(version: .v1, avoiding: avoid)
            XCTAssertFalse(avoid.contains(try key.token(.v1)))
        }
        // An exhausted attempt budget is a typed error, not a hang.
        XCTAssertThrowsError(try MPTCPKey.random(version: .v0, avoiding: avoid, maxAttempts: 0)) { error in
            XCTAssertEqual((error as? MPTCPCryptoError)?.code, .tokenSpaceExhausted(attempts: 0))
        }
    }

    /// Independent oracle: python3's hashlib/hmac compute the same values for random inputs.
    func testAgainstPythonHashlibForRandomInputs() throws {
        try TestEnvironment.requireTool("python3")
        var rng = SystemRandomNumberGenerator()
        struct Case { var keyA, keyB: MPTCPKey; var nonceA, nonceB: UInt32; var id: UInt8; var addr: [UInt8]; var port: UInt16? }
        let cases: [Case] = (0..<200).map { i in
            Case(keyA: MPTCPKey(rawValue: rng.next()), keyB: MPTCPKey(rawValue: rng.next()),
                 nonceA: rng.next(), nonceB: rng.next(), id: rng.next(),
                 addr: (0..<(i % 2 == 0 ? 4 : 16)).map { _ in rng.next() },
                 port: i % 3 == 0 ? nil : rng.next())
        }
        let input = cases.map {
            "\($0.keyA.description) \($0.keyB.description) \($0.nonceA) \($0.nonceB) \($0.id) \(hexString($0.addr)) \($0.port ?? 0)"
        }.joined(separator: "\n") + "\n"
        let script = """
        import sys, hashlib, hmac, struct
        for line in sys.stdin:
            ka, kb, na, nb, aid, addr, port = line.split()
            ka, kb, addr = bytes.fromhex(ka), bytes.fromhex(kb), bytes.fromhex(addr)
            na, nb = struct.pack('>I', int(na)), struct.pack('>I', int(nb))
            out = []
            for h in (hashlib.sha1, hashlib.sha256):
                d = h(ka).digest()
                out += [d[:4].hex(), d[-8:].hex()]
                out += [hmac.new(kb + ka, nb + na, h).hexdigest(), hmac.new(ka + kb, na + nb, h).hexdigest()]
            msg = bytes([int(aid)]) + addr + struct.pack('>H', int(port))
            out.append(hmac.new(ka + kb, msg, hashlib.sha256).hexdigest())
            print(' '.join(out))
        """
        let output = try TestShell.check(["python3", "-c", script], input: input)
        let lines = output.split(separator: "\n")
        XCTAssertEqual(lines.count, cases.count)
        for (c, line) in zip(cases, lines) {
            let f = line.split(separator: " ").map(String.init)
            var mine: [String] = []
            for version in [MPTCPVersion.v0, .v1] {
                mine.append(try c.keyA.token(version).description)
                mine.append(String(try c.keyA.idsn(version), radix: 16).leftPadded(16))
                mine.append(hexString(try MPTCPHMAC.joinSynAckFull(version, responderKey: c.keyB, initiatorKey: c.keyA,
                                                                   responderNonce: c.nonceB, initiatorNonce: c.nonceA)))
                mine.append(hexString(try MPTCPHMAC.joinAckFull(version, initiatorKey: c.keyA, responderKey: c.keyB,
                                                                initiatorNonce: c.nonceA, responderNonce: c.nonceB)))
                // Truncated forms are the documented slices of the full ones.
                let synAck = try MPTCPHMAC.joinSynAck(version, responderKey: c.keyB, initiatorKey: c.keyA,
                                                      responderNonce: c.nonceB, initiatorNonce: c.nonceA)
                XCTAssertEqual(String(synAck, radix: 16).leftPadded(16), String(mine[mine.count - 2].prefix(16)))
                let ack = try MPTCPHMAC.joinAck(version, initiatorKey: c.keyA, responderKey: c.keyB,
                                                initiatorNonce: c.nonceA, responderNonce: c.nonceB)
                XCTAssertEqual(hexString(ack), String(mine[mine.count - 1].prefix(40)))
            }
            mine.append(hexString(try MPTCPHMAC.addAddrFull(senderKey: c.keyA, peerKey: c.keyB, addressID: c.id,
                                                            address: c.addr, port: c.port)))
            let truncated = try MPTCPHMAC.addAddr(senderKey: c.keyA, peerKey: c.keyB, addressID: c.id,
                                                  address: c.addr, port: c.port)
            XCTAssertEqual(String(truncated, radix: 16).leftPadded(16), String(f.last!.suffix(16)))
            XCTAssertEqual(mine, f, "keyA \(c.keyA) keyB \(c.keyB)")
        }
    }
}

func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).leftPadded(2) }.joined()
}

extension String {
    func leftPadded(_ width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
