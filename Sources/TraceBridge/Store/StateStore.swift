import Foundation
import GRDB
import Synchronization
import TraceBridgeCore

/// The embedded order state store (SQLite through GRDB): each order's timeline by order id
/// and by alias, the order's current status and since when (what the SLA monitor asks for
/// open transitions), and the alias links. Schema changes are named migrations.
///
/// Writes are idempotent: an event is keyed by its order, time and stable source position, so
/// a replay or a second backfill of the same logs adds nothing twice (as long as the event
/// resolves to the same order; one filed under another order, after an alias was re-bound or a
/// rule changed, appears in both timelines, as its spans do in both traces).
public final class StateStore: Sendable {
  public let path: String
  /// WAL mode: the live pipeline writes while the spool's sender (and later the console) read.
  let queue: DatabasePool
  /// Set by the WAL checkpointer when the writer should finish a log copy (`WALCheckpointer`).
  let logCopyWanted = Atomic<Bool>(false)
  /// How often the writer finished the log copy (the log then starts over).
  let logRestarts = Atomic<Int>(0)

  /// Opens (or creates) the store at `path` and applies the migrations it lacks. Throws when a
  /// newer tracebridge has migrated it (migrations this binary does not know): reading tables
  /// a later migration changed could misread them.
  public init(path: String) throws {
    self.path = path
    try FileManager.default.createDirectory(
      atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
      withIntermediateDirectories: true)
    queue = try Self.open(path)
    try Self.refuseNewer(queue, path: path)
    try Self.migrator.migrate(queue)
  }

  /// The page size a new store is created with.
  static let pageSize = 8192

  private static func open(_ path: String) throws -> DatabasePool {
    SQLiteSettings.apply()
    var config = GRDB.Configuration()
    // WAL with synchronous=NORMAL: a committed transaction survives the process being
    // killed (SIGKILL); only a power loss may take back the last ones.
    // A 32 MiB page cache (the default is 2 MiB): a live commit touches pages all over the
    // timeline and orders (keyed by order id), and re-reading them from the OS cache was a
    // fifth of the live pipeline's time on a RabbitMQ drain (when keys were hashes, v4).
    // 8 KiB pages for a new store (SQLite's default is 4 KiB; a store that exists keeps its
    // size, the pragma is then a no-op): a commit writes half as many pages (on a queue drain
    // its spool row, the commit's spans packed, alone runs to a dozen or more); the commit
    // thread took 6-7 % less CPU on a RabbitMQ drain (measured with commits of 750 and again
    // of 250), for about 30 % more bytes written at 1,000 log lines/s, where each commit
    // touches a few rows on many pages (docs/architecture.md).
    // secure_delete off, SQLite's own default: Debian's libsqlite3 turns it on, and then every
    // page a delete frees (spool rows once exported, open orders once closed) is zeroed and
    // written to the log and again by the checkpoint: 5 % of the bytes a queue drain writes,
    // and the commit thread 6.84 -> 6.56 µs a message (docs/performance.md, item 28). What a
    // delete leaves in free pages is also in the timeline, which the store keeps.
    config.prepareDatabase { db in
      try db.execute(sql: "PRAGMA page_size = \(pageSize)")
      try db.execute(sql: "PRAGMA synchronous = NORMAL")
      try db.execute(sql: "PRAGMA cache_size = -32768")
      try db.execute(sql: "PRAGMA secure_delete = OFF")
    }
    config.busyMode = .timeout(10)
    return try DatabasePool(path: path, configuration: config)
  }

  private static func refuseNewer(_ queue: DatabasePool, path: String) throws {
    let unknown = try queue.read { db in try status(db).unknown }
    if !unknown.isEmpty { throw newerVersionError(path: path, unknown: unknown) }
  }

  /// A store a newer tracebridge migrated: exit status 2, like a bad configuration (restarting
  /// cannot help; the systemd unit does not restart on 2).
  public static func newerVersionError(path: String, unknown: [String]) -> CLIError {
    CLIError(
      "\(path): migrated by a newer tracebridge (migrations this version does not know: "
        + "\(unknown.joined(separator: ", "))); run that version, or restore the backup taken "
        + "before the upgrade (docs/operations.md, Upgrade)", exitCode: 2)
  }

