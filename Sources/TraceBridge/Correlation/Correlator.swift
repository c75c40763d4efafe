import HeapModule
import TraceBridgeCore

/// Joins events into orders and turns each order's timeline into spans, as the design's
/// trace shape says:
/// - one trace per order; root span `order <id>` from the first event to the final status
///   (or, closed by the horizon or the end of input, to the last event, marked incomplete);
/// - one span per status transition, named `FROM → TO`, in the service that reported TO,
///   from the previous status's time to this one's;
/// - a span per step start/end pair; PRODUCER/CONSUMER spans for bus publish/consume;
/// - every other line a span event on the span of the status the order was in.
///
/// Feed events in (roughly) time order with `process`, move event time on with `advance`
/// (it closes orders and expires alias-only events waiting for their link), and call `finish`
/// at the end of input. Spans leave through `emit` as soon as they are complete. Closing
/// order is sorted so that the same input always yields the same span sequence.
/// Used by one thread.
public final class Correlator {
  public struct Statistics: Sendable, Equatable {
    public var events = 0
    public var orders = 0
    public var ordersComplete = 0
    public var ordersIncomplete = 0
    public var spans = 0
    public var aliasEventsWaited = 0
    public var aliasEventsExpired = 0
    public var lateEvents = 0
  }

  public private(set) var statistics = Statistics()
  let policy: OrderPolicy
  private let ids: IDDeriver
  private let emit: (SpanRecord) -> Void
  private let reject: (OrderEvent, RejectReasonCode) -> Void
  private let observe: (OrderEvent, String) -> Void
  private let closed: (OrderSummary) -> Void
  var open: [String: OrderState] = [:]
  var tombstones: [String: ClosedOrder] = [:]
  var aliases: [AliasKey: String] = [:]
  var pending: [AliasKey: [OrderEvent]] = [:]
  var pendingOrder: [(AliasKey, Int64)] = []
  var pendingHead = 0
  var pendingCount = 0
  var watermark: Int64 = .min
  /// When open orders and tombstones fall due (see ``Due``), earliest first.
  var dueOrders = Heap<Due>()
  var dueTombstones = Heap<Due>()
  /// Per open order, the time of its entry in `dueOrders`: never later than when the order is
  /// due, so that `advance` finds every order to close without looking at the others.
  var scheduled: [String: Int64] = [:]
  /// What changed since the last ``takeChanges()``; nil when nobody persists the state (backfill).
  var changes: ChangeLog?

  /// - Parameters:
  ///   - emit: receives every finished span.
  ///   - reject: receives events that cannot join an order (alias never linked, order closed).
  ///   - observe: receives every event that joined an order, with the order id (for the store).
  ///   - closed: receives an order's summary when it closes.
  public init(
    policy: OrderPolicy, ids: IDDeriver, emit: @escaping (SpanRecord) -> Void,
    reject: @escaping (OrderEvent, RejectReasonCode) -> Void = { _, _ in },
    observe: @escaping (OrderEvent, String) -> Void = { _, _ in },
    closed: @escaping (OrderSummary) -> Void = { _ in }
  ) {
    self.policy = policy
    self.ids = ids
    self.emit = emit
    self.reject = reject
    self.observe = observe
    self.closed = closed
  }

  public var openOrders: Int { open.count }

  /// The trace id of an open order, without deriving it again (an HMAC).
  public func openTraceID(_ orderID: String) -> TraceID? { open[orderID]?.traceID }
  public var pendingAliasEvents: Int { pendingCount }

  public func process(_ event: OrderEvent) {
    statistics.events += 1
    if let link = event.link { bind(link) }
    switch event.key {
    case .order(let id):
      apply(event, orderID: id)
      if let link = event.link { release(link.alias, to: link.orderID) }
    case .alias(let alias):
      if let id = aliases[alias] {
        // A link carried by an alias-keyed event releases the (earlier) events that
        // waited for the alias before this one is applied.
        if let link = event.link { release(link.alias, to: link.orderID) }
        apply(event, orderID: id)
      } else {
        wait(event, for: alias)
      }
    }
  }

