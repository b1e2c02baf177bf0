import Testing

@testable import ShmCleanup

@Suite struct ShmObjectNameTests {
    let id = ShmID(number: 0xeca8_59e3)

    @Test func formatsAndParsesEveryKind() {
        let kinds: [(ShmObjectName.Kind, String)] = [
            (.management, "fmq_eca859e3_mng"),
            (.segment(0), "fmq_eca859e3_m_0"),
            (.segment(17), "fmq_eca859e3_m_17"),
            (.region(1024), "fmq_eca859e3_rg_1024"),
            (.regionQueue(1024), "fmq_eca859e3_rgq_1024"),
            (.regionRefCount(3), "fmq_eca859e3_rrc_3"),
            (.monitorFlag, "sem.fmq_eca859e3_ms"),
            (.legacyMainSegment, "fmq_eca859e3_main"),
            (.legacyMutex, "sem.fmq_eca859e3_mtx"),
            (.legacyCondition, "fmq_eca859e3_cv"),
            (.legacyHeartbeatQueue, "fmq_eca859e3_cq"),
        ]
        for (kind, fileName) in kinds {
            let name = ShmObjectName(id, kind)
            #expect(name.fileName == fileName)
            #expect(ShmObjectName(fileName: fileName) == name)
        }
        #expect(ShmObjectName(id, .monitorFlag).posixName == "/fmq_eca859e3_ms")
        #expect(ShmObjectName(id, .segment(2)).posixName == "/fmq_eca859e3_m_2")
    }

    @Test func rejectsNamesOutsideTheGrammar() {
        let bad = [
            "fmq_eca859e3", "fmq_eca859e3_", "fmq_eca859e3_m_", "fmq_eca859e3_m_01", "fmq_eca859e3_m_-1",
            "fmq_eca859e3_m_x", "fmq_eca859e3_foo", "fmq_ECA859E3_mng", "fmq_eca859_mng", "fmq_xyz12345_mng",
            "sem.fmq_eca859e3_mng", "fmq_eca859e3_ms", "sem.eca859e3_ms", "iceoryx_mgmt", "fmq__mng",
            "fmq_eca859e3_m_99999999999", "xfmq_eca859e3_mng",
        ]
        for name in bad { #expect(ShmObjectName(fileName: name) == nil, "\(name)") }
    }

    @Test func removalOrderIsRegionsSegmentsManagementFlag() {
        let names = [
            "sem.fmq_eca859e3_ms", "fmq_eca859e3_mng", "fmq_eca859e3_m_1", "fmq_eca859e3_rrc_2",
            "fmq_eca859e3_rg_2", "fmq_eca859e3_m_0", "fmq_eca859e3_rgq_2", "fmq_eca859e3_rg_1",
        ].compactMap { ShmObjectName(fileName: $0) }
        let ordered = names.sorted { $0.removalRank < $1.removalRank }.map(\.fileName)
        #expect(
            ordered == [
                "fmq_eca859e3_rg_1", "fmq_eca859e3_rg_2", "fmq_eca859e3_rgq_2", "fmq_eca859e3_rrc_2",
                "fmq_eca859e3_m_0", "fmq_eca859e3_m_1", "fmq_eca859e3_mng", "sem.fmq_eca859e3_ms",
            ])
    }
}
