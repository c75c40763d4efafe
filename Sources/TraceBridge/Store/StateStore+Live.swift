import Foundation
import GRDB
import GRDBSQLite
import LogParsers
import TraceBridgeCore

/// Live mode's part of the store: file checkpoints, the correlator's open orders, tombstones,
/// aliases and waiting alias-only events, and the durable spool of spans not yet exported.
///
/// The guarantee rests on one rule: spans enter the spool in the same transaction that moves
/// the checkpoints past the lines they came from and saves the order state they leave behind.
/// Whatever instant the process dies, a restart sees either both or neither.
extension StateStore {
  static func createLiveTables(_ db: Database) throws {
    try db.execute(
      sql: """
        CREATE TABLE live_checkpoints (
            fingerprint TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            path TEXT NOT NULL,
            offset INTEGER NOT NULL,
            line INTEGER NOT NULL,
            done INTEGER NOT NULL,
            processed TEXT NOT NULL,   -- offsets at or after `offset` already processed, comma-separated
            updated_ns INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE live_orders (order_id TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE live_tombstones (
            order_id TEXT PRIMARY KEY, closed_at_ns INTEGER NOT NULL, data BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX live_tombstones_by_time ON live_tombstones(closed_at_ns);
        CREATE TABLE live_aliases (
            kind TEXT NOT NULL, alias TEXT NOT NULL, order_id TEXT NOT NULL, PRIMARY KEY (kind, alias)
        ) WITHOUT ROWID;
        CREATE TABLE live_meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
        CREATE TABLE spool (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            service TEXT NOT NULL,
            span BLOB NOT NULL,            -- encoded for the exporter (live_meta spool_format)
            created_ns INTEGER NOT NULL
        );                                 -- one span a row until v6 (StateStore.migrator)
        """)
  }

  /// What a live run starts from.
  struct LiveState {
    var snapshot = CorrelatorSnapshot()
    var checkpoints: [UInt64: TailCheckpoint] = [:]
    /// Per source, when the previous run last committed (seconds since the epoch).
    var watchSince: [String: Double] = [:]
    var spoolSpans = 0
    /// The encoding of the spooled spans (`protobuf` or `json`), as the exporter wanted it.
    var spoolFormat: String?
    var spoolBytes: Int64 = 0
  }

  /// A span encoded in the exporter's format, with its service. A struct, not a tuple: an
  /// array of tuples is destroyed through the runtime's generic tuple witness, element by
  /// element, on the commit thread.
  struct EncodedSpan: Sendable {
    var service: String
    var bytes: [UInt8]
  }

  /// One commit of the live pipeline.
  struct LiveCommit: Sendable {
    /// Spans encoded in the exporter's format, with their service.
    var spans: [EncodedSpan] = []
    var delta: CorrelatorDelta
    var checkpoints: [TailCheckpoint] = []
    var timeline: [Change] = []
    var sources: [String] = []
    var nowNs: Int64
    /// Tombstones of orders closed before this time are forgotten, with their aliases.
    var forgetClosedBefore: Int64?
    /// Identities (`SourceKey.identity`) of queue messages whose events this commit holds.
    var seenMessages: [UInt64] = []
    /// Spool rows up to this `seq` were delivered: the commit deletes them (`SpoolCounters`).
    var spoolDeleteThrough: Int64?
  }

