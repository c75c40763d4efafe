import LogParsers
import XCTest

/// `%{NAME}` expansion and the compiled PCRE2 patterns it feeds.
final class PatternLibraryTests: XCTestCase {
  // MARK: Helpers

  /// Matches `pattern` (after expansion with `library`) against `text`; the named captures that
  /// took part, or nil when the pattern does not match.
  private func captures(
    _ pattern: String, _ text: String, library: PatternLibrary = PatternLibrary()
  ) throws -> [String: String]? {
    let compiled = try CompiledPattern(try library.expand(pattern))
    let matcher = PatternMatcher(compiled)
    guard matcher.matches(text) else { return nil }
    let bytes = Array(text.utf8)
    var out: [String: String] = [:]
    for (name, number) in compiled.groupNumbers {
      if let r = matcher.range(ofGroup: number) {
        out[name] = String(decoding: bytes[r], as: UTF8.self)
      }
    }
    return out
  }

  private func expansionError(_ pattern: String, library: PatternLibrary) -> PatternError? {
    do {
      _ = try library.expand(pattern)
      return nil
    } catch {
      return error
    }
  }

  // MARK: PCRE2 named groups

  func testNamedGroupsAreNumberedInPatternOrder() throws {
    let p = try CompiledPattern(#"^(?<ts>\S+) (\w+) (?<order>\d+)$"#)
    XCTAssertEqual(p.groupNumbers, ["ts": 1, "order": 3])
    XCTAssertEqual(p.groupNames, [nil, "ts", nil, "order"])
  }

  func testNamedGroupsCaptureTheirText() throws {
    let c = try captures(
      #"^(?<ts>\S+) order (?<order>\d+) is (?<status>[A-Z_]+)$"#,
      "2026-03-29T01:59:58Z order 1234567 is PAID")
    XCTAssertEqual(c, ["ts": "2026-03-29T01:59:58Z", "order": "1234567", "status": "PAID"])
  }

  func testGroupThatDidNotTakePartHasNoRange() throws {
    let c = try captures(#"^order (?<order>\d+)(?: reason=(?<reason>\w+))?$"#, "order 42")
    XCTAssertEqual(c, ["order": "42"])
  }

  func testPatternsMatchCyrillicTextAsUnicode() throws {
    // UTF and UCP are on: \w matches Cyrillic letters, offsets are UTF-8 byte offsets.
    let c = try captures(#"^Задание (?<job>J-\d+): (?<word>\w+)$"#, "Задание J-00077: создано")
    XCTAssertEqual(c, ["job": "J-00077", "word": "создано"])
  }

  func testInvalidPatternErrorNamesOffsetAndReason() {
    XCTAssertThrowsError(try CompiledPattern("^(?<order>\\d+")) { error in
      guard case .invalid(let pattern, let offset, let reason)? = error as? PatternError else {
        return XCTFail("unexpected error \(error)")
      }
      XCTAssertEqual(pattern, "^(?<order>\\d+")
      XCTAssertEqual(offset, 13)
      XCTAssertTrue(reason.contains("parenthesis"), reason)
      XCTAssertTrue((error as! PatternError).description.contains("offset 13"))
    }
  }

  func testCaselessPatternIgnoresLetterCase() throws {
    let matcher = PatternMatcher(try CompiledPattern("^order paid$", caseless: true))
    XCTAssertTrue(matcher.matches("ORDER Paid"))
    XCTAssertFalse(PatternMatcher(try CompiledPattern("^order paid$")).matches("ORDER Paid"))
  }

  // MARK: Built-in sub-patterns

  func testBuiltinWithoutCaptureExpandsToNonCapturingGroup() throws {
    let library = PatternLibrary()
    XCTAssertEqual(try library.expand("a %{INT} b"), #"a (?:[+-]?\d+) b"#)
    XCTAssertEqual(try CompiledPattern(try library.expand("%{INT}")).groupNumbers, [:])
  }

  func testBuiltinWithCaptureExpandsToNamedGroup() throws {
    XCTAssertEqual(try PatternLibrary().expand("n=%{INT:count}"), #"n=(?<count>[+-]?\d+)"#)
    XCTAssertEqual(try captures("n=%{INT:count};", "n=-17;"), ["count": "-17"])
  }

  func testTimestampISO8601BuiltinMatchesTheDocumentedForms() throws {
    for ts in [
      "2026-03-29T01:59:58.123+01:00", "2026-03-29 01:59:58,123", "2026-03-29T01:59:58Z",
      "2026-03-29T01:59:58.1234567Z", "2026-03-29 01:59",
    ] {
      XCTAssertEqual(try captures("^%{TIMESTAMP_ISO8601:ts}$", ts), ["ts": ts], ts)
    }
    XCTAssertNil(try captures("^%{TIMESTAMP_ISO8601:ts}$", "29.03.2026 01:59:58"))
  }

  func testWordNotspaceDataAndGreedyDataBuiltins() throws {
    let c = try captures(
      "^%{WORD:w} %{NOTSPACE:n} %{DATA:d} end %{GREEDYDATA:rest}$",
      "hello a/b=c some words end the rest end")
    XCTAssertEqual(c?["w"], "hello")
    XCTAssertEqual(c?["n"], "a/b=c")
    XCTAssertEqual(c?["d"], "some words", "DATA is lazy: it stops at the first ' end '")
    XCTAssertEqual(c?["rest"], "the rest end")
  }

  func testNumberAndUUIDBuiltins() throws {
    XCTAssertEqual(try captures("^%{NUMBER:n}$", "2168.89"), ["n": "2168.89"])
    XCTAssertEqual(try captures("^%{NUMBER:n}$", "-.5"), ["n": "-.5"])
    XCTAssertNil(try captures("^%{NUMBER:n}$", "12a"))
    let uuid = "123e4567-E89B-12d3-a456-426614174000"
    XCTAssertEqual(try captures("^%{UUID:id}$", uuid), ["id": uuid])
    XCTAssertNil(try captures("^%{UUID:id}$", "123e4567-e89b-12d3-a456"))
  }

  func testLoglevelBuiltinMatchesLevelsAndShortForms() throws {
    for level in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "DBG", "INF", "WRN", "ERR"] {
      XCTAssertEqual(try captures(#"^\[%{LOGLEVEL:level}\]"#, "[\(level)] x"), ["level": level])
    }
    XCTAssertNil(try captures(#"^\[%{LOGLEVEL:level}\]"#, "[VERBOSE] x"))
  }

  func testLoglevelCapturesAWholeLongLevelName() throws {
    // With nothing after the level in the pattern, the first alternative that matches wins:
    // WARN is tried before WARNING, so "WARNING" must still be captured whole.
    XCTAssertEqual(
      try captures("^%{LOGLEVEL:level}", "WARNING disk almost full"), ["level": "WARNING"])
    XCTAssertEqual(try captures("^%{LOGLEVEL:level}", "ERROR failed"), ["level": "ERROR"])
    XCTAssertEqual(try captures("^%{LOGLEVEL:level}", "CRITICAL down"), ["level": "CRITICAL"])
  }

  // MARK: Custom and nested sub-patterns

  func testCustomPatternIsUsableWithAndWithoutCapture() throws {
    let library = PatternLibrary(custom: ["ORDER_ID": #"\d{6,}"#])
    XCTAssertEqual(
      try captures("order %{ORDER_ID:order}", "order 1234567", library: library),
      ["order": "1234567"])
    XCTAssertEqual(try captures("order %{ORDER_ID}$", "order 1234567", library: library), [:])
    XCTAssertNil(try captures("order %{ORDER_ID}$", "order 12345", library: library))
  }

  func testCustomPatternReplacesBuiltinOfTheSameName() throws {
    let library = PatternLibrary(custom: ["INT": "[0-7]+"])
    XCTAssertEqual(library.definitions["INT"], "[0-7]+")
    XCTAssertNil(try captures("^%{INT:n}$", "89", library: library))
    XCTAssertEqual(try captures("^%{INT:n}$", "17", library: library), ["n": "17"])
    XCTAssertEqual(library.definitions["WORD"], #"\w+"#, "the other built-ins stay")
  }

  func testNestedPatternsExpandRecursivelyAndKeepInnerCaptures() throws {
    let library = PatternLibrary(custom: [
      "MES_TS": #"\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}"#,
      "MES_HEAD": #"%{MES_TS:ts} \[%{LOGLEVEL:level} *\] "#,
      "LINE": "^%{MES_HEAD}job %{JOB:job}$",
      "JOB": #"J-\d+"#,
    ])
    let expanded = try library.expand("%{LINE}")
    XCTAssertFalse(expanded.contains("%{"), expanded)
    XCTAssertEqual(
      try captures("%{LINE}", "28.03.2026 13:37:27 [INFO ] job J-00077", library: library),
      ["ts": "28.03.2026 13:37:27", "level": "INFO", "job": "J-00077"])
  }

  func testPatternWithoutReferencesIsReturnedUnchanged() throws {
    XCTAssertEqual(try PatternLibrary().expand(#"^a{2}\{x\}$"#), #"^a{2}\{x\}$"#)
  }

  // MARK: Errors

  func testUnknownSubPatternNamesItAndTheKnownOnes() {
    let error = expansionError("x %{ORDER_ID:order}", library: PatternLibrary(custom: ["JOB": "J"]))
    guard case .unknownSubPattern(let name, let known)? = error else {
      return XCTFail("unexpected \(String(describing: error))")
    }
    XCTAssertEqual(name, "ORDER_ID")
    XCTAssertTrue(known.contains("JOB"))
    XCTAssertTrue(known.contains("INT"))
    XCTAssertEqual(known, known.sorted())
    XCTAssertTrue(error!.description.contains("define it under 'patterns:'"), error!.description)
  }

  func testMutuallyRecursiveSubPatternsAreRejectedWithTheChain() {
    let library = PatternLibrary(custom: ["A": "a%{B}", "B": "b%{A}"])
    XCTAssertEqual(
      expansionError("%{A}", library: library), .recursiveSubPattern(chain: ["A", "B", "A"]))
    XCTAssertTrue(
      expansionError("%{A}", library: library)!.description.contains("A → B → A"))
  }

  func testSelfRecursiveSubPatternIsRejected() {
    let library = PatternLibrary(custom: ["LOOP": "x%{LOOP:again}"])
    XCTAssertEqual(
      expansionError("%{LOOP}", library: library), .recursiveSubPattern(chain: ["LOOP", "LOOP"]))
  }

  func testSameSubPatternUsedTwiceSideBySideIsNotRecursion() throws {
    XCTAssertEqual(
      try captures("^%{INT:a}-%{INT:b}$", "12-34"), ["a": "12", "b": "34"])
  }

  func testUnclosedReferenceIsMalformed() {
    let error = expansionError("order %{ORDER_ID", library: PatternLibrary())
    XCTAssertEqual(error, .malformedReference("%{ORDER_ID"))
    XCTAssertTrue(error!.description.contains("write %{NAME} or %{NAME:capture}"))
  }

  func testEmptyOrInvalidNamesAndCapturesAreMalformed() {
    let library = PatternLibrary()
    XCTAssertEqual(expansionError("%{}", library: library), .malformedReference("%{}"))
    XCTAssertEqual(expansionError("%{IN T}", library: library), .malformedReference("%{IN T}"))
    XCTAssertEqual(expansionError("%{INT:}", library: library), .malformedReference("%{INT:}"))
    XCTAssertEqual(
      expansionError("%{INT:1st}", library: library), .malformedReference("%{INT:1st}"))
    XCTAssertEqual(
      expansionError("%{INT:a-b}", library: library), .malformedReference("%{INT:a-b}"))
  }
}
