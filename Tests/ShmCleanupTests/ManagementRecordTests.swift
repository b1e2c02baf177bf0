import Testing

@testable import ShmCleanup

@Suite struct ManagementRecordTests {
    static let sample = ManagementRecord(
        sessionName: "run42", creatorUID: 1000, creatorPID: 77, creatorSlurmJobID: 12, creatorSlurmStepID: 3,
        flags: ManagementLayout.Flags.noCleanup, createdAtNanos: 5, deviceCount: 2, eventCounter: 9, heartbeat: 4,
        processes: [
            .init(pid: 77, uid: 1000, startTime: 123, slurmJobID: 12, slurmStepID: 3, segmentID: 1),
            .init(pid: 78, uid: 1000, startTime: 456),
        ],
        segments: [.init(id: 0, size: 1 << 20, freeBytes: 1000), .init(id: 1, allocator: 1, size: 4096, freeBytes: 10)],
        regions: [
            .init(id: 1024, size: 8192, rcSegmentSize: 100), .init(id: 7, destroyed: true, size: 4, path: "/scratch/x/"),
        ])

    @Test func roundTrips() throws {
        let bytes = Self.sample.encoded()
        #expect(bytes.count == ManagementLayout.defaultTotalSize)
        let decoded = try bytes.withUnsafeBytes { try ManagementRecord(bytes: $0) }
        #expect(decoded == Self.sample)
        #expect(decoded.processes[1].slurmStepID == nil)
    }

    @Test func detectsForeignLayouts() {
        var bytes = Self.sample.encoded()
        bytes[0] ^= 0xff
        #expect(throws: ManagementRecord.DecodeFailure.foreign) { try bytes.withUnsafeBytes { try ManagementRecord(bytes: $0) } }
        #expect(throws: ManagementRecord.DecodeFailure.foreign) { try [UInt8]().withUnsafeBytes { try ManagementRecord(bytes: $0) } }
    }

    @Test func refusesUnknownVersions() {
        var bytes = Self.sample.encoded()
        bytes[ManagementLayout.Header.layoutVersion] = 99
        #expect(throws: ManagementRecord.DecodeFailure.unsupportedVersion(99)) {
            try bytes.withUnsafeBytes { try ManagementRecord(bytes: $0) }
        }
    }

    @Test func refusesTruncatedOrOverlongTables() {
        let bytes = Self.sample.encoded()
        let truncated = Array(bytes.prefix(ManagementLayout.defaultSegmentTableOffset))
        #expect(throws: ManagementRecord.DecodeFailure.self) { try truncated.withUnsafeBytes { try ManagementRecord(bytes: $0) } }
        var huge = bytes
        huge[ManagementLayout.Header.processCapacity + 2] = 0xff
        #expect(throws: ManagementRecord.DecodeFailure.self) { try huge.withUnsafeBytes { try ManagementRecord(bytes: $0) } }
        var longName = bytes
        longName[ManagementLayout.Header.sessionNameLength + 1] = 0x10
        #expect(throws: ManagementRecord.DecodeFailure.self) { try longName.withUnsafeBytes { try ManagementRecord(bytes: $0) } }
    }
}