  private static func status(_ db: Database) throws -> MigrationStatus {
    let applied = try migrator.appliedIdentifiers(db)
    let known = migrator.migrations
    return MigrationStatus(
      applied: known.filter(applied.contains), pending: known.filter { !applied.contains($0) },
      unknown: applied.filter { !known.contains($0) }.sorted())
  }

  /// The migrations of the store at `path`: applied, still to apply, and unknown to this
  /// version (applied by a newer one). Opens the store read-only and changes nothing; throws if
  /// there is no store there.
  public static func migrationStatus(path: String) throws -> MigrationStatus {
    try requireStore(at: path)
    SQLiteSettings.apply()
    var config = GRDB.Configuration()
    config.readonly = true
    config.busyMode = .timeout(10)
    return try DatabaseQueue(path: path, configuration: config).read(status)
  }

  /// Opening a pool creates a missing file: the migration commands must not.
  private static func requireStore(at path: String) throws {
    guard FileManager.default.fileExists(atPath: path) else {
      throw CLIError("no state store at \(path)")
    }
  }

  public struct MigrationStatus: Sendable, Equatable {
    public var applied: [String]
    public var pending: [String]
    public var unknown: [String]
  }

  /// Applies the pending migrations of the store at `path` one by one, calling `done` with each
  /// one's name and seconds after it is committed. The store must exist and must not have been
  /// migrated by a newer version; another process migrating it meanwhile stops this one.
  public static func migrate(path: String, done: (String, Double) -> Void) throws {
    try requireStore(at: path)
    let queue = try open(path)
    let known = migrator.migrations
    while true {
      let now = try queue.read(status)
      if !now.unknown.isEmpty { throw newerVersionError(path: path, unknown: now.unknown) }
      guard let next = now.pending.first else { return }
      // Migrating up to `next` when a later one is applied already would stop the process
      // (GRDB treats it as a programming error): only another process can have done that.
      let later = known.suffix(from: known.firstIndex(of: next)! + 1)
      if let ahead = later.first(where: now.applied.contains) {
        throw CLIError(
          "\(path): \(ahead) is applied but \(next) is not; another process is migrating this "
            + "store (stop the service and run migrate again)")
      }
      let start = Date()
      try migrator.migrate(queue, upTo: next)
      done(next, Date().timeIntervalSince(start))
    }
  }