  /// Event time has reached `time`: close orders whose grace or horizon has passed, and
  /// set aside alias-only events whose link did not come within the alias TTL.
  public func advance(to time: Int64) {
    guard time > watermark else { return }
    watermark = time
    // Only orders whose entry is due are looked at (a scan of every open order at every
    // advance was a tenth of a queue drain's pipeline thread). An entry found early is put
    // back at the order's current due time.
    var closing: [(Int64, String)] = []
    while let first = dueOrders.min, first.time < time {
      dueOrders.removeMin()
      guard scheduled[first.id] == first.time, let state = open[first.id] else { continue }
      if let f = state.finalTime, time > f + policy.finalGrace {
        closing.append((f, first.id))
        scheduled[first.id] = nil
      } else if time > state.lastTime + policy.horizon {
        closing.append((state.lastTime, first.id))
        scheduled[first.id] = nil
      } else {
        let due = dueTime(state)
        scheduled[first.id] = due
        dueOrders.insert(Due(time: due, id: first.id))
      }
    }
    closing.sort { ($0.0, $0.1) < ($1.0, $1.1) }
    for (_, id) in closing { close(id) }
    expirePending(before: time)
    while let first = dueTombstones.min, first.time < time {
      dueTombstones.removeMin()
      guard let t = tombstones[first.id], t.closedAt + policy.horizon == first.time else {
        continue
      }
      tombstones[first.id] = nil
      for a in t.aliases where aliases[a] == first.id { aliases[a] = nil }
    }
  }

  /// An open order or a tombstone and when it falls due: an open order closes once event time
  /// passes its final status plus `final_grace`, or its last event plus `horizon`; a tombstone
  /// is forgotten once event time passes its close plus `horizon`.
  struct Due: Comparable {
    var time: Int64
    var id: String
    static func < (a: Due, b: Due) -> Bool { (a.time, a.id) < (b.time, b.id) }
  }

  func dueTime(_ state: OrderState) -> Int64 {
    let horizon = state.lastTime + policy.horizon
    guard let f = state.finalTime else { return horizon }
    return min(f + policy.finalGrace, horizon)
  }

  /// Makes sure the order has an entry in `dueOrders` no later than when it is due.
  func schedule(_ id: String, _ state: OrderState) {
    let due = dueTime(state)
    if let s = scheduled[id], s <= due { return }
    scheduled[id] = due
    dueOrders.insert(Due(time: due, id: id))
  }

  func scheduleTombstone(_ id: String, _ t: ClosedOrder) {
    dueTombstones.insert(Due(time: t.closedAt + policy.horizon, id: id))
  }

  /// End of input: close every open order (in time order) and set aside every alias-only
  /// event still waiting.
  public func finish() {
    let remaining = open.map { ($0.value.finalTime ?? $0.value.lastTime, $0.key) }.sorted {
      $0 < $1
    }
    for (_, id) in remaining { close(id) }
    expirePending(before: .max)
  }

  // MARK: - Aliases

  private func bind(_ link: AliasLink) {
    if aliases[link.alias] != link.orderID { changes?.aliases.append((link.alias, link.orderID)) }
    aliases[link.alias] = link.orderID
  }

  private func wait(_ event: OrderEvent, for alias: AliasKey) {
    statistics.aliasEventsWaited += 1
    pending[alias, default: []].append(event)
    pendingOrder.append((alias, event.timeUnixNano + policy.aliasTTL))
    pendingCount += 1
    changes?.pendingChanged = true
    while pendingCount > policy.maxPendingAliases { expireOldestPending() }
  }

  private func release(_ alias: AliasKey, to orderID: String) {
    guard let waiting = pending.removeValue(forKey: alias) else { return }
    pendingCount -= waiting.count
    changes?.pendingChanged = true
    if var state = open[orderID] {
      if !state.aliases.contains(alias) { state.aliases.append(alias) }
      open[orderID] = state
      changes?.orders.insert(orderID)
    }
    for e in waiting { apply(e, orderID: orderID) }
  }

