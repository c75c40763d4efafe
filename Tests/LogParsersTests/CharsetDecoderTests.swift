import Foundation
import LogParsers
import XCTest

/// Expected encodings were produced independently with Python's codecs (`'…'.encode('cp1251')`).
final class CharsetDecoderTests: XCTestCase {
  private func decode(_ decoder: CharsetDecoder, _ bytes: [UInt8], into out: inout [UInt8]) -> Int {
    bytes.withUnsafeBufferPointer { decoder.decode($0, into: &out) }
  }

  private func decode(_ decoder: CharsetDecoder, _ bytes: [UInt8]) -> (String, Int) {
    var out: [UInt8] = []
    let invalid = decode(decoder, bytes, into: &out)
    return (String(decoding: out, as: UTF8.self), invalid)
  }

  func testWindows1251CyrillicDecodesToUTF8() throws {
    let decoder = try CharsetDecoder(charset: "windows-1251")
    XCTAssertFalse(decoder.isUTF8)
    XCTAssertEqual(decoder.charset, "windows-1251")
    let bytes: [UInt8] = [0xCF, 0xF0, 0xE8, 0xE2, 0xE5, 0xF2, 0x2C, 0x20, 0xEC, 0xE8, 0xF0, 0x21]
    var out: [UInt8] = []
    XCTAssertEqual(decode(decoder, bytes, into: &out), 0)
    XCTAssertEqual(out, Array("Привет, мир!".utf8))
  }

  func testWindows1251PunctuationAndNumeroSign() throws {
    let decoder = try CharsetDecoder(charset: "CP1251")
    let bytes: [UInt8] = [
      0xC7, 0xE0, 0xEA, 0xE0, 0xE7, 0x20, 0xB9, 0x35, 0x20, 0x97, 0x20, 0x6F, 0x6B,
    ]
    XCTAssertEqual(decode(decoder, bytes).0, "Заказ №5 — ok")
    XCTAssertEqual(decode(decoder, [0x88]).0, "€")
  }

  func testWindows1251UndefinedByteBecomesReplacementAndIsCounted() throws {
    let decoder = try CharsetDecoder(charset: "windows-1251")
    // 0x98 is unassigned in windows-1251.
    let (text, invalid) = decode(decoder, [0x61, 0x98, 0x62, 0x98])
    XCTAssertEqual(text, "a\u{FFFD}b\u{FFFD}")
    XCTAssertEqual(invalid, 2)
  }

  func testKOI8RDecodesToUTF8() throws {
    let decoder = try CharsetDecoder(charset: "koi8-r")
    XCTAssertEqual(decode(decoder, [0xF0, 0xD2, 0xC9, 0xD7, 0xC5, 0xD4]).0, "Привет")
    XCTAssertEqual(decode(decoder, [0xB3]).0, "Ё")
  }

  func testLatin1DecodesEveryByte() throws {
    let decoder = try CharsetDecoder(charset: "ISO-8859-1")
    let bytes: [UInt8] = [0x47, 0x72, 0xFC, 0xDF, 0x65, 0x20, 0x63, 0x61, 0x66, 0xE9]
    XCTAssertEqual(decode(decoder, bytes).0, "Grüße café")
    let all = (0...255).map { UInt8($0) }
    let (text, invalid) = decode(decoder, all)
    XCTAssertEqual(invalid, 0)
    XCTAssertEqual(text.unicodeScalars.map(\.value), (0...255).map { UInt32($0) })
  }

  func testLongSingleByteRecordCrossesInternalBlocks() throws {
    let decoder = try CharsetDecoder(charset: "windows-1251")
    // 10,000 × "Привет, мир! " mixes ASCII runs and Cyrillic over several 4 KiB blocks.
    let unit: [UInt8] = [
      0xCF, 0xF0, 0xE8, 0xE2, 0xE5, 0xF2, 0x2C, 0x20, 0xEC, 0xE8, 0xF0, 0x21, 0x20,
    ]
    let bytes = Array([[UInt8]](repeating: unit, count: 10_000).joined())
    let (text, invalid) = decode(decoder, bytes)
    XCTAssertEqual(invalid, 0)
    XCTAssertEqual(text, String(repeating: "Привет, мир! ", count: 10_000))
  }

  func testDecodeAppendsWithoutClearing() throws {
    let decoder = try CharsetDecoder(charset: "windows-1251")
    var out = Array("prefix:".utf8)
    _ = decode(decoder, [0xEC, 0xE8, 0xF0], into: &out)
    XCTAssertEqual(String(decoding: out, as: UTF8.self), "prefix:мир")
    let utf8 = try CharsetDecoder(charset: "utf-8")
    _ = decode(utf8, Array(" ok".utf8), into: &out)
    XCTAssertEqual(String(decoding: out, as: UTF8.self), "prefix:мир ok")
  }

