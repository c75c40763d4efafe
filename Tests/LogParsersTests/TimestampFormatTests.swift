import LogParsers
import XCTest

/// Expected instants were computed independently (`date -u -d`, Python `datetime`).
/// 2026-03-29T00:59:58Z = 1_774_745_998 s; 2026-03-29T01:59:58Z = 1_774_749_598 s.
final class TimestampFormatTests: XCTestCase {
  private let second: Int64 = 1_000_000_000
  private let utc = LocalZone.utc

  private func parse(_ spec: String, _ text: String, zone: LocalZone = .utc) throws -> Int64? {
    try TimestampFormat(parsing: spec).parse(text, zone: zone)
  }

  // MARK: iso8601

  func testISO8601WithOffsetAndMillisecondsConvertsToUTC() throws {
    XCTAssertEqual(
      try parse("iso8601", "2026-03-29T01:59:58.123+01:00"), 1_774_745_998 * second + 123_000_000)
  }

  func testISO8601AcceptsZuluCompactOffsetAndNegativeOffset() throws {
    XCTAssertEqual(try parse("iso8601", "2026-03-29T01:59:58Z"), 1_774_749_598 * second)
    XCTAssertEqual(
      try parse("iso8601", "2026-03-29T01:59:58.5z"), 1_774_749_598 * second + 500_000_000)
    XCTAssertEqual(try parse("iso8601", "2026-03-29T02:59:58+0100"), 1_774_749_598 * second)
    XCTAssertEqual(try parse("iso8601", "2026-03-28T22:59:58-03:00"), 1_774_749_598 * second)
    XCTAssertEqual(try parse("iso8601", "2026-03-29T06:29:58+05:30"), 1_774_745_998 * second)
    XCTAssertEqual(try parse("iso8601", "2026-03-29T04:59:58+03"), 1_774_749_598 * second)
  }

  func testISO8601AcceptsSpaceSeparatorAndCommaFraction() throws {
    XCTAssertEqual(
      try parse("iso8601", "2026-03-29 01:59:58,123Z"), 1_774_749_598 * second + 123_000_000)
  }

  func testISO8601FractionOfAnyLengthUpToNineDigits() throws {
    let base = 1_774_749_598 * second
    XCTAssertEqual(try parse("iso8601", "2026-03-29T01:59:58Z"), base)
    XCTAssertEqual(try parse("iso8601", "2026-03-29T01:59:58.1Z"), base + 100_000_000)
    XCTAssertEqual(try parse("iso8601", "2026-03-29T01:59:58.123456Z"), base + 123_456_000)
    // .NET writes 7 digits.
    XCTAssertEqual(try parse("iso8601", "2026-03-29T01:59:58.1234567Z"), base + 123_456_700)
    XCTAssertEqual(try parse("iso8601", "2026-03-29T01:59:58.123456789Z"), base + 123_456_789)
    XCTAssertNil(try parse("iso8601", "2026-03-29T01:59:58.1234567891Z"))
    XCTAssertNil(try parse("iso8601", "2026-03-29T01:59:58.Z"))
  }

  func testISO8601WithoutSecondsIsAccepted() throws {
    XCTAssertEqual(try parse("iso8601", "2026-03-29T01:59Z"), 1_774_749_540 * second)
  }

  func testISO8601WithoutOffsetIsLocalTimeOfTheZone() throws {
    let berlin = try LocalZone(identifier: "Europe/Berlin")
    // 01:59:58 CET (+01:00) = 00:59:58Z.
    XCTAssertEqual(
      try parse("iso8601", "2026-03-29T01:59:58.123", zone: berlin),
      1_774_745_998 * second + 123_000_000)
    XCTAssertEqual(try parse("iso8601", "2026-03-29T01:59:58", zone: utc), 1_774_749_598 * second)
    // 02:30 falls into the spring-forward gap: read with the winter offset, 01:30Z.
    XCTAssertEqual(
      try parse("iso8601", "2026-03-29 02:30:00", zone: berlin), 1_774_747_800 * second)
  }

  func testISO8601ExplicitOffsetIgnoresTheZone() throws {
    let moscow = try LocalZone(identifier: "Europe/Moscow")
    XCTAssertEqual(
      try parse("iso8601", "2026-03-29T01:59:58Z", zone: moscow), 1_774_749_598 * second)
  }

