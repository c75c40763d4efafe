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

  func testTextThatIsNotOneJSONObjectIsRefused() {
    XCTAssertNil(scan(#"[1,2]"#, [["a"]]))
    XCTAssertNil(scan(#"{"a":"1"} trailing"#, [["a"]]))
    XCTAssertNil(scan(#"{"a":"unterminated}"#, [["a"]]))
    XCTAssertNil(scan(#"{"a" "1"}"#, [["a"]]))
    XCTAssertNotNil(scan(#"  {"a":"1"}  "#, [["a"]]))
  }
}
