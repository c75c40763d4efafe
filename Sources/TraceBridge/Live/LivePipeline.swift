import Exporters
import Foundation
import LogParsers
import Logging
import TraceBridgeCore

/// The tailing half of `tracebridge run`, on one dedicated thread: poll the files, turn
/// records into events, hold them for the reorder window, correlate them into spans, and
/// every `commit_interval` commit spans, checkpoints and order state in one transaction.
///
/// Guarantees:
/// - a checkpoint never passes a record whose event is not yet committed (records still in
///   the reorder window hold it back; records processed ahead of an earlier one are listed in
///   the checkpoint and skipped on resume), so a SIGKILL loses nothing and correlates nothing
///   twice;
/// - when the spool holds `spool.max_bytes`, reading pauses until the sender drains it.
public final class LivePipeline: @unchecked Sendable {
  /// How often a bridge with nothing to commit still commits: once a minute it records its
  /// clock (`watermark`) and each source's watch time. Commits with nothing in them are
  /// skipped otherwise; they rewrote those rows at every `commit_interval`, so an idle bridge
  /// wrote ~59 KB/s (~5 GB a day). A restart after up to this long without a commit finds a
  /// clock and watch times that much older: it keeps a tombstone or two longer, and reads a
  /// rotated file of that last minute it would otherwise have taken for history — never less.
  static let idleRefresh = 60.0

  public let configuration: Configuration
  let store: StateStore
  let metrics: LiveMetrics
  let spool: SpoolCounters
  private let logger: Logger
  private let stopLock = NSCondition()
  private var stopRequested = false
  private var nudged = false
  private var stopped = false
  private var isReady = false
  private var fatal: String?
  private let wake: () -> Void
  private let intake: AMQPIntake?
  /// The exporter's wire format: spans are spooled already encoded in it.
  private let format: ExportFormat

  /// - Parameter wake: called after a commit added spans to the spool (wakes the sender).
  init(
    configuration: Configuration, store: StateStore, metrics: LiveMetrics, spool: SpoolCounters,
    intake: AMQPIntake?, format: ExportFormat, logger: Logger, wake: @escaping () -> Void
  ) {
    self.intake = intake
    self.format = format
    self.configuration = configuration
    self.store = store
    self.metrics = metrics
    self.spool = spool
    self.logger = logger
    self.wake = wake
  }

  /// True once the store is loaded and the first poll ran.
  public var ready: Bool {
    stopLock.lock()
    defer { stopLock.unlock() }
    return isReady && !stopped
  }

  /// False once the thread has ended.
  public var isRunning: Bool {
    stopLock.lock()
    defer { stopLock.unlock() }
    return !stopped
  }

  /// Starts the pipeline thread.
  public func start() {
    let scheduling = configuration.live.cpuScheduling
    let thread = Thread { [self] in
      ThreadName.set("live-pipeline")
      // Before the commit writer and the AMQP consumers start here: they inherit the policy.
      if let problem = scheduling.applyToCurrentThread() {
        logger.warning(
          "live.cpu_scheduling \(scheduling.rawValue) not applied; the threads keep their policy",
          metadata: ["error": "\(problem)"])
      }
      do {
        try run()
      } catch {
        logger.critical("live pipeline stopped", metadata: ["error": "\(error)"])
        stopLock.lock()
        fatal = "\(error)"
        stopLock.unlock()
      }
      stopLock.lock()
      stopped = true
      stopLock.broadcast()
      stopLock.unlock()
    }
    thread.name = "live-pipeline"
    thread.stackSize = 1 << 22
    thread.start()
  }

  /// Asks the thread to commit and stop; returns once it has, with the error that stopped it
  /// early, if any.
  @discardableResult
  public func stop() -> String? {
    stopLock.lock()
    stopRequested = true
    stopLock.broadcast()
    while !stopped { stopLock.wait() }
    defer { stopLock.unlock() }
    return fatal
  }

