import AMQPConsumer
import Foundation
import LogParsers
import TraceBridgeCore

/// Where a backfill stream's events come from: a rotated file set (`StreamProducer`) or a
/// RabbitMQ stream queue (`AMQPStreamProducer`). Each runs on its own thread and hands events
/// to the merge in batches through a bounded queue.
protocol EventProducer: AnyObject {
  var queue: BlockingQueue<[StreamEvent]> { get }
  func start()
  /// The report, once the thread has ended (call after the queue returned nil).
  func waitForReport() -> StreamReport
}

extension StreamProducer: EventProducer {}

/// Replays a RabbitMQ stream queue (`x-queue-type: stream`) from `since` (the
/// `x-stream-offset` timestamp; from its first message without one) through the source's
/// message rules, for `tracebridge backfill --amqp-stream`. A stream has no end: the replay
/// stops when no message has come for `idle` seconds, or at the first message published at
/// or after `until`. Messages are acknowledged (a stream consumer must, to receive more; it
/// removes nothing from the stream). A message's identity is the one it has in `run` when the
/// source consumes its own queue (`identityQueue`: the stream id is that queue's, the position
/// its message id), so a replayed message yields the spans it yielded live, byte for byte.
final class AMQPStreamProducer: EventProducer, @unchecked Sendable {
  let source: SourceDefinition
  let queueName: String
  let identityQueue: String
  let queue = BlockingQueue<[StreamEvent]>(capacity: 8)
  private let endpoint: AMQPEndpoint
  private let rules: [CompiledRule]
  private let ruleIndices: [Int]
  private let ruleNames: [String]
  private let since: Int64?
  private let until: Int64?
  private let idle: Double
  private let rejected: RejectedWriter?
  private let keepUnmatched: Bool
  private let bytesRead: AtomicCounter
  private let linesRead: AtomicCounter
  private var report = StreamReport()
  private let thread = JoinableThread()

  init(
    source: SourceDefinition, queueName: String, identityQueue: String, endpoint: AMQPEndpoint,
    rules: [CompiledRule],
    ruleIndices: [Int], allRuleNames: [String], since: Int64?, until: Int64?, idle: Double,
    rejected: RejectedWriter?, keepUnmatched: Bool, bytesRead: AtomicCounter,
    linesRead: AtomicCounter
  ) {
    self.source = source
    self.queueName = queueName
    self.identityQueue = identityQueue
    self.endpoint = endpoint
    self.rules = rules
    self.ruleIndices = ruleIndices
    self.ruleNames = allRuleNames
    self.since = since
    self.until = until
    self.idle = idle
    self.rejected = rejected
    self.keepUnmatched = keepUnmatched
    self.bytesRead = bytesRead
    self.linesRead = linesRead
  }

  func start() { thread.start(name: "stream-\(source.name)") { [self] in run() } }

  func waitForReport() -> StreamReport {
    thread.wait()
    return report
  }

  /// The `x-stream-offset` to start at.
  static func offset(since: Int64?) -> AMQPArgument {
    guard let since else { return .string("first") }
    return .timestamp(UInt64(max(0, since / 1_000_000_000)))
  }

  private func run() {
    defer { queue.close() }
    let connection: AMQPConnection
    do {
      connection = try AMQPConnection(endpoint: endpoint)
      try connection.declareQueue(queueName, passive: true)
      try connection.setPrefetch(1000)
      try connection.consume(queueName, arguments: [("x-stream-offset", Self.offset(since: since))])
    } catch {
      report.errors.append("stream queue '\(queueName)' on \(endpoint.redacted): \(error)")
      return
    }
    defer { connection.close() }
    report.files = 1
    let evaluator = RuleEvaluator(source: source, rules: rules, ruleIndices: ruleIndices)
    let streamID = SourceConsumer.streamID(identityQueue)
    var batch: [StreamEvent] = []
    var rejectBuffer: [UInt8] = []
    var unacked = 0
    var lastTag: UInt64 = 0
    do {
      while true {
        guard let d = try connection.nextDelivery(timeout: idle) else { break }
        lastTag = d.deliveryTag
        unacked += 1
        if unacked >= 500 {
          try connection.ack(lastTag, multiple: true)
          unacked = 0
        }
        if let until, let t = d.timestamp, Int64(t) * 1_000_000_000 >= until { break }
        report.read.records += 1
        report.read.lines += 1
        report.read.bytes += Int64(d.body.count)
        bytesRead.add(Int64(d.body.count))
        linesRead.add(1)
        let message = SourceConsumer.input(
          d, queue: identityQueue, received: Date().timeIntervalSince1970)
        let key = SourceKey(
          source: source.name, stream: streamID, position: SourceConsumer.messageID(d))
        let result = evaluator.evaluate(message: message, sourceKey: key)
        report.read.invalidSequences += result.invalidBytes
        switch result.outcome {
        case .matched(let rule, var event):
          SourceConsumer.addMessagingAttributes(&event, d, queue: identityQueue)
          batch.append(StreamEvent(event: event, rule: rule))
        case .rejected(let rule, let reason):
          report.rejected[reason, default: 0] += 1
          keep(&rejectBuffer, d, "\(reason.rawValue) (rule \(ruleNames[rule]))")
        case .unmapped(let why):
          report.unmatched += 1
          if keepUnmatched { keep(&rejectBuffer, d, why) }
        }
        if batch.count >= 512 {
          queue.put(batch)
          batch.removeAll(keepingCapacity: true)
        }
        if rejectBuffer.count > 1 << 16 { rejected?.write(&rejectBuffer) }
      }
      if unacked > 0 { try connection.ack(lastTag, multiple: true) }
    } catch {
      report.errors.append("stream queue '\(queueName)': \(error)")
    }
    if !batch.isEmpty { queue.put(batch) }
    rejected?.write(&rejectBuffer)
  }

  private func keep(_ buffer: inout [UInt8], _ d: AMQPDelivery, _ reason: String) {
    guard rejected != nil else { return }
    d.body.withUnsafeBufferPointer { body in
      RejectedWriter.append(
        to: &buffer, source: source.name, file: "amqp-stream:\(queueName)", line: 0,
        offset: d.deliveryTag, reason: reason, text: body)
    }
  }
}
