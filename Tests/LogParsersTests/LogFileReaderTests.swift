import Foundation
import LogParsers
import XCTest

/// Gzip files are made with the system's `gzip`, independently of the code under test.
final class LogFileReaderTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("LogFileReaderTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  // MARK: Helpers

  private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

  @discardableResult
  private func write(_ name: String, _ bytes: [UInt8]) throws -> String {
    let p = path(name)
    try Data(bytes).write(to: URL(fileURLWithPath: p))
    return p
  }

  /// Compresses with `/usr/bin/env gzip -c`.
  private func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
    let input = try write("gzip-input-\(UUID().uuidString)", bytes)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["gzip", "-c", "-n", input]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0)
    try FileManager.default.removeItem(atPath: input)
    return Array(data)
  }

  /// Reads the whole file; returns the bytes, the number of reads that returned data, the
  /// largest single read, and the error thrown (if any).
  private func readAll(_ reader: LogFileReader) -> (
    bytes: [UInt8], reads: Int, largest: Int, error: LogFileError?
  ) {
    var all: [UInt8] = []
    var buffer: [UInt8] = []
    var reads = 0
    var largest = 0
    do {
      while true {
        buffer.removeAll(keepingCapacity: true)
        let n = try reader.read(appendingTo: &buffer)
        if n == 0 { break }
        XCTAssertEqual(n, buffer.count)
        reads += 1
        largest = max(largest, n)
        all += buffer
      }
    } catch {
      return (all, reads, largest, error)
    }
    return (all, reads, largest, nil)
  }

  private func lines(_ count: Int, tag: String = "") -> [UInt8] {
    var text = ""
    for i in 0..<count {
      text +=
        "2026-03-29T01:59:58.\(i % 1000)Z INFO\(tag) order \(i * 7919 % 100_003) status=PAID\n"
    }
    return Array(text.utf8)
  }

  // MARK: Plain files

  func testPlainFileIsReadAsIs() throws {
    let content = lines(100)
    let reader = try LogFileReader(path: try write("app.log", content))
    XCTAssertFalse(reader.isGzip)
    XCTAssertEqual(reader.path, path("app.log"))
    let result = readAll(reader)
    XCTAssertNil(result.error)
    XCTAssertEqual(result.bytes, content)
    XCTAssertEqual(reader.compressedBytesRead, Int64(content.count))
  }

  func testEmptyFileReadsNothing() throws {
    let reader = try LogFileReader(path: try write("empty.log", []))
    XCTAssertFalse(reader.isGzip)
    var buffer: [UInt8] = []
    XCTAssertEqual(try reader.read(appendingTo: &buffer), 0)
  }

  func testReadAppendsToExistingBufferContent() throws {
    let reader = try LogFileReader(path: try write("a.log", Array("line\n".utf8)))
    var buffer = Array("kept:".utf8)
    XCTAssertEqual(try reader.read(appendingTo: &buffer), 5)
    XCTAssertEqual(String(decoding: buffer, as: UTF8.self), "kept:line\n")
  }

  func testPlainFileGrowingAfterEndOfFileYieldsNewBytes() throws {
    let p = try write("growing.log", Array("first\n".utf8))
    let reader = try LogFileReader(path: p)
    XCTAssertEqual(readAll(reader).bytes, Array("first\n".utf8))
    let handle = try XCTUnwrap(FileHandle(forWritingAtPath: p))
    handle.seekToEndOfFile()
    handle.write(Data("second\n".utf8))
    try handle.close()
    XCTAssertEqual(readAll(reader).bytes, Array("second\n".utf8))
  }

  func testFileNamedGzButPlainIsReadAsPlain() throws {
    let content = lines(10)
    let reader = try LogFileReader(path: try write("misnamed.log.gz", content))
    XCTAssertFalse(reader.isGzip)
    XCTAssertEqual(readAll(reader).bytes, content)
  }

  // MARK: Gzip

  func testGzipIsDetectedByMagicBytesNotByName() throws {
    let content = lines(1000)
    let compressed = try gzip(content)
    let reader = try LogFileReader(path: try write("rotated.log.1", compressed))
    XCTAssertTrue(reader.isGzip)
    let result = readAll(reader)
    XCTAssertNil(result.error)
    XCTAssertEqual(result.bytes, content)
    XCTAssertEqual(reader.compressedBytesRead, Int64(compressed.count))
  }

  func testMultiMemberGzipReadsAsConcatenation() throws {
    let first = lines(500, tag: " a")
    let second = lines(700, tag: " b")
    let reader = try LogFileReader(path: try write("both.gz", try gzip(first) + gzip(second)))
    let result = readAll(reader)
    XCTAssertNil(result.error)
    XCTAssertEqual(result.bytes, first + second)
  }

  func testMultiMemberGzipWithEmptyMemberAndZeroPadding() throws {
    let first = lines(3)
    let compressed =
      try gzip(first) + gzip([]) + gzip(Array("tail\n".utf8)) + [UInt8](repeating: 0, count: 512)
    let result = readAll(try LogFileReader(path: try write("padded.gz", compressed)))
    XCTAssertNil(result.error)
    XCTAssertEqual(result.bytes, first + Array("tail\n".utf8))
  }

  func testTruncatedGzipYieldsDecodedPrefixThenThrowsCorruptGzip() throws {
    let content = lines(20_000)
    let compressed = try gzip(content)
    let p = try write("cut.gz", Array(compressed.prefix(compressed.count / 2)))
    let result = readAll(try LogFileReader(path: p, chunkSize: 64 * 1024))
    guard case .corruptGzip(let errorPath, let detail)? = result.error else {
      return XCTFail("expected corruptGzip, got \(String(describing: result.error))")
    }
    XCTAssertEqual(errorPath, p)
    XCTAssertTrue(detail.contains("truncated"), detail)
    XCTAssertTrue(String(describing: result.error!).contains(p))
    XCTAssertGreaterThan(result.bytes.count, content.count / 4)
    XCTAssertLessThan(result.bytes.count, content.count)
    XCTAssertEqual(result.bytes, Array(content.prefix(result.bytes.count)))
  }

  func testCorruptGzipDataThrowsCorruptGzipAfterEarlierBytes() throws {
    let content = lines(20_000)
    var compressed = try gzip(content)
    for i in (compressed.count / 2)..<(compressed.count / 2 + 64) { compressed[i] ^= 0xA5 }
    let result = readAll(
      try LogFileReader(path: try write("bad.gz", compressed), chunkSize: 16 * 1024))
    guard case .corruptGzip? = result.error else {
      return XCTFail("expected corruptGzip, got \(String(describing: result.error))")
    }
    // Everything before the damage was delivered (what zlib made of the damaged part may differ).
    let intact = zip(result.bytes, content).prefix { $0 == $1 }.count
    XCTAssertGreaterThan(intact, content.count / 4)
  }

  func testGarbageAfterGzipMemberThrowsCorruptGzip() throws {
    let content = lines(5)
    let p = try write("trailing.gz", try gzip(content) + Array("not gzip".utf8))
    let result = readAll(try LogFileReader(path: p))
    XCTAssertEqual(result.bytes, content)
    guard case .corruptGzip(let errorPath, _)? = result.error else {
      return XCTFail("expected corruptGzip, got \(String(describing: result.error))")
    }
    XCTAssertEqual(errorPath, p)
  }

  func testBigGzipFileIsStreamedInBoundedChunks() throws {
    let content = lines(200_000)  // ≈ 12 MB decompressed
    let compressed = try gzip(content)
    let chunk = 64 * 1024
    let reader = try LogFileReader(path: try write("big.gz", compressed), chunkSize: chunk)
    let result = readAll(reader)
    XCTAssertNil(result.error)
    XCTAssertEqual(result.bytes.count, content.count)
    XCTAssertTrue(result.bytes == content)
    XCTAssertLessThanOrEqual(result.largest, chunk)
    XCTAssertGreaterThanOrEqual(result.reads, content.count / chunk)
    XCTAssertEqual(reader.compressedBytesRead, Int64(compressed.count))
  }

  func testBigPlainFileIsStreamedInBoundedChunks() throws {
    let content = lines(100_000)
    let chunk = 64 * 1024
    let result = readAll(try LogFileReader(path: try write("big.log", content), chunkSize: chunk))
    XCTAssertNil(result.error)
    XCTAssertTrue(result.bytes == content)
    XCTAssertLessThanOrEqual(result.largest, chunk)
    XCTAssertGreaterThanOrEqual(result.reads, content.count / chunk)
  }

  func testReadAfterCloseReturnsNothing() throws {
    let reader = try LogFileReader(path: try write("closed.log", lines(3)))
    reader.close()
    reader.close()
    var buffer: [UInt8] = []
    XCTAssertEqual(try reader.read(appendingTo: &buffer), 0)
  }

  // MARK: Pipes (`rules test` reads /dev/stdin)

  private func readThroughPipe(_ bytes: [UInt8]) throws -> (LogFileReader, [UInt8], LogFileError?) {
    XCTAssertLessThan(bytes.count, 60_000, "must fit the pipe buffer")
    let pipe = Pipe()
    pipe.fileHandleForWriting.write(Data(bytes))
    try pipe.fileHandleForWriting.close()
    let reader = try LogFileReader(path: "/dev/fd/\(pipe.fileHandleForReading.fileDescriptor)")
    let result = readAll(reader)
    return (reader, result.bytes, result.error)
  }

  func testPlainTextFromPipeIsReadAsIs() throws {
    let content = lines(20)
    let (reader, bytes, error) = try readThroughPipe(content)
    XCTAssertFalse(reader.isGzip)
    XCTAssertNil(error)
    XCTAssertEqual(bytes, content)
  }

  func testGzipFromPipeIsDetectedAndInflated() throws {
    let content = lines(2000)
    let (reader, bytes, error) = try readThroughPipe(try gzip(content))
    XCTAssertTrue(reader.isGzip)
    XCTAssertNil(error)
    XCTAssertEqual(bytes, content)
  }

  func testOneByteFromPipeIsNotLost() throws {
    let (reader, bytes, error) = try readThroughPipe([0x1F])
    XCTAssertFalse(reader.isGzip)
    XCTAssertNil(error)
    XCTAssertEqual(bytes, [0x1F])
  }

  // MARK: Opening

  func testMissingFileThrowsCannotOpenWithSystemReason() {
    let p = path("missing.log")
    XCTAssertThrowsError(try LogFileReader(path: p)) { error in
      XCTAssertEqual(
        error as? LogFileError, .cannotOpen(path: p, reason: "No such file or directory"))
      XCTAssertTrue(String(describing: error).contains(p))
    }
  }

  func testDirectoryIsNotARegularFile() {
    XCTAssertThrowsError(try LogFileReader(path: directory.path)) { error in
      XCTAssertEqual(error as? LogFileError, .notRegularFile(path: directory.path))
    }
  }
}