  private var shouldStop: Bool {
    stopLock.lock()
    defer { stopLock.unlock() }
    return stopRequested
  }

  /// Waits `seconds`, or less when stopped or when a queue consumer hands over events.
  private func sleep(_ seconds: Double) {
    stopLock.lock()
    if !stopRequested && !nudged {
      _ = stopLock.wait(until: Date().addingTimeInterval(seconds))
    }
    nudged = false
    stopLock.unlock()
  }

  /// A queue consumer put events into an empty inbox: the loop must not sleep out its poll
  /// interval (with a small prefetch, every message the broker may send would be waiting).
  func nudge() {
    stopLock.lock()
    nudged = true
    stopLock.signal()
    stopLock.unlock()
  }

  // MARK: - The loop

  /// Per file (by fingerprint): what the checkpoint must account for.
  struct FileProgress {
    var source: String
    var path: String
    /// Where the tailer would resume (all records before it handed out).
    var readerResume: UInt64
    var line: Int
    var done = false
    /// Offsets of records whose events wait in the reorder window.
    var inflight: [UInt64: Int] = [:]
    /// Offsets of records processed while an earlier one still waited.
    var processed: [UInt64] = []
    var lastAdvance: Double
    var lastResume: UInt64 = 0
    var dirty = true
  }

  struct Held {
    var event: OrderEvent
    var rule: Int
    var arrival: Double
    /// Set for an event from a queue: acknowledged after the commit that follows its release.
    var delivery: DeliveryRef? = nil
    /// The queue message's identity (`SourceKey.identity`, a SipHash computed once).
    var identity: UInt64 = 0
  }

