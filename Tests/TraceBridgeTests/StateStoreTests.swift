import Foundation
import GRDB
import TraceBridgeCore
import XCTest

@testable import TraceBridge

/// The store's schema changes, its raw inserts and the background WAL checkpoints.
final class StateStoreTests: XCTestCase {
  private var directory = ""

  override func setUpWithError() throws {
    directory = NSTemporaryDirectory() + "statestore-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: directory)
  }

  private func event(_ order: String, _ seconds: Int64, position: UInt64, status: String)
    -> OrderEvent
  {
    OrderEvent(
      key: .order(order), service: "Shop", kind: .statusChange, status: status, name: status,
      timeUnixNano: seconds * 1_000_000_000, zoneRule: "UTC",
      attributes: [Attribute("note", .string("a \"quoted\" note"))],
      sourceKey: SourceKey(source: "shop", stream: 0xABC, position: position), rule: "status")
  }

  private let ids = IDDeriver(secret: Array("test-secret".utf8), namespace: "test")

  func testVersion4StoresMoveToTimeOrderedEventsAndSeenMessages() throws {
    let path = directory + "/state.sqlite"
    // A store as version 4 left it, with events and seen messages in the old tables.
    do {
      let pool = try DatabasePool(path: path)
      try StateStore.migrator.migrate(pool, upTo: "v4-seen-messages-by-identity")
      try pool.write { db in
        try StateStore.apply(
          [
            .event(event("7", 300, position: 3, status: "PAID"), orderID: "7"),
            .event(event("7", 100, position: 1, status: "CREATED"), orderID: "7"),
            .event(event("8", 200, position: 2, status: "CREATED"), orderID: "8"),
          ], in: db, traceIDs: { self.ids.traceID(orderID: $0) })
        try db.execute(
          sql: "INSERT INTO live_seen (id, seen_ns) VALUES (?, ?), (?, ?)",
          arguments: [Int64(-5), 1_000, Int64(42), 2_000])
      }
    }
    let store = try StateStore(path: path)
    XCTAssertEqual(try store.timeline(orderID: "7").map(\.status), ["CREATED", "PAID"])
    XCTAssertEqual(try store.timeline(orderID: "8").map(\.status), ["CREATED"])
    XCTAssertEqual(
      try store.loadSeenMessages(since: 0).sorted(), [42, UInt64(bitPattern: -5)].sorted())
    XCTAssertEqual(try store.loadSeenMessages(since: 1_500), [42])
    try store.forgetSeenMessages(before: 1_500)
    XCTAssertEqual(try store.loadSeenMessages(since: 0), [42])
    let primaryKey = try store.queue.read { db in
      try Row.fetchAll(db, sql: "PRAGMA index_xinfo('sqlite_autoindex_events_1')")
        .compactMap { $0["name"] as String? }
    }
    XCTAssertEqual(Array(primaryKey.prefix(2)), ["time_ns", "event_key"])
  }

