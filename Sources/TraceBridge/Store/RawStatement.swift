import GRDB
import GRDBSQLite

/// A prepared GRDB statement bound and stepped through the SQLite C API: for the inserts a
/// live commit runs once per message, where building `StatementArguments` (a boxed value per
/// column) cost more than SQLite's own work. Binds copy (`SQLITE_TRANSIENT`); every
/// parameter is bound before each `run`.
struct RawStatement {
  private let statement: Statement
  private let db: Database
  private var handle: OpaquePointer { statement.sqliteStatement }

  init(_ db: Database, sql: String) throws {
    self.db = db
    statement = try db.cachedStatement(sql: sql)
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
    guard var value else {
      sqlite3_bind_null(handle, index)
      return
    }
    _ = value.withUTF8 { buf in
      // An empty buffer may have no address, and a null address binds NULL, not ''.
      if buf.isEmpty {
        sqlite3_bind_text(handle, index, "", 0, Self.transient)
      } else {
        buf.withMemoryRebound(to: CChar.self) {
          sqlite3_bind_text(handle, index, $0.baseAddress, Int32($0.count), Self.transient)
        }
      }
    }
  }

  func bind(_ index: Int32, blob: [UInt8]) {
    _ = blob.withUnsafeBytes { buf in
      if buf.isEmpty {
        sqlite3_bind_zeroblob(handle, index, 0)
      } else {
        sqlite3_bind_blob(handle, index, buf.baseAddress, Int32(buf.count), Self.transient)
      }
    }
  }

  /// Steps the statement to completion and resets it; an SQLite error throws as GRDB's would.
  func run() throws {
    let code = sqlite3_step(handle)
    guard code == SQLITE_DONE else {
      let message = db.sqliteConnection.map { String(cString: sqlite3_errmsg($0)) }
      sqlite3_reset(handle)
      throw DatabaseError(
        resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
    }
    sqlite3_reset(handle)
  }
}