  func testISO8601RejectsMalformedText() throws {
    for text in [
      "", "2026-03-29", "2026-03-29T01:59:58Zx", " 2026-03-29T01:59:58Z", "2026/03/29 01:59:58",
      "2026-03-29T01:59:58+1", "2026-03-29T01:59:58+01:", "2026-03-29T1:59:58Z",
      "2026-03-29X01:59:58",
      "2026-03-29T01:59:58 ",
    ] {
      XCTAssertNil(try parse("iso8601", text), text)
    }
  }

  func testImpossibleDatesAndTimesAreRejected() throws {
    XCTAssertNil(try parse("iso8601", "2026-02-29T00:00:00Z"))  // not a leap year
    XCTAssertNil(try parse("iso8601", "2026-04-31T00:00:00Z"))
    XCTAssertNil(try parse("iso8601", "2026-13-01T00:00:00Z"))
    XCTAssertNil(try parse("iso8601", "2026-00-10T00:00:00Z"))
    XCTAssertNil(try parse("iso8601", "2026-03-00T00:00:00Z"))
    XCTAssertNil(try parse("iso8601", "2026-03-29T24:00:00Z"))
    XCTAssertNil(try parse("iso8601", "2026-03-29T23:60:00Z"))
    XCTAssertNil(try parse("iso8601", "2026-03-29T23:00:61Z"))
    XCTAssertNil(try parse("iso8601", "2026-03-29T23:00:00+19:00"))
    XCTAssertNil(try parse("iso8601", "2026-03-29T23:00:00+05:60"))
    // 2024 is a leap year.
    XCTAssertEqual(try parse("iso8601", "2024-02-29T12:00:00Z"), 1_709_208_000 * second)
  }

  func testLeapSecondCountsAsNextMinute() throws {
    XCTAssertEqual(try parse("iso8601", "2026-12-31T23:59:60Z"), 1_798_761_600 * second)
  }

  func testInstantsOutsideTheNanosecondRangeAreRejected() throws {
    XCTAssertNil(try parse("iso8601", "2263-01-01T00:00:00Z"))
    XCTAssertNil(try parse("iso8601", "1600-01-01T00:00:00Z"))
    XCTAssertEqual(try parse("iso8601", "1969-12-31T23:59:59Z"), -second)
  }

  // MARK: Patterns

  func testPatternWithCommaMillisecondsAndZone() throws {
    let moscow = try LocalZone(identifier: "Europe/Moscow")
    XCTAssertEqual(
      try parse("yyyy-MM-dd HH:mm:ss,SSS", "2026-03-29 04:59:58,123", zone: moscow),
      1_774_749_598 * second + 123_000_000)
  }

  func testPatternFractionRequiresExactlyThatManyDigits() throws {
    let format = try TimestampFormat(parsing: "yyyy-MM-dd HH:mm:ss.SSS")
    XCTAssertNotNil(format.parse("2026-03-29 01:59:58.123", zone: utc))
    XCTAssertNil(format.parse("2026-03-29 01:59:58.12", zone: utc))
    XCTAssertNil(format.parse("2026-03-29 01:59:58.1234", zone: utc))
    let micro = try TimestampFormat(parsing: "yyyy-MM-dd HH:mm:ss.SSSSSS")
    XCTAssertEqual(
      micro.parse("2026-03-29 01:59:58.000250", zone: utc), 1_774_749_598 * second + 250_000)
  }

  func testPatternWithDayFirstAndSlashes() throws {
    XCTAssertEqual(try parse("dd/MM/yyyy HH:mm:ss", "29/03/2026 01:59:58"), 1_774_749_598 * second)
    XCTAssertNil(try parse("dd/MM/yyyy HH:mm:ss", "29-03-2026 01:59:58"))
  }

  func testSingleLetterFieldsAcceptOneOrTwoDigits() throws {
    XCTAssertEqual(try parse("d.M.yyyy H:mm:ss", "7.3.2026 9:05:01"), 1_772_874_301 * second)
    XCTAssertEqual(try parse("d.M.yyyy H:mm:ss", "07.03.2026 09:05:01"), 1_772_874_301 * second)
    XCTAssertNil(try parse("dd.MM.yyyy HH:mm:ss", "7.3.2026 9:05:01"))
  }