  func testAnEventAppliedTwiceIsStoredOnce() throws {
    let store = try StateStore(path: directory + "/state.sqlite")
    let e = event("7", 100, position: 1, status: "CREATED")
    try store.apply([.event(e, orderID: "7")]) { self.ids.traceID(orderID: $0) }
    try store.apply([.event(e, orderID: "7")]) { self.ids.traceID(orderID: $0) }
    var later = e
    later.timeUnixNano += 1  // same source position, another time: another event
    try store.apply([.event(later, orderID: "7")]) { self.ids.traceID(orderID: $0) }
    let rows = try store.timeline(orderID: "7")
    XCTAssertEqual(rows.count, 2)
    XCTAssertEqual(rows.first?.attributes, #"{"note":"a \"quoted\" note"}"#)
  }

  func testRawStatementsBindTextNullBlobsAndReportErrors() throws {
    let store = try StateStore(path: directory + "/state.sqlite")
    try store.queue.write { db in
      try db.execute(
        sql: "CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT, n INTEGER, b BLOB NOT NULL)")
      let insert = try RawStatement(db, sql: "INSERT INTO t (k, s, n, b) VALUES (?, ?, ?, ?)")
      let rows: [(Int64, String?, Int64?, [UInt8])] = [
        (1, "", nil, []), (2, nil, 5, [0, 1, 255]), (3, "Сборка-1 ✓", -1, [7]),
      ]
      for (k, s, n, b) in rows {
        insert.bind(1, k)
        insert.bind(2, s)
        insert.bind(3, n)
        insert.bind(4, blob: b)
        try insert.run()
      }
      insert.bind(1, Int64(1))  // the key again
      insert.bind(2, "x")
      insert.bind(3, Int64?.none)
      insert.bind(4, blob: [1])
      XCTAssertThrowsError(try insert.run()) { error in
        XCTAssertTrue("\(error)".contains("UNIQUE constraint failed: t.k"), "\(error)")
      }
      // Usable after the error; its bindings were cleared (nothing points into freed memory).
      insert.bind(1, Int64(4))
      insert.bind(2, "x")
      insert.bind(3, Int64?.none)
      insert.bind(4, blob: [1])
      try insert.run()
      insert.bind(1, Int64(5))
      XCTAssertThrowsError(try insert.run(), "unbound parameters are NULL") { error in
        XCTAssertTrue("\(error)".contains("NOT NULL constraint failed: t.b"), "\(error)")
      }
    }
    let rows = try store.queue.read { db in
      try Row.fetchAll(
        db, sql: "SELECT k, s IS NULL, s, n IS NULL, n, hex(b) FROM t ORDER BY k")
    }
    XCTAssertEqual(rows.count, 4)
    XCTAssertEqual(rows[0][1] as Int, 0, "an empty string is text, not NULL")
    XCTAssertEqual(rows[0][2] as String, "")
    XCTAssertEqual(rows[0][3] as Int, 1)
    XCTAssertEqual(rows[0][5] as String, "")
    XCTAssertEqual(rows[1][1] as Int, 1)
    XCTAssertEqual(rows[1][4] as Int64, 5)
    XCTAssertEqual(rows[1][5] as String, "0001FF")
    XCTAssertEqual(rows[2][2] as String, "Сборка-1 ✓")
    XCTAssertEqual(rows[2][4] as Int64, -1)
    XCTAssertEqual(rows[3][2] as String, "x")
  }

  func testTheCheckpointerCopiesTheLogIntoTheDatabaseAndHandsBackOnStop() throws {
    let path = directory + "/state.sqlite"
    let store = try StateStore(path: path)
    func autocheckpoint() throws -> Int {
      try store.queue.writeWithoutTransaction { db in
        try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") ?? -1
      }
    }
    func fileSize() throws -> Int {
      (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }
    XCTAssertEqual(try autocheckpoint(), 1000)
    let checkpointer = try WALCheckpointer(
      store: store, interval: 0.2, logger: .init(label: "test"))
    try checkpointer.start()
    XCTAssertEqual(try autocheckpoint(), 0, "the writer no longer checkpoints in its commits")
    let before = try fileSize()
    // Far more than 1,000 log pages: the writer alone would have checkpointed.
    for batch in 0..<20 {
      let changes: [StateStore.Change] = (0..<500).map { i in
        let n = batch * 500 + i
        return .event(
          event("\(n)", Int64(n), position: UInt64(n), status: "CREATED"), orderID: "\(n)")
      }
      try store.apply(changes) { self.ids.traceID(orderID: $0) }
    }
    var after = try fileSize()
    let deadline = Date().addingTimeInterval(10)
    while after <= before + 1_000_000 && Date() < deadline {
      Thread.sleep(forTimeInterval: 0.1)
      after = try fileSize()
    }
    XCTAssertGreaterThan(after, before + 1_000_000, "the pages reached the database file")
    checkpointer.stop()
    XCTAssertEqual(try autocheckpoint(), 1000)
    XCTAssertEqual(try store.timeline(orderID: "9999").count, 1)
  }
}
