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
        );
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

  /// One commit of the live pipeline.
  struct LiveCommit: Sendable {
    /// Spans encoded in the exporter's format, with their service.
    var spans: [(service: String, bytes: [UInt8])] = []
    var delta: CorrelatorDelta
    var checkpoints: [TailCheckpoint] = []
    var timeline: [Change] = []
    var sources: [String] = []
    var nowNs: Int64
    /// Tombstones of orders closed before this time are forgotten, with their aliases.
    var forgetClosedBefore: Int64?
    /// Identities (`SourceKey.identity`) of queue messages whose events this commit holds.
    var seenMessages: [UInt64] = []
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
        db, sql: "SELECT count(*), coalesce(sum(length(span)), 0) FROM spool")
      state.spoolSpans = spool?[0] ?? 0
      state.spoolBytes = spool?[1] ?? 0
      return state
    }
  }

  /// Commits spans, checkpoints and order state in one transaction; returns the bytes added
  /// to the spool.
  @discardableResult
  func commitLive(_ commit: LiveCommit, traceIDs: (String) -> TraceID) throws -> Int64 {
    try queue.write { db in
      let spool = try RawStatement(
        db, sql: "INSERT INTO spool (service, span, created_ns) VALUES (?, ?, ?)")
      for span in commit.spans {
        spool.bind(1, span.service)
        spool.bind(2, blob: span.bytes)
        spool.bind(3, commit.nowNs)
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
        let seen = try RawStatement(
          db, sql: "INSERT OR IGNORE INTO live_seen (seen_ns, id) VALUES (?, ?)")
        for id in commit.seenMessages {
          seen.bind(1, commit.nowNs)
          seen.bind(2, Int64(bitPattern: id))
          try seen.run()
        }
      }
      if let before = commit.forgetClosedBefore {
        try db.execute(
          sql: """
            DELETE FROM live_aliases WHERE order_id IN
              (SELECT order_id FROM live_tombstones WHERE closed_at_ns < ?);
            DELETE FROM live_tombstones WHERE closed_at_ns < ?;
            """, arguments: [before, before])
      }
    }
    return commit.spans.reduce(0) { $0 + Int64($1.bytes.count) }
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
      try Int64.fetchAll(db, sql: "SELECT id FROM live_seen WHERE seen_ns >= ?", arguments: [ns])
        .map { UInt64(bitPattern: $0) }
    }
  }

  /// Forgets message identities committed before `ns`.
  func forgetSeenMessages(before ns: Int64) throws {
    try queue.write { db in
      try db.execute(sql: "DELETE FROM live_seen WHERE seen_ns < ?", arguments: [ns])
    }
  }

  /// The oldest spooled spans, in spool order, at most `maxSpans` of them.
  /// (Read through the SQLite C API: GRDB's rows copied each span twice, a tenth of a queue
  /// drain's sender.)
  func spoolBatch(maxSpans: Int) throws -> [(seq: Int64, service: String, span: [UInt8])] {
    try queue.read { db in
      let statement = try db.cachedStatement(
        sql: "SELECT seq, service, span FROM spool ORDER BY seq LIMIT ?")
      let handle = statement.sqliteStatement
      sqlite3_bind_int64(handle, 1, Int64(maxSpans))
      defer {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
      }
      var rows: [(seq: Int64, service: String, span: [UInt8])] = []
      while true {
        let code = sqlite3_step(handle)
        if code == SQLITE_DONE { break }
        guard code == SQLITE_ROW else {
          throw DatabaseError(
            resultCode: ResultCode(rawValue: code),
            message: db.sqliteConnection.map { String(cString: sqlite3_errmsg($0)) },
            sql: statement.sql)
        }
        let service = sqlite3_column_text(handle, 1).map { String(cString: $0) } ?? ""
        let count = Int(sqlite3_column_bytes(handle, 2))
        let span =
          count == 0
          ? []
          : [UInt8](UnsafeRawBufferPointer(start: sqlite3_column_blob(handle, 2), count: count))
        rows.append((sqlite3_column_int64(handle, 0), service, span))
      }
      return rows
    }
  }

  /// Removes delivered (or refused) spans.
  func spoolDelete(_ seqs: [Int64]) throws {
    guard let first = seqs.min(), let last = seqs.max() else { return }
    try queue.write { db in
      if last - first + 1 == Int64(seqs.count) {
        try db.execute(
          sql: "DELETE FROM spool WHERE seq BETWEEN ? AND ?", arguments: [first, last])
      } else {
        let s = try db.cachedStatement(sql: "DELETE FROM spool WHERE seq = ?")
        for seq in seqs { try s.execute(arguments: [seq]) }
      }
    }
  }

  /// When the oldest spooled span was spooled (UTC ns), nil when the spool is empty.
  func spoolOldest() throws -> Int64? {
    try queue.read { db in
      try Int64.fetchOne(db, sql: "SELECT created_ns FROM spool ORDER BY seq LIMIT 1")
    }
  }
}
