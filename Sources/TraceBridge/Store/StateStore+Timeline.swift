import Foundation
import GRDB

/// Reading timelines back: what `tracebridge timeline` (and later the console) shows.
extension StateStore {
  public struct OrderRow: Sendable {
    public var orderID: String
    public var traceID: String
    public var firstSeen: Int64
    public var lastSeen: Int64
    public var status: String?
    public var statusSince: Int64?
    public var state: String
    public var userID: String?
  }

  public struct EventRow: Sendable {
    public var time: Int64
    public var service: String
    public var kind: String
    public var status: String?
    public var step: String?
    public var name: String
    public var rule: String
    public var attributes: String
  }

  /// Orders by id, or by alias (`J-00077` or `mes_job:J-00077`); all orders when `keys` is empty.
  public func orders(matching keys: [String]) throws -> [OrderRow] {
    try queue.read { db in
      var rows: [Row] = []
      if keys.isEmpty {
        rows = try Row.fetchAll(db, sql: "SELECT * FROM orders ORDER BY first_seen_ns, order_id")
      } else {
        for key in keys {
          var found = try Row.fetchAll(
            db, sql: "SELECT * FROM orders WHERE order_id = ?", arguments: [key])
          if found.isEmpty {
            let parts = key.split(separator: ":", maxSplits: 1).map(String.init)
            let sql = """
              SELECT o.* FROM orders o JOIN aliases a ON a.order_id = o.order_id
              WHERE \(parts.count == 2 ? "a.kind = ? AND a.alias = ?" : "a.alias = ?")
              """
            found = try Row.fetchAll(
              db, sql: sql, arguments: StatementArguments(parts.count == 2 ? parts : [key]))
          }
          rows += found
        }
      }
      return rows.map {
        OrderRow(
          orderID: $0["order_id"], traceID: $0["trace_id"], firstSeen: $0["first_seen_ns"],
          lastSeen: $0["last_seen_ns"], status: $0["status"], statusSince: $0["status_since_ns"],
          state: $0["state"], userID: $0["user_id"])
      }
    }
  }

  public func timeline(orderID: String) throws -> [EventRow] {
    try queue.read { db in
      try Row.fetchAll(
        db, sql: "SELECT * FROM events WHERE order_id = ? ORDER BY time_ns, position, source_id",
        arguments: [orderID]
      ).map {
        EventRow(
          time: $0["time_ns"], service: $0["service"], kind: $0["kind"], status: $0["status"],
          step: $0["step"],
          name: $0["name"], rule: $0["rule"], attributes: $0["attributes"])
      }
    }
  }

  public func aliases(orderID: String) throws -> [String] {
    try queue.read { db in
      try String.fetchAll(
        db, sql: "SELECT kind || ':' || alias FROM aliases WHERE order_id = ? ORDER BY kind, alias",
        arguments: [orderID])
    }
  }
}
