import LogParsers
import XCTest

/// Expected instants were computed independently with Python's `zoneinfo` and `date -u -d`.
final class LocalZoneTests: XCTestCase {
  private func local(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int) -> Int64 {
    daysFromCivil(year: year, month: month, day: day) * 86_400 + Int64(hour * 3600 + minute * 60)
  }

  func testDaysFromCivilMatchesKnownDates() {
    XCTAssertEqual(daysFromCivil(year: 1970, month: 1, day: 1), 0)
    XCTAssertEqual(daysFromCivil(year: 1969, month: 12, day: 31), -1)
    XCTAssertEqual(daysFromCivil(year: 2000, month: 3, day: 1), 951_868_800 / 86_400)
    XCTAssertEqual(daysFromCivil(year: 2024, month: 2, day: 29), 1_709_164_800 / 86_400)
    XCTAssertEqual(daysFromCivil(year: 1600, month: 1, day: 1), -135_140)
  }

  func testUTCZoneIsIdentity() throws {
    let zone = LocalZone.utc
    XCTAssertEqual(zone.identifier, "UTC")
    XCTAssertEqual(zone.utcSeconds(fromLocalSeconds: 1_774_749_598), 1_774_749_598)
    XCTAssertEqual(zone.offsetSeconds(atUTC: 1_774_749_598), 0)
    let named = try LocalZone(identifier: "UTC")
    XCTAssertEqual(named.utcSeconds(fromLocalSeconds: 1_792_893_600), 1_792_893_600)
  }

  func testBerlinWinterAndSummerOffsets() throws {
    let berlin = try LocalZone(identifier: "Europe/Berlin")
    XCTAssertEqual(berlin.identifier, "Europe/Berlin")
    // 2026-01-15 08:00 CET = 07:00Z; 2026-07-01 11:00 CEST = 09:00Z.
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 1, 15, 8, 0)), 1_768_460_400)
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 7, 1, 11, 0)), 1_782_896_400)
    XCTAssertEqual(berlin.offsetSeconds(atUTC: 1_768_460_400), 3600)
    XCTAssertEqual(berlin.offsetSeconds(atUTC: 1_782_896_400), 7200)
  }

  func testOffsetChangesExactlyAtTheTransitionInstant() throws {
    let berlin = try LocalZone(identifier: "Europe/Berlin")
    // Spring forward at 2026-03-29T01:00:00Z.
    XCTAssertEqual(berlin.offsetSeconds(atUTC: 1_774_746_000 - 1), 3600)
    XCTAssertEqual(berlin.offsetSeconds(atUTC: 1_774_746_000), 7200)
    // Fall back at 2026-10-25T01:00:00Z.
    XCTAssertEqual(berlin.offsetSeconds(atUTC: 1_792_890_000 - 1), 7200)
    XCTAssertEqual(berlin.offsetSeconds(atUTC: 1_792_890_000), 3600)
  }

  func testLocalTimeInSpringForwardGapMapsAfterTransition() throws {
    let berlin = try LocalZone(identifier: "Europe/Berlin")
    // 02:30 does not exist on 2026-03-29; read with the winter offset it is 01:30Z (03:30 CEST).
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 3, 29, 2, 30)), 1_774_747_800)
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 3, 29, 2, 0)), 1_774_746_000)
    // Around the gap the mapping is the ordinary one.
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 3, 29, 1, 59)), 1_774_745_940)
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 3, 29, 3, 0)), 1_774_746_000)
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 3, 29, 3, 30)), 1_774_747_800)
  }

  func testLocalTimeInFallBackOverlapMapsToEarlierInstant() throws {
    let berlin = try LocalZone(identifier: "Europe/Berlin")
    // 02:30 occurs twice on 2026-10-25: 00:30Z (CEST) and 01:30Z (CET); the earlier one wins.
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 10, 25, 2, 30)), 1_792_888_200)
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 10, 25, 2, 0)), 1_792_886_400)
    // 03:00 exists once, in winter time: 02:00Z.
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 10, 25, 3, 0)), 1_792_893_600)
    XCTAssertEqual(berlin.utcSeconds(fromLocalSeconds: local(2026, 10, 25, 1, 59)), 1_792_886_340)
  }

  func testMoscowHasNoDaylightSavingTimeToday() throws {
    let moscow = try LocalZone(identifier: "Europe/Moscow")
    // +03:00 all year in 2026.
    XCTAssertEqual(moscow.utcSeconds(fromLocalSeconds: local(2026, 7, 1, 12, 0)), 1_782_896_400)
    XCTAssertEqual(moscow.utcSeconds(fromLocalSeconds: local(2026, 1, 15, 10, 0)), 1_768_460_400)
    XCTAssertEqual(moscow.offsetSeconds(atUTC: 1_782_896_400), 10_800)
    XCTAssertEqual(moscow.offsetSeconds(atUTC: 1_768_460_400), 10_800)
  }

  func testMoscowHistoricalStandardTimeChangesAreKnown() throws {
    let moscow = try LocalZone(identifier: "Europe/Moscow")
    // 2011-2014 Moscow kept +04:00 all year; 2014-10-26 02:00 local it went back to +03:00.
    XCTAssertEqual(moscow.utcSeconds(fromLocalSeconds: local(2011, 6, 1, 12, 0)), 1_306_915_200)
    XCTAssertEqual(moscow.offsetSeconds(atUTC: 1_414_274_400 - 1), 14_400)
    XCTAssertEqual(moscow.offsetSeconds(atUTC: 1_414_274_400), 10_800)
  }

  func testUnknownIdentifierThrowsErrorNamingIt() {
    XCTAssertThrowsError(try LocalZone(identifier: "Europe/Atlantis")) { error in
      XCTAssertEqual(error as? LocalZoneError, .unknownIdentifier("Europe/Atlantis"))
      XCTAssertTrue(String(describing: error).contains("Europe/Atlantis"))
    }
    XCTAssertThrowsError(try LocalZone(identifier: ""))
  }
}