  func loadLive() throws -> LiveState {
    try queue.read { db in
      var state = LiveState()
      for row in try Row.fetchAll(db, sql: "SELECT order_id, state FROM live_orders") {
        state.snapshot.open[row[0]] = row[1]
      }
      for row in try Row.fetchAll(db, sql: "SELECT order_id, data FROM live_tombstones") {
        state.snapshot.tombstones[row[0]] = row[1]
      }
      for row in try Row.fetchAll(db, sql: "SELECT kind, alias, order_id FROM live_aliases") {
        state.snapshot.aliases[AliasKey(kind: row[0], key: row[1])] = row[2]
      }
      for row in try Row.fetchAll(db, sql: "SELECT key, value FROM live_meta") {
        let key: String = row[0]
        let value: Data = row[1]
        if key == "pending" {
          state.snapshot.pending = value
        } else if key == "spool_format" {
          state.spoolFormat = String(decoding: value, as: UTF8.self)
        } else if key == "watermark", let v = Int64(String(decoding: value, as: UTF8.self)) {
          state.snapshot.watermark = v
        } else if key.hasPrefix("watch:"), let v = Double(String(decoding: value, as: UTF8.self)) {
          state.watchSince[String(key.dropFirst(6))] = v
        }
      }
      for row in try Row.fetchAll(
        db,
        sql: "SELECT fingerprint, source, path, offset, line, done, processed FROM live_checkpoints"
      ) {
        guard let fp = UInt64(row[0] as String, radix: 16) else { continue }
        let processed = (row[6] as String).split(separator: ",").compactMap { UInt64($0) }
        state.checkpoints[fp] = TailCheckpoint(
          fingerprint: fp, source: row[1], path: row[2], offset: UInt64(row[3] as Int64),
          line: row[4],
          done: (row[5] as Int) != 0, processed: processed)
      }
      let spool = try Row.fetchOne(
        db, sql: "SELECT coalesce(sum(spans), 0), coalesce(sum(length(data)), 0) FROM spool")
      state.spoolSpans = spool?[0] ?? 0
      state.spoolBytes = spool?[1] ?? 0
      return state
    }
  }