  private func expirePending(before time: Int64) {
    while pendingHead < pendingOrder.count, pendingOrder[pendingHead].1 < time {
      expireOldestPending()
    }
    if pendingHead > 4096 && pendingHead * 2 > pendingOrder.count {
      pendingOrder.removeFirst(pendingHead)
      pendingHead = 0
    }
  }

  private func expireOldestPending() {
    guard pendingHead < pendingOrder.count else { return }
    let (alias, _) = pendingOrder[pendingHead]
    pendingHead += 1
    guard var list = pending[alias], !list.isEmpty else { return }
    let e = list.removeFirst()
    pending[alias] = list.isEmpty ? nil : list
    pendingCount -= 1
    changes?.pendingChanged = true
    statistics.aliasEventsExpired += 1
    reject(e, .aliasExpired)
  }

  // MARK: - Orders

  private func apply(_ event: OrderEvent, orderID: String) {
    if tombstones[orderID] != nil {
      statistics.lateEvents += 1
      reject(event, .afterOrderClosed)
      return
    }
    var state = open[orderID] ?? newOrder(orderID, event)
    if case .alias(let a) = event.key, !state.aliases.contains(a) { state.aliases.append(a) }
    if let link = event.link, link.orderID == orderID, !state.aliases.contains(link.alias) {
      state.aliases.append(link.alias)
    }
    state.eventCount += 1
    state.firstTime = min(state.firstTime, event.timeUnixNano)
    state.lastTime = max(state.lastTime, event.timeUnixNano)
    if state.userID == nil, let u = event.userID { state.userID = u }
    observe(event, orderID)
    switch event.kind {
    case .statusChange: statusChange(&state, event)
    case .stepStart:
      state.openSteps[event.step ?? event.name] = OrderState.OpenStep(
        start: event.timeUnixNano, service: event.service, attributes: event.attributes)
    case .stepEnd: stepEnd(&state, event)
    case .busPublish, .busConsume: busSpan(state, event)
    case .dbWrite, .fileLink, .log: addEvent(&state, event)
    }
    schedule(orderID, state)
    open[orderID] = state
    changes?.orders.insert(orderID)
  }

  private func newOrder(_ id: String, _ event: OrderEvent) -> OrderState {
    statistics.orders += 1
    return OrderState(
      orderID: id, traceID: ids.traceID(orderID: id), rootSpanID: ids.rootSpanID(orderID: id),
      firstTime: event.timeUnixNano, lastTime: event.timeUnixNano, firstService: event.service)
  }

  private func statusChange(_ state: inout OrderState, _ event: OrderEvent) {
    let status = event.status ?? ""
    if policy.finalStatuses.contains(status) && state.finalTime == nil {
      state.finalTime = event.timeUnixNano
    }
    guard let previous = state.lastStatus,
      state.finalTime == nil || state.finalTime == event.timeUnixNano
    else {
      // The first status, or one after the final status: an event on the root span.
      if state.lastStatus == nil {
        state.rootEvents.append(contentsOf: state.currentEvents)
        state.currentEvents.removeAll()
      }
      appendRoot(
        &state,
        SpanEvent(
          timeUnixNano: event.timeUnixNano, name: "status \(status)",
          attributes: eventAttributes(event)))
      state.lastStatus = status
      state.lastStatusTime = event.timeUnixNano
      return
    }
    if previous == status {
      addEvent(&state, event, name: "status \(status) repeated")
      return
    }
    var attributes = [
      Attribute("order.id", state.orderID), Attribute("order.status.from", previous),
      Attribute("order.status.to", status),
    ]
    if let u = event.userID ?? state.userID { attributes.append(Attribute("enduser.id", u)) }
    attributes.append(contentsOf: event.attributes)
    attributes.append(Attribute("tracebridge.rule", event.rule))
    let start = min(state.lastStatusTime, event.timeUnixNano)
    emitSpan(
      SpanRecord(
        traceID: state.traceID,
        spanID: ids.spanID(for: event.sourceKey, time: event.timeUnixNano, role: 1),
        parentSpanID: state.rootSpanID, name: "\(previous) → \(status)", kind: .internal,
        startUnixNano: start, endUnixNano: event.timeUnixNano, attributes: attributes,
        events: state.currentEvents, droppedEventsCount: state.currentDropped,
        service: event.service))
    state.currentEvents.removeAll(keepingCapacity: true)
    state.currentDropped = 0
    state.transitions += 1
    state.lastStatus = status
    state.lastStatusTime = event.timeUnixNano
  }

