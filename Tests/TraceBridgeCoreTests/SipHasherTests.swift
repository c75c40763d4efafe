import TraceBridgeCore
import XCTest

/// SipHash-2-4 against the reference vectors of Aumasson and Bernstein (`vectors.h`,
/// `vectors_sip64`, in github.com/veorq/SipHash): key = bytes 00 01 … 0f, message n = bytes
/// 00 01 … (n-1). The C reference writes the 64-bit result little-endian, so
/// `{ 0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72 }` is the value 0x726fdb47dd0e0e31.
final class SipHasherTests: XCTestCase {
  private let k0: UInt64 = 0x0706_0504_0302_0100
  private let k1: UInt64 = 0x0f0e_0d0c_0b0a_0908

  /// The first 17 entries of `vectors_sip64`, as little-endian bytes (copied from vectors.h).
  private let referenceBytes: [[UInt8]] = [
    [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72],
    [0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74],
    [0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d],
    [0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85],
    [0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf],
    [0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18],
    [0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb],
    [0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab],
    [0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93],
    [0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e],
    [0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a],
    [0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4],
    [0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75],
    [0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14],
    [0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7],
    [0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1],
    [0xdb, 0x9b, 0xc2, 0x57, 0x7f, 0xcc, 0x2a, 0x3f],
  ]

  private func littleEndianValue(_ bytes: [UInt8]) -> UInt64 {
    bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
  }

  private func hash(_ message: [UInt8]) -> UInt64 {
    var hasher = SipHasher(k0: k0, k1: k1)
    hasher.append(message)
    return hasher.finish()
  }

  func testEmptyMessageGivesReferenceValue() {
    XCTAssertEqual(hash([]), 0x726f_db47_dd0e_0e31)
  }

  func testMessagesOfZeroToSixteenBytesGiveReferenceValues() {
    for (n, expected) in referenceBytes.enumerated() {
      let message = (0..<n).map { UInt8($0) }
      XCTAssertEqual(hash(message), littleEndianValue(expected), "message of \(n) bytes")
    }
  }

  func testByteByByteAppendEqualsBulkAppend() {
    for n in [7, 8, 9, 16] {
      var hasher = SipHasher(k0: k0, k1: k1)
      for b in 0..<n { hasher.append(byte: UInt8(b)) }
      XCTAssertEqual(hasher.finish(), littleEndianValue(referenceBytes[n]), "message of \(n) bytes")
    }
  }

  func testAppendWordWritesLittleEndianBytes() {
    // Message 00 01 … 07 is the little-endian word 0x0706050403020100; 08 … 0f likewise.
    var hasher = SipHasher(k0: k0, k1: k1)
    hasher.append(word: 0x0706_0504_0302_0100)
    XCTAssertEqual(hasher.finish(), littleEndianValue(referenceBytes[8]))

    var split = SipHasher(k0: k0, k1: k1)
    split.append([0, 1, 2])  // a word appended across a block boundary
    split.append(word: 0x0a09_0807_0605_0403)
    split.append([11, 12, 13, 14, 15])
    XCTAssertEqual(split.finish(), littleEndianValue(referenceBytes[16]))
  }

  /// The word-at-a-time paths (bulk bytes, words, UTF-8 text) against byte-at-a-time appends,
  /// at every offset into a block.
  func testBulkWordAndTextAppendsEqualByteAppends() {
    // Every prefix length 0-9 (each offset into a block) and body length 0-24, with bytes
    // from a fixed sequence: a failure names the lengths and reproduces.
    var seed: UInt64 = 7
    func next() -> UInt64 {
      seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return seed >> 11
    }
    for prefixLength in 0...9 {
      for bodyLength in 0...24 {
        let prefix = (0..<prefixLength).map { _ in UInt8(truncatingIfNeeded: next()) }
        let body = (0..<bodyLength).map { _ in UInt8(truncatingIfNeeded: next()) }
        let word = next() << 11 ^ next()
        let text = String(decoding: body.map { 0x61 + $0 % 26 }, as: UTF8.self) + "é"

        var bytewise = SipHasher(k0: k0, k1: k1)
        for b in prefix + body { bytewise.append(byte: b) }
        for i in 0..<8 { bytewise.append(byte: UInt8(truncatingIfNeeded: word >> (8 * UInt64(i)))) }
        for b in Array(text.utf8) { bytewise.append(byte: b) }

        var fast = SipHasher(k0: k0, k1: k1)
        fast.append(prefix)
        fast.append(body)
        fast.append(word: word)
        fast.append(utf8: text)
        XCTAssertEqual(
          fast.finish(), bytewise.finish(), "prefix \(prefixLength), body \(bodyLength)")
      }
    }
  }

  func testDifferentKeysGiveDifferentValues() {
    var other = SipHasher(k0: k0 ^ 1, k1: k1)
    other.append([0, 1, 2])
    XCTAssertNotEqual(other.finish(), littleEndianValue(referenceBytes[3]))
  }

  func testMessagesDifferingOnlyInLengthGiveDifferentValues() {
    // The length byte in the last block separates a message from the same message plus zeros.
    XCTAssertNotEqual(hash([1, 2, 3]), hash([1, 2, 3, 0]))
    XCTAssertNotEqual(hash([]), hash([0]))
  }
}
