import XCTest

@testable import LogParsers

/// The one-pass pointer reader behind `json:` rules: what it reads, what it skips, and what it
/// refuses.
final class JSONFieldScannerTests: XCTestCase {
  private func scan(_ json: String, _ pointers: [[String]]) -> [String?]? {
    let scanner = JSONFieldScanner(pointers: pointers)
    var values: [String?] = []
    let bytes = Array(json.utf8)
    let ok = bytes.withUnsafeBufferPointer { scanner.scan($0, into: &values) }
    return ok ? values : nil
  }

  func testReadsNestedMembersArrayItemsAndWholeContainers() {
    let doc = #"""
      {"skip":{"a":[1,{"b":"x\"y"}]},"body":{"orderId":"77","n":12.5,"ok":true,"none":null,
       "items":[{"sku":"A"},{"sku":"B \u00e9"}],"meta":{"k":[1, 2]}},"tail":"\\"}
      """#
    let values = scan(
      doc,
      [
        ["body", "orderId"], ["body", "n"], ["body", "ok"], ["body", "none"],
        ["body", "items", "1", "sku"], ["body", "meta"], ["body", "missing"], ["tail"],
      ])
    XCTAssertEqual(values?[0], "77")
    XCTAssertEqual(values?[1], "12.5")
    XCTAssertEqual(values?[2], "true")
    XCTAssertEqual(values?[3], nil, "null reads as absent")
    XCTAssertEqual(values?[4], "B é")
    XCTAssertEqual(values?[5], #"{"k":[1, 2]}"#)
    XCTAssertEqual(values?[6], nil)
    XCTAssertEqual(values?[7], "\\")
  }

  func testMemberNamesWithEscapesMatchTheirUnescapedToken() {
    let values = scan(
      #"{"or\u0064erId":"5","say \"hi\"":"yes","a/b":"slash"}"#,
      [["orderId"], [#"say "hi""#], ["a/b"]])
    XCTAssertEqual(values ?? [], ["5", "yes", "slash"])
  }

  func testAPrefixOfANameIsNotTheName() {
    let values = scan(#"{"order":"1","orderId":"2","orderIdX":"3"}"#, [["orderId"], ["orde"]])
    XCTAssertEqual(values?[0], "2")
    XCTAssertEqual(values?[1], nil)
  }

  /// Pointers that share a path, end where others go on, or name the whole document: each
  /// gets its own value (the scanner follows them as one tree).
  func testPointersSharingPrefixesEachGetTheirValue() {
    let doc = #"{"body":{"a":{"b":"1","c":2},"d":"3"},"x":[{"y":"4"},{"y":"5"}],"z":null}"#
    let values = scan(
      doc,
      [
        ["body", "a", "b"], ["body", "a"], ["body", "d"], ["body"], ["x", "1", "y"],
        ["body", "a", "c"], [], ["x", "0", "y"], ["body", "a", "missing"], ["z"],
      ])
    XCTAssertEqual(values?[0], "1")
    XCTAssertEqual(values?[1], #"{"b":"1","c":2}"#)
    XCTAssertEqual(values?[2], "3")
    XCTAssertEqual(values?[3], #"{"a":{"b":"1","c":2},"d":"3"}"#)
    XCTAssertEqual(values?[4], "5")
    XCTAssertEqual(values?[5], "2")
    XCTAssertEqual(values?[6], doc)
    XCTAssertEqual(values?[7], "4")
    XCTAssertEqual(values?[8], nil)
    XCTAssertEqual(values?[9], nil)
  }

  /// A scanner is used for one message after another: values of the last one never stay.
  func testValuesOfAnEarlierScanDoNotStay() {
    let scanner = JSONFieldScanner(pointers: [["a"], ["b"]])
    var values: [String?] = []
    for (json, expected) in [
      (#"{"a":"1","b":"2"}"#, ["1", "2"]), (#"{"b":"3"}"#, [nil, "3"]), (#"{}"#, [nil, nil]),
    ] as [(String, [String?])] {
      let bytes = Array(json.utf8)
      XCTAssertTrue(bytes.withUnsafeBufferPointer { scanner.scan($0, into: &values) })
      XCTAssertEqual(values, expected, json)
    }
  }

  func testTextThatIsNotOneJSONObjectIsRefused() {
    XCTAssertNil(scan(#"[1,2]"#, [["a"]]))
    XCTAssertNil(scan(#"{"a":"1"} trailing"#, [["a"]]))
    XCTAssertNil(scan(#"{"a":"unterminated}"#, [["a"]]))
    XCTAssertNil(scan(#"{"a" "1"}"#, [["a"]]))
    XCTAssertNotNil(scan(#"  {"a":"1"}  "#, [["a"]]))
  }
}
