import Foundation
import LogParsers
import XCTest

/// JSON string literals as the rejected file, the timeline's attributes and the envelopes
/// write them: exact escapes, and what JSONSerialization reads back is the original.
final class JSONTextTests: XCTestCase {
  private func literal(_ s: String) -> String {
    var out: [UInt8] = []
    JSONText.appendString(&out, s)
    return String(decoding: out, as: UTF8.self)
  }

  func testEscapesQuotesBackslashesAndControlCharactersOnly() {
    XCTAssertEqual(literal(""), #""""#)
    XCTAssertEqual(literal("plain"), #""plain""#)
    XCTAssertEqual(literal(#"a "q" \ b"#), #""a \"q\" \\ b""#)
    XCTAssertEqual(literal("\n\r\t"), #""\n\r\t""#)
    XCTAssertEqual(literal("\u{0}x\u{1F}"), #""\u0000x\u001f""#)
    XCTAssertEqual(literal("Сборка ✓ /"), "\"Сборка ✓ /\"", "UTF-8 and / pass through")
    XCTAssertEqual(literal("\"\""), #""\"\"""#, "escapes next to each other")
  }

  func testWhatIsWrittenReadsBackAsTheOriginal() throws {
    var seed: UInt64 = 7
    let alphabet = Array("ab \"\\\n\t\u{0}\u{7}é✓/{}".unicodeScalars)
    for _ in 0..<500 {
      var s = String.UnicodeScalarView()
      seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      for _ in 0..<Int(seed >> 59) {
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        s.append(alphabet[Int(seed >> 33) % alphabet.count])
      }
      let original = String(s)
      let json = "[" + literal(original) + "]"
      let back = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String]
      XCTAssertEqual(back, [original], json)
    }
  }
}
