import TraceBridgeCore
import XCTest

final class SourceKeyTests: XCTestCase {
  func testAppendedDescriptionIsTheDescriptionAndParsesBack() {
    let keys = [
      SourceKey(source: "bus", stream: 0, position: 0),
      SourceKey(source: "mes-лог", stream: 0xABCD_EF01_2345_6789, position: UInt64.max),
      SourceKey(source: "", stream: UInt64.max, position: 10),
    ]
    for key in keys {
      var out: [UInt8] = Array("prefix:".utf8)
      key.appendDescription(to: &out)
      XCTAssertEqual(String(decoding: out, as: UTF8.self), "prefix:" + key.description)
      XCTAssertEqual(SourceKey(parsing: key.description), key)
    }
    var digits: [UInt8] = []
    SourceKey.appendDigits(255, radix: 16, to: &digits)
    SourceKey.appendDigits(1_796_193_888_404_000_000, radix: 10, to: &digits)
    XCTAssertEqual(String(decoding: digits, as: UTF8.self), "ff1796193888404000000")
  }
}
