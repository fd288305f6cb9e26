import Wire

/// Packets used by several tests, built with the Wire API.
enum Fixtures {
    static let client4 = IPv4Address(198, 18, 0, 1)
    static let server4 = IPv4Address(198, 18, 3, 2)
    static let client6 = IPv6Address("2001:db8::1")!
    static let server6 = IPv6Address("2001:db8:3::2")!

    /// What a Linux MPTCP v1 client sends: MSS, SACK-permitted, timestamps, NOP, window scale, MP_CAPABLE.
    static let linuxSYNOptions: [TCPOption] = [
        .maximumSegmentSize(1460), .sackPermitted, .timestamps(value: 0x1234_5678, echoReply: 0),
        .noOperation, .windowScale(7), .mptcp(.capable(MPCapable(version: 1, flags: MPCapable.hmacSHA))),
    ]

    static func syn4(ttl: UInt8 = 64, options: [TCPOption] = linuxSYNOptions, payload: [UInt8] = []) -> IPPacket {
        var ip = IPv4Header(source: client4, destination: server4, protocol: .tcp, ttl: ttl)
        ip.identification = 0x4d2
        ip.dontFragment = true
        let tcp = TCPHeader(sourcePort: 40000, destinationPort: 80, sequenceNumber: 0xdead_beef,
                            flags: .syn, window: 64240, options: options)
        return IPPacket(ip: .v4(ip), transport: .tcp(TCPSegment(header: tcp, payload: payload)))
    }

    static func syn6(hopLimit: UInt8 = 64, options: [TCPOption] = linuxSYNOptions) -> IPPacket {
        var ip = IPv6Header(source: client6, destination: server6, nextHeader: .tcp, hopLimit: hopLimit)
        ip.flowLabel = 0xabcde
        let tcp = TCPHeader(sourcePort: 40000, destinationPort: 80, sequenceNumber: 0xdead_beef,
                            flags: .syn, window: 64240, options: options)
        return IPPacket(ip: .v6(ip), transport: .tcp(TCPSegment(header: tcp)))
    }