  static var migrator: DatabaseMigrator {
    var m = DatabaseMigrator()
    m.registerMigration("v1-orders-events-aliases") { db in
      try db.execute(
        sql: """
          CREATE TABLE orders (
              order_id TEXT PRIMARY KEY,
              trace_id TEXT NOT NULL,
              first_seen_ns INTEGER NOT NULL,
              last_seen_ns INTEGER NOT NULL,
              status TEXT,
              status_since_ns INTEGER,
              service TEXT,
              user_id TEXT,
              state TEXT NOT NULL DEFAULT 'open'  -- open | complete | incomplete
          );
          CREATE INDEX orders_open_status ON orders(state, status, status_since_ns);
          CREATE TABLE events (
              event_key TEXT PRIMARY KEY,
              order_id TEXT NOT NULL,
              time_ns INTEGER NOT NULL,
              service TEXT NOT NULL,
              kind TEXT NOT NULL,
              status TEXT,
              step TEXT,
              name TEXT NOT NULL,
              user_id TEXT,
              rule TEXT NOT NULL,
              zone TEXT NOT NULL,
              attributes TEXT NOT NULL
          ) WITHOUT ROWID;
          CREATE INDEX events_by_order ON events(order_id, time_ns);
          CREATE TABLE aliases (
              kind TEXT NOT NULL,
              alias TEXT NOT NULL,
              order_id TEXT NOT NULL,
              PRIMARY KEY (kind, alias)
          ) WITHOUT ROWID;
          CREATE INDEX aliases_by_order ON aliases(order_id);
          """)
    }
    m.registerMigration("v2-live-checkpoints-correlator-spool") { db in
      try Self.createLiveTables(db)
    }
    m.registerMigration("v3-seen-queue-messages") { db in
      try db.execute(
        sql: """
          CREATE TABLE live_seen_messages (key TEXT PRIMARY KEY, seen_ns INTEGER NOT NULL) WITHOUT ROWID;
          CREATE INDEX live_seen_messages_by_time ON live_seen_messages(seen_ns);
          """)
    }
    m.registerMigration("v4-seen-messages-by-identity") { db in
      // Integer identities instead of text keys: one row a queue message, in the commit that
      // acknowledges it, so its cost counts (a rowid table, an 8-byte key).
      try db.execute(
        sql: """
          CREATE TABLE live_seen (id INTEGER PRIMARY KEY, seen_ns INTEGER NOT NULL);
          CREATE INDEX live_seen_by_time ON live_seen(seen_ns);
          """)
      let insert = try db.makeStatement(
        sql: "INSERT OR REPLACE INTO live_seen (id, seen_ns) VALUES (?, ?)")
      for row in try Row.fetchAll(db, sql: "SELECT key, seen_ns FROM live_seen_messages") {
        guard let key = SourceKey(parsing: row[0]) else { continue }
        try insert.execute(arguments: [Int64(bitPattern: key.identity), row[1] as Int64])
      }
      try db.execute(sql: "DROP TABLE live_seen_messages")
    }
    m.registerMigration("v5-time-ordered-events-and-seen") { db in
      // Keys that follow time, so a commit appends at the right edge of each B-tree instead of
      // touching pages all over it: `event_key` leads with a hash of the source, and a seen
      // message's identity is a hash, so every commit rewrote most leaf pages of both tables
      // (8 KB written to disk a queue message at 100,000 messages, most of the drain's time).
      // (time_ns, event_key) identifies an event exactly as event_key did (it ends with the time).
      try db.execute(
        sql: """
          CREATE TABLE events_v5 (
              event_key TEXT NOT NULL,
              order_id TEXT NOT NULL,
              time_ns INTEGER NOT NULL,
              service TEXT NOT NULL,
              kind TEXT NOT NULL,
              status TEXT,
              step TEXT,
              name TEXT NOT NULL,
              user_id TEXT,
              rule TEXT NOT NULL,
              zone TEXT NOT NULL,
              attributes TEXT NOT NULL,
              PRIMARY KEY (time_ns, event_key)
          ) WITHOUT ROWID;
          INSERT INTO events_v5
            SELECT event_key, order_id, time_ns, service, kind, status, step, name, user_id, rule,
                   zone, attributes
            FROM events ORDER BY time_ns, event_key;
          DROP TABLE events;
          ALTER TABLE events_v5 RENAME TO events;
          CREATE INDEX events_by_order ON events(order_id, time_ns);
          CREATE TABLE live_seen_v5 (
              seen_ns INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (seen_ns, id)
          ) WITHOUT ROWID;
          INSERT INTO live_seen_v5 SELECT seen_ns, id FROM live_seen ORDER BY seen_ns, id;
          DROP TABLE live_seen;
          ALTER TABLE live_seen_v5 RENAME TO live_seen;
          """)
    }
    m.registerMigration("v6-spool-and-seen-by-commit") { db in
      // One row per commit (and service) instead of one per span or message: the spool's rows
      // hold the commit's spans packed (`packSpans`), `live_seen` the commit's message
      // identities (8 bytes each, little-endian). A queue drain wrote ~1,250 B-tree rows a
      // commit of 500 messages for these two alone, and the sender read and deleted the spool
      // row by row.
      try db.execute(
        sql: """
          CREATE TABLE spool_v6 (
              seq INTEGER PRIMARY KEY AUTOINCREMENT,
              service TEXT NOT NULL,
              spans INTEGER NOT NULL,        -- how many spans `data` holds
              data BLOB NOT NULL,            -- the spans, packed (StateStore.packSpans)
              created_ns INTEGER NOT NULL
          );
          CREATE TABLE live_seen_v6 (seen_ns INTEGER NOT NULL, ids BLOB NOT NULL);
          """)
      let spool = try db.makeStatement(
        sql: "INSERT INTO spool_v6 (seq, service, spans, data, created_ns) VALUES (?, ?, 1, ?, ?)")
      for row in try Row.fetchAll(
        db, sql: "SELECT seq, service, span, created_ns FROM spool ORDER BY seq")
      {
        let span: Data = row[2]
        try spool.execute(arguments: [
          row[0] as Int64, row[1] as String, Data(Self.packSpans([[UInt8](span)])),
          row[3] as Int64,
        ])
      }
      var seen: [Int64: [UInt64]] = [:]
      for row in try Row.fetchAll(db, sql: "SELECT seen_ns, id FROM live_seen") {
        seen[row[0], default: []].append(UInt64(bitPattern: row[1] as Int64))
      }
      let seenInsert = try db.makeStatement(
        sql: "INSERT INTO live_seen_v6 (seen_ns, ids) VALUES (?, ?)")
      for (ns, ids) in seen.sorted(by: { $0.key < $1.key }) {
        try seenInsert.execute(arguments: [ns, Data(Self.packIdentities(ids))])
      }
      try db.execute(
        sql: """
          DROP TABLE spool;
          ALTER TABLE spool_v6 RENAME TO spool;
          DROP TABLE live_seen;
          ALTER TABLE live_seen_v6 RENAME TO live_seen;
          CREATE INDEX live_seen_by_time ON live_seen(seen_ns);
          """)
    }
    m.registerMigration("v7-events-by-order") { db in
      // One B-tree for the timeline instead of two: the table is keyed by what it is read by
      // (order, time), then the source position (a file's byte offset: same-time events of one
      // file come back in file order) and the event's identity (`SourceKey.identity`, 8 bytes),
      // which replace the 60-byte text key, so an event is one row and no index entry. The
      // `events_by_order` index it replaces was ordered by order id too, so commits touch about
      // as many pages as before; the row and index inserts were about a seventh of a queue
      // drain's CPU.
      try db.execute(
        sql: """
          CREATE TABLE events_v7 (
              order_id TEXT NOT NULL,
              time_ns INTEGER NOT NULL,
              position INTEGER NOT NULL,     -- SourceKey.position (as a signed 64-bit)
              source_id INTEGER NOT NULL,    -- SourceKey.identity of the line or message
              service TEXT NOT NULL,
              kind TEXT NOT NULL,
              status TEXT,
              step TEXT,
              name TEXT NOT NULL,
              user_id TEXT,
              rule TEXT NOT NULL,
              zone TEXT NOT NULL,
              attributes TEXT NOT NULL,
              PRIMARY KEY (order_id, time_ns, position, source_id)
          ) WITHOUT ROWID;
          """)
      let insert = try db.makeStatement(
        sql: """
          INSERT OR IGNORE INTO events_v7
          (order_id, time_ns, position, source_id, service, kind, status, step, name, user_id,
           rule, zone, attributes)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          """)
      let rows = try Row.fetchCursor(
        db,
        sql: """
          SELECT event_key, order_id, time_ns, service, kind, status, step, name, user_id, rule,
                 zone, attributes
          FROM events
          """)
      while let row = try rows.next() {
        // event_key is `<source key>#<time>`; a key that does not parse keeps a hash of itself
        // (position 0). Rows can only meet under the new key if they met under the old one
        // (same source key and time), so OR IGNORE drops nothing the old table held twice.
        let text: String = row[0]
        let identity: UInt64
        var position: UInt64 = 0
        if let hash = text.lastIndex(of: "#"), let key = SourceKey(parsing: String(text[..<hash])) {
          identity = key.identity
          position = key.position
        } else {
          var h = SipHasher(k0: 0x6576_656e_746b_6579, k1: 0x7472_6163_6562_7237)
          h.append(Array(text.utf8))
          identity = h.finish()
        }
        var values: [(any DatabaseValueConvertible)?] = [
          row[1] as DatabaseValue, row[2] as DatabaseValue, Int64(bitPattern: position),
          Int64(bitPattern: identity),
        ]
        for i in 3..<12 { values.append(row[i] as DatabaseValue) }
        try insert.execute(arguments: StatementArguments(values))
      }
      try db.execute(
        sql: """
          DROP TABLE events;
          ALTER TABLE events_v7 RENAME TO events;
          """)
    }
    m.registerMigration("v8-orders-without-rowid-open-index") { db in
      // `orders` was a rowid table with a text primary key (so a second B-tree for the key)
      // and an index of every order by (state, status, since): each new order was three
      // B-tree inserts and each close an index delete and insert. Keyed by order id alone, with
      // the index holding open orders only (what the SLA monitor asks for: open orders in a
      // status since before a time), a new order is two inserts and a close one index delete,
      // and the index stays as small as the set of open orders instead of growing with history.
      // (SQLite uses a partial index only for a query that says `state = 'open'` literally.)
      // `live_aliases` gets an index by order: every commit forgets the aliases of tombstones
      // past the horizon, and without it that DELETE read the whole table (72 h of aliases;
      // 16 ms a commit at 300,000 of them, 0.12 ms with the index).
      try db.execute(
        sql: """
          CREATE TABLE orders_v8 (
              order_id TEXT PRIMARY KEY,
              trace_id TEXT NOT NULL,
              first_seen_ns INTEGER NOT NULL,
              last_seen_ns INTEGER NOT NULL,
              status TEXT,
              status_since_ns INTEGER,
              service TEXT,
              user_id TEXT,
              state TEXT NOT NULL DEFAULT 'open'  -- open | complete | incomplete
          ) WITHOUT ROWID;
          INSERT INTO orders_v8
            SELECT order_id, trace_id, first_seen_ns, last_seen_ns, status, status_since_ns,
                   service, user_id, state
            FROM orders;
          DROP TABLE orders;
          ALTER TABLE orders_v8 RENAME TO orders;
          CREATE INDEX orders_open_status ON orders(status, status_since_ns) WHERE state = 'open';
          CREATE INDEX live_aliases_by_order ON live_aliases(order_id);
          """)
    }
    return m
  }

