import Foundation
import TraceBridgeCore

/// Runs the live pipeline's commits, in order, on a thread of its own, so that correlating the
/// next events overlaps writing the previous ones (on a queue drain the commit was two thirds of
/// the pipeline thread's time, and nothing else moved while it ran).
///
/// What a commit guarantees does not change: its acknowledgements, its spool counters and its
/// latency figures are handed on only after the transaction returned. At most one commit runs
/// and one waits; the pipeline blocks on a third (backpressure). A failed commit stops the
/// writer: later jobs are dropped unacknowledged and the pipeline stops with the error at its
/// next commit.
final class CommitWriter: @unchecked Sendable {
  struct Job: Sendable {
    var commit: StateStore.LiveCommit
    /// Trace ids of the orders the timeline rows name, derived on the pipeline thread.
    var traceIDs: [String: TraceID]
    var acks: [DeliveryRef]
    /// Event times (s) of the committed queue messages, and read times (s) of all events.
    var messageTimes: [Double]
    var readTimes: [Double]
  }

  private let store: StateStore
  private let ids: IDDeriver
  private let intake: AMQPIntake?
  private let metrics: LiveMetrics
  private let spool: SpoolCounters
  private let wake: () -> Void
  private let jobs = BlockingQueue<Job>(capacity: 1)
  private let thread = JoinableThread()
  private let condition = NSCondition()
  private var error: (any Error)?

  init(
    store: StateStore, ids: IDDeriver, intake: AMQPIntake?, metrics: LiveMetrics,
    spool: SpoolCounters, wake: @escaping () -> Void
  ) {
    self.store = store
    self.ids = ids
    self.intake = intake
    self.metrics = metrics
    self.spool = spool
    self.wake = wake
  }

  func start() {
    thread.start(name: "live-commit") { [self] in run() }
  }

  /// Queues a commit (waiting while one runs and one waits); throws the error of an earlier
  /// commit that failed.
  func submit(_ job: Job) throws {
    if let error = failure { throw error }
    jobs.put(job)
  }

  /// Waits for the queued commits; throws the error of one that failed. Spool rows the sender
  /// delivered that no commit deleted are deleted here; later ones the sender deletes itself.
  func finish() throws {
    jobs.close()
    thread.wait()
    if let r = spool.stopCommits(), failure == nil {
      try store.spoolDelete(through: r.through)
      spool.remove(spans: r.spans, bytes: r.bytes)
    }
    if let error = failure { throw error }
  }

  var failure: (any Error)? {
    condition.lock()
    defer { condition.unlock() }
    return error
  }

  #if TRACEBRIDGE_BENCH_COMMIT_SWITCH
    /// Only in the binary `scripts/bench_amqp --ceiling` builds (never in a release): how fast
    /// the bridge drains with less or nothing of the commit, acks unchanged.
    /// `TRACEBRIDGE_BENCH_COMMIT=no-timeline` leaves out the timeline rows, `none` the commit.
    private static let benchMode =
      ProcessInfo.processInfo.environment["TRACEBRIDGE_BENCH_COMMIT"] ?? "full"

    private static func benchCommit(_ commit: StateStore.LiveCommit) -> StateStore.LiveCommit? {
      var commit = commit
      switch benchMode {
      case "none": return nil
      case "no-timeline": commit.timeline = []
      default: break
      }
      return commit
    }
  #endif

  private func run() {
    while let job = jobs.take() {
      guard failure == nil else { continue }
      let added: Int64
      var release: SpoolCounters.Release?
      do {
        let traceIDs = job.traceIDs
        let ids = ids
        #if TRACEBRIDGE_BENCH_COMMIT_SWITCH
          var commit = Self.benchCommit(job.commit)
        #else
          var commit: StateStore.LiveCommit? = job.commit
        #endif
        if commit != nil {
          release = spool.takeRelease()
          commit?.spoolDeleteThrough = release?.through
        }
        added =
          try commit.map { c in try store.commitLive(c) { traceIDs[$0] ?? ids.traceID(orderID: $0) }
          }
          ?? 0
      } catch {
        condition.lock()
        self.error = error
        condition.unlock()
        continue
      }
      intake?.acknowledge(job.acks)
      if let r = release { spool.remove(spans: r.spans, bytes: r.bytes) }
      let now = Double(job.commit.nowNs) / 1e9
      for t in job.messageTimes { metrics.messageLatency.record(max(0, now - t)) }
      for t in job.readTimes { metrics.spoolLatency.record(now - t) }
      if !job.commit.spans.isEmpty {
        spool.add(spans: job.commit.spans.count, bytes: added)
        wake()
      }
      // Between two commits: the checkpointer may want the log copy finished (WALCheckpointer).
      store.finishLogCopyIfAsked()
    }
  }
}
