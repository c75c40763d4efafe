import CSQLiteConfig
import GRDBSQLite

/// SQLite's process-wide settings, made once, before the first connection opens (SQLite takes
/// them only before it initializes). Every place that opens a store goes through `apply()`.
///
/// Memory statistics off (`SQLITE_CONFIG_MEMSTATUS`): with them on, every SQLite allocation
/// and free takes a process-wide mutex to keep the counts, and Debian's libsqlite3 is built
/// without lookaside memory, so a live commit allocates through it for every row it writes.
/// With `secure_delete` off (`StateStore.open`), about 6 % of the commit thread's CPU a message
/// on a queue drain (docs/performance.md, item 28). Nothing in TraceBridge reads the
/// statistics (`sqlite3_memory_used`, a soft heap limit), which are all that setting turns off.
enum SQLiteSettings {
  /// Whether the settings took: false when something opened SQLite before (the settings
  /// then stay SQLite's defaults; everything works, only slower).
  @discardableResult static func apply() -> Bool { applied }

  private static let applied: Bool = tb_sqlite_config_memstatus(0) == SQLITE_OK

  /// Whether SQLite counts its memory use in this process (false once `apply()` took).
  /// Meaningful only while a connection is open: with nothing allocated it reads false either
  /// way.
  static var memoryStatisticsOn: Bool {
    var current: Int64 = 0
    var highwater: Int64 = 0
    _ = sqlite3_status64(SQLITE_STATUS_MALLOC_COUNT, &current, &highwater, 0)
    return current > 0
  }
}
