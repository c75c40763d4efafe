import GRDB
import GRDBSQLite

/// A prepared GRDB statement bound and stepped through the SQLite C API: for the rows a live
/// commit writes once per message or order, where building `StatementArguments` (a boxed value
/// per column) and SQLite's copy of every string cost more than SQLite's own work.
///
/// Text and blob values are written into one scratch buffer the statement owns and bound
/// without a copy (`SQLITE_STATIC`) just before the step; the bindings are cleared after it,
/// so SQLite never holds a pointer into the buffer between two `run`s. Bind every parameter
/// before each `run`.
///
/// The buffer and its list are exempt from the runtime's exclusivity checks (a live commit
/// binds a dozen values an event, and each check took the thread-local access set: 2 % of a
/// queue drain's CPU, most of it here). That is sound because a statement is used by one
/// thread inside one transaction, and nothing runs while the buffer is held that could reach
/// the same statement: `run`'s loop only binds, and the `write` closures callers give
/// `bindText` only append text to the buffer they are handed (keep them so).
final class RawStatement {
  private let statement: Statement
  private let db: Database
  private var handle: OpaquePointer { statement.sqliteStatement }
  @exclusivity(unchecked) private var scratch: [UInt8] = []
  /// Text and blob parameters waiting in `scratch`: parameter index, start, length, blob?
  @exclusivity(unchecked) private var pending:
    [(index: Int32, start: Int, count: Int, blob: Bool)] = []

  init(_ db: Database, sql: String) throws {
    self.db = db
    statement = try db.cachedStatement(sql: sql)
    scratch.reserveCapacity(1024)
  }

  private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

  func bind(_ index: Int32, _ value: Int64) {
    sqlite3_bind_int64(handle, index, value)
  }

  func bind(_ index: Int32, _ value: Int64?) {
    if let value {
      sqlite3_bind_int64(handle, index, value)
    } else {
      sqlite3_bind_null(handle, index)
    }
  }

  func bind(_ index: Int32, _ value: String?) {
    guard let value else {
      sqlite3_bind_null(handle, index)
      return
    }
    let start = scratch.count
    scratch.append(contentsOf: value.utf8)
    pending.append((index, start, scratch.count - start, false))
  }

  /// Binds as text the UTF-8 bytes `write` appends to the buffer it is given.
  func bindText(_ index: Int32, _ write: (inout [UInt8]) -> Void) {
    let start = scratch.count
    write(&scratch)
    pending.append((index, start, scratch.count - start, false))
  }

  func bind(_ index: Int32, blob: some Collection<UInt8>) {
    let start = scratch.count
    scratch.append(contentsOf: blob)
    pending.append((index, start, scratch.count - start, true))
  }

  /// Steps the statement to completion and resets it; an SQLite error throws as GRDB's would.
  func run() throws {
    let (code, message) = scratch.withUnsafeBufferPointer { buf -> (Int32, String?) in
      for p in pending {
        if p.count == 0 {
          // A null address would bind NULL: an empty value is bound (copied) from a literal.
          if p.blob {
            sqlite3_bind_zeroblob(handle, p.index, 0)
          } else {
            sqlite3_bind_text(handle, p.index, "", 0, Self.transient)
          }
          continue
        }
        let address = buf.baseAddress! + p.start
        if p.blob {
          sqlite3_bind_blob(handle, p.index, address, Int32(p.count), nil)
        } else {
          address.withMemoryRebound(to: CChar.self, capacity: p.count) {
            _ = sqlite3_bind_text(handle, p.index, $0, Int32(p.count), nil)
          }
        }
      }
      let code = sqlite3_step(handle)
      let message =
        code == SQLITE_DONE ? nil : db.sqliteConnection.map { String(cString: sqlite3_errmsg($0)) }
      sqlite3_reset(handle)
      sqlite3_clear_bindings(handle)
      return (code, message)
    }
    pending.removeAll(keepingCapacity: true)
    scratch.removeAll(keepingCapacity: true)
    guard code == SQLITE_DONE else {
      throw DatabaseError(
        resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
    }
  }
}
