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
/// A PASSIVE checkpoint alone does not keep the log small under a steady stream of commits: the
/// log starts over from its beginning only once a checkpoint has copied all of it, and a commit
/// lands during almost every copy, so on a sustained queue drain the log grew by the whole
/// volume written (474 MB for 300,000 messages, and the kernel's cost of extending the file was
/// a tenth of the commit thread). When the log still holds more than `restartFrames` pages
/// after the copy, this thread asks the writer to finish it: between two commits the writer
/// runs a PASSIVE checkpoint of its own (`StateStore.finishLogCopyIfAsked`), which copies the
/// few pages written since and, no writer being active, reaches the log's end, so the next
/// commit starts the log over. (A RESTART checkpoint from this thread would do the same but
/// must win the writer's lock; against a writer that commits back to back it mostly timed out.)
/// The log file is cut back to 64 MiB when it starts over (`journal_size_limit`), so a burst
/// does not leave a huge file behind.
///
/// If a checkpoint fails, the writer's automatic checkpoint is turned back on (the log cannot
/// grow without bound) and the failure is logged.
final class WALCheckpointer: @unchecked Sendable {
  private let store: StateStore
  private let connection: DatabaseQueue
  private let interval: Double
  private let restartFrames: Int
  private let logger: Logger
  private let thread = JoinableThread()
  private let condition = NSCondition()
  private var stopRequested = false
  private var started = false

  init(store: StateStore, interval: Double = 1, restartFrames: Int = 4096, logger: Logger) throws {
    self.store = store
    self.interval = interval
    self.restartFrames = restartFrames
    self.logger = logger
    var config = GRDB.Configuration()
    config.prepareDatabase { db in
      try db.execute(sql: "PRAGMA synchronous = NORMAL")
      try db.execute(sql: "PRAGMA secure_delete = OFF")  // as every connection of the store
    }
    config.busyMode = .timeout(10)
    connection = try DatabaseQueue(path: store.path, configuration: config)
  }

  func start(scheduling: CPUScheduling = .normal) throws {
    try store.setAutomaticCheckpoint(false)
    started = true
    thread.start(name: "wal-checkpoint") { [self] in
      scheduling.applyToCurrentThread()
      run()
    }
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
          let (logFrames, _) = try connection.writeWithoutTransaction { db in
            try db.checkpoint(.passive)
          }
          // Not `copied < logFrames`: a PASSIVE copy reports the log as it was when the copy
          // began, so it says "all" although commits landed during it (the log then does not
          // start over). A log that is long now is one that did not start over.
          if logFrames > restartFrames { store.askToFinishLogCopy() }
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
  /// The checkpointer found the log long after its copy: the writer should finish the copy.
  func askToFinishLogCopy() { logCopyWanted.store(true, ordering: .relaxed) }

  /// Between two commits of the live writer: when the checkpointer asked, copies the rest of
  /// the log into the database (a PASSIVE checkpoint on the writer's connection, so no commit
  /// lands during it), after which the next commit starts the log over. Returns whether it
  /// finished the copy; when it did not (a checkpoint ran on the other connection, a reader
  /// holds old pages), the next call tries again.
  @discardableResult
  func finishLogCopyIfAsked() -> Bool {
    guard logCopyWanted.load(ordering: .relaxed) else { return false }
    guard
      let (log, copied) = try? queue.writeWithoutTransaction({ try $0.checkpoint(.passive) }),
      copied == log
    else { return false }
    logCopyWanted.store(false, ordering: .relaxed)
    logRestarts.add(1, ordering: .relaxed)
    return true
  }

  /// Turns the writer connection's automatic checkpoint (every 1,000 log pages) off or on.
  func setAutomaticCheckpoint(_ on: Bool) throws {
    try queue.writeWithoutTransaction { db in
      try db.execute(sql: "PRAGMA wal_autocheckpoint = \(on ? 1000 : 0)")
      try db.execute(sql: "PRAGMA journal_size_limit = \(64 << 20)")
    }
  }
}
