import Testing

@testable import ShmCleanup

@Suite struct ShmIDTests {
    /// Known answers from the reference (SHA-256 of decimal uid + session, first 4 bytes).
    @Test(arguments: [
        (UInt32(1000), "default", "eca859e3", UInt64(3_970_456_035)),
        (0, "default", "f8fb93a1", 4_177_236_897),
        (1001, "default", "293bdc57", 691_788_887),
        (1000, "test_session", "b1287adc", 2_972_220_124),
        (500, "abc", "ab281611", 2_871_531_025),
    ])
    func knownAnswers(uid: UInt32, session: String, expected: String, number: UInt64) throws {
        let id = ShmID(session: try SessionID(session), userID: uid)
        #expect(id.rawValue == expected)
        #expect(id.number == number)
        #expect(ShmID(number: number) == id)
    }

    @Test func numericIDsArePaddedToEightDigits() {
        #expect(ShmID(number: 1).rawValue == "00000001")
        #expect(ShmID(number: 0x1_0000_0000).rawValue == "100000000")
    }

    @Test func validatesTextIDs() throws {
        #expect(try ShmID(validating: "ECA859E3").rawValue == "eca859e3")
        for bad in ["", "eca859e", "eca859e33", "xyz12345", "eca859e3 ", "-ca859e3"] {
            let error = #expect(throws: ShmCleanupError.self) { try ShmID(validating: bad) }
            #expect(error?.code == .invalidShmID)
            #expect(error?.message.contains("8 hex digits") == true)
        }
    }
}

@Suite struct SessionIDTests {
    @Test func rejectsNamesThatCannotNameSharedMemory() {
        let cases = ["", "a/b", "/", "nul\u{0}byte", String(repeating: "x", count: 256)]
        for bad in cases {
            let error = #expect(throws: ShmCleanupError.self) { try SessionID(bad) }
            #expect(error?.code == .invalidSessionID)
        }
        let slash = #expect(throws: ShmCleanupError.self) { try SessionID("run/1") }
        #expect(slash?.message.contains("'/'") == true)
    }

    @Test func acceptsOrdinaryNames() throws {
        #expect(try SessionID("run 42 ü").rawValue == "run 42 ü")
        #expect(try SessionID(String(repeating: "x", count: 255)).rawValue.count == 255)
    }
}
