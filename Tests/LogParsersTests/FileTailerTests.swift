import Foundation
import LogParsers
import XCTest

/// Real files in a temporary directory, changed the way logrotate and writers change them:
/// rename, copytruncate, truncate, delete, gzip (with `/bin/gzip`).
final class FileTailerTests: XCTestCase {
  private var directory: URL!
  private var checkpoints: [UInt64: TailCheckpoint] = [:]

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "FileTailerTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    checkpoints = [:]
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  // MARK: Helpers

  private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

  private func append(_ name: String, _ lines: [String]) throws {
    let p = path(name)
    if !FileManager.default.fileExists(atPath: p) {
      _ = FileManager.default.createFile(atPath: p, contents: nil)
    }
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: p))
    try h.seekToEnd()
    try h.write(contentsOf: Data(lines.map { $0 + "\n" }.joined().utf8))
    try h.close()
  }

  private func appendRaw(_ name: String, _ text: String) throws {
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path(name)))
    try h.seekToEnd()
    try h.write(contentsOf: Data(text.utf8))
    try h.close()
  }

  private func source(multiline: String? = nil, maxLineBytes: Int = 65536) throws
    -> SourceDefinition
  {
    SourceDefinition(
      name: "app", service: "App", paths: [path("app.log")],
      decoder: try CharsetDecoder(charset: "utf-8"),
      zone: .utc, multilineStart: try multiline.map { try CompiledPattern($0) },
      maxLineBytes: maxLineBytes)
  }

  /// `watchSince` nil: the source was never tailed before.
  private func tailer(_ source: SourceDefinition, quiet: Double = 0, watchSince: Double? = 0)
    -> FileTailer
  {
    var o = FileTailer.Options()
    o.rotatedQuietPeriod = quiet
    o.multilineFlush = 0.5
    return FileTailer(
      sources: [source], options: o, watchSince: watchSince.map { ["app": $0] } ?? [:]
    ) {
      [unowned self] in
      checkpoints[$0]
    }
  }

  /// Polls once at `now` and returns the records' texts.
  private func poll(_ t: FileTailer, now: Double = 1000) -> [String] {
    var out: [String] = []
    _ = t.poll(now: now) { _, r in out.append(String(decoding: r.text, as: UTF8.self)) }
    for c in t.takeFinished() { checkpoints[c.fingerprint] = c }
    return out
  }

  /// Saves every open file's resume point, as the live pipeline's commit does.
  private func checkpointAll(_ t: FileTailer) {
    for f in t.files {
      checkpoints[f.fingerprint] = TailCheckpoint(
        fingerprint: f.fingerprint, source: "app", path: f.path, offset: f.resumeOffset,
        line: f.lines)
    }
  }

  private func gzip(_ name: String) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/gzip")
    p.arguments = ["-n", path(name)]
    try p.run()
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0)
  }

  // MARK: Tests

  func testAppendedLinesAreReadOnceAndPartialLinesWait() throws {
    try append("app.log", ["a1", "a2"])
    let t = tailer(try source())
    XCTAssertEqual(poll(t), ["a1", "a2"])
    try appendRaw("app.log", "a3 part")
    XCTAssertEqual(poll(t), [])
    try appendRaw("app.log", "ial\n")
    XCTAssertEqual(poll(t), ["a3 partial"])
    XCTAssertEqual(poll(t), [])
  }

  func testRotationByRenameLosesNoLine() throws {
    try append("app.log", ["r1", "r2"])
    let t = tailer(try source(), quiet: 5)
    XCTAssertEqual(poll(t, now: 1000), ["r1", "r2"])
    // The writer still has the old file open and writes once more after the rename.
    try FileManager.default.moveItem(atPath: path("app.log"), toPath: path("app.log.1"))
    try append("app.log.1", ["r3"])
    try append("app.log", ["n1"])
    XCTAssertEqual(Set(poll(t, now: 1001)), ["r3", "n1"])
    // Quiet for longer than the period: the rotated file is finished and closed.
    XCTAssertEqual(poll(t, now: 1010), [])
    XCTAssertEqual(t.files.map(\.path), [path("app.log")])
    XCTAssertTrue(checkpoints.values.contains { $0.done && $0.path == path("app.log.1") })
  }

  func testGzippedCopyOfAFinishedFileIsNotReadAgain() throws {
    try append("app.log", ["g1", "g2"])
    let t = tailer(try source(), quiet: 0)
    XCTAssertEqual(poll(t), ["g1", "g2"])
    try FileManager.default.moveItem(atPath: path("app.log"), toPath: path("app.log.1"))
    XCTAssertEqual(poll(t, now: 1001), [])  // closed: done
    try gzip("app.log.1")
    try append("app.log", ["h1"])
    XCTAssertEqual(poll(t, now: 1002), ["h1"])
    XCTAssertEqual(poll(t, now: 1003), [])
  }

  func testRestartResumesARotatedAndGzippedFileAtItsCheckpoint() throws {
    try append("app.log", ["c1", "c2"])
    let first = tailer(try source())
    XCTAssertEqual(poll(first), ["c1", "c2"])
    checkpointAll(first)
    first.closeAll()
    // While the bridge is down: more lines, rotation, compression, a new file.
    try append("app.log", ["c3", "c4"])
    try FileManager.default.moveItem(atPath: path("app.log"), toPath: path("app.log.1"))
    try gzip("app.log.1")
    try append("app.log", ["d1"])
    let second = tailer(try source(), watchSince: 0)
    XCTAssertEqual(Set(poll(second, now: 2000)), ["c3", "c4", "d1"])
  }

  func testCopytruncateResumesTheCopyAndReadsTheNewContent() throws {
    try append("app.log", ["t1", "t2"])
    let t = tailer(try source())
    XCTAssertEqual(poll(t), ["t1", "t2"])
    checkpointAll(t)
    try append("app.log", ["t3"])
    // logrotate copytruncate: copy, then truncate in place.
    try FileManager.default.copyItem(atPath: path("app.log"), toPath: path("app.log.1"))
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path("app.log")))
    try h.truncate(atOffset: 0)
    try h.close()
    try append("app.log", ["u1"])
    var seen: [String] = []
    for i in 0..<4 { seen += poll(t, now: 1001 + Double(i)) }
    XCTAssertEqual(seen.sorted(), ["t3", "u1"])
  }

  func testTruncationIsReportedAndNewLinesAreRead() throws {
    try append("app.log", ["x1", "x2", "x3"])
    let t = tailer(try source())
    XCTAssertEqual(poll(t), ["x1", "x2", "x3"])
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path("app.log")))
    try h.truncate(atOffset: 0)
    try h.close()
    var report = t.poll(now: 1001) { _, _ in }
    XCTAssertEqual(report.truncated, [path("app.log")])
    try append("app.log", ["y1"])
    var seen: [String] = []
    report = t.poll(now: 1002) { _, r in seen.append(String(decoding: r.text, as: UTF8.self)) }
    XCTAssertEqual(seen, ["y1"])
  }

  /// The bridge may not look for a while (catching up after a restart): by then the file was
  /// truncated and has grown past the point where reading stood. The head tells.
  func testTruncatedFileThatGrewPastTheReadPositionIsReadFromItsStart() throws {
    try append("app.log", ["old-1", "old-2"])
    let t = tailer(try source())
    XCTAssertEqual(poll(t), ["old-1", "old-2"])
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path("app.log")))
    try h.truncate(atOffset: 0)
    try h.close()
    try append("app.log", ["new-first-line", "new-2", "new-3"])
    var seen: [String] = []
    var truncated: [String] = []
    for i in 0..<3 {
      let report = t.poll(now: 1001 + Double(i)) { _, r in
        seen.append(String(decoding: r.text, as: UTF8.self))
      }
      truncated += report.truncated
    }
    XCTAssertEqual(truncated, [path("app.log")])
    XCTAssertEqual(seen, ["new-first-line", "new-2", "new-3"])
  }

  func testDeletedFileIsClosedAndARecreatedOneIsRead() throws {
    try append("app.log", ["del1"])
    let t = tailer(try source(), quiet: 0)
    XCTAssertEqual(poll(t), ["del1"])
    try FileManager.default.removeItem(atPath: path("app.log"))
    XCTAssertEqual(poll(t, now: 1001), [])
    XCTAssertTrue(t.files.isEmpty)
    try append("app.log", ["new1"])
    XCTAssertEqual(poll(t, now: 1002), ["new1"])
  }

  func testOverLongLineWithoutNewlineIsCutAndLaterLinesAreRead() throws {
    try append("app.log", ["ok1"])
    let t = tailer(try source(maxLineBytes: 1000))
    XCTAssertEqual(poll(t), ["ok1"])
    try appendRaw("app.log", String(repeating: "z", count: 3_000_000))
    var cut = 0
    _ = t.poll(now: 1001) { _, r in if r.wasCut { cut += 1 } }
    XCTAssertEqual(cut, 1)
    try appendRaw("app.log", "zz\nok2\n")
    XCTAssertEqual(poll(t, now: 1002), ["ok2"])
  }

  func testMultilineRecordIsFlushedAfterItsQuietTimeout() throws {
    try append("app.log", ["2026 start", "  at frame 1"])
    let t = tailer(try source(multiline: "^\\d{4} "))
    XCTAssertEqual(poll(t, now: 1000), [])
    XCTAssertEqual(poll(t, now: 1000.1), [])
    XCTAssertEqual(poll(t, now: 1001), ["2026 start\n  at frame 1"])
  }

  func testRotatedHistoryIsNotReadOnFirstStart() throws {
    try append("app.log.1", ["old1"])
    try append("app.log", ["cur1"])
    let t = tailer(try source(), watchSince: nil)
    XCTAssertEqual(poll(t), ["cur1"])
    XCTAssertTrue(checkpoints.values.contains { $0.done && $0.path == path("app.log.1") })
  }

  func testFileCreatedAndRotatedBetweenTwoPollsIsRead() throws {
    try append("app.log", ["a1"])
    let t = tailer(try source(), quiet: 5, watchSince: nil)
    XCTAssertEqual(poll(t, now: 1000), ["a1"])
    // Between two polls: app.log -> app.log.1, a new app.log written and rotated too.
    try FileManager.default.moveItem(atPath: path("app.log"), toPath: path("app.log.1"))
    try append("app.log", ["b1", "b2"])
    try FileManager.default.moveItem(atPath: path("app.log.1"), toPath: path("app.log.2"))
    try FileManager.default.moveItem(atPath: path("app.log"), toPath: path("app.log.1"))
    try append("app.log", ["c1"])
    XCTAssertEqual(Set(poll(t, now: 1001)), ["b1", "b2", "c1"])
  }

  func testCheckpointProcessedOffsetsAreSkippedOnResume() throws {
    try append("app.log", ["p1", "p2", "p3"])
    let first = tailer(try source())
    var offsets: [UInt64] = []
    _ = first.poll(now: 1000) { _, r in offsets.append(r.offset) }
    let fp = first.files[0].fingerprint
    // p1 still waited in the reorder window; p2 was processed already.
    checkpoints[fp] = TailCheckpoint(
      fingerprint: fp, source: "app", path: path("app.log"), offset: offsets[0],
      processed: [offsets[1]])
    first.closeAll()
    let second = tailer(try source())
    XCTAssertEqual(poll(second), ["p1", "p3"])
  }
}