  func testPatternMonthAbbreviationIsEnglishAndCaseInsensitive() throws {
    XCTAssertEqual(
      try parse("dd MMM yyyy HH:mm:ss", "29 Mar 2026 01:59:58"), 1_774_749_598 * second)
    XCTAssertEqual(
      try parse("dd MMM yyyy HH:mm:ss", "29 MAR 2026 01:59:58"), 1_774_749_598 * second)
    XCTAssertEqual(
      try parse("dd MMM yyyy HH:mm:ss", "31 dec 2026 23:59:59"), 1_798_761_599 * second)
    XCTAssertNil(try parse("dd MMM yyyy HH:mm:ss", "29 Mär 2026 01:59:58"))
    XCTAssertNil(try parse("dd MMM yyyy HH:mm:ss", "29 Mrz 2026 01:59:58"))
  }

  func testPatternOffsetTokensAcceptColonCompactAndZulu() throws {
    for spec in ["yyyy-MM-dd'T'HH:mm:ssXXX", "yyyy-MM-dd'T'HH:mm:ssXX", "yyyy-MM-dd'T'HH:mm:ssZ"] {
      XCTAssertEqual(try parse(spec, "2026-03-29T02:59:58+01:00"), 1_774_749_598 * second, spec)
      XCTAssertEqual(try parse(spec, "2026-03-29T02:59:58+0100"), 1_774_749_598 * second, spec)
      XCTAssertEqual(try parse(spec, "2026-03-29T01:59:58Z"), 1_774_749_598 * second, spec)
      XCTAssertNil(try parse(spec, "2026-03-29T01:59:58"), spec)
    }
  }

  func testBareTAndOtherNonPatternCharactersAreLiterals() throws {
    XCTAssertEqual(try parse("yyyy-MM-ddTHH:mm:ss", "2026-03-29T01:59:58"), 1_774_749_598 * second)
    XCTAssertEqual(
      try parse("[yyyy/MM/dd|HH.mm.ss]", "[2026/03/29|01.59.58]"), 1_774_749_598 * second)
    XCTAssertEqual(
      try parse("yyyy-MM-dd HH:mm:ss 'UTC'", "2026-03-29 01:59:58 UTC"), 1_774_749_598 * second)
    XCTAssertEqual(
      try parse("yyyy年MM月dd日 HH:mm:ss", "2026年03月29日 01:59:58"), 1_774_749_598 * second)
  }

  func testPatternRejectsTrailingAndMissingText() throws {
    XCTAssertNil(try parse("yyyy-MM-dd HH:mm:ss", "2026-03-29 01:59:58 extra"))
    XCTAssertNil(try parse("yyyy-MM-dd HH:mm:ss", "2026-03-29 01:59"))
    XCTAssertNil(try parse("yyyy-MM-dd HH:mm:ss", "2026-02-30 01:59:58"))
  }

  func testCompactPatternWithoutSeparators() throws {
    XCTAssertEqual(
      try parse("yyyyMMddHHmmssSSS", "20260329015958123"), 1_774_749_598 * second + 123_000_000)
    XCTAssertNil(try parse("yyyyMMddHHmmssSSS", "2026032901595812"))
  }

  func testPatternWithoutSecondsIsAccepted() throws {
    XCTAssertEqual(try parse("yyyy-MM-dd HH:mm", "2026-03-29 01:59"), 1_774_749_540 * second)
  }

  // MARK: Epoch numbers

  func testEpochSecondsWithAndWithoutFraction() throws {
    let berlin = try LocalZone(identifier: "Europe/Berlin")
    XCTAssertEqual(try parse("epoch_seconds", "1774749598", zone: berlin), 1_774_749_598 * second)
    XCTAssertEqual(
      try parse("epoch_seconds", "1774749598.25"), 1_774_749_598 * second + 250_000_000)
    XCTAssertEqual(try parse("epoch_seconds", "-1"), -second)
    XCTAssertNil(try parse("epoch_seconds", "17747x"))
    XCTAssertNil(try parse("epoch_seconds", ""))
    XCTAssertNil(try parse("epoch_seconds", "99999999999999999"))  // beyond year 2262
  }

