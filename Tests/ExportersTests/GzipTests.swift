import CZlib
import Exporters
import Foundation
import XCTest

final class GzipTests: XCTestCase {
  /// Inflates with zlib directly (gzip wrapper required: windowBits 15 + 16). The `z_stream`
  /// is on the heap because zlib checks that it does not move.
  private func gunzipWithZlib(_ bytes: [UInt8]) throws -> [UInt8] {
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    defer { stream.deallocate() }
    let initStatus = inflateInit2_(
      stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    XCTAssertEqual(initStatus, Z_OK)
    defer { inflateEnd(stream) }
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    var status: Int32 = Z_OK
    var input = bytes
    input.withUnsafeMutableBufferPointer { inputBuffer in
      stream.pointee.next_in = inputBuffer.baseAddress
      stream.pointee.avail_in = UInt32(inputBuffer.count)
      repeat {
        chunk.withUnsafeMutableBufferPointer { out in
          stream.pointee.next_out = out.baseAddress
          stream.pointee.avail_out = UInt32(out.count)
          status = inflate(stream, Z_NO_FLUSH)
          output += out.prefix(out.count - Int(stream.pointee.avail_out))
        }
      } while status == Z_OK
    }
    XCTAssertEqual(status, Z_STREAM_END)
    XCTAssertEqual(stream.pointee.avail_in, 0, "bytes after the gzip member")
    return output
  }

  /// Inflates with the system's `gzip -d`.
  private func gunzipWithTool(_ bytes: [UInt8]) throws -> [UInt8] {
    let file = FileManager.default.temporaryDirectory
      .appendingPathComponent("GzipTests-\(UUID().uuidString).gz")
    try Data(bytes).write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["gzip", "-d", "-c", file.path]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0, "gzip -d rejected the output")
    return Array(data)
  }

  private let sample = Array(
    String(
      repeating: "{\"resourceSpans\":[{\"order.id\":\"123\",\"name\":\"PAID → IN_PRODUCTION\"}]}\n",
      count: 2000
    )
    .utf8)

  func testOutputStartsWithGzipHeader() {
    let compressed = Gzip.compress(sample)
    XCTAssertEqual(Array(compressed.prefix(3)), [0x1F, 0x8B, 0x08])  // magic, deflate
  }

  func testOutputEndsWithLengthOfInputModulo2To32() {
    let compressed = Gzip.compress(sample)
    let isize = compressed.suffix(4).enumerated().reduce(UInt32(0)) {
      $0 | UInt32($1.element) << (8 * UInt32($1.offset))
    }
    XCTAssertEqual(isize, UInt32(sample.count))
  }

  func testRoundTripThroughZlibInflate() throws {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    let noise = (0..<300_000).map { _ -> UInt8 in  // xorshift: incompressible bytes
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      return UInt8(truncatingIfNeeded: state)
    }
    for input in [[], [0x41], sample, noise] {
      XCTAssertEqual(try gunzipWithZlib(Gzip.compress(input)), input)
    }
  }

  func testRoundTripThroughGzipTool() throws {
    XCTAssertEqual(try gunzipWithTool(Gzip.compress(sample)), sample)
    XCTAssertEqual(try gunzipWithTool(Gzip.compress([])), [])
  }

  func testRepetitiveTextShrinksAndHigherLevelIsNotLarger() throws {
    let fast = Gzip.compress(sample, level: 1)
    let best = Gzip.compress(sample, level: 9)
    XCTAssertLessThan(best.count, sample.count / 20)
    XCTAssertLessThanOrEqual(best.count, fast.count)
    XCTAssertEqual(try gunzipWithZlib(best), sample)
  }

  func testStoredLevelZeroAndOutOfRangeLevelsStillProduceValidGzip() throws {
    let stored = Gzip.compress(sample, level: 0)
    XCTAssertGreaterThan(stored.count, sample.count)
    XCTAssertEqual(try gunzipWithZlib(stored), sample)
    XCTAssertEqual(try gunzipWithZlib(Gzip.compress(sample, level: 42)), sample)
    XCTAssertEqual(try gunzipWithZlib(Gzip.compress(sample, level: -7)), sample)
  }
}