  private func stepEnd(_ state: inout OrderState, _ event: OrderEvent) {
    let step = event.step ?? event.name
    guard let open = state.openSteps.removeValue(forKey: step) else {
      addEvent(&state, event, name: "step \(step) ended (its start was not seen)")
      return
    }
    var attributes = [Attribute("order.id", state.orderID), Attribute("order.step", step)]
    if let u = event.userID ?? state.userID { attributes.append(Attribute("enduser.id", u)) }
    attributes.append(contentsOf: open.attributes)
    attributes.append(contentsOf: event.attributes)
    emitSpan(
      SpanRecord(
        traceID: state.traceID,
        spanID: ids.spanID(for: event.sourceKey, time: event.timeUnixNano, role: 2),
        parentSpanID: state.rootSpanID, name: step, kind: .internal, startUnixNano: open.start,
        endUnixNano: max(open.start, event.timeUnixNano), attributes: attributes,
        service: event.service))
  }

  private func busSpan(_ state: OrderState, _ event: OrderEvent) {
    var attributes = [
      Attribute("order.id", state.orderID), Attribute("messaging.system", "rabbitmq"),
    ]
    if let u = event.userID ?? state.userID { attributes.append(Attribute("enduser.id", u)) }
    attributes.append(contentsOf: event.attributes)
    emitSpan(
      SpanRecord(
        traceID: state.traceID,
        spanID: ids.spanID(for: event.sourceKey, time: event.timeUnixNano, role: 3),
        parentSpanID: state.rootSpanID, name: event.name,
        kind: event.kind == .busPublish ? .producer : .consumer, startUnixNano: event.timeUnixNano,
        endUnixNano: event.timeUnixNano, attributes: attributes, service: event.service))
  }

  private func eventAttributes(_ event: OrderEvent) -> [Attribute] {
    var a = [Attribute("service.name", event.service), Attribute("tracebridge.rule", event.rule)]
    if let u = event.userID { a.append(Attribute("enduser.id", u)) }
    a.append(contentsOf: event.attributes)
    return a
  }

  private func addEvent(_ state: inout OrderState, _ event: OrderEvent, name: String? = nil) {
    let e = SpanEvent(
      timeUnixNano: event.timeUnixNano, name: name ?? event.name, attributes: eventAttributes(event)
    )
    if state.lastStatus == nil || state.finalTime != nil {
      appendRoot(&state, e)
    } else if state.currentEvents.count < policy.maxEventsPerSpan {
      state.currentEvents.append(e)
    } else {
      state.currentDropped += 1
    }
  }

  private func appendRoot(_ state: inout OrderState, _ e: SpanEvent) {
    if state.rootEvents.count < policy.maxEventsPerSpan {
      state.rootEvents.append(e)
    } else {
      state.rootDropped += 1
    }
  }

  private func emitSpan(_ span: SpanRecord) {
    statistics.spans += 1
    var span = span
    // An upstream W3C traceparent (a message header) becomes a link to the service's own trace.
    if let i = span.attributes.firstIndex(where: { $0.key == Self.traceparentAttribute }) {
      if case .string(let text) = span.attributes[i].value, let link = Self.link(traceparent: text)
      {
        span.links.append(link)
      }
      span.attributes.remove(at: i)
    }
    emit(span)
  }

  /// The attribute a source sets to the `traceparent` it found; spans turn it into a link.
  public static let traceparentAttribute = "tracebridge.traceparent"

