import Foundation
import GRDB
import XCTest

@testable import TraceBridge

/// SQLite's settings for the store: memory statistics off for the process, secure_delete off
/// for every connection (both only cost a live commit time; docs/performance.md, item 28).
final class SQLiteSettingsTests: XCTestCase {
  private var directory = ""

  override func setUpWithError() throws {
    directory = NSTemporaryDirectory() + "sqlitesettings-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: directory)
  }

  private static let child = "TRACEBRIDGE_SQLITE_SETTINGS_CHILD"

  /// The process-wide setting takes only if no connection was opened before, and other tests
  /// of this process may have opened one first: so the check runs again in a process of its
  /// own (this test bundle, this test alone), where a store is the first thing SQLite sees, as
  /// in `tracebridge`.
  func testMemoryStatisticsAreOffWhenAStoreIsTheFirstConnection() throws {
    let store = try StateStore(path: directory + "/s.sqlite")
    try withExtendedLifetime(store) {  // open: SQLite holds allocations it would count
      // Whichever came first here, the two agree.
      XCTAssertEqual(SQLiteSettings.memoryStatisticsOn, !SQLiteSettings.apply())
      if ProcessInfo.processInfo.environment[Self.child] == "1" {
        XCTAssertTrue(SQLiteSettings.apply(), "a store opened first, yet the setting did not take")
        XCTAssertFalse(SQLiteSettings.memoryStatisticsOn)
        return
      }
      #if !os(Linux)
        // Elsewhere the first argument is the xctest runner, not this bundle.
        throw XCTSkip("re-running one test of the bundle in a process of its own is done on Linux")
      #endif
      let p = Process()
      p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
      p.arguments = [
        "TraceBridgeTests.SQLiteSettingsTests/testMemoryStatisticsAreOffWhenAStoreIsTheFirstConnection"
      ]
      p.environment = ProcessInfo.processInfo.environment.merging([Self.child: "1"]) { $1 }
      let out = Pipe()
      p.standardOutput = out
      p.standardError = out
      try p.run()
      // A child that hangs is stopped, and fails the test, rather than hanging the suite.
      let watchdog = DispatchWorkItem { if p.isRunning { p.terminate() } }
      DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
      let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      p.waitUntilExit()
      watchdog.cancel()
      XCTAssertEqual(p.terminationStatus, 0, text)
      XCTAssertTrue(text.contains("Executed 1 test"), text)
    }
  }

  /// The writer and the readers are opened alike (`prepareDatabase`); one of each is read.
  func testAStoresWriterAndReaderHaveSecureDeleteOff() throws {
    let store = try StateStore(path: directory + "/s.sqlite")
    let pragma = "PRAGMA secure_delete"
    XCTAssertEqual(try store.queue.write { db in try Int.fetchOne(db, sql: pragma) }, 0)
    XCTAssertEqual(try store.queue.read { db in try Int.fetchOne(db, sql: pragma) }, 0)
  }
}