  /// Commits spans, checkpoints and order state in one transaction; returns the bytes added
  /// to the spool.
  @discardableResult
  func commitLive(_ commit: LiveCommit, traceIDs: (String) -> TraceID) throws -> Int64 {
    // One spool row per service (spans of one service in commit order), packed.
    var rows: [(service: String, spans: Int, data: BinaryWriter)] = []
    var rowOf: [String: Int] = [:]
    for span in commit.spans {
      let r: Int
      if let known = rowOf[span.service] {
        r = known
      } else {
        r = rows.count
        rows.append((span.service, 0, BinaryWriter()))
        rowOf[span.service] = r
      }
      rows[r].spans += 1
      rows[r].data.blob(span.bytes)
    }
    try queue.write { db in
      if let through = commit.spoolDeleteThrough {
        let delivered = try db.cachedStatement(sql: "DELETE FROM spool WHERE seq <= ?")
        try delivered.execute(arguments: [through])
      }
      let spool = try RawStatement(
        db, sql: "INSERT INTO spool (service, spans, data, created_ns) VALUES (?, ?, ?, ?)")
      for row in rows {
        spool.bind(1, row.service)
        spool.bind(2, Int64(row.spans))
        spool.bind(3, blob: row.data.bytes)
        spool.bind(4, commit.nowNs)
        try spool.run()
      }
      let upsert = try RawStatement(
        db, sql: "INSERT OR REPLACE INTO live_orders (order_id, state) VALUES (?, ?)")
      for (id, state) in commit.delta.upserted {
        upsert.bind(1, id)
        upsert.bind(2, blob: state)
        try upsert.run()
      }
      let removeOrder = try RawStatement(db, sql: "DELETE FROM live_orders WHERE order_id = ?")
      let tombstone = try RawStatement(
        db,
        sql:
          "INSERT OR REPLACE INTO live_tombstones (order_id, closed_at_ns, data) VALUES (?, ?, ?)")
      for (id, data) in commit.delta.closed {
        removeOrder.bind(1, id)
        try removeOrder.run()
        tombstone.bind(1, id)
        tombstone.bind(2, commit.delta.watermark)
        tombstone.bind(3, blob: data)
        try tombstone.run()
      }
      let alias = try db.cachedStatement(
        sql: "INSERT OR REPLACE INTO live_aliases (kind, alias, order_id) VALUES (?, ?, ?)")
      for (a, id) in commit.delta.aliases { try alias.execute(arguments: [a.kind, a.key, id]) }
      let meta = try db.cachedStatement(
        sql: "INSERT OR REPLACE INTO live_meta (key, value) VALUES (?, ?)")
      if let pending = commit.delta.pending { try meta.execute(arguments: ["pending", pending]) }
      try meta.execute(arguments: ["watermark", Data("\(commit.delta.watermark)".utf8)])
      let now = Data("\(Double(commit.nowNs) / 1e9)".utf8)
      for source in commit.sources { try meta.execute(arguments: ["watch:\(source)", now]) }
      let checkpoint = try db.cachedStatement(
        sql: """
          INSERT OR REPLACE INTO live_checkpoints
          (fingerprint, source, path, offset, line, done, processed, updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
          """)
      for c in commit.checkpoints {
        try checkpoint.execute(arguments: [
          String(c.fingerprint, radix: 16), c.source, c.path, Int64(c.offset), c.line,
          c.done ? 1 : 0,
          c.processed.map(String.init).joined(separator: ","), commit.nowNs,
        ])
      }
      if !commit.timeline.isEmpty { try Self.apply(commit.timeline, in: db, traceIDs: traceIDs) }
      if !commit.seenMessages.isEmpty {
        let seen = try RawStatement(db, sql: "INSERT INTO live_seen (seen_ns, ids) VALUES (?, ?)")
        seen.bind(1, commit.nowNs)
        seen.bind(2, blob: Self.packIdentities(commit.seenMessages))
        try seen.run()
      }
      if let before = commit.forgetClosedBefore {
        // Not the aliases of an order open again under the same id (its old tombstone not yet
        // forgotten here): they are the open order's now.
        try db.execute(
          sql: """
            DELETE FROM live_aliases WHERE order_id IN
              (SELECT order_id FROM live_tombstones WHERE closed_at_ns < ?)
              AND NOT EXISTS (SELECT 1 FROM live_orders o WHERE o.order_id = live_aliases.order_id);
            DELETE FROM live_tombstones WHERE closed_at_ns < ?;
            """, arguments: [before, before])
      }
    }
    return rows.reduce(0) { $0 + Int64($1.data.bytes.count) }
  }

  /// Records the encoding the spool's spans are in.
  func setSpoolFormat(_ format: String) throws {
    try queue.write { db in
      try db.execute(
        sql: "INSERT OR REPLACE INTO live_meta (key, value) VALUES ('spool_format', ?)",
        arguments: [Data(format.utf8)])
    }
  }

  /// Identities of queue messages committed since `ns` (a redelivery of one is acknowledged,
  /// not processed again).
  func loadSeenMessages(since ns: Int64) throws -> [UInt64] {
    try queue.read { db in
      try Data.fetchAll(db, sql: "SELECT ids FROM live_seen WHERE seen_ns >= ?", arguments: [ns])
        .flatMap { try Self.unpackIdentities([UInt8]($0)) }
    }
  }

  /// Forgets message identities committed before `ns`.
  func forgetSeenMessages(before ns: Int64) throws {
    try queue.write { db in
      try db.execute(sql: "DELETE FROM live_seen WHERE seen_ns < ?", arguments: [ns])
    }
  }

  /// One spool row: the spans of one service from one commit.
  struct SpoolRow {
    var seq: Int64
    var service: String
    var spans: [[UInt8]]
    /// The row's size in the spool (what `SpoolCounters` counts).
    var bytes: Int64
  }

