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

  /// One CREATED event for each order numbered in `range` (order n at second n, position n).
  private func orders(_ range: Range<Int>) -> [StateStore.Change] {
    range.map { n in
      .event(event("\(n)", Int64(n), position: UInt64(n), status: "CREATED"), orderID: "\(n)")
    }
  }

  private let ids = IDDeriver(secret: Array("test-secret".utf8), namespace: "test")

  /// A store as the migration `version` left it, with what `fill` writes, then opened (and
  /// migrated the rest of the way) as the bridge opens it.
  private func migratedStore(from version: String, _ fill: (Database) throws -> Void) throws
    -> StateStore
  {
    let path = directory + "/state.sqlite"
    do {
      let pool = try DatabasePool(path: path)
      try StateStore.migrator.migrate(pool, upTo: version)
      try pool.write(fill)
    }
    return try StateStore(path: path)
  }

  func testMigrateAppliesThePendingMigrationsOfAnOlderStoreAndKeepsItsEvents() throws {
    let path = directory + "/state.sqlite"
    XCTAssertThrowsError(try StateStore.migrationStatus(path: path)) { error in
      XCTAssertTrue("\(error)".contains("no state store at"), "\(error)")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: path), "a status must not create a store")
    do {
      let pool = try DatabasePool(path: path)
      try StateStore.migrator.migrate(pool, upTo: "v6-spool-and-seen-by-commit")
      try pool.write { db in
        try insertOldEvent(db, event("7", 100, position: 1, status: "CREATED"), orderID: "7")
      }
    }
    let all = StateStore.migrator.migrations
    let before = try StateStore.migrationStatus(path: path)
    XCTAssertEqual(before.pending, ["v7-events-by-order", "v8-orders-without-rowid-open-index"])
    XCTAssertEqual(before.applied + before.pending, all)
    XCTAssertEqual(before.unknown, [])
    var done: [String] = []
    try StateStore.migrate(path: path) { name, seconds in
      done.append(name)
      XCTAssertGreaterThanOrEqual(seconds, 0)
      // One migration a step, committed before the call: the store is at `name` exactly.
      let now = try? StateStore.migrationStatus(path: path)
      XCTAssertEqual(now?.applied.last, name)
      XCTAssertEqual(now?.applied.count, before.applied.count + done.count)
    }
    XCTAssertEqual(done, before.pending)
    let after = try StateStore.migrationStatus(path: path)
    XCTAssertEqual(after.applied, all)
    XCTAssertEqual(after.pending, [])
    var again: [String] = []
    try StateStore.migrate(path: path) { name, _ in again.append(name) }
    XCTAssertEqual(again, [], "a current store has nothing to apply")
    XCTAssertEqual(try StateStore(path: path).timeline(orderID: "7").map(\.status), ["CREATED"])
  }

  func testAStoreMigratedByANewerVersionIsRefused() throws {
    let path = directory + "/state.sqlite"
    _ = try StateStore(path: path)
    do {
      let pool = try DatabasePool(path: path)
      try pool.write { db in
        try db.execute(
          sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-the-future')")
      }
    }
    XCTAssertEqual(try StateStore.migrationStatus(path: path).unknown, ["v99-from-the-future"])
    for open in [
      { _ = try StateStore(path: path) }, { try StateStore.migrate(path: path) { _, _ in } },
    ] {
      XCTAssertThrowsError(try open()) { error in
        XCTAssertTrue("\(error)".contains("migrated by a newer tracebridge"), "\(error)")
        XCTAssertTrue("\(error)".contains("v99-from-the-future"), "\(error)")
        XCTAssertEqual((error as? CLIError)?.exitCode, 2, "restarting cannot help: exit 2")
      }
    }
  }

  func testVersion4StoresMoveToTimeOrderedEventsAndSeenMessages() throws {
    // A store as version 4 left it, with events and seen messages in the old tables.
    let store = try migratedStore(from: "v4-seen-messages-by-identity") { db in
      try insertOldEvent(db, event("7", 300, position: 3, status: "PAID"), orderID: "7")
      try insertOldEvent(db, event("7", 100, position: 1, status: "CREATED"), orderID: "7")
      try insertOldEvent(db, event("8", 200, position: 2, status: "CREATED"), orderID: "8")
      // Same time, one file: the old text key sorted position 10 before 9.
      try insertOldEvent(db, event("9", 50, position: 10, status: "PAID"), orderID: "9")
      try insertOldEvent(db, event("9", 50, position: 9, status: "CREATED"), orderID: "9")
      try db.execute(
        sql: "INSERT INTO live_seen (id, seen_ns) VALUES (?, ?), (?, ?)",
        arguments: [Int64(-5), 1_000, Int64(42), 2_000])
    }
    XCTAssertEqual(try store.timeline(orderID: "7").map(\.status), ["CREATED", "PAID"])
    XCTAssertEqual(try store.timeline(orderID: "8").map(\.status), ["CREATED"])
    XCTAssertEqual(
      try store.loadSeenMessages(since: 0).sorted(), [42, UInt64(bitPattern: -5)].sorted())
    XCTAssertEqual(try store.loadSeenMessages(since: 1_500), [42])
    try store.forgetSeenMessages(before: 1_500)
    XCTAssertEqual(try store.loadSeenMessages(since: 0), [42])
  }

  /// An event row as versions 1 to 6 wrote it (`event_key` is `<source key>#<time>`).
  private func insertOldEvent(_ db: Database, _ e: OrderEvent, orderID: String) throws {
    try db.execute(
      sql: """
        INSERT INTO events (event_key, order_id, time_ns, service, kind, status, step, name,
                            user_id, rule, zone, attributes)
        VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?)
        """,
      arguments: [
        "\(e.sourceKey)#\(e.timeUnixNano)", orderID, e.timeUnixNano, e.service, e.kind.rawValue,
        e.status, e.name, e.rule, e.zoneRule, #"{"note":"old"}"#,
      ])
  }

  func testVersion6EventsMoveToRowsKeyedByOrderAndKeepTheirIdentity() throws {
    let paid = event("7", 300, position: 3, status: "PAID")
    let store = try migratedStore(from: "v6-spool-and-seen-by-commit") { db in
      try insertOldEvent(db, paid, orderID: "7")
      try insertOldEvent(db, event("7", 100, position: 1, status: "CREATED"), orderID: "7")
      try insertOldEvent(db, event("8", 200, position: 2, status: "CREATED"), orderID: "8")
      // Same time, one file: the old text key sorted position 10 before 9.
      try insertOldEvent(db, event("9", 50, position: 10, status: "PAID"), orderID: "9")
      try insertOldEvent(db, event("9", 50, position: 9, status: "CREATED"), orderID: "9")
      try db.execute(
        sql: """
          INSERT INTO events (event_key, order_id, time_ns, service, kind, name, rule, zone,
                              attributes)
          VALUES ('not a key', '8', 250000000000, 'CRM', 'log', 'note', 'r', 'UTC', '{}')
          """)
    }
    let seven = try store.timeline(orderID: "7")
    XCTAssertEqual(seven.map(\.status), ["CREATED", "PAID"])
    XCTAssertEqual(seven.map(\.attributes), [#"{"note":"old"}"#, #"{"note":"old"}"#])
    XCTAssertEqual(try store.timeline(orderID: "8").map(\.name), ["CREATED", "note"])
    XCTAssertEqual(
      try store.timeline(orderID: "9").map(\.status), ["CREATED", "PAID"],
      "same time: file order")
    let copied = try store.queue.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT service, kind, rule, zone, position, step, user_id FROM events
          WHERE order_id = '8' ORDER BY time_ns
          """)
    }
    XCTAssertEqual(copied.map { $0["service"] as String }, ["Shop", "CRM"])
    XCTAssertEqual(copied.map { $0["kind"] as String }, ["status_change", "log"])
    XCTAssertEqual(copied.map { $0["rule"] as String }, ["status", "r"])
    XCTAssertEqual(copied.map { $0["zone"] as String }, ["UTC", "UTC"])
    XCTAssertEqual(copied.map { $0["position"] as Int64 }, [2, 0])
    XCTAssertEqual(copied.map { $0["step"] as String? }, [nil, nil])
    // The identity is the one new rows get: the same event applied after the upgrade (a
    // redelivery, a replay) is still stored once; the same position at another time is not.
    var later = paid
    later.timeUnixNano += 1
    try store.apply([.event(paid, orderID: "7"), .event(later, orderID: "7")]) {
      self.ids.traceID(orderID: $0)
    }
    XCTAssertEqual(try store.timeline(orderID: "7").count, 3)
    let (primaryKey, indexes) = try store.queue.read { db in
      (
        try Row.fetchAll(db, sql: "PRAGMA index_xinfo('sqlite_autoindex_events_1')")
          .compactMap { $0["name"] as String? },
        try String.fetchAll(
          db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")
      )
    }
    XCTAssertEqual(Array(primaryKey.prefix(4)), ["order_id", "time_ns", "position", "source_id"])
    XCTAssertEqual(indexes, [], "no second B-tree for the timeline")
  }

  func testVersion7OrdersMoveToAKeyedTableWhoseIndexHoldsOpenOrdersOnlyAndAliasesGetAnIndexByOrder()
    throws
  {
    func summary(_ id: String, complete: Bool) -> OrderSummary {
      OrderSummary(
        orderID: id, traceID: ids.traceID(orderID: id), firstTime: 0, lastTime: 0, status: nil,
        statusTime: 0, complete: complete, userID: nil, service: "Shop", aliases: [])
    }
    let store = try migratedStore(from: "v7-events-by-order") { db in
      try StateStore.apply(
        [
          .event(event("7", 100, position: 1, status: "CREATED"), orderID: "7"),
          .event(event("7", 200, position: 2, status: "PAID"), orderID: "7"),
          .event(event("8", 150, position: 3, status: "CREATED"), orderID: "8"),
          .event(event("9", 120, position: 4, status: "DELIVERED"), orderID: "9"),
          .closed(summary("9", complete: true)),
        ], in: db, traceIDs: { self.ids.traceID(orderID: $0) })
    }
    let rows = try store.orders(matching: [])
    XCTAssertEqual(rows.map(\.orderID), ["7", "9", "8"], "by first seen, as before")
    XCTAssertEqual(rows.map(\.status), ["PAID", "DELIVERED", "CREATED"])
    XCTAssertEqual(rows.map(\.state), ["open", "complete", "open"])
    XCTAssertEqual(rows.map(\.firstSeen), [100_000_000_000, 120_000_000_000, 150_000_000_000])
    XCTAssertEqual(rows[0].traceID, ids.traceID(orderID: "7").description)
    XCTAssertEqual(rows.map(\.lastSeen), [200_000_000_000, 120_000_000_000, 150_000_000_000])
    XCTAssertEqual(
      rows.map(\.statusSince), [200_000_000_000, 120_000_000_000, 150_000_000_000])
    XCTAssertEqual(rows.map(\.userID), [nil, nil, nil])
    // Upserts and closes go on as before on the new table.
    try store.apply(
      [
        .event(event("8", 300, position: 5, status: "PAID"), orderID: "8"),
        .closed(summary("7", complete: false)),
      ]
    ) { self.ids.traceID(orderID: $0) }
    let (partial, columns, plan, table) = try store.queue.read { db in
      (
        try Int.fetchOne(
          db,
          sql: "SELECT partial FROM pragma_index_list('orders') WHERE name = 'orders_open_status'"),
        try String.fetchAll(
          db, sql: "SELECT name FROM pragma_index_info('orders_open_status') ORDER BY seqno"),
        try Row.fetchAll(
          db,
          sql: """
            EXPLAIN QUERY PLAN SELECT order_id FROM orders
            WHERE state = 'open' AND status = 'PAID' AND status_since_ns < 400000000000
            """
        ).map { $0["detail"] as String },
        try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'orders'")
      )
    }
    XCTAssertEqual(partial, 1, "the index holds open orders only")
    XCTAssertEqual(columns, ["status", "status_since_ns"])
    let forget = try store.queue.read { db in
      try Row.fetchAll(
        db,
        sql: """
          EXPLAIN QUERY PLAN DELETE FROM live_aliases WHERE order_id IN
            (SELECT order_id FROM live_tombstones WHERE closed_at_ns < 5)
            AND NOT EXISTS (SELECT 1 FROM live_orders o WHERE o.order_id = live_aliases.order_id)
          """
      ).map { $0["detail"] as String }
    }
    XCTAssertFalse(forget.contains { $0.hasPrefix("SCAN") }, "\(forget)")
    XCTAssertTrue(forget.contains { $0.contains("live_aliases_by_order") }, "\(forget)")
    XCTAssertTrue(plan.contains { $0.contains("orders_open_status") }, "\(plan)")
    XCTAssertTrue(table?.contains("WITHOUT ROWID") ?? false, table ?? "no orders table")
    XCTAssertEqual(try store.orders(matching: ["7"]).first?.state, "incomplete")
    XCTAssertEqual(try store.orders(matching: ["8"]).first?.status, "PAID")
  }

  func testVersion5SpoolAndSeenRowsBecomeOneRowPerCommit() throws {
    let store = try migratedStore(from: "v5-time-ordered-events-and-seen") { db in
      for (seq, service, span) in [
        (Int64(7), "Shop", [UInt8](repeating: 0xAB, count: 200)), (8, "CRM", []),
        (9, "Shop", [1]),
      ] {
        try db.execute(
          sql: "INSERT INTO spool (seq, service, span, created_ns) VALUES (?, ?, ?, ?)",
          arguments: [seq, service, Data(span), seq * 1_000])
      }
      try db.execute(
        sql: "INSERT INTO live_seen (seen_ns, id) VALUES (1000, -5), (1000, 42), (2000, 43)")
    }
    let rows = try store.spoolBatch(maxSpans: 100)
    XCTAssertEqual(rows.map(\.seq), [7, 8, 9], "the spool's order kept")
    XCTAssertEqual(rows.map(\.service), ["Shop", "CRM", "Shop"])
    XCTAssertEqual(
      rows.map(\.spans), [[[UInt8](repeating: 0xAB, count: 200)], [[]], [[1]]])
    XCTAssertEqual(rows.map(\.bytes), [202, 1, 2], "a length of 200 takes two bytes")
    let live = try store.loadLive()
    XCTAssertEqual(live.spoolSpans, 3)
    XCTAssertEqual(live.spoolBytes, 205)
    XCTAssertEqual(try store.spoolOldest(), 7_000)
    XCTAssertEqual(
      try store.loadSeenMessages(since: 0).sorted(), [42, 43, UInt64(bitPattern: -5)].sorted())
    XCTAssertEqual(try store.loadSeenMessages(since: 1_500), [43])
    try store.forgetSeenMessages(before: 1_500)
    XCTAssertEqual(try store.loadSeenMessages(since: 0), [43])
  }

  /// Forgetting an old tombstone forgets its aliases, but not when an order is open again
  /// under the same id: those aliases are the open order's.
  func testForgettingATombstoneKeepsTheAliasesOfAnOrderOpenAgainUnderItsID() throws {
    let store = try StateStore(path: directory + "/state.sqlite")
    let alias = AliasKey(kind: "job", key: "J-1")
    let other = AliasKey(kind: "job", key: "J-2")
    var closing = CorrelatorDelta(watermark: 10)
    closing.closed = [("7", Data([1])), ("8", Data([2]))]
    closing.aliases = [(alias, "7"), (other, "8")]
    try store.commitLive(StateStore.LiveCommit(delta: closing, nowNs: 10)) {
      self.ids.traceID(orderID: $0)
    }
    var reopened = CorrelatorDelta(watermark: 500)
    reopened.upserted = [("7", Data([3]))]
    reopened.aliases = [(alias, "7")]
    var commit = StateStore.LiveCommit(delta: reopened, nowNs: 500)
    commit.forgetClosedBefore = 100
    try store.commitLive(commit) { self.ids.traceID(orderID: $0) }
    let live = try store.loadLive()
    XCTAssertEqual(live.snapshot.aliases, [alias: "7"], "order 8's alias forgotten, 7's kept")
    XCTAssertEqual(live.snapshot.tombstones.count, 0)
    XCTAssertEqual(live.snapshot.open["7"], Data([3]))
  }

  func testACommitSpoolsOneRowPerServiceAndTheSenderReadsWholeRows() throws {
    let store = try StateStore(path: directory + "/state.sqlite")
    func commit(_ spans: [(String, [UInt8])], seen: [UInt64], at ns: Int64) throws -> Int64 {
      var c = StateStore.LiveCommit(
        spans: spans.map { StateStore.EncodedSpan(service: $0.0, bytes: $0.1) },
        delta: CorrelatorDelta(watermark: ns), nowNs: ns)
      c.seenMessages = seen
      return try store.commitLive(c) { self.ids.traceID(orderID: $0) }
    }
    let big = [UInt8](repeating: 9, count: 300)
    XCTAssertEqual(
      try commit(
        [("Shop", [1, 2]), ("MES", big), ("Shop", [3]), ("Shop", [])], seen: [1, 2], at: 10),
      3 + 2 + 1 + 302)
    XCTAssertEqual(try commit([("MES", [4])], seen: [UInt64.max], at: 20), 2)
    let all = try store.spoolBatch(maxSpans: 100)
    XCTAssertEqual(
      all.map(\.service), ["Shop", "MES", "MES"], "a row per service, first seen first")
    XCTAssertEqual(all[0].spans, [[1, 2], [3], []], "spans of a service in commit order")
    XCTAssertEqual(all[1].spans, [big])
    XCTAssertEqual(try store.loadLive().spoolSpans, 5)
    // A batch stops before the row that would pass maxSpans, but always takes one row.
    XCTAssertEqual(try store.spoolBatch(maxSpans: 4).map(\.seq), [all[0].seq, all[1].seq])
    XCTAssertEqual(try store.spoolBatch(maxSpans: 2).map(\.seq), [all[0].seq])
    // The sender reads on after what it delivered, before that is deleted.
    XCTAssertEqual(
      try store.spoolBatch(maxSpans: 100, after: all[0].seq).map(\.seq), [all[1].seq, all[2].seq])
    XCTAssertEqual(try store.spoolOldest(after: all[1].seq), 20)
    try store.spoolDelete(through: all[0].seq)
    XCTAssertEqual(try store.spoolBatch(maxSpans: 1).map(\.seq), [all[1].seq])
    XCTAssertEqual(try store.loadSeenMessages(since: 0), [1, 2, UInt64.max])
    XCTAssertEqual(try store.loadSeenMessages(since: 15), [UInt64.max])
  }

  func testPackedRowsThatDoNotParseAreRefused() {
    let packed = StateStore.packSpans([[1, 2, 3], [UInt8](repeating: 7, count: 130)])
    XCTAssertEqual(packed.count, 1 + 3 + 2 + 130)
    XCTAssertEqual(StateStore.unpackSpans(packed)?.map(\.count), [3, 130])
    for cut in [1, 5, packed.count - 1] {
      XCTAssertNil(StateStore.unpackSpans(Array(packed.prefix(cut))), "cut at \(cut)")
    }
    XCTAssertThrowsError(try StateStore.unpackIdentities([1, 2, 3]))
    XCTAssertEqual(
      try StateStore.unpackIdentities(StateStore.packIdentities([0, 1 << 63, 0x0102_0304])),
      [0, 1 << 63, 0x0102_0304])
  }

  func testEventsAtTheSameTimeComeBackInSourceOrder() throws {
    let store = try StateStore(path: directory + "/state.sqlite")
    let statuses = ["A", "B", "C", "D", "E", "F"]
    // Applied in reverse; positions 1...6 are the order the lines had in their file.
    try store.apply(
      statuses.enumerated().reversed().map { i, status in
        .event(event("7", 100, position: UInt64(i + 1), status: status), orderID: "7")
      }
    ) { self.ids.traceID(orderID: $0) }
    XCTAssertEqual(try store.timeline(orderID: "7").map(\.status), statuses)
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

  func testTheLogStaysSmallUnderCommitsThatNeverPause() throws {
    // A PASSIVE checkpoint never catches up with a writer that commits all the time, so the log
    // never starts over unless the writer finishes the copy between two commits.
    func largestLog(finishing: Bool) throws -> (log: Int, restarts: Int) {
      let path = directory + "/state-\(finishing).sqlite"
      let store = try StateStore(path: path)
      let checkpointer = try WALCheckpointer(
        store: store, interval: 0.05, restartFrames: 256, logger: .init(label: "test"))
      try checkpointer.start()
      var largest = 0
      for batch in 0..<300 {
        try store.apply(orders(batch * 200..<(batch + 1) * 200)) { self.ids.traceID(orderID: $0) }
        if finishing { store.finishLogCopyIfAsked() }
        let size = try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size]
        largest = max(largest, (size as? Int) ?? 0)
      }
      checkpointer.stop()
      XCTAssertEqual(try store.timeline(orderID: "59999").count, 1)
      return (largest, store.logRestarts.load(ordering: .relaxed))
    }
    let alone = try largestLog(finishing: false)
    let finished = try largestLog(finishing: true)
    XCTAssertGreaterThan(finished.restarts, 2)
    XCTAssertLessThan(
      finished.log * 3, alone.log,
      "the log reached \(finished.log) bytes with the writer finishing copies, \(alone.log) without"
    )
  }

  func testANewStoreHasEightKiBPagesAndAnOlderStoreKeepsItsOwn() throws {
    func pageSize(_ store: StateStore) throws -> Int {
      try store.queue.read { db in try Int.fetchOne(db, sql: "PRAGMA page_size") ?? -1 }
    }
    let fresh = try StateStore(path: directory + "/fresh.sqlite")
    XCTAssertEqual(try pageSize(fresh), 8192)
    // A store made with SQLite's default (as before this setting), already in WAL mode.
    let olderPath = directory + "/older.sqlite"
    do {
      let older = try DatabaseQueue(path: olderPath)
      try older.writeWithoutTransaction { db in
        try db.execute(sql: "PRAGMA page_size = 4096")
        try db.execute(sql: "PRAGMA journal_mode = WAL")
        try db.execute(sql: "CREATE TABLE keep (x INTEGER)")
        try db.execute(sql: "INSERT INTO keep VALUES (42)")
      }
      try older.close()
    }
    let older = try StateStore(path: olderPath)
    XCTAssertEqual(try pageSize(older), 4096, "an existing store keeps its page size")
    XCTAssertEqual(
      try older.queue.read { db in try Int.fetchOne(db, sql: "SELECT x FROM keep") }, 42)
    try older.apply([.event(event("9", 9, position: 9, status: "CREATED"), orderID: "9")]) {
      self.ids.traceID(orderID: $0)
    }
    XCTAssertEqual(try older.timeline(orderID: "9").count, 1, "and works as before")
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
      try store.apply(orders(batch * 500..<(batch + 1) * 500)) { self.ids.traceID(orderID: $0) }
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