  /// One write the store applies.
  public enum Change: Sendable {
    case event(OrderEvent, orderID: String)
    case closed(OrderSummary)
  }

  /// Applies `changes` in one transaction.
  public func apply(_ changes: [Change], traceIDs: (String) -> TraceID) throws {
    try queue.write { db in try Self.apply(changes, in: db, traceIDs: traceIDs) }
  }

  static func apply(_ changes: [Change], in db: Database, traceIDs: (String) -> TraceID) throws {
    do {
      let insertEvent = try RawStatement(
        db,
        sql: """
          INSERT OR IGNORE INTO events
          (order_id, time_ns, position, source_id, service, kind, status, step, name, user_id,
           rule, zone, attributes)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          """)
      let upsertOrder = try RawStatement(
        db,
        sql: """
          INSERT INTO orders (order_id, trace_id, first_seen_ns, last_seen_ns, status, status_since_ns, service, user_id)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT(order_id) DO UPDATE SET
            first_seen_ns = min(first_seen_ns, excluded.first_seen_ns),
            last_seen_ns = max(last_seen_ns, excluded.last_seen_ns),
            status = CASE WHEN excluded.status IS NOT NULL
              AND (status_since_ns IS NULL OR excluded.status_since_ns >= status_since_ns)
              THEN excluded.status ELSE status END,
            status_since_ns = CASE WHEN excluded.status IS NOT NULL
              AND (status_since_ns IS NULL OR excluded.status_since_ns >= status_since_ns)
              THEN excluded.status_since_ns ELSE status_since_ns END,
            user_id = coalesce(user_id, excluded.user_id)
          """)
      let insertAlias = try RawStatement(
        db, sql: "INSERT OR REPLACE INTO aliases (kind, alias, order_id) VALUES (?, ?, ?)")
      let closeOrder = try RawStatement(db, sql: "UPDATE orders SET state = ? WHERE order_id = ?")
      /// One upsert per order and call, not per event: the merge the SQL does (min first,
      /// max last, the latest status, the first user) is done here first for the batch.
      struct OrderRow {
        var orderID: String
        var traceID: String
        var first: Int64
        var last: Int64
        var status: String?
        var statusSince: Int64?
        var service: String
        var userID: String?

        mutating func merge(_ e: OrderEvent, isStatus: Bool) {
          first = min(first, e.timeUnixNano)
          last = max(last, e.timeUnixNano)
          if isStatus, statusSince.map({ e.timeUnixNano >= $0 }) ?? true {
            status = e.status
            statusSince = e.timeUnixNano
          }
          if userID == nil { userID = e.userID }
        }
      }
      var rows: [OrderRow] = []
      var rowIndex: [String: Int] = [:]
      var closes: [OrderSummary] = []
      for change in changes {
        switch change {
        case .event(let e, let orderID):
          insertEvent.bind(1, orderID)
          insertEvent.bind(2, e.timeUnixNano)
          insertEvent.bind(3, Int64(bitPattern: e.sourceKey.position))
          insertEvent.bind(4, Int64(bitPattern: e.sourceKey.identity))
          insertEvent.bind(5, e.service)
          insertEvent.bind(6, e.kind.rawValue)
          insertEvent.bind(7, e.status)
          insertEvent.bind(8, e.step)
          insertEvent.bind(9, e.name)
          insertEvent.bind(10, e.userID)
          insertEvent.bind(11, e.rule)
          insertEvent.bind(12, e.zoneRule)
          insertEvent.bindText(13) { Self.appendAttributesJSON(e.attributes, to: &$0) }
          try insertEvent.run()
          let isStatus = e.kind == .statusChange && e.status != nil
          // An order's events mostly come together: its row is then the last one (no hash).
          if let i = rows.indices.last, rows[i].orderID == orderID {
            rows[i].merge(e, isStatus: isStatus)
          } else if let i = rowIndex[orderID] {
            // Merged in place: one hash of the id an event, no copy of the row out and back.
            rows[i].merge(e, isStatus: isStatus)
          } else {
            rowIndex[orderID] = rows.count
            rows.append(
              OrderRow(
                orderID: orderID, traceID: traceIDs(orderID).description, first: e.timeUnixNano,
                last: e.timeUnixNano, status: isStatus ? e.status : nil,
                statusSince: isStatus ? e.timeUnixNano : nil, service: e.service,
                userID: e.userID))
          }
          if let link = e.link {
            insertAlias.bind(1, link.alias.kind)
            insertAlias.bind(2, link.alias.key)
            insertAlias.bind(3, link.orderID)
            try insertAlias.run()
          }
          if case .alias(let a) = e.key {
            insertAlias.bind(1, a.kind)
            insertAlias.bind(2, a.key)
            insertAlias.bind(3, orderID)
            try insertAlias.run()
          }
        case .closed(let s):
          closes.append(s)
        }
      }
      for r in rows {
        upsertOrder.bind(1, r.orderID)
        upsertOrder.bind(2, r.traceID)
        upsertOrder.bind(3, r.first)
        upsertOrder.bind(4, r.last)
        upsertOrder.bind(5, r.status)
        upsertOrder.bind(6, r.statusSince)
        upsertOrder.bind(7, r.service)
        upsertOrder.bind(8, r.userID)
        try upsertOrder.run()
      }
      // After the upserts: they never touch `state`, so closing last gives what closing in
      // event order would.
      for s in closes {
        closeOrder.bind(1, s.complete ? "complete" : "incomplete")
        closeOrder.bind(2, s.orderID)
        try closeOrder.run()
      }
    }
  }

  /// The attributes as one JSON object, appended to `buffer`.
  static func appendAttributesJSON(_ attributes: [Attribute], to buffer: inout [UInt8]) {
    buffer.append(0x7B)
    for (i, a) in attributes.enumerated() {
      if i > 0 { buffer.append(0x2C) }
      RejectedWriter.appendString(&buffer, a.key)
      buffer.append(0x3A)
      switch a.value {
      case .string(let s): RejectedWriter.appendString(&buffer, s)
      case .int(let v): buffer.append(contentsOf: "\(v)".utf8)
      case .double(let v): buffer.append(contentsOf: "\(v)".utf8)
      case .bool(let v): buffer.append(contentsOf: (v ? "true" : "false").utf8)
      }
    }
    buffer.append(0x7D)
  }
}