  func testPureASCIIPassesThroughUnchanged() throws {
    let line = Array("2026-03-29T01:59:58.123Z INFO order 123 status=PAID user=alice\t[x]".utf8)
    for charset in ["utf-8", "UTF8", "windows-1251", "koi8-r", "iso-8859-1"] {
      let decoder = try CharsetDecoder(charset: charset)
      let (text, invalid) = decode(decoder, line)
      XCTAssertEqual(Array(text.utf8), line, charset)
      XCTAssertEqual(invalid, 0, charset)
    }
    XCTAssertEqual(decode(try CharsetDecoder(charset: "utf-8"), []).1, 0)
  }

  func testValidUTF8IsCopiedUnchanged() throws {
    let decoder = try CharsetDecoder(charset: "UTF-8")
    XCTAssertTrue(decoder.isUTF8)
    let text = "Заказ №5 — 日本語 🚚 ok"
    XCTAssertEqual(decode(decoder, Array(text.utf8)).0, text)
    XCTAssertEqual(decode(decoder, Array(text.utf8)).1, 0)
  }

  func testInvalidUTF8IsReplacedAndCounted() throws {
    let decoder = try CharsetDecoder(charset: "utf-8")
    // A lone continuation byte, a truncated 3-byte sequence before ASCII, an overlong 'a',
    // a surrogate, and a truncated 4-byte sequence at the end.
    let bytes: [UInt8] = [
      0x61, 0x80, 0x62, 0xE2, 0x82, 0x63, 0xC1, 0xA1, 0xED, 0xA0, 0x80, 0xF0, 0x9F, 0x9A,
    ]
    let (text, invalid) = decode(decoder, bytes)
    XCTAssertEqual(text, "a\u{FFFD}b\u{FFFD}c\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}")
    XCTAssertEqual(invalid, 8)
  }

  func testInvalidUTF8ReplacementMatchesStandardLibrary() throws {
    let decoder = try CharsetDecoder(charset: "utf-8")
    var generator = SystemRandomNumberGenerator()
    let interesting: [UInt8] = [
      0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
      0xEC,
      0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
    ]
    for _ in 0..<5_000 {
      let count = Int.random(in: 0...24, using: &generator)
      let bytes = (0..<count).map { _ in interesting.randomElement(using: &generator)! }
      let expected = String(decoding: bytes, as: UTF8.self)
      let (text, invalid) = decode(decoder, bytes)
      XCTAssertEqual(text, expected, "\(bytes)")
      XCTAssertEqual(invalid, expected.unicodeScalars.filter { $0 == "\u{FFFD}" }.count, "\(bytes)")
    }
  }

  func testMultibyteCharsetsDecodeThroughIconv() throws {
    let shiftJIS = try CharsetDecoder(charset: "SHIFT_JIS")
    XCTAssertEqual(decode(shiftJIS, [0x93, 0xFA, 0x96, 0x7B, 0x8C, 0xEA]).0, "日本語")
    // A record cut inside a two-byte character ends with one replacement.
    let (cut, invalid) = decode(shiftJIS, [0x41, 0x93])
    XCTAssertEqual(cut, "A\u{FFFD}")
    XCTAssertEqual(invalid, 1)
    let utf16 = try CharsetDecoder(charset: "UTF-16LE")
    XCTAssertEqual(decode(utf16, [0x1F, 0x04, 0x40, 0x04, 0x38, 0x04]).0, "При")
  }

  func testMultibyteInvalidBytesAreReplacedAndDecodingContinues() throws {
    let decoder = try CharsetDecoder(charset: "GB18030")
    // 0xFF is never valid in GB18030; "中" is D6 D0.
    let (text, invalid) = decode(decoder, [0x61, 0xFF, 0xD6, 0xD0, 0x62])
    XCTAssertEqual(text, "a\u{FFFD}中b")
    XCTAssertEqual(invalid, 1)
  }

  func testDecoderIsUsableFromSeveralThreads() throws {
    let decoder = try CharsetDecoder(charset: "SHIFT_JIS")
    let bytes: [UInt8] = [0x93, 0xFA, 0x96, 0x7B, 0x8C, 0xEA]
    let failures = UnsafeSendableCounter()
    DispatchQueue.concurrentPerform(iterations: 8) { _ in
      for _ in 0..<500 {
        var out: [UInt8] = []
        _ = bytes.withUnsafeBufferPointer { decoder.decode($0, into: &out) }
        if out != Array("日本語".utf8) { failures.increment() }
      }
    }
    XCTAssertEqual(failures.value, 0)
  }

  func testUnknownCharsetErrorNamesItAndSuggestsIconvList() {
    XCTAssertThrowsError(try CharsetDecoder(charset: "klingon-8")) { error in
      XCTAssertEqual(error as? CharsetError, .unknownCharset("klingon-8"))
      let message = String(describing: error)
      XCTAssertTrue(message.contains("klingon-8"))
      XCTAssertTrue(message.contains("iconv -l"))
    }
  }
}

/// A counter for the concurrency test.
private final class UnsafeSendableCounter: @unchecked Sendable {
  private let lock = NSLock()
  private var count = 0
  func increment() { lock.withLock { count += 1 } }
  var value: Int { lock.withLock { count } }
}