    /// Every MPTCP option variant (both versions, every length) for round-trip and tshark checks.
    static let mptcpVariants: [(String, MPTCPOption)] = {
        var v: [(String, MPTCPOption)] = []
        v.append(("mpc-v1-syn-4", .capable(MPCapable(version: 1, flags: 0x81))))
        v.append(("mpc-v1-synack-12", .capable(MPCapable(version: 1, flags: 0x01, senderKey: 0x0102_0304_0506_0708))))
        v.append(("mpc-v1-ack-20", .capable(MPCapable(version: 1, flags: 0x01, senderKey: 0x1111_2222_3333_4444, receiverKey: 0x5555_6666_7777_8888))))
        v.append(("mpc-v1-data-22", .capable(MPCapable(version: 1, flags: 0x01, senderKey: 1, receiverKey: 2, dataLevelLength: 100))))
        v.append(("mpc-v1-data-csum-24", .capable(MPCapable(version: 1, flags: 0x81, senderKey: 3, receiverKey: 4, dataLevelLength: 200, checksum: 0xbeef))))
        v.append(("mpc-v0-syn-12", .capable(MPCapable(version: 0, flags: 0x81, senderKey: 0xaabb_ccdd_eeff_0011))))
        v.append(("mpc-v0-ack-20", .capable(MPCapable(version: 0, flags: 0x81, senderKey: 5, receiverKey: 6))))
        v.append(("join-syn-12", .join(MPJoin(flags: 1, addressID: 3, stage: .syn(receiverToken: 0xcafe_f00d, senderNonce: 0x0bad_cafe)))))
        v.append(("join-synack-16", .join(MPJoin(flags: 0, addressID: 2, stage: .synAck(truncatedHMAC: 0x0123_4567_89ab_cdef, senderNonce: 77)))))
        v.append(("join-ack-24", .join(MPJoin(stage: .ack(hmac: Array(1...20))))))
        let map = DSS.Mapping(dataSequenceNumber: 0x1_0000_0001, subflowSequenceNumber: 1, dataLevelLength: 1000)
        let map4 = DSS.Mapping(dataSequenceNumber: 0x1234_5678, subflowSequenceNumber: 1, dataLevelLength: 1000)
        var csumMap = map; csumMap.checksum = 0x1234
        v.append(("dss-ack4", .dss(DSS(dataACK: 0x0102_0304))))
        v.append(("dss-ack8", .dss(DSS(dataACK: 0x0102_0304_0506_0708, dataACK64: true))))
        v.append(("dss-map8", .dss(DSS(mapping: map))))
        v.append(("dss-map4", .dss(DSS(mapping: map4, dsn64: false))))
        v.append(("dss-ack8-map8-csum", .dss(DSS(dataACK: 9, dataACK64: true, mapping: csumMap))))
        v.append(("dss-ack4-map4-fin", .dss(DSS(dataACK: 9, mapping: map4, dsn64: false, dataFIN: true))))
        v.append(("dss-infinite", .dss(DSS(dataACK: 1, mapping: DSS.Mapping(dataSequenceNumber: 5, subflowSequenceNumber: 0, dataLevelLength: 0)))))
        v.append(("dss-fin-only", .dss(DSS(dataACK: nil, mapping: nil, dataFIN: true))))
        let a4 = IPAddress.v4(IPv4Address(198, 18, 9, 9)), a6 = IPAddress.v6(IPv6Address("2001:db8::99")!)
        v.append(("addaddr-v1-v4-hmac-16", .addAddress(AddAddress(addressID: 1, address: a4, hmac: 0x1122_3344_5566_7788))))
        v.append(("addaddr-v1-v4-port-hmac-18", .addAddress(AddAddress(addressID: 1, address: a4, port: 8080, hmac: 0x99))))
        v.append(("addaddr-v1-v4-echo-8", .addAddress(AddAddress(echo: true, addressID: 1, address: a4))))
        v.append(("addaddr-v1-v4-echo-port-10", .addAddress(AddAddress(echo: true, addressID: 1, address: a4, port: 443))))
        v.append(("addaddr-v1-v6-hmac-28", .addAddress(AddAddress(addressID: 2, address: a6, hmac: 0xabc))))
        v.append(("addaddr-v1-v6-port-hmac-30", .addAddress(AddAddress(addressID: 2, address: a6, port: 8080, hmac: 0xabc))))
        v.append(("addaddr-v1-v6-echo-20", .addAddress(AddAddress(echo: true, addressID: 2, address: a6))))
        v.append(("addaddr-v1-v6-echo-port-22", .addAddress(AddAddress(echo: true, addressID: 2, address: a6, port: 80))))
        v.append(("addaddr-v0-v4-8", .addAddress(AddAddress(encoding: .v0, addressID: 4, address: a4))))
        v.append(("addaddr-v0-v4-port-10", .addAddress(AddAddress(encoding: .v0, addressID: 4, address: a4, port: 80))))
        v.append(("addaddr-v0-v6-20", .addAddress(AddAddress(encoding: .v0, addressID: 5, address: a6))))
        v.append(("addaddr-v0-v6-port-22", .addAddress(AddAddress(encoding: .v0, addressID: 5, address: a6, port: 80))))
        v.append(("removeaddr-1", .removeAddress(RemoveAddress(addressIDs: [7]))))
        v.append(("removeaddr-3", .removeAddress(RemoveAddress(addressIDs: [1, 2, 3]))))
        v.append(("prio-3", .priority(MPPriority(backup: true))))
        v.append(("prio-v0-4", .priority(MPPriority(backup: false, addressID: 9))))
        v.append(("fail-12", .fail(MPFail(dataSequenceNumber: 0x0102_0304_0506_0708))))
        v.append(("fastclose-12", .fastClose(MPFastClose(receiverKey: 0x1122_3344_5566_7788))))
        v.append(("tcprst-4", .reset(MPTCPReset(transient: true, reason: 6))))
        v.append(("experimental", .other(MPTCPRawOption(subtype: .experimental, flags: 3, data: [1, 2, 3, 4, 5]))))
        v.append(("unassigned-9", .other(MPTCPRawOption(subtype: MPTCPSubtype(9), data: [0xaa]))))
        return v
    }()
}