  private func run() throws {
    let live = configuration.live
    let state = try store.loadLive()
    let formatName = format == .protobuf ? "protobuf" : "json"
    if state.spoolSpans > 0, let spooled = state.spoolFormat, spooled != formatName {
      throw CLIError(
        "the spool holds \(state.spoolSpans) spans encoded for a \(spooled) exporter, but this exporter takes \(formatName); run once more with the previous exporter until /metrics shows tracebridge_spool_spans 0, or delete \(store.path) to drop them",
        exitCode: 2)
    }
    try store.setSpoolFormat(formatName)
    spool.reset(spans: state.spoolSpans, bytes: state.spoolBytes)
    var checkpoints = state.checkpoints
    let ruleNames = configuration.rules.map(\.name)
    var tailerOptions = FileTailer.Options()
    tailerOptions.pollInterval = live.pollInterval
    tailerOptions.multilineFlush = live.multilineFlush
    tailerOptions.rotatedQuietPeriod = live.rotatedQuietPeriod
    tailerOptions.startAtEnd = live.startAtEnd
    var progress: [UInt64: FileProgress] = [:]
    // A file opened again under a known fingerprint (the copy of a copytruncate, the gzip of
    // a file left half read) skips what was processed and what still waits in the window.
    func resumePoint(_ fingerprint: UInt64) -> TailCheckpoint? {
      guard var c = checkpoints[fingerprint] else { return nil }
      if let p = progress[fingerprint] {
        c.processed += p.processed + Array(p.inflight.keys)
      }
      return c
    }
    let tailer = FileTailer(
      sources: configuration.sources, options: tailerOptions, watchSince: state.watchSince,
      checkpoint: { resumePoint($0) })

    var evaluators: [String: RuleEvaluator] = [:]
    for source in configuration.sources {
      let (rules, indices) = configuration.rules(for: source.name)
      evaluators[source.name] = RuleEvaluator(source: source, rules: rules, ruleIndices: indices)
    }
    let rejectedWriter = try RejectedWriter(path: configuration.rejectedPath)
    var rejectBuffer: [UInt8] = []

    var spans: [StateStore.EncodedSpan] = []
    let format = format
    var timeline: [StateStore.Change] = []
    let correlator = Correlator(
      policy: configuration.orders, ids: configuration.ids,
      emit: {
        spans.append(
          StateStore.EncodedSpan(service: $0.service, bytes: SpanBatcher.encode($0, format: format))
        )
      },
      reject: { [metrics] event, reason in
        metrics.rejected(reason.rawValue).increment()
        RejectedWriter.append(to: &rejectBuffer, setAside: event, reason: reason)
      },
      observe: { event, orderID in timeline.append(.event(event, orderID: orderID)) },
      closed: { timeline.append(.closed($0)) })
    try correlator.restore(state.snapshot)
    correlator.trackChanges()
    let writer = CommitWriter(
      store: store, ids: configuration.ids, intake: intake, metrics: metrics, spool: spool,
      wake: wake)
    writer.start()
    defer { _ = try? writer.finish() }
    intake?.setWake { [weak self] in self?.nudge() }
    intake?.start()
    if !state.snapshot.open.isEmpty || state.spoolSpans > 0 {
      logger.notice(
        "resumed",
        metadata: [
          "open_orders": "\(state.snapshot.open.count)", "spooled_spans": "\(state.spoolSpans)",
          "checkpoints": "\(checkpoints.count)",
        ])
    }

    var held = ReorderQueue<Held>()
    var sequence: UInt64 = 0
    var maxEventTime: Int64 = state.snapshot.watermark
    var lastCommit = Date().timeIntervalSince1970
    var readTimes: [Double] = []
    // Queue messages: their identities already committed (loaded from the store), in the
    // window, committed since the last commit; deliveries to acknowledge after the next commit.
    let dedupeWindow = 900.0
    var seenMessages: Set<UInt64> = []
    var seenOrder: [(UInt64, Double)] = []
    var seenHead = 0
    for key in try store.loadSeenMessages(
      since: Int64((Date().timeIntervalSince1970 - dedupeWindow) * 1e9))
    {
      seenMessages.insert(key)
      seenOrder.append((key, Date().timeIntervalSince1970))
    }
    var lastSeenPrune = Date().timeIntervalSince1970
    // The store forgets old tombstones (and their aliases) every few seconds, not in every
    // commit: a DELETE over the tombstones' time index that finds nothing most of the time
    // (0.1-0.2 ms a commit, hundreds of commits a second on a queue drain). The correlator
    // forgets them on time in memory; one the store still holds at a restart is left out
    // (`Correlator.restore`).
    var lastForget = 0.0
    var inflightMessages: Set<UInt64> = []
    var newSeen: [UInt64] = []
    var pendingAcks: [DeliveryRef] = []
    var duplicateAcks: [(UInt64, DeliveryRef)] = []
    var messageTimes: [Double] = []
    var spoolFullLogged = false
    var lastStatsUpdate = 0.0
    let window = live.reorderWindow
    let ackBatch = intake?.ackBatch ?? Int.max
    // The queues have gone quiet (no delivery since a consumer said so, as of the last drain):
    // acknowledgements that wait are committed without waiting out the commit interval when 32
    // wait, or any number after a commit of 32 or more (the last few of a burst); see
    // `quietCommitMinimum`.
    var intakeQuiet = false
    var lastCommitAcks = 0
    // Looked up once: a lookup builds the label key and takes the registry's lock.
    let ruleCounters = ruleNames.map { metrics.ruleMatches($0) }

    func handle(_ file: FileTailer.TailedFile, _ record: LogRecord, now: Double) {
      let source = file.source.name
      if record.wasCut { metrics.linesCut(source).increment() }
      let key = SourceKey(source: source, stream: file.fingerprint, position: record.offset)
      switch evaluators[source]!.evaluate(record.text, sourceKey: key) {
      case .matched(let rule, let event):
        sequence += 1
        held.insert(
          Held(event: event, rule: rule, arrival: now),
          time: event.timeUnixNano, sequence: sequence)
        progress[file.fingerprint, default: newProgress(file, now)].inflight[
          record.offset, default: 0] += 1
      case .rejected(let rule, let reason):
        metrics.rejected(reason.rawValue).increment()
        RejectedWriter.append(
          to: &rejectBuffer, source: source, file: file.path, line: record.line,
          offset: record.offset,
          reason: "\(reason.rawValue) (rule \(ruleNames[rule]))", text: record.text)
      case .unmatched:
        metrics.unmatched(source).increment()
        RejectedWriter.append(
          to: &rejectBuffer, source: source, file: file.path, line: record.line,
          offset: record.offset,
          reason: RejectReason.noRuleMatched.rawValue, text: record.text)
      }
    }

    func newProgress(_ file: FileTailer.TailedFile, _ now: Double) -> FileProgress {
      FileProgress(
        source: file.source.name, path: file.path, readerResume: file.resumeOffset,
        line: file.lines,
        lastAdvance: now, lastResume: file.resumeOffset)
    }

    func release(now: Double, all: Bool) {
      while let arrival = held.withMin({ $0.arrival }), all || now - arrival >= window {
        let h = held.removeMin()!
        let e = h.event
        let fp = e.sourceKey.stream
        if var p = progress[fp] {
          if let n = p.inflight[e.sourceKey.position] {
            if n <= 1 {
              p.inflight[e.sourceKey.position] = nil
            } else {
              p.inflight[e.sourceKey.position] = n - 1
            }
          }
          p.processed.append(e.sourceKey.position)
          p.dirty = true
          progress[fp] = p
        }
        ruleCounters[h.rule].increment()
        metrics.events.increment()
        if let d = h.delivery {
          let id = h.identity
          inflightMessages.remove(id)
          if seenMessages.insert(id).inserted {
            newSeen.append(id)
            seenOrder.append((id, now))
          } else {
            // Two copies were in flight (a redelivery after a reconnect): one is enough.
            pendingAcks.append(d)
            continue
          }
          pendingAcks.append(d)
          messageTimes.append(Double(e.timeUnixNano) / 1e9)
        }
        correlator.process(e)
        readTimes.append(h.arrival)
        if e.timeUnixNano > maxEventTime { maxEventTime = e.timeUnixNano }
      }
    }

    // When the last commit was handed to the writer, and the forget horizon it carried.
    var lastWrite = -Double.infinity
    var lastForgetWritten: Int64?

    /// Commits what was processed since the last commit; skips a commit with nothing in it
    /// unless `force` (the first and the last) or `idleRefresh` has passed.
    func commit(now: Double, force: Bool = false) throws {
      let nowNs = Int64(now * 1e9)
      var rows: [TailCheckpoint] = []
      let open = Dictionary(
        tailer.files.map { ($0.fingerprint, $0) }, uniquingKeysWith: { a, _ in a })
      for (fp, var p) in progress {
        if let f = open[fp] {
          p.readerResume = f.resumeOffset
          p.line = f.lines
          p.path = f.path
        }
        let resume = min(p.readerResume, p.inflight.keys.min() ?? .max)
        p.processed = p.processed.filter { $0 >= resume }
        if resume != p.lastResume {
          p.lastAdvance = now
          p.lastResume = resume
          p.dirty = true
        }
        let done = p.done && p.inflight.isEmpty
        if p.dirty || done {
          let c = TailCheckpoint(
            fingerprint: fp, source: p.source, path: p.path, offset: resume, line: p.line,
            done: done,
            processed: p.processed.sorted())
          rows.append(c)
          checkpoints[fp] = c
          p.dirty = false
        }
        if done { progress[fp] = nil } else { progress[fp] = p }
      }
      let horizon = configuration.orders.horizon
      var forgetBefore: Int64?
      if now - lastForget >= 5, maxEventTime > Int64.min + horizon {
        forgetBefore = maxEventTime - horizon
        lastForget = now
      }
      let delta = try correlator.takeDelta()
      let nothing =
        spans.isEmpty && delta.isEmpty && rows.isEmpty && timeline.isEmpty && newSeen.isEmpty
        && pendingAcks.isEmpty && rejectBuffer.isEmpty && !spool.hasRelease
        && (forgetBefore == nil || forgetBefore == lastForgetWritten)
      // (The open-orders gauge needs no update then: orders open or close only with a delta.)
      if nothing && !force && now - lastWrite < Self.idleRefresh { return }
      lastWrite = now
      if let f = forgetBefore { lastForgetWritten = f }
      let commitRecord = StateStore.LiveCommit(
        spans: spans, delta: delta, checkpoints: rows, timeline: timeline,
        sources: configuration.sources.map(\.name), nowNs: nowNs,
        forgetClosedBefore: forgetBefore)
      let ids = configuration.ids
      var record = commitRecord
      record.seenMessages = newSeen
      var traceIDs: [String: TraceID] = [:]
      var lastID = ""
      for change in timeline {
        // An order's events mostly come together: one lookup for the run.
        if case .event(_, let id) = change, id != lastID {
          lastID = id
          if traceIDs[id] == nil {
            traceIDs[id] = correlator.openTraceID(id) ?? ids.traceID(orderID: id)
          }
        }
      }
      try writer.submit(
        CommitWriter.Job(
          commit: record, traceIDs: traceIDs, acks: pendingAcks, messageTimes: messageTimes,
          readTimes: readTimes))
      newSeen.removeAll(keepingCapacity: true)
      pendingAcks.removeAll(keepingCapacity: true)
      messageTimes.removeAll(keepingCapacity: true)
      readTimes.removeAll(keepingCapacity: true)
      spans.removeAll(keepingCapacity: true)
      timeline.removeAll(keepingCapacity: true)
      rejectedWriter.write(&rejectBuffer)
      metrics.openOrders.set(Int64(correlator.openOrders))
    }

    var gaugeLabels: Set<[String]> = []
    func updateFileGauges(now: Double) {
      var current: Set<[String]> = []
      for f in tailer.files {
        let p = progress[f.fingerprint]
        metrics.fileBytesBehind(f.source.name, f.path).set(
          Int64(f.isGzip ? 0 : max(0, f.size - Int64(f.readOffset))))
        metrics.fileCheckpointAge(f.source.name, f.path).set(
          Double(p.map { now - $0.lastAdvance } ?? 0))
        current.insert([f.source.name, f.path])
      }
      for gone in gaugeLabels.subtracting(current) {
        metrics.forgetGauge(
          "tracebridge_file_bytes_behind", [("source", gone[0]), ("path", gone[1])])
        metrics.forgetGauge(
          "tracebridge_file_checkpoint_age_seconds", [("source", gone[0]), ("path", gone[1])])
      }
      gaugeLabels = current
    }

    /// Lines and bytes read since the last poll, per file (keyed by fingerprint).
    var seen: [UInt64: (lines: Int, bytes: Int64)] = [:]
    func countReads() {
      var next: [UInt64: (lines: Int, bytes: Int64)] = [:]
      for f in tailer.files {
        let lines = f.statistics.lines
        let bytes = f.bytesRead
        let before = seen[f.fingerprint] ?? (lines: f.startLine, bytes: 0)
        if lines > before.lines {
          metrics.linesRead(f.source.name).increment(by: Int64(lines - before.lines))
        }
        if bytes > before.bytes {
          metrics.fileBytesRead(f.source.name, f.path).increment(by: bytes - before.bytes)
        }
        next[f.fingerprint] = (lines, bytes)
      }
      seen = next
    }

    var first = true
    while !shouldStop {
      let now = Date().timeIntervalSince1970
      var idle = true
      if spool.bytes >= live.spoolMaxBytes {
        if !spoolFullLogged {
          logger.warning(
            "spool full: reading paused until the exporter catches up",
            metadata: ["spool_bytes": "\(spool.bytes)", "max_bytes": "\(live.spoolMaxBytes)"])
          spoolFullLogged = true
        }
        metrics.spoolFull.set(Int64(1))
      } else {
        if spoolFullLogged {
          logger.notice("spool below its bound again: reading resumed")
          spoolFullLogged = false
        }
        metrics.spoolFull.set(Int64(0))
        let report = tailer.poll(now: now) { file, record in handle(file, record, now: now) }
        if let intake {
          let (events, quiet) = intake.drain()
          intakeQuiet = quiet
          for q in events {
            idle = false
            let key = q.event.sourceKey.identity
            if seenMessages.contains(key) || inflightMessages.contains(key) {
              metrics.amqpDuplicates(q.event.sourceKey.source).increment()
              if seenMessages.contains(key) {
                pendingAcks.append(q.delivery)
              } else {
                duplicateAcks.append((key, q.delivery))
              }
              continue
            }
            inflightMessages.insert(key)
            sequence += 1
            held.insert(
              Held(
                event: q.event, rule: q.rule, arrival: q.received, delivery: q.delivery,
                identity: key),
              time: q.event.timeUnixNano, sequence: sequence)
          }
          // A duplicate of a copy still in the window is acknowledged once that copy is.
          duplicateAcks.removeAll { pair in
            if seenMessages.contains(pair.0) {
              pendingAcks.append(pair.1)
              return true
            }
            return false
          }
        }
        if report.bytes > 0 { idle = false }
        countReads()
        for path in report.opened { logger.info("reading", metadata: ["file": "\(path)"]) }
        for path in report.truncated {
          logger.notice(
            "file truncated; reading it again from its start", metadata: ["file": "\(path)"])
          if let s = sourceName(of: path) { metrics.filesTruncated(s).increment() }
        }
        for path in report.rotated {
          logger.info("file rotated away; reading it to its end", metadata: ["file": "\(path)"])
          if let s = sourceName(of: path) { metrics.filesRotated(s).increment() }
        }
        for path in report.closed { logger.info("finished file", metadata: ["file": "\(path)"]) }
        for e in report.errors { logger.error("cannot read", metadata: ["error": "\(e)"]) }
        for c in tailer.takeFinished() {
          var p =
            progress[c.fingerprint]
            ?? FileProgress(
              source: c.source, path: c.path, readerResume: c.offset, line: c.line,
              lastAdvance: now,
              lastResume: c.offset)
          p.readerResume = c.offset
          p.line = c.line
          p.path = c.path
          p.done = c.done
          p.dirty = true
          checkpoints[c.fingerprint] = c  // done: not opened again before the commit records it
          progress[c.fingerprint] = p
        }
      }
      release(now: now, all: false)
      if now - lastSeenPrune >= 60 {
        // Redeliveries come within minutes: identities older than the window are forgotten.
        while seenHead < seenOrder.count, now - seenOrder[seenHead].1 > dedupeWindow {
          seenMessages.remove(seenOrder[seenHead].0)
          seenHead += 1
        }
        if seenHead > 65536 {
          seenOrder.removeFirst(seenHead)
          seenHead = 0
        }
        try? store.forgetSeenMessages(before: Int64((now - dedupeWindow) * 1e9))
        lastSeenPrune = now
      }
      let nowNs = Int64(now * 1e9)
      // Event time moves the correlator's clock (final_grace, horizon). The wall clock may move
      // it further only once the input is caught up: while a backlog is read (a queue holding
      // messages from minutes ago, a file behind) or events wait in the reorder window, their
      // times lag the wall clock, and closing orders by it would set aside the order's next
      // events although they came within final_grace of its final status.
      if idle && held.isEmpty {
        correlator.advance(to: max(maxEventTime, nowNs - Int64(window * 1e9)))
      } else if maxEventTime > Int64.min {
        correlator.advance(to: maxEventTime)
      }
      let quietCommit =
        intakeQuiet && !pendingAcks.isEmpty
        && (pendingAcks.count >= AMQPIntake.quietCommitMinimum
          || lastCommitAcks >= AMQPIntake.quietCommitMinimum)
      if now - lastCommit >= live.commitInterval || first || pendingAcks.count >= ackBatch
        || quietCommit
      {
        lastCommitAcks = pendingAcks.count
        try commit(now: now, force: first)
        lastCommit = now
      }
      if now - lastStatsUpdate >= 1 {
        updateFileGauges(now: now)
        lastStatsUpdate = now
      }
      if first {
        first = false
        stopLock.lock()
        isReady = true
        stopLock.unlock()
        logger.notice("tailing", metadata: ["files": "\(tailer.files.map(\.path))"])
      }
      if idle { sleep(live.pollInterval) }
    }
    // Shutdown: commit what was processed; what waits in the reorder window is re-read on
    // the next start (the checkpoints stop before it).
    try commit(now: Date().timeIntervalSince1970, force: true)
    // The acknowledgements of the last commits go out before the consumers stop.
    try writer.finish()
    intake?.stop()
    tailer.closeAll()
  }