  /// A link to the span a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) names; nil for
  /// a malformed one or all-zero ids.
  static func link(traceparent text: String) -> SpanLink? {
    let parts = text.split(separator: "-")
    guard parts.count >= 4, parts[0].count == 2, parts[1].count == 32, parts[2].count == 16,
      let high = UInt64(parts[1].prefix(16), radix: 16),
      let low = UInt64(parts[1].suffix(16), radix: 16),
      let span = UInt64(parts[2], radix: 16), high | low != 0, span != 0
    else { return nil }
    return SpanLink(
      traceID: TraceID(high: high, low: low), spanID: SpanID(span),
      attributes: [Attribute("tracebridge.link.source", "traceparent")])
  }

  private func close(_ id: String) {
    guard var state = open.removeValue(forKey: id) else { return }
    let complete = state.finalTime != nil
    let end = state.finalTime.map { max($0, state.lastTime) } ?? state.lastTime
    // Steps that never ended: spans up to the order's end, marked as errors.
    for step in state.openSteps.keys.sorted() {
      let s = state.openSteps[step]!
      var attributes = [
        Attribute("order.id", id), Attribute("order.step", step),
        Attribute("order.step.incomplete", .bool(true)),
      ]
      if let u = state.userID { attributes.append(Attribute("enduser.id", u)) }
      attributes.append(contentsOf: s.attributes)
      var h = SipHasher(k0: UInt64(bitPattern: s.start), k1: state.rootSpanID.value)
      h.append(Array(step.utf8))
      emitSpan(
        SpanRecord(
          traceID: state.traceID, spanID: SpanID(max(1, h.finish())),
          parentSpanID: state.rootSpanID, name: step,
          kind: .internal, startUnixNano: s.start, endUnixNano: max(s.start, end),
          attributes: attributes,
          status: SpanStatus(code: .error, message: "the step's end was not seen"),
          service: s.service))
    }
    let room = max(0, policy.maxEventsPerSpan - state.rootEvents.count)
    state.rootEvents.append(contentsOf: state.currentEvents.prefix(room))
    state.rootDropped += UInt32(max(0, state.currentEvents.count - room))
    var attributes = [Attribute("order.id", id)]
    if let s = state.lastStatus { attributes.append(Attribute("order.status", s)) }
    attributes.append(Attribute("order.transitions", .int(Int64(state.transitions))))
    if !complete { attributes.append(Attribute("order.incomplete", .bool(true))) }
    if let u = state.userID { attributes.append(Attribute("enduser.id", u)) }
    for a in state.aliases { attributes.append(Attribute("order.alias.\(a.kind)", a.key)) }
    emitSpan(
      SpanRecord(
        traceID: state.traceID, spanID: state.rootSpanID, parentSpanID: nil, name: "order \(id)",
        kind: .internal,
        startUnixNano: state.firstTime, endUnixNano: end, attributes: attributes,
        events: state.rootEvents,
        droppedEventsCount: state.rootDropped + state.currentDropped, service: state.firstService))
    if complete { statistics.ordersComplete += 1 } else { statistics.ordersIncomplete += 1 }
    let tombstone = ClosedOrder(closedAt: end, aliases: state.aliases)
    tombstones[id] = tombstone
    scheduleTombstone(id, tombstone)
    scheduled[id] = nil
    changes?.orders.insert(id)
    closed(
      OrderSummary(
        orderID: id, traceID: state.traceID, firstTime: state.firstTime, lastTime: state.lastTime,
        status: state.lastStatus, statusTime: state.lastStatusTime, complete: complete,
        userID: state.userID,
        service: state.firstService, aliases: state.aliases))
  }
}

/// Why the correlator set an event aside.
public enum RejectReasonCode: String, Sendable {
  case aliasExpired = "alias_link_never_seen"
  case afterOrderClosed = "after_order_closed"
}

/// An order as it closed: what the store and the console list.
public struct OrderSummary: Sendable {
  public var orderID: String
  public var traceID: TraceID
  public var firstTime: Int64
  public var lastTime: Int64
  public var status: String?
  public var statusTime: Int64
  public var complete: Bool
  public var userID: String?
  public var service: String
  public var aliases: [AliasKey]
}
