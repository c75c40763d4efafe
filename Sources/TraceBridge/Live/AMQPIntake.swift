import AMQPConsumer
import Foundation
import LogParsers
import Logging
import TraceBridgeCore

/// An event read from a queue, on its way to the pipeline, with what acknowledging it needs.
struct QueuedEvent: Sendable {
  var event: OrderEvent
  var rule: Int
  var delivery: DeliveryRef
  var received: Double
}

/// Which delivery an event came from: the source, the connection it arrived on (delivery tags
/// are per connection), and its tag.
struct DeliveryRef: Hashable, Sendable {
  var source: Int
  var generation: Int
  var tag: UInt64
}

/// Consumes the RabbitMQ queues of the configured sources, one dedicated thread each
/// (rabbitmq-c is blocking; the cooperative pool has two threads here).
///
/// Guarantees (at least once, no poison loop):
/// - a message whose body maps to an event is acknowledged only after the pipeline has
///   committed that event's spans and state (`acknowledge` after each commit); acks are
///   batched with `multiple` over the longest completed prefix of deliveries;
/// - a message no rule maps (not JSON, no rule matches, bad timestamp, too large) is published
///   to the dead-letter queue with the reason in the `x-tracebridge-reason` header, then
///   acknowledged: it is never requeued;
/// - after a lost connection it reconnects with jittered backoff (0.5 s doubling to 30 s); the
///   broker redelivers what was not acknowledged, and the pipeline drops events it has
///   already committed (by their stable source key), so spans are not made twice.
final class AMQPIntake: @unchecked Sendable {
  private let consumers: [SourceConsumer]
  private let inbox = Inbox()

  init?(configuration: Configuration, metrics: LiveMetrics, logger: Logger) throws {
    guard !configuration.amqpSources.isEmpty, let settings = configuration.amqp else { return nil }
    var endpoint: AMQPEndpoint
    do {
      endpoint = try AMQPEndpoint(url: settings.url)
    } catch {
      throw CLIError("amqp.url: \(error)", exitCode: 2)
    }
    if let u = settings.user { endpoint.user = u }
    if let p = settings.password { endpoint.password = p }
    endpoint.heartbeatSeconds = settings.heartbeatSeconds
    endpoint.caFile = settings.caFile
    endpoint.certFile = settings.certFile
    endpoint.keyFile = settings.keyFile
    var list: [SourceConsumer] = []
    for (index, source) in configuration.sources.enumerated() {
      guard let queue = configuration.amqpSources[source.name] else { continue }
      let (rules, indices) = configuration.rules(for: source.name)
      list.append(
        SourceConsumer(
          index: index, source: source, queue: queue, endpoint: endpoint,
          evaluator: RuleEvaluator(source: source, rules: rules, ruleIndices: indices),
          ruleNames: configuration.rules.map(\.name), inbox: inbox, metrics: metrics, logger: logger
        ))
    }
    consumers = list
  }

  func start() { consumers.forEach { $0.start() } }

  func stop() { consumers.forEach { $0.stop() } }

  /// Events received since the last call.
  func drain() -> [QueuedEvent] { inbox.drain() }

  /// These deliveries' events are committed: they may be acknowledged.
  func acknowledge(_ refs: [DeliveryRef]) {
    guard !refs.isEmpty else { return }
    var bySource: [Int: [DeliveryRef]] = [:]
    for r in refs { bySource[r.source, default: []].append(r) }
    for c in consumers { if let r = bySource[c.index] { c.complete(r) } }
  }

  /// The hand-over from the consumer threads to the pipeline thread.
  final class Inbox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [QueuedEvent] = []
    func put(_ e: QueuedEvent) {
      lock.lock()
      items.append(e)
      lock.unlock()
    }
    func drain() -> [QueuedEvent] {
      lock.lock()
      defer { lock.unlock() }
      let out = items
      items.removeAll(keepingCapacity: true)
      return out
    }
    var count: Int {
      lock.lock()
      defer { lock.unlock() }
      return items.count
    }
  }
}

/// One source's queue on its own thread and connection.
final class SourceConsumer: @unchecked Sendable {
  let index: Int
  let source: SourceDefinition
  let queue: AMQPSourceSettings
  private let endpoint: AMQPEndpoint
  private let evaluator: RuleEvaluator
  private let ruleNames: [String]
  private let inbox: AMQPIntake.Inbox
  private let metrics: LiveMetrics
  private let logger: Logger
  private let lock = NSCondition()
  private var stopRequested = false
  private var finished = false
  /// Deliveries the pipeline has committed, not yet acknowledged (this generation only).
  private var completed: Set<UInt64> = []
  private var generation = 0