  private func sourceName(of path: String) -> String? {
    let name = URL(fileURLWithPath: path).lastPathComponent
    return configuration.sources.first { s in
      s.paths.contains {
        RotatedFileSet.belongs(name, to: URL(fileURLWithPath: $0).lastPathComponent)
      }
    }?.name
  }
}

/// The spool's size, shared by the pipeline (adds) and the sender (removes), and the rows the
/// sender has delivered but not yet deleted.
///
/// The sender does not delete what it sent in a transaction of its own: it hands the rows over
/// (`released`) and the next commit deletes them (`takeRelease`, within at most the commit
/// interval), saving a write transaction per delivery and its wait for the writer. Once the
/// commits have stopped (`stopCommits`), the sender deletes for itself. A crash between the
/// delivery and that commit sends those spans again on the next start, as a crash between the
/// delivery and the sender's own delete always did.
final class SpoolCounters: @unchecked Sendable {
  private let lock = NSLock()
  private var spanCount = 0
  private var byteCount: Int64 = 0
  struct Release: Equatable {
    var through: Int64
    var spans: Int
    var bytes: Int64
  }
  private var release: Release?
  private var commitsStopped = false

  /// The sender delivered the rows up to `through`; false when no commit will delete them (the
  /// sender must then do it).
  func released(through: Int64, spans: Int, bytes: Int64) -> Bool {
    lock.lock()
    defer { lock.unlock() }
    guard !commitsStopped else { return false }
    var r = release ?? Release(through: through, spans: 0, bytes: 0)
    r.through = max(r.through, through)
    r.spans += spans
    r.bytes += bytes
    release = r
    return true
  }

