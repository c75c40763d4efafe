import Foundation
import LogParsers
import TraceBridgeCore

/// An event a stream hands to the merge, with the index of the rule that made it.
struct StreamEvent: Sendable {
  var event: OrderEvent
  var rule: Int
}

/// Counts one stream reports at its end. Records that did not become events are counted
/// here (and copied to the rejected file), not sent through the merge.
struct StreamReport: Sendable {
  var read = ReadStatistics()
  var files = 0
  var unmatched = 0
  var rejected: [RejectReason: Int] = [:]
  var errors: [String] = []
}

/// Reads one rotated file set of one source on its own thread — the files oldest first,
/// records through the source's rules — and hands events to the merge in batches through a
/// bounded queue (the merge's pace limits the reading: memory stays bounded).
final class StreamProducer: @unchecked Sendable {
  let source: SourceDefinition
  let files: [String]
  let queue = BlockingQueue<[StreamEvent]>(capacity: 8)
  private let rules: [CompiledRule]
  private let ruleIndices: [Int]
  private let rejected: RejectedWriter?
  private let keepUnmatched: Bool
  private let ruleNames: [String]
  private let bytesRead: AtomicCounter
  private let linesRead: AtomicCounter
  private(set) var report = StreamReport()
  private let thread = JoinableThread()

  init(
    source: SourceDefinition, files: [String], rules: [CompiledRule], ruleIndices: [Int],
    allRuleNames: [String],
    rejected: RejectedWriter?, keepUnmatched: Bool, bytesRead: AtomicCounter,
    linesRead: AtomicCounter
  ) {
    self.source = source
    self.files = files
    self.rules = rules
    self.ruleIndices = ruleIndices
    self.ruleNames = allRuleNames
    self.rejected = rejected
    self.keepUnmatched = keepUnmatched
    self.bytesRead = bytesRead
    self.linesRead = linesRead
  }

  func start() { thread.start(name: "read-\(source.name)") { [self] in run() } }

  /// The report, once the thread has ended (call after the queue returned nil).
  func waitForReport() -> StreamReport {
    thread.wait()
    return report
  }

  private func run() {
    let evaluator = RuleEvaluator(source: source, rules: rules, ruleIndices: ruleIndices)
    var batch: [StreamEvent] = []
    batch.reserveCapacity(512)
    var rejectBuffer: [UInt8] = []
    for path in files {
      report.files += 1
      let file: LogFileReader
      do {
        file = try LogFileReader(path: path)
      } catch {
        report.errors.append("\(error)")
        continue
      }
      let reader = RecordReader(file: file, source: source)
      var lastBytes: Int64 = 0
      var lastLines = 0
      do {
        try reader.readAll { record in
          let key = SourceKey(
            source: source.name, stream: reader.fingerprint, position: record.offset)
          let outcome = evaluator.evaluate(record.text, sourceKey: key)
          switch outcome {
          case .matched(let rule, let event):
            batch.append(StreamEvent(event: event, rule: rule))
          case .rejected(let rule, let reason):
            report.rejected[reason, default: 0] += 1
            if rejected != nil {
              RejectedWriter.append(
                to: &rejectBuffer, source: source.name, file: path, line: record.line,
                offset: record.offset,
                reason: "\(reason.rawValue) (rule \(ruleNames[rule]))", text: record.text)
            }
          case .unmatched:
            report.unmatched += 1
            if keepUnmatched, rejected != nil {
              RejectedWriter.append(
                to: &rejectBuffer, source: source.name, file: path, line: record.line,
                offset: record.offset,
                reason: RejectReason.noRuleMatched.rawValue, text: record.text)
            }
          }
          if batch.count >= 512 {
            queue.put(batch)
            batch.removeAll(keepingCapacity: true)
            let b = reader.statistics.bytes
            bytesRead.add(b - lastBytes)
            lastBytes = b
            linesRead.add(Int64(reader.statistics.lines - lastLines))
            lastLines = reader.statistics.lines
          }
          if rejectBuffer.count > 1 << 16 { rejected?.write(&rejectBuffer) }
        }
      } catch {
        report.errors.append("\(error)")
      }
      bytesRead.add(reader.statistics.bytes - lastBytes)
      linesRead.add(Int64(reader.statistics.lines - lastLines))
      file.close()
      let s = reader.statistics
      report.read.bytes += s.bytes
      report.read.lines += s.lines
      report.read.records += s.records
      report.read.cutRecords += s.cutRecords
      report.read.invalidSequences += s.invalidSequences
    }
    if !batch.isEmpty { queue.put(batch) }
    rejected?.write(&rejectBuffer)
    queue.close()
  }
}

/// A counter several threads add to and one reads (progress).
final class AtomicCounter: @unchecked Sendable {
  private let lock = NSLock()
  private var value: Int64 = 0
  func add(_ n: Int64) {
    lock.lock()
    value += n
    lock.unlock()
  }
  var current: Int64 {
    lock.lock()
    defer { lock.unlock() }
    return value
  }
}
