import AMQPConsumer
import Foundation
import LogParsers
import Logging
import Prometheus
import TraceBridgeCore

extension Configuration {
  /// The broker of `amqp:`, with its credentials and TLS files.
  func amqpEndpoint() throws -> AMQPEndpoint {
    guard let settings = amqp else {
      throw CLIError(
        "\(file): no amqp: section; add amqp: {url: amqp://host:5672/%2F}", exitCode: 2)
    }
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
    return endpoint
  }
}

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
    guard !configuration.amqpSources.isEmpty, configuration.amqp != nil else { return nil }
    let endpoint = try configuration.amqpEndpoint()
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

  func start() {
    for c in consumers { c.start() }
  }

  /// `wake` is called when events arrive in an empty inbox (set before `start`).
  func setWake(_ wake: @escaping @Sendable () -> Void) { inbox.wake = wake }

  /// How many acknowledgements may wait for a commit before the pipeline commits early.
  var ackBatch: Int { Self.ackBatch(prefetches: consumers.map(\.queue.prefetch)) }

  /// At most this many acknowledgements wait for one commit however large the prefetch.
  static let maxAckBatch = 250

  /// A quarter of the smallest prefetch, and at most `maxAckBatch`. A consumer whose whole
  /// prefetch waits for its acks receives nothing more, so waiting for the commit interval
  /// would cap the drain rate at prefetch / interval; a quarter (not half) keeps the broker
  /// sending while a commit runs. The cap: the broker's cost a message grows with the messages
  /// a consumer holds unacknowledged, and commits of 250 drained a queue 5 % faster than
  /// commits of a quarter of a 3,000 prefetch (750) for 0.4 µs more commit CPU a message
  /// (docs/performance.md, item 25); the prefetch stays the slack that keeps deliveries coming
  /// while a commit is slow.
  static func ackBatch(prefetches: [Int]) -> Int {
    prefetches.map { min(max(1, $0 / 4), maxAckBatch) }.min() ?? 1
  }

  /// Once a queue has gone quiet, the pipeline commits as soon as this many acknowledgements
  /// wait, or any number when the commit before carried this many (the stragglers of a burst),
  /// not at the end of `commit_interval`: the last messages of a burst are acknowledged (and
  /// their spans spooled) milliseconds after they arrived instead of up to a commit interval
  /// later. A slow trickle, a message at a time with pauses between them, still waits for the
  /// interval: its commits carry fewer, so no small commit follows them, and a small commit
  /// only ever follows a large one, so quiet commits never outnumber the message rate ÷ 16.
  static let quietCommitMinimum = 32

  func stop() {
    for c in consumers { c.stop() }
  }

  /// Events received since the last call, and whether the queues are quiet: a consumer received
  /// nothing for a moment after them while deliveries wait for their acknowledgement.
  func drain() -> (events: [QueuedEvent], quiet: Bool) { inbox.drain() }

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
    private var quiet = false
    var wake: (@Sendable () -> Void)?
    func put(_ e: QueuedEvent) {
      lock.lock()
      let wasEmpty = items.isEmpty
      items.append(e)
      quiet = false  // a delivery after the mark: not quiet any more
      lock.unlock()
      if wasEmpty { wake?() }
    }
    /// A consumer received nothing for a moment while its deliveries wait for a commit: quiet
    /// until the next event is put.
    func markQuiet() {
      lock.lock()
      quiet = true
      lock.unlock()
      wake?()
    }
    func drain() -> (events: [QueuedEvent], quiet: Bool) {
      lock.lock()
      defer { lock.unlock() }
      var out: [QueuedEvent] = []
      out.reserveCapacity(items.count)
      swap(&out, &items)
      return (out, quiet)
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
  /// Counters touched for every message, looked up once.
  private let receivedCounter: Counter
  private let formatCounters: [BodyFormat: Counter]
  /// The queue's part of every message's source key (a SipHash; computed once).
  private let streamID: UInt64
  /// Publishes dead letters with publisher confirms (opened on the first poison message).
  private var deadLetterConnection: AMQPConnection?
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
    receivedCounter = metrics.amqpReceived(source.name)
    streamID = Self.streamID(queue.queue)
    formatCounters = Dictionary(
      uniqueKeysWithValues: [BodyFormat.json, .xml, .text].map {
        ($0, metrics.amqpFormat(source.name, $0))
      })
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
      var connected = false
      do {
        let connection = try connect()
        connected = true
        metrics.amqpConnected(source.name).set(Int64(1))
        backoff = 0.5
        try consume(connection)
        connection.close()
      } catch {
        metrics.amqpConnected(source.name).set(Int64(0))
        if shouldStop { break }
        metrics.amqpReconnects(source.name).increment()
        logger.warning(
          connected
            ? "RabbitMQ connection lost; reconnecting" : "cannot consume from RabbitMQ; retrying",
          metadata: ["source": "\(source.name)", "error": "\(error)", "in_seconds": "\(backoff)"])
        let wait = backoff * Double.random(in: 0.5...1.0, using: &rng)
        let until = Date().addingTimeInterval(wait)
        while Date() < until && !shouldStop { Thread.sleep(forTimeInterval: 0.05) }
        backoff = min(backoff * 2, 30)
      }
    }
    deadLetterConnection?.close()
    deadLetterConnection = nil
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
    // Told the pipeline the queue went quiet, and nothing was delivered since.
    var saidQuiet = false
    while !shouldStop {
      try acknowledgeCompleted(connection, &outstanding, &head)
      // While deliveries wait for their commit, look for completed ones often: with the whole
      // prefetch unacknowledged no delivery comes to end the wait.
      let waiting = head < outstanding.count
      guard let delivery = try connection.nextDelivery(timeout: waiting ? 0.005 : 0.1) else {
        // Nothing for 5 ms with deliveries waiting: the queue is empty for now (or the whole
        // prefetch waits); the pipeline need not wait out its commit interval
        // (`AMQPIntake.quietCommitMinimum`).
        if waiting && !saidQuiet {
          inbox.markQuiet()
          saidQuiet = true
        }
        continue
      }
      saidQuiet = false
      receivedCounter.increment()
      outstanding.append(delivery.deliveryTag)
      let received = Date().timeIntervalSince1970
      switch map(delivery, received: received) {
      case .event(let event, let rule):
        inbox.put(
          QueuedEvent(
            event: event, rule: rule,
            delivery: DeliveryRef(source: index, generation: gen, tag: delivery.deliveryTag),
            received: received))
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

  /// The message evaluated by the source's rules (JSON, XML or text bodies; see
  /// `RuleEvaluator.evaluate(message:sourceKey:)`).
  private func map(_ d: AMQPDelivery, received: Double) -> Mapping {
    if d.body.count > queue.maxMessageBytes {
      return .poison(
        "too large: \(d.body.count) bytes, more than max_message_bytes \(queue.maxMessageBytes)")
    }
    let message = Self.input(d, queue: queue.queue, received: received)
    let key = SourceKey(
      source: source.name, stream: streamID, position: Self.messageID(d))
    let result = evaluator.evaluate(message: message, sourceKey: key)
    if result.invalidBytes > 0 {
      metrics.invalidBytes(source.name).increment(by: Int64(result.invalidBytes))
    }
    if let problem = result.charsetProblem {
      logger.warning(
        "message charset", metadata: ["source": "\(source.name)", "problem": "\(problem)"])
    }
    switch result.outcome {
    case .matched(let rule, var event):
      if let f = result.format { formatCounters[f]?.increment() }
      Self.addMessagingAttributes(&event, d, queue: queue.queue)
      return .event(event, rule: rule)
    case .rejected(let rule, let reason):
      return .poison("\(reason.rawValue) (rule \(ruleNames[rule]))")
    case .unmapped(let why):
      return .poison(why)
    }
  }

  /// The delivery as the rule engine sees a message.
  static func input(_ d: AMQPDelivery, queue: String, received: Double) -> MessageInput {
    MessageInput(
      queue: queue, exchange: d.exchange, routingKey: d.routingKey, messageID: d.messageID,
      correlationID: d.correlationID, timestamp: d.timestamp, type: d.type, appID: d.appID,
      userID: d.userID, contentType: d.contentType, contentEncoding: d.contentEncoding,
      headers: d.headers, body: d.body, receivedUnixNano: Int64(received * 1e9))
  }

  /// Whether a header's name is `traceparent`, in any case (without lowercasing a copy of
  /// every header name of every message).
  static func isTraceparent(_ name: String) -> Bool {
    let wanted = "traceparent".utf8
    guard name.utf8.count == wanted.count else { return false }
    // `| 0x20` lowercases an ASCII letter; only a letter's two cases give that lowercase letter.
    return zip(name.utf8, wanted).allSatisfy { $0 | 0x20 == $1 }
  }

  /// OTel messaging attributes every event from a queue carries, and the sender's traceparent.
  static func addMessagingAttributes(_ event: inout OrderEvent, _ d: AMQPDelivery, queue: String) {
    // Room for the four at once: appended one by one they reallocated up to three times.
    event.attributes.reserveCapacity(event.attributes.count + 4)
    event.attributes.append(
      Attribute("messaging.destination.name", d.exchange.isEmpty ? queue : d.exchange))
    if !d.routingKey.isEmpty {
      event.attributes.append(Attribute("messaging.rabbitmq.destination.routing_key", d.routingKey))
    }
    if let id = d.messageID { event.attributes.append(Attribute("messaging.message.id", id)) }
    if let tp = d.headers.first(where: { isTraceparent($0.0) })?.1 {
      event.attributes.append(Attribute(Correlator.traceparentAttribute, tp))
    }
  }

  private func deadLetter(_ connection: AMQPConnection, _ d: AMQPDelivery, reason: String) throws {
    var headers = d.headers.filter { !$0.0.hasPrefix("x-tracebridge-") }
    headers.append(("x-tracebridge-reason", reason))
    headers.append(("x-tracebridge-source", source.name))
    headers.append(("x-tracebridge-queue", queue.queue))
    if let id = d.messageID { headers.append(("x-tracebridge-message-id", id)) }
    // On a connection of its own with publisher confirms: the poison message is acknowledged
    // only once the broker has taken its dead-letter copy (a failure here ends the consuming
    // connection too, so the message comes back and is dead-lettered again).
    do {
      if deadLetterConnection == nil {
        let c = try AMQPConnection(endpoint: endpoint)
        try c.enableConfirms()
        deadLetterConnection = c
      }
      try deadLetterConnection!.publish(
        exchange: queue.deadLetterExchange, routingKey: queue.deadLetterQueue, body: d.body,
        like: d, headers: headers)
    } catch {
      deadLetterConnection?.close()
      deadLetterConnection = nil
      throw error
    }
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
      h.append(utf8: "id:")
      h.append(utf8: id)
    } else {
      h.append(Array("body:\(d.exchange)|\(d.routingKey)|\(d.timestamp ?? 0)|".utf8))
      h.append(d.body)
    }
    return h.finish()
  }
}