  init(
    index: Int, source: SourceDefinition, queue: AMQPSourceSettings, endpoint: AMQPEndpoint,
    evaluator: RuleEvaluator, ruleNames: [String], inbox: AMQPIntake.Inbox, metrics: LiveMetrics,
    logger: Logger
  ) {
    self.index = index
    self.source = source
    self.queue = queue
    self.endpoint = endpoint
    self.evaluator = evaluator
    self.ruleNames = ruleNames
    self.inbox = inbox
    self.metrics = metrics
    self.logger = logger
  }

  func start() {
    let thread = Thread { [self] in
      ThreadName.set("amqp-\(source.name)")
      run()
      lock.lock()
      finished = true
      lock.broadcast()
      lock.unlock()
    }
    thread.name = "amqp-\(source.name)"
    thread.start()
  }

  func stop() {
    lock.lock()
    stopRequested = true
    while !finished { lock.wait() }
    lock.unlock()
  }

  func complete(_ refs: [DeliveryRef]) {
    lock.lock()
    for r in refs where r.generation == generation { completed.insert(r.tag) }
    lock.unlock()
  }

  private var shouldStop: Bool {
    lock.lock()
    defer { lock.unlock() }
    return stopRequested
  }

  private func run() {
    var backoff = 0.5
    var rng = SystemRandomNumberGenerator()
    while !shouldStop {
      do {
        let connection = try connect()
        backoff = 0.5
        try consume(connection)
        connection.close()
      } catch {
        if shouldStop { break }
        metrics.amqpReconnects(source.name).increment()
        logger.warning(
          "RabbitMQ connection lost; reconnecting",
          metadata: ["source": "\(source.name)", "error": "\(error)", "in_seconds": "\(backoff)"])
        let wait = backoff * Double.random(in: 0.5...1.0, using: &rng)
        let until = Date().addingTimeInterval(wait)
        while Date() < until && !shouldStop { Thread.sleep(forTimeInterval: 0.05) }
        backoff = min(backoff * 2, 30)
      }
    }
  }

  private func connect() throws -> AMQPConnection {
    let connection = try AMQPConnection(endpoint: endpoint)
    try connection.declareQueue(queue.queue, passive: queue.passive)
    for b in queue.bindings {
      try connection.bindQueue(queue.queue, exchange: b.exchange, routingKey: b.routingKey)
    }
    if queue.deadLetterExchange.isEmpty {
      try connection.declareQueue(queue.deadLetterQueue, passive: false)
    }
    try connection.setPrefetch(queue.prefetch)
    try connection.consume(queue.queue)
    lock.lock()
    generation += 1
    completed.removeAll()
    lock.unlock()
    logger.info(
      "consuming",
      metadata: [
        "source": "\(source.name)", "queue": "\(queue.queue)", "broker": "\(endpoint.redacted)",
      ])
    return connection
  }

  /// Delivers until the connection fails or a stop is asked for.
  private func consume(_ connection: AMQPConnection) throws {
    /// Delivery tags not acknowledged yet, in delivery order.
    var outstanding: [UInt64] = []
    var head = 0
    let gen: Int = {
      lock.lock()
      defer { lock.unlock() }
      return generation
    }()
    while !shouldStop {
      try acknowledgeCompleted(connection, &outstanding, &head)
      guard let delivery = try connection.nextDelivery(timeout: 0.1) else { continue }
      metrics.amqpReceived(source.name).increment()
      outstanding.append(delivery.deliveryTag)
      switch map(delivery) {
      case .event(let event, let rule):
        inbox.put(
          QueuedEvent(
            event: event, rule: rule,
            delivery: DeliveryRef(source: index, generation: gen, tag: delivery.deliveryTag),
            received: Date().timeIntervalSince1970))
      case .poison(let reason):
        try deadLetter(connection, delivery, reason: reason)
        lock.lock()
        completed.insert(delivery.deliveryTag)
        lock.unlock()
      }
    }
    try acknowledgeCompleted(connection, &outstanding, &head)
  }

  /// Acknowledges the longest prefix of `outstanding` whose deliveries are all completed.
  private func acknowledgeCompleted(
    _ connection: AMQPConnection, _ outstanding: inout [UInt64], _ head: inout Int
  ) throws {
    lock.lock()
    var last: UInt64?
    var n = 0
    while head < outstanding.count, completed.remove(outstanding[head]) != nil {
      last = outstanding[head]
      head += 1
      n += 1
    }
    lock.unlock()
    if head > 4096 {
      outstanding.removeFirst(head)
      head = 0
    }
    if let last {
      try connection.ack(last, multiple: true)
      metrics.amqpAcked(source.name).increment(by: Int64(n))
    }
  }

  enum Mapping {
    case event(OrderEvent, rule: Int)
    case poison(String)
  }