  /// Whether delivered rows wait for a commit to delete them.
  var hasRelease: Bool {
    lock.lock()
    defer { lock.unlock() }
    return release != nil
  }

  /// The rows to delete in the commit about to run (counted out with `remove` after it).
  func takeRelease() -> Release? {
    lock.lock()
    defer { lock.unlock() }
    let r = release
    release = nil
    return r
  }

  /// No more commits: returns the rows handed over that no commit deleted.
  func stopCommits() -> Release? {
    lock.lock()
    defer { lock.unlock() }
    commitsStopped = true
    let r = release
    release = nil
    return r
  }

  func reset(spans: Int, bytes: Int64) {
    lock.lock()
    spanCount = spans
    byteCount = bytes
    lock.unlock()
  }
  func add(spans: Int, bytes: Int64) {
    lock.lock()
    spanCount += spans
    byteCount += bytes
    lock.unlock()
  }
  func remove(spans: Int, bytes: Int64) {
    lock.lock()
    spanCount = max(0, spanCount - spans)
    byteCount = max(0, byteCount - bytes)
    lock.unlock()
  }
  var spans: Int {
    lock.lock()
    defer { lock.unlock() }
    return spanCount
  }
  var bytes: Int64 {
    lock.lock()
    defer { lock.unlock() }
    return byteCount
  }
}