  /// The oldest spool rows, in spool order, with at most `maxSpans` spans in all — or the
  /// oldest row alone when it holds more.
  /// (Read through the SQLite C API: GRDB's rows copied each span twice, a tenth of a queue
  /// drain's sender.)
  func spoolBatch(maxSpans: Int, after: Int64 = -1) throws -> [SpoolRow] {
    try queue.read { db in
      let statement = try db.cachedStatement(
        sql: "SELECT seq, service, spans, data FROM spool WHERE seq > ? ORDER BY seq")
      let handle = statement.sqliteStatement
      sqlite3_bind_int64(handle, 1, after)
      defer { sqlite3_reset(handle) }
      var rows: [SpoolRow] = []
      var total = 0
      while true {
        let code = sqlite3_step(handle)
        if code == SQLITE_DONE { break }
        guard code == SQLITE_ROW else {
          throw DatabaseError(
            resultCode: ResultCode(rawValue: code),
            message: db.sqliteConnection.map { String(cString: sqlite3_errmsg($0)) },
            sql: statement.sql)
        }
        let count = Int(sqlite3_column_int64(handle, 2))
        if !rows.isEmpty && total + count > maxSpans { break }
        let seq = sqlite3_column_int64(handle, 0)
        let service = sqlite3_column_text(handle, 1).map { String(cString: $0) } ?? ""
        let size = Int(sqlite3_column_bytes(handle, 3))
        let data =
          size == 0
          ? []
          : [UInt8](UnsafeRawBufferPointer(start: sqlite3_column_blob(handle, 3), count: size))
        guard let spans = Self.unpackSpans(data), spans.count == count else {
          throw CLIError(
            "the spool row \(seq) in \(path) is damaged (\(size) bytes that do not hold its \(count) spans); stop the bridge and delete that row to go on without its spans"
          )
        }
        rows.append(SpoolRow(seq: seq, service: service, spans: spans, bytes: Int64(size)))
        total += count
        if total >= maxSpans { break }
      }
      return rows
    }
  }

  /// Removes the spool rows up to `seq`, all delivered (or refused): the sender reads rows in
  /// `seq` order, which never goes back (AUTOINCREMENT).
  func spoolDelete(through seq: Int64) throws {
    try queue.write { db in
      try db.execute(sql: "DELETE FROM spool WHERE seq <= ?", arguments: [seq])
    }
  }

  // MARK: - Packed rows

  /// Spans packed into one spool row: each as its length (LEB128) and its bytes
  /// (`BinaryWriter.blob`).
  static func packSpans(_ spans: [[UInt8]]) -> [UInt8] {
    var w = BinaryWriter()
    for span in spans { w.blob(span) }
    return w.bytes
  }

  /// The spans of a packed spool row; nil when the bytes do not parse.
  static func unpackSpans(_ data: [UInt8]) -> [[UInt8]]? {
    var r = BinaryReader(data)
    var spans: [[UInt8]] = []
    while !r.atEnd {
      guard let span = try? r.blob() else { return nil }
      spans.append(span)
    }
    return spans
  }

  /// Message identities as one `live_seen` row: 8 bytes each, little-endian.
  static func packIdentities(_ ids: [UInt64]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(ids.count * 8)
    for id in ids {
      for shift in stride(from: 0, to: 64, by: 8) {
        out.append(UInt8(truncatingIfNeeded: id >> UInt64(shift)))
      }
    }
    return out
  }

  static func unpackIdentities(_ bytes: [UInt8]) throws -> [UInt64] {
    guard bytes.count % 8 == 0 else {
      throw CLIError("a live_seen row holds \(bytes.count) bytes, not a multiple of 8")
    }
    return stride(from: 0, to: bytes.count, by: 8).map { i in
      (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << UInt64(8 * $1) }
    }
  }

  /// When the oldest spooled span was spooled (UTC ns), nil when the spool is empty.
  func spoolOldest(after: Int64 = -1) throws -> Int64? {
    try queue.read { db in
      try Int64.fetchOne(
        db, sql: "SELECT created_ns FROM spool WHERE seq > ? ORDER BY seq LIMIT 1",
        arguments: [after])
    }
  }
}
