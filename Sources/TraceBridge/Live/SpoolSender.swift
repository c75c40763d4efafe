import Exporters
import Foundation
import Logging
import Synchronization
import TraceBridgeCore

/// Drains the spool to the exporter on its own thread, oldest spans first. A span leaves the
/// spool only after the exporter accepted it (or refused it for good: then the request is
/// kept under `<data_dir>/export-refused/` and counted), so an outage of any length, or the
/// process being killed mid-request, costs at most a byte-identical re-send.
final class SpoolSender: @unchecked Sendable {
  private let store: StateStore
  private let transport: any RequestTransport
  private let maxBatchSpans: Int
  private let metrics: LiveMetrics
  private let spool: SpoolCounters
  private let refusedDirectory: String
  private let logger: Logger
  private let condition = NSCondition()
  private var stopRequested = false
  /// The last spool row delivered (or kept aside as refused): later reads start after it.
  private let sentThrough = Atomic<Int64>(-1)
  private var pendingWake = false
  private var finished = false

  init(
    store: StateStore, transport: any RequestTransport, maxBatchSpans: Int, metrics: LiveMetrics,
    spool: SpoolCounters, refusedDirectory: String, logger: Logger
  ) {
    self.store = store
    self.transport = transport
    self.maxBatchSpans = maxBatchSpans
    self.metrics = metrics
    self.spool = spool
    self.refusedDirectory = refusedDirectory
    self.logger = logger
  }

  /// Starts the sending thread under the given scheduling policy (a failure to set it is left
  /// to the pipeline thread to report).
  func start(scheduling: CPUScheduling = .normal) {
    let thread = Thread { [self] in
      ThreadName.set("spool-sender")
      scheduling.applyToCurrentThread()
      run()
      condition.lock()
      finished = true
      condition.broadcast()
      condition.unlock()
    }
    thread.name = "spool-sender"
    thread.start()
  }

  /// New spans were committed.
  func wake() {
    condition.lock()
    pendingWake = true
    condition.signal()
    condition.unlock()
  }

  /// Stops after the request in flight (interrupting its retries); unsent spans stay spooled.
  func stop() {
    condition.lock()
    stopRequested = true
    condition.broadcast()
    while !finished { condition.wait() }
    condition.unlock()
  }

  /// Waits up to `seconds` for the spool to empty (a clean shutdown sends what it can).
  func drain(within seconds: Double) {
    let until = Date().addingTimeInterval(seconds)
    while spool.spans > 0 && Date() < until { Thread.sleep(forTimeInterval: 0.05) }
  }

  private var shouldStop: Bool {
    condition.lock()
    defer { condition.unlock() }
    return stopRequested
  }

  private func run() {
    while !shouldStop {
      let batch: [StateStore.SpoolRow]
      do {
        batch = try store.spoolBatch(
          maxSpans: maxBatchSpans, after: sentThrough.load(ordering: .relaxed))
        updateGaugesNowAndThen()
      } catch {
        logger.error("cannot read the spool", metadata: ["error": "\(error)"])
        waitForWork(1)
        continue
      }
      if batch.isEmpty {
        waitForWork(1)
        continue
      }
      var requests: [EncodedRequest] = []
      let batcher = SpanBatcher(format: transport.format, maxSpans: maxBatchSpans) {
        requests.append($0)
      }
      for row in batch {
        for span in row.spans { batcher.add(encoded: span, service: row.service) }
      }
      batcher.flush()
      for request in requests {
        switch transport.deliver(request, stop: { self.shouldStop }) {
        case .delivered:
          metrics.exportSpans.increment(by: Int64(request.spanCount))
        case .failed(let reason):
          metrics.exportFailures.increment()
          keepRefused(request, reason: reason, firstSeq: batch[0].seq)
        case .stopped:
          return
        }
      }
      // Not read again; deleted by the next commit (or here once commits have stopped).
      let through = batch[batch.count - 1].seq
      sentThrough.store(through, ordering: .relaxed)
      let spans = batch.reduce(0) { $0 + $1.spans.count }
      let bytes = batch.reduce(0) { $0 + $1.bytes }
      if !spool.released(through: through, spans: spans, bytes: bytes) {
        do {
          try store.spoolDelete(through: through)
          spool.remove(spans: spans, bytes: bytes)
        } catch {
          logger.error(
            "cannot remove sent spans from the spool; they will be sent again on the next start",
            metadata: ["error": "\(error)"])
          waitForWork(1)
        }
      }
      updateGaugesNowAndThen()
    }
  }

  private var lastGaugeUpdate = 0.0
  /// At most once a second from the sending loop (a read of the spool's oldest row each time);
  /// a scrape of /metrics brings them up to date anyway.
  private func updateGaugesNowAndThen() {
    let now = Date().timeIntervalSince1970
    guard now - lastGaugeUpdate >= 1 else { return }
    lastGaugeUpdate = now
    updateGauges()
  }

  private var lastRetries = 0
  /// Brings the spool and export figures up to date (also called when /metrics is scraped,
  /// while this thread may be waiting in a retry).
  func updateGauges() {
    metrics.spoolSpans.set(Int64(spool.spans))
    metrics.spoolBytes.set(spool.bytes)
    if let oldest = try? store.spoolOldest(after: sentThrough.load(ordering: .relaxed)) {
      metrics.spoolOldestAge.set(
        Double(max(0, Date().timeIntervalSince1970 - Double(oldest) / 1e9)))
    } else {
      metrics.spoolOldestAge.set(Int64(0))
    }
    let retries = transport.currentStatistics.retries
    condition.lock()
    let added = retries - lastRetries
    lastRetries = max(lastRetries, retries)
    condition.unlock()
    if added > 0 { metrics.exportRetries.increment(by: Int64(added)) }
  }

  private func waitForWork(_ seconds: Double) {
    condition.lock()
    if !pendingWake && !stopRequested {
      _ = condition.wait(until: Date().addingTimeInterval(seconds))
    }
    pendingWake = false
    condition.unlock()
  }

  private func keepRefused(_ request: EncodedRequest, reason: String, firstSeq: Int64) {
    try? FileManager.default.createDirectory(
      atPath: refusedDirectory, withIntermediateDirectories: true)
    let ext = transport.format == .protobuf ? "pb" : "json"
    let base = "\(refusedDirectory)/\(Int64(Date().timeIntervalSince1970))-\(firstSeq)"
    _ = FileManager.default.createFile(atPath: "\(base).\(ext)", contents: Data(request.bytes))
    _ = FileManager.default.createFile(
      atPath: "\(base).reason.txt", contents: Data((reason + "\n").utf8))
    logger.error(
      "export refused; the request is kept",
      metadata: ["reason": "\(reason)", "file": "\(base).\(ext)"])
  }
}
