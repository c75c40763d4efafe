import Foundation
import GRDB
import Logging
import TraceBridgeCore

/// Copies the store's write-ahead log into the database file from a thread of its own, so
/// that the live pipeline's commits only append to the log.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses 1,000 log pages: on a
/// RabbitMQ drain that was every commit or two, and the pipeline thread (which acknowledges
/// nothing until its commit returns) spent the copy and two fsyncs there. Here the writer's
/// automatic checkpoint is off while this thread runs PASSIVE checkpoints (they never block
/// the writer nor wait for readers) on its own connection every `interval` seconds; pages the
/// pipeline rewrites between two checkpoints (the order rows, the right edge of each index)
/// are copied once. Durability does not change: a commit is durable once in the log.
///
/// If a checkpoint fails, the writer's automatic checkpoint is turned back on (the log cannot
/// grow without bound) and the failure is logged.
final class WALCheckpointer: @unchecked Sendable {
  private let store: StateStore
  private let connection: DatabaseQueue
  private let interval: Double
  private let logger: Logger
  private let thread = JoinableThread()
  private let condition = NSCondition()
  private var stopRequested = false
  private var started = false

  init(store: StateStore, interval: Double = 1, logger: Logger) throws {
    self.store = store
    self.interval = interval
    self.logger = logger
    var config = GRDB.Configuration()
    config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
    config.busyMode = .timeout(10)
    connection = try DatabaseQueue(path: store.path, configuration: config)
  }

  func start() throws {
    try store.setAutomaticCheckpoint(false)
    started = true
    thread.start(name: "wal-checkpoint") { [self] in run() }
  }

  /// Stops the thread after one last checkpoint and gives the writer its automatic
  /// checkpoint back.
  func stop() {
    guard started else { return }
    condition.lock()
    stopRequested = true
    condition.broadcast()
    condition.unlock()
    thread.wait()
    try? store.setAutomaticCheckpoint(true)
  }

  private func run() {
    var failed = false
    while true {
      condition.lock()
      if !stopRequested {
        _ = condition.wait(until: Date().addingTimeInterval(interval))
      }
      let stopping = stopRequested
      condition.unlock()
      if !failed {
        do {
          try connection.writeWithoutTransaction { db in _ = try db.checkpoint(.passive) }
        } catch {
          failed = true
          logger.error(
            "cannot checkpoint the state store's write-ahead log; SQLite's automatic checkpoint takes over",
            metadata: ["store": "\(store.path)", "error": "\(error)"])
          try? store.setAutomaticCheckpoint(true)
        }
      }
      if stopping { return }
    }
  }
}

extension StateStore {
  /// Turns the writer connection's automatic checkpoint (every 1,000 log pages) off or on.
  func setAutomaticCheckpoint(_ on: Bool) throws {
    try queue.writeWithoutTransaction { db in
      try db.execute(sql: "PRAGMA wal_autocheckpoint = \(on ? 1000 : 0)")
    }
  }
}