  /// The message as the rules see it — `{"properties": {…}, "headers": {…}, "body": …}` —
  /// evaluated by the source's rules.
  private func map(_ d: AMQPDelivery) -> Mapping {
    if d.body.count > queue.maxMessageBytes {
      return .poison(
        "too large: \(d.body.count) bytes, more than max_message_bytes \(queue.maxMessageBytes)")
    }
    let trimmed = d.body.drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
    guard let first = trimmed.first, first == UInt8(ascii: "{") || first == UInt8(ascii: "["),
      (try? JSONSerialization.jsonObject(with: Data(d.body), options: [.fragmentsAllowed])) != nil
    else {
      return .poison("not JSON: the body does not parse as a JSON document")
    }
    var doc: [UInt8] = Array(#"{"properties":{"#.utf8)
    var firstProp = true
    func prop(_ key: String, _ value: String?) {
      guard let value else { return }
      if !firstProp { doc.append(0x2C) }
      firstProp = false
      RejectedWriter.appendString(&doc, key)
      doc.append(0x3A)
      RejectedWriter.appendString(&doc, value)
    }
    prop("message_id", d.messageID)
    prop("correlation_id", d.correlationID)
    prop("timestamp", d.timestamp.map { String($0) })
    prop("type", d.type)
    prop("app_id", d.appID)
    prop("user_id", d.userID)
    prop("content_type", d.contentType)
    prop("content_encoding", d.contentEncoding)
    prop("exchange", d.exchange)
    prop("routing_key", d.routingKey)
    prop("queue", queue.queue)
    doc.append(contentsOf: #"},"headers":{"#.utf8)
    firstProp = true
    for (k, v) in d.headers { prop(k, v) }
    doc.append(contentsOf: #"},"body":"#.utf8)
    doc.append(contentsOf: d.body)
    doc.append(0x7D)
    let key = SourceKey(
      source: source.name, stream: Self.streamID(queue.queue), position: Self.messageID(d))
    let outcome = doc.withUnsafeBufferPointer { evaluator.evaluate($0, sourceKey: key) }
    switch outcome {
    case .matched(let rule, var event):
      event.attributes.append(
        Attribute("messaging.destination.name", d.exchange.isEmpty ? queue.queue : d.exchange))
      if !d.routingKey.isEmpty {
        event.attributes.append(
          Attribute("messaging.rabbitmq.destination.routing_key", d.routingKey))
      }
      if let id = d.messageID { event.attributes.append(Attribute("messaging.message.id", id)) }
      if let tp = d.headers.first(where: { $0.0.lowercased() == "traceparent" })?.1 {
        event.attributes.append(Attribute(Correlator.traceparentAttribute, tp))
      }
      return .event(event, rule: rule)
    case .rejected(let rule, let reason):
      return .poison("\(reason.rawValue) (rule \(ruleNames[rule]))")
    case .unmatched:
      return .poison("no rule matched the message")
    }
  }

  private func deadLetter(_ connection: AMQPConnection, _ d: AMQPDelivery, reason: String) throws {
    var headers = d.headers.filter { !$0.0.hasPrefix("x-tracebridge-") }
    headers.append(("x-tracebridge-reason", reason))
    headers.append(("x-tracebridge-source", source.name))
    headers.append(("x-tracebridge-queue", queue.queue))
    if let id = d.messageID { headers.append(("x-tracebridge-message-id", id)) }
    try connection.publish(
      exchange: queue.deadLetterExchange, routingKey: queue.deadLetterQueue, body: d.body, like: d,
      headers: headers)
    metrics.amqpDeadLettered(source.name).increment()
    logger.warning(
      "message dead-lettered",
      metadata: [
        "source": "\(source.name)", "reason": "\(reason)", "to": "\(queue.deadLetterQueue)",
      ])
  }

  static func streamID(_ queue: String) -> UInt64 {
    var h = SipHasher(k0: 0x616d_7170_7175_6575, k1: 0x7472_6163_6562_7267)
    h.append(Array("queue:\(queue)".utf8))
    return h.finish()
  }

  /// The message's identity: its message id, else a hash of what it says (so a redelivery and
  /// a producer's re-send of the same message have the same identity).
  static func messageID(_ d: AMQPDelivery) -> UInt64 {
    var h = SipHasher(k0: 0x6d65_7373_6167_6569, k1: 0x6964_656e_7469_7479)
    if let id = d.messageID, !id.isEmpty {
      h.append(Array("id:\(id)".utf8))
    } else {
      h.append(Array("body:\(d.exchange)|\(d.routingKey)|\(d.timestamp ?? 0)|".utf8))
      h.append(d.body)
    }
    return h.finish()
  }
}
