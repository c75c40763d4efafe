import Foundation
import LogParsers
import XCTest

/// Files are written to a fresh temporary directory; gzip copies are made with `/bin/gzip`,
/// independently of the code under test.
final class RecordReaderTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("RecordReaderTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  // MARK: Helpers

  private struct Record: Equatable, CustomStringConvertible {
    var text: String
    var offset: UInt64
    var line: Int
    var wasCut: Bool
    var description: String { "\(line)@\(offset)\(wasCut ? " cut" : ""): \(text.debugDescription)" }
  }

  @discardableResult
  private func write(_ name: String, _ bytes: [UInt8]) throws -> String {
    let path = directory.appendingPathComponent(name).path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }

  @discardableResult
  private func write(_ name: String, _ text: String) throws -> String {
    try write(name, Array(text.utf8))
  }

  /// `/bin/gzip -c -n path > path.gz`; returns the new path.
  private func gzipCopy(of path: String) throws -> String {
    let out = path + ".gz"
    XCTAssertTrue(FileManager.default.createFile(atPath: out, contents: nil))
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    defer { try? handle.close() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/gzip")
    process.arguments = ["-c", "-n", path]
    process.standardOutput = handle
    try process.run()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0)
    return out
  }

  /// Windows-1251 bytes of ASCII and the Russian alphabet А…я (U+0410…U+044F → 0xC0…0xFF).
  private func cp1251(_ text: String) -> [UInt8] {
    text.unicodeScalars.map { s in
      if s.value < 0x80 { return UInt8(s.value) }
      precondition((0x410...0x44F).contains(s.value), "not in the test's table: \(s)")
      return UInt8(0xC0 + s.value - 0x410)
    }
  }

  private func source(
    encoding: String = "utf-8", multilineStart: String? = nil, maxLineBytes: Int = 65536
  ) throws -> SourceDefinition {
    SourceDefinition(
      name: "mes", service: "MES", paths: [], decoder: try CharsetDecoder(charset: encoding),
      zone: .utc,
      multilineStart: try multilineStart.map { try CompiledPattern($0) }, maxLineBytes: maxLineBytes
    )
  }

  private func read(
    _ path: String, _ source: SourceDefinition, chunkSize: Int = 1 << 20
  ) throws -> (records: [Record], statistics: ReadStatistics, fingerprint: UInt64) {
    let reader = RecordReader(
      file: try LogFileReader(path: path, chunkSize: chunkSize), source: source)
    var records: [Record] = []
    try reader.readAll { r in
      records.append(
        Record(
          text: String(decoding: r.text, as: UTF8.self), offset: r.offset, line: r.line,
          wasCut: r.wasCut))
    }
    return (records, reader.statistics, reader.fingerprint)
  }

  // MARK: Lines

  func testEachLineIsARecordWithItsOffsetAndLineNumber() throws {
    let path = try write("plain.log", "first\nsecond line\n\nlast")
    let (records, stats, _) = try read(path, source())
    XCTAssertEqual(
      records,
      [
        Record(text: "first", offset: 0, line: 1, wasCut: false),
        Record(text: "second line", offset: 6, line: 2, wasCut: false),
        Record(text: "", offset: 18, line: 3, wasCut: false),
        Record(text: "last", offset: 19, line: 4, wasCut: false),
      ])
    XCTAssertEqual(stats.lines, 4)
    XCTAssertEqual(stats.records, 4)
    XCTAssertEqual(stats.bytes, 23)
    XCTAssertEqual(stats.cutRecords, 0)
  }

  func testCRLFLineEndingsAreStrippedButALoneCRIsKept() throws {
    let path = try write("crlf.log", "a\r\nb\r\nx\ry\r\n")
    let (records, _, _) = try read(path, source())
    XCTAssertEqual(records.map(\.text), ["a", "b", "x\ry"])
    XCTAssertEqual(records.map(\.offset), [0, 3, 6])
  }

  func testLinesSpanningChunksAreJoinedWithExactOffsets() throws {
    var text = ""
    var expected: [(String, UInt64)] = []
    for i in 0..<400 {
      let line = "line \(i) " + String(repeating: "z", count: i % 37)
      expected.append((line, UInt64(text.utf8.count)))
      text += line + "\n"
    }
    let path = try write("chunks.log", text)
    let (records, stats, _) = try read(path, source(), chunkSize: 4096)
    XCTAssertEqual(records.map(\.text), expected.map(\.0))
    XCTAssertEqual(records.map(\.offset), expected.map(\.1))
    XCTAssertEqual(records.map(\.line), Array(1...400))
    XCTAssertEqual(stats.bytes, Int64(text.utf8.count))
  }

  func testEmptyFileHasNoRecordsAndFingerprintZero() throws {
    let path = try write("empty.log", [])
    let (records, stats, fingerprint) = try read(path, source())
    XCTAssertEqual(records, [])
    XCTAssertEqual(stats, ReadStatistics())
    XCTAssertEqual(fingerprint, 0)
  }

  // MARK: Multiline records

  private let mesStart = #"^\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}"#

  func testStackTraceLinesAreJoinedToTheRecordBeforeThemWithNewlines() throws {
    let first = "28.03.2026 15:30:29.370 [ERROR] job J-00747 failed\r\n"
    let text =
      first + "ru.acme.mes.MachineTimeoutException: CNC-3 did not respond\r\n"
      + "\tat ru.acme.mes.MachineClient.await(MachineClient.java:212)\r\n"
      + "28.03.2026 15:30:30.001 [INFO ] job J-00748 started\r\n"
    let path = try write("mes.log", text)
    let (records, stats, _) = try read(path, source(multilineStart: mesStart))
    XCTAssertEqual(
      records,
      [
        Record(
          text: "28.03.2026 15:30:29.370 [ERROR] job J-00747 failed\n"
            + "ru.acme.mes.MachineTimeoutException: CNC-3 did not respond\n"
            + "\tat ru.acme.mes.MachineClient.await(MachineClient.java:212)",
          offset: 0, line: 1, wasCut: false),
        Record(
          text: "28.03.2026 15:30:30.001 [INFO ] job J-00748 started",
          offset: UInt64(text.utf8.count - 53), line: 4, wasCut: false),
      ])
    XCTAssertEqual(stats.lines, 4)
    XCTAssertEqual(stats.records, 2)
  }

  func testLastMultilineRecordIsDeliveredAtEndOfFile() throws {
    let path = try write("mes.log", "28.03.2026 15:30:29 a\n\tat x\n\tat y")
    let (records, _, _) = try read(path, source(multilineStart: mesStart))
    XCTAssertEqual(
      records,
      [Record(text: "28.03.2026 15:30:29 a\n\tat x\n\tat y", offset: 0, line: 1, wasCut: false)])
  }

  func testContinuationLinesBeforeAnyStartLineFormARecord() throws {
    let path = try write("mes.log", "\tat orphan\n\tat orphan2\n28.03.2026 15:30:29 a\n")
    let (records, _, _) = try read(path, source(multilineStart: mesStart))
    XCTAssertEqual(
      records,
      [
        Record(text: "\tat orphan\n\tat orphan2", offset: 0, line: 1, wasCut: false),
        Record(text: "28.03.2026 15:30:29 a", offset: 23, line: 3, wasCut: false),
      ])
  }

  func testMultilineRecordIsCutAtMaxLineBytesOnACharacterBoundary() throws {
    let head = "28.03.2026 15:30:29 error"
    let trace = (0..<20).map { "\tat стек.кадр\($0)(Файл.java:\($0))" }
    let path = try write(
      "mes.log", ([head] + trace + ["28.03.2026 15:30:30 next"]).joined(separator: "\n") + "\n")
    let (records, stats, _) = try read(path, source(multilineStart: mesStart, maxLineBytes: 256))
    XCTAssertEqual(records.count, 2)
    XCTAssertTrue(records[0].wasCut)
    XCTAssertLessThanOrEqual(records[0].text.utf8.count, 256)
    XCTAssertGreaterThan(records[0].text.utf8.count, 200, "the record is filled up to the limit")
    XCTAssertTrue(records[0].text.hasPrefix(head + "\n" + trace[0] + "\n"))
    XCTAssertFalse(records[0].text.contains("\u{FFFD}"), "cut inside a character")
    XCTAssertEqual(
      records[1],
      Record(text: "28.03.2026 15:30:30 next", offset: records[1].offset, line: 22, wasCut: false))
    XCTAssertEqual(stats.cutRecords, 1)
    XCTAssertEqual(stats.invalidSequences, 0)
  }

  // MARK: max_line_bytes

  func testOverLongLineIsCutCountedAndTheNextLineIsIntact() throws {
    let long = String(repeating: "x", count: 1000)
    let path = try write("long.log", "short\n" + long + "\nnext\n")
    let (records, stats, _) = try read(path, source(maxLineBytes: 256))
    XCTAssertEqual(
      records,
      [
        Record(text: "short", offset: 0, line: 1, wasCut: false),
        Record(text: String(repeating: "x", count: 256), offset: 6, line: 2, wasCut: true),
        Record(text: "next", offset: 1007, line: 3, wasCut: false),
      ])
    XCTAssertEqual(stats.cutRecords, 1)
    XCTAssertEqual(stats.lines, 3)
  }

  func testOverLongLineSpanningChunksIsCutAndLaterOffsetsStayExact() throws {
    let path = try write(
      "long.log", "abc\n" + String(repeating: "x", count: 10_000) + "\nnext\nlast\n")
    let (records, stats, _) = try read(path, source(maxLineBytes: 256), chunkSize: 4096)
    XCTAssertEqual(
      records,
      [
        Record(text: "abc", offset: 0, line: 1, wasCut: false),
        Record(text: String(repeating: "x", count: 256), offset: 4, line: 2, wasCut: true),
        Record(text: "next", offset: 10_005, line: 3, wasCut: false),
        Record(text: "last", offset: 10_010, line: 4, wasCut: false),
      ])
    XCTAssertEqual(stats.cutRecords, 1)
    XCTAssertEqual(stats.bytes, 10_015)
  }

  func testCutOfAnOverLongLineDoesNotSplitAUTF8Character() throws {
    // 257 bytes of two-byte letters end in the middle of the 129th letter. The line is cut
    // inside one chunk (400 bytes) and across chunks (6000 bytes, chunks of 4096).
    for count in [200, 3000] {
      let path = try write("cyr-\(count).log", String(repeating: "ж", count: count) + "\nnext\n")
      let (records, stats, _) = try read(path, source(maxLineBytes: 257), chunkSize: 4096)
      XCTAssertEqual(records.map(\.text), [String(repeating: "ж", count: 128), "next"], "\(count)")
      XCTAssertEqual(records.first?.wasCut, true)
      XCTAssertEqual(stats.invalidSequences, 0, "the file holds no invalid byte (\(count))")
    }
  }

  func testTenMegabyteLineWithoutNewlineAtEndOfFileIsCut() throws {
    var bytes = Array("head\n".utf8)
    bytes.append(contentsOf: [UInt8](repeating: UInt8(ascii: "y"), count: 10 << 20))
    let path = try write("huge.log", bytes)
    let (records, stats, _) = try read(path, source(maxLineBytes: 65536))
    XCTAssertEqual(records.count, 2)
    XCTAssertEqual(records.first, Record(text: "head", offset: 0, line: 1, wasCut: false))
    XCTAssertEqual(records.last?.text.utf8.count, 65536)
    XCTAssertEqual(records.last?.offset, 5)
    XCTAssertEqual(records.last?.line, 2)
    XCTAssertEqual(records.last?.wasCut, true)
    XCTAssertEqual(stats.cutRecords, 1)
    XCTAssertEqual(stats.bytes, Int64(bytes.count))
  }

  // MARK: Charsets

  func testWindows1251IsDecodedToUTF8BeforeMultilineMatching() throws {
    let lines = ["Задание J-1 создано", "\tстек", "Задание J-2"]
    let bytes: [UInt8] = lines.flatMap { line -> [UInt8] in cp1251(line) + [0x0D, 0x0A] }
    XCTAssertEqual(
      Array(bytes.prefix(7)), [199, 224, 228, 224, 237, 232, 229], "Задание in windows-1251")
    let path = try write("mes-1251.log", bytes)
    let (records, stats, _) = try read(
      path, source(encoding: "windows-1251", multilineStart: "^Задание"))
    XCTAssertEqual(
      records,
      [
        Record(text: "Задание J-1 создано\n\tстек", offset: 0, line: 1, wasCut: false),
        Record(text: "Задание J-2", offset: 28, line: 3, wasCut: false),
      ])
    XCTAssertEqual(stats.invalidSequences, 0)
  }

  func testInvalidUTF8IsReplacedAndCounted() throws {
    let path = try write("bad.log", [0x61, 0xFF, 0x62, 0x0A, 0x63, 0x0A])
    let (records, stats, _) = try read(path, source())
    XCTAssertEqual(records.map(\.text), ["a\u{FFFD}b", "c"])
    XCTAssertEqual(stats.invalidSequences, 1)
  }

  // MARK: Fingerprint

  func testFingerprintIsTheSameForAFileAndItsGzipCopy() throws {
    let text =
      (1...2000).map { "2026-03-29T00:59:58Z line \($0) of the log" }.joined(separator: "\n") + "\n"
    let plain = try write("mes.log.1", text)
    let gz = try gzipCopy(of: plain)
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: gz)).prefix(2), Data([0x1F, 0x8B]))

    let a = try read(plain, source())
    let b = try read(gz, source())
    XCTAssertNotEqual(a.fingerprint, 0)
    XCTAssertEqual(a.fingerprint, b.fingerprint)
    XCTAssertEqual(a.records, b.records)
    XCTAssertEqual(a.records.count, 2000)
  }

  func testFingerprintDependsOnTheFirstLineOnly() throws {
    let a = try read(write("a.log", "banner v1\nline A\n"), source()).fingerprint
    let b = try read(write("b.log", "banner v1\nline B\n"), source()).fingerprint
    let c = try read(write("c.log", "banner v2\nline A\n"), source()).fingerprint
    XCTAssertEqual(a, b)
    XCTAssertNotEqual(a, c)
  }
}