  func testEpochMillis() throws {
    XCTAssertEqual(try parse("epoch_millis", "1774749598123"), 1_774_749_598 * second + 123_000_000)
    XCTAssertEqual(
      try parse("EPOCH_MILLIS", "1774749598123.5"), 1_774_749_598 * second + 123_500_000)
    XCTAssertNil(try parse("epoch_millis", "1774749598123 "))
  }

  // MARK: Both entry points agree

  func testBufferAndStringParsingAgree() throws {
    let format = try TimestampFormat(parsing: "iso8601")
    let text = "2026-03-29T01:59:58.123+01:00 trailing"
    let bytes = Array(text.utf8)
    let fromBuffer = bytes.withUnsafeBufferPointer {
      format.parse(UnsafeBufferPointer(rebasing: $0[0..<29]), zone: utc)
    }
    XCTAssertEqual(fromBuffer, 1_774_745_998 * second + 123_000_000)
    XCTAssertEqual(fromBuffer, format.parse(String(text.prefix(29)), zone: utc))
    XCTAssertEqual(format.parse(String(text.dropLast(9)), zone: utc), fromBuffer)
    XCTAssertNil(format.parse(text, zone: utc))
  }

  func testFormatsCompareByMeaning() throws {
    XCTAssertEqual(try TimestampFormat(parsing: "iso8601"), try TimestampFormat(parsing: "ISO8601"))
    XCTAssertNotEqual(
      try TimestampFormat(parsing: "yyyy-MM-dd HH:mm:ss"),
      try TimestampFormat(parsing: "yyyy-MM-ddTHH:mm:ss"))
  }

  // MARK: Errors

  func testEmptyFormatIsAnError() {
    XCTAssertThrowsError(try TimestampFormat(parsing: "")) {
      XCTAssertEqual($0 as? TimestampFormatError, .emptyFormat)
    }
    XCTAssertThrowsError(try TimestampFormat(parsing: "  ")) {
      XCTAssertEqual($0 as? TimestampFormatError, .emptyFormat)
    }
  }

  func testUnsupportedPatternLettersAreErrorsWithPosition() {
    XCTAssertThrowsError(try TimestampFormat(parsing: "yyyy-MM-dd hh:mm:ss")) { error in
      XCTAssertEqual(error as? TimestampFormatError, .unknownToken("hh", position: 12))
      XCTAssertTrue(String(describing: error).contains("'hh'"))
    }
    XCTAssertThrowsError(try TimestampFormat(parsing: "yy-MM-dd HH:mm")) {
      XCTAssertEqual($0 as? TimestampFormatError, .unknownToken("yy", position: 1))
    }
    XCTAssertThrowsError(try TimestampFormat(parsing: "EEE, dd MMM yyyy HH:mm:ss")) {
      XCTAssertEqual($0 as? TimestampFormatError, .unknownToken("EEE", position: 1))
    }
    XCTAssertThrowsError(try TimestampFormat(parsing: "yyyy-MM-dd HH:mm:ss.SSSSSSSSSS")) {
      XCTAssertEqual($0 as? TimestampFormatError, .unknownToken("SSSSSSSSSS", position: 21))
    }
  }

  func testMissingFieldIsNamed() {
    XCTAssertThrowsError(try TimestampFormat(parsing: "MM-dd HH:mm:ss")) { error in
      XCTAssertEqual(error as? TimestampFormatError, .missingField("yyyy"))
      XCTAssertTrue(String(describing: error).contains("yyyy"))
    }
    XCTAssertThrowsError(try TimestampFormat(parsing: "yyyy-MM-dd")) {
      XCTAssertEqual($0 as? TimestampFormatError, .missingField("HH"))
    }
    XCTAssertThrowsError(try TimestampFormat(parsing: "yyyy-MM-dd HH:mm.SSS")) {
      XCTAssertEqual($0 as? TimestampFormatError, .missingField("ss"))
    }
  }

  func testDuplicateFieldAndUnterminatedQuoteAreErrors() {
    XCTAssertThrowsError(try TimestampFormat(parsing: "yyyy-MM-dd HH:mm:ss yyyy")) {
      XCTAssertEqual($0 as? TimestampFormatError, .duplicateField("yyyy", position: 21))
    }
    XCTAssertThrowsError(try TimestampFormat(parsing: "yyyy-MM-dd'T HH:mm:ss")) {
      XCTAssertEqual($0 as? TimestampFormatError, .unterminatedQuote(position: 11))
    }
  }
}
