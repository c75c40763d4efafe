import Foundation
import TraceBridgeCore
import XCTest

@testable import TraceBridge

/// Feeds hand-made `OrderEvent`s to a `Correlator` and checks the spans it emits against the
/// trace shape of the design (one trace per order, a span per transition, events on spans).
final class CorrelatorTests: XCTestCase {
  private static let base: Int64 = 1_774_742_000_000_000_000
  private static let second: Int64 = 1_000_000_000
  private let ids = IDDeriver(secret: Array("test-secret".utf8), namespace: "shop")

  /// Event time `seconds` after a fixed instant.
  private func at(_ seconds: Int64) -> Int64 { Self.base + seconds * Self.second }

  private final class Recorder {
    var spans: [SpanRecord] = []
    var rejected: [(OrderEvent, RejectReasonCode)] = []
    var observed: [(String, String)] = []  // (event name, order id)
    var closed: [OrderSummary] = []

    func span(named name: String) -> SpanRecord? { spans.first { $0.name == name } }
  }

  private func correlator(_ policy: OrderPolicy = OrderPolicy()) -> (Correlator, Recorder) {
    let r = Recorder()
    let c = Correlator(
      policy: policy, ids: ids, emit: { r.spans.append($0) },
      reject: { r.rejected.append(($0, $1)) },
      observe: { r.observed.append(($0.name, $1)) }, closed: { r.closed.append($0) })
    return (c, r)
  }

  private var nextPosition: UInt64 = 0

  /// An event with a fresh, stable source key (one position per event of a test).
  private func event(
    _ order: String?, _ kind: StageKind, status: String? = nil, step: String? = nil,
    name: String? = nil,
    at seconds: Int64, service: String = "Shop", user: String? = nil, attributes: [Attribute] = [],
    alias: AliasKey? = nil, link: AliasLink? = nil
  ) -> OrderEvent {
    nextPosition += 100
    let key: OrderKey = alias.map { .alias($0) } ?? .order(order ?? "")
    return OrderEvent(
      key: key, service: service, kind: kind, status: status, step: step,
      name: name ?? status.map { "status \($0)" } ?? step ?? kind.rawValue,
      timeUnixNano: at(seconds),
      zoneRule: "offset", userID: user, attributes: attributes,
      sourceKey: SourceKey(
        source: "\(service.lowercased()).log", stream: 0xABC, position: nextPosition),
      rule: "\(service.lowercased())_\(kind.rawValue)", link: link)
  }

  private func status(
    _ order: String, _ status: String, at seconds: Int64, service: String = "Shop",
    user: String? = nil,
    alias: AliasKey? = nil, link: AliasLink? = nil
  ) -> OrderEvent {
    event(
      order, .statusChange, status: status, at: seconds, service: service, user: user, alias: alias,
      link: link)
  }

  private func log(_ order: String, _ name: String, at seconds: Int64, service: String = "Shop")
    -> OrderEvent
  {
    event(
      order, .log, name: name, at: seconds, service: service, attributes: [Attribute("line", name)])
  }

  private func attribute(_ span: SpanRecord?, _ key: String) -> AttributeValue? {
    span?.attributes.first { $0.key == key }?.value
  }

  // MARK: - Transitions and the root span

  func testStatusChangesGiveOneSpanPerTransitionNamedFromTo() {
    let (c, r) = correlator()
    c.process(status("123", "CREATED", at: 0, service: "Shop", user: "u1042"))
    c.process(status("123", "PAID", at: 10, service: "CRM"))
    c.process(status("123", "DELIVERED", at: 30, service: "MES"))
    XCTAssertEqual(r.spans.map(\.name), ["CREATED → PAID", "PAID → DELIVERED"])
  }

  func testTransitionSpanRunsFromPreviousStatusToThisOneInTheReportingService() throws {
    let (c, r) = correlator()
    c.process(status("123", "CREATED", at: 0, service: "Shop", user: "u1042"))
    c.process(status("123", "PAID", at: 10, service: "CRM"))
    c.process(status("123", "DELIVERED", at: 30, service: "MES"))
    let paid = try XCTUnwrap(r.span(named: "CREATED → PAID"))
    let delivered = try XCTUnwrap(r.span(named: "PAID → DELIVERED"))
    XCTAssertEqual([paid.startUnixNano, paid.endUnixNano], [at(0), at(10)])
    XCTAssertEqual([delivered.startUnixNano, delivered.endUnixNano], [at(10), at(30)])
    XCTAssertEqual([paid.service, delivered.service], ["CRM", "MES"])
    for span in [paid, delivered] {
      XCTAssertEqual(span.traceID, ids.traceID(orderID: "123"))
      XCTAssertEqual(span.parentSpanID, ids.rootSpanID(orderID: "123"))
      XCTAssertEqual(span.kind, .internal)
      XCTAssertEqual(attribute(span, "order.id"), .string("123"))
      XCTAssertEqual(
        attribute(span, "enduser.id"), .string("u1042"), "the order's user, seen on its first event"
      )
    }
    XCTAssertEqual(attribute(delivered, "order.status.from"), .string("PAID"))
    XCTAssertEqual(attribute(delivered, "order.status.to"), .string("DELIVERED"))
  }

  func testRootSpanCoversTheOrderAndLeavesAtFinish() throws {
    let (c, r) = correlator()
    c.process(status("123", "CREATED", at: 0, service: "Shop", user: "u1042"))
    c.process(status("123", "PAID", at: 10, service: "CRM"))
    c.process(status("123", "DELIVERED", at: 30, service: "MES"))
    XCTAssertNil(r.span(named: "order 123"), "the root leaves when the order closes")
    c.finish()
    let root = try XCTUnwrap(r.span(named: "order 123"))
    XCTAssertEqual(r.spans.last, root)
    XCTAssertEqual(root.spanID, ids.rootSpanID(orderID: "123"))
    XCTAssertEqual(root.traceID, ids.traceID(orderID: "123"))
    XCTAssertNil(root.parentSpanID)
    XCTAssertEqual([root.startUnixNano, root.endUnixNano], [at(0), at(30)])
    XCTAssertEqual(root.service, "Shop")
    XCTAssertEqual(attribute(root, "order.id"), .string("123"))
    XCTAssertEqual(attribute(root, "order.status"), .string("DELIVERED"))
    XCTAssertEqual(attribute(root, "enduser.id"), .string("u1042"))
    XCTAssertNil(attribute(root, "order.incomplete"), "a complete order is not marked")
    XCTAssertEqual(root.events.map(\.name), ["status CREATED"])
    XCTAssertEqual(r.closed.map(\.complete), [true])
  }

  func testRootSpanLeavesOnlyAfterFinalGraceHasPassed() {
    var policy = OrderPolicy()
    policy.finalGrace = 60 * Self.second
    let (c, r) = correlator(policy)
    c.process(status("123", "CREATED", at: 0))
    c.process(status("123", "DELIVERED", at: 30))
    c.advance(to: at(90))
    XCTAssertNil(r.span(named: "order 123"))
    XCTAssertEqual(c.openOrders, 1)
    c.advance(to: at(90) + 1)
    XCTAssertNotNil(r.span(named: "order 123"))
    XCTAssertEqual(c.openOrders, 0)
    XCTAssertEqual(c.statistics.ordersComplete, 1)
  }

  func testOrderWithoutFinalStatusIsMarkedIncompleteAtFinish() throws {
    let (c, r) = correlator()
    c.process(status("7", "CREATED", at: 0))
    c.process(status("7", "PAID", at: 10, service: "CRM"))
    c.process(log("7", "reminder sent", at: 50))
    c.finish()
    let root = try XCTUnwrap(r.span(named: "order 7"))
    XCTAssertEqual(attribute(root, "order.incomplete"), .bool(true))
    XCTAssertEqual(root.endUnixNano, at(50), "an incomplete order ends at its last event")
    XCTAssertEqual(c.statistics.ordersIncomplete, 1)
  }

  func testHorizonClosesAnIdleOrderAsIncomplete() throws {
    var policy = OrderPolicy()
    policy.horizon = 100 * Self.second
    let (c, r) = correlator(policy)
    c.process(status("7", "CREATED", at: 0))
    c.process(status("7", "PAID", at: 10))
    c.advance(to: at(110))
    XCTAssertEqual(c.openOrders, 1)
    c.advance(to: at(110) + 1)
    XCTAssertEqual(c.openOrders, 0)
    let root = try XCTUnwrap(r.span(named: "order 7"))
    XCTAssertEqual(attribute(root, "order.incomplete"), .bool(true))
    XCTAssertEqual(root.endUnixNano, at(10))
    XCTAssertEqual(r.closed.map(\.complete), [false])
  }

  func testRepeatedStatusBecomesSpanEventNotSpan() throws {
    let (c, r) = correlator()
    c.process(status("1", "CREATED", at: 0))
    c.process(status("1", "PAID", at: 10, service: "CRM"))
    c.process(status("1", "PAID", at: 12, service: "CRM"))
    c.process(status("1", "DELIVERED", at: 20, service: "MES"))
    XCTAssertEqual(r.spans.map(\.name), ["CREATED → PAID", "PAID → DELIVERED"])
    let delivered = try XCTUnwrap(r.span(named: "PAID → DELIVERED"))
    XCTAssertEqual(delivered.startUnixNano, at(10), "the order has been PAID since the first PAID")
    XCTAssertEqual(delivered.events.map(\.name), ["status PAID repeated"])
    XCTAssertEqual(delivered.events.first?.timeUnixNano, at(12))
  }

  // MARK: - Steps and bus messages

  func testStepStartAndEndGiveSpanWithRealDuration() throws {
    let (c, r) = correlator()
    c.process(status("5", "CREATED", at: 0))
    c.process(
      event(
        "5", .stepStart, step: "cutting", at: 5, service: "MES",
        attributes: [Attribute("machine", "M1")]))
    c.process(event("5", .stepEnd, step: "cutting", at: 25, service: "MES"))
    let step = try XCTUnwrap(r.span(named: "cutting"))
    XCTAssertEqual([step.startUnixNano, step.endUnixNano], [at(5), at(25)])
    XCTAssertEqual(step.parentSpanID, ids.rootSpanID(orderID: "5"))
    XCTAssertEqual(step.traceID, ids.traceID(orderID: "5"))
    XCTAssertEqual(step.service, "MES")
    XCTAssertEqual(attribute(step, "order.id"), .string("5"))
    XCTAssertEqual(attribute(step, "order.step"), .string("cutting"))
    XCTAssertEqual(attribute(step, "machine"), .string("M1"), "the start's attributes are kept")
  }

  func testStepEndWithoutStartBecomesSpanEvent() throws {
    let (c, r) = correlator()
    c.process(status("5", "CREATED", at: 0))
    c.process(event("5", .stepEnd, step: "packing", at: 5, service: "MES"))
    c.process(status("5", "PAID", at: 9))
    XCTAssertEqual(r.spans.map(\.name), ["CREATED → PAID"])
    XCTAssertEqual(
      r.spans.first?.events.map(\.name), ["step packing ended (its start was not seen)"])
  }

  func testStepStillOpenAtCloseBecomesErrorSpanToTheOrdersEnd() throws {
    let (c, r) = correlator()
    c.process(status("5", "CREATED", at: 0))
    c.process(event("5", .stepStart, step: "painting", at: 5, service: "MES"))
    c.process(status("5", "DELIVERED", at: 40))
    c.finish()
    let step = try XCTUnwrap(r.span(named: "painting"))
    XCTAssertEqual([step.startUnixNano, step.endUnixNano], [at(5), at(40)])
    XCTAssertEqual(step.status.code, .error)
    XCTAssertEqual(attribute(step, "order.step.incomplete"), .bool(true))
    XCTAssertNotEqual(step.spanID.value, 0)
  }

  func testBusPublishGivesProducerSpanWithMessagingSystem() throws {
    let (c, r) = correlator()
    c.process(status("9", "CREATED", at: 0))
    c.process(event("9", .busPublish, name: "order.paid", at: 3, service: "CRM", user: "u7"))
    c.process(event("9", .busConsume, name: "order.paid received", at: 4, service: "MES"))
    let publish = try XCTUnwrap(r.span(named: "order.paid"))
    XCTAssertEqual(publish.kind, .producer)
    XCTAssertEqual(attribute(publish, "messaging.system"), .string("rabbitmq"))
    XCTAssertEqual(attribute(publish, "order.id"), .string("9"))
    XCTAssertEqual(attribute(publish, "enduser.id"), .string("u7"))
    XCTAssertEqual(publish.parentSpanID, ids.rootSpanID(orderID: "9"))
    XCTAssertEqual(publish.service, "CRM")
    XCTAssertEqual([publish.startUnixNano, publish.endUnixNano], [at(3), at(3)])
    let consume = try XCTUnwrap(r.span(named: "order.paid received"))
    XCTAssertEqual(consume.kind, .consumer)
    XCTAssertEqual(attribute(consume, "messaging.system"), .string("rabbitmq"))
  }

  // MARK: - Span events

  func testLogLinesBecomeEventsOfTheNextTransitionSpan() throws {
    let (c, r) = correlator()
    c.process(status("1", "CREATED", at: 0))
    c.process(log("1", "address checked", at: 2, service: "CRM"))
    c.process(status("1", "PAID", at: 5, service: "CRM"))
    let paid = try XCTUnwrap(r.span(named: "CREATED → PAID"))
    XCTAssertEqual(paid.events.map(\.name), ["address checked"])
    let e = try XCTUnwrap(paid.events.first)
    XCTAssertEqual(e.timeUnixNano, at(2))
    XCTAssertTrue(e.attributes.contains(Attribute("service.name", "CRM")))
    XCTAssertTrue(e.attributes.contains(Attribute("line", "address checked")))
  }

  func testLogLinesBeforeTheFirstStatusAndAfterTheFinalGoOnTheRoot() throws {
    let (c, r) = correlator()
    c.process(log("1", "cart opened", at: 0))
    c.process(status("1", "CREATED", at: 1))
    c.process(status("1", "DELIVERED", at: 5, service: "MES"))
    c.process(log("1", "feedback received", at: 8))
    c.finish()
    let root = try XCTUnwrap(r.span(named: "order 1"))
    XCTAssertEqual(root.events.map(\.name), ["cart opened", "status CREATED", "feedback received"])
    XCTAssertEqual(r.span(named: "CREATED → DELIVERED")?.events, [])
  }

  func testEventsBeyondMaxEventsPerSpanAreCountedAsDropped() throws {
    var policy = OrderPolicy()
    policy.maxEventsPerSpan = 2
    let (c, r) = correlator(policy)
    c.process(status("1", "CREATED", at: 0))
    for i in 1...5 { c.process(log("1", "line \(i)", at: Int64(i))) }
    c.process(status("1", "PAID", at: 10))
    let paid = try XCTUnwrap(r.span(named: "CREATED → PAID"))
    XCTAssertEqual(paid.events.map(\.name), ["line 1", "line 2"])
    XCTAssertEqual(paid.droppedEventsCount, 3)
  }

  func testRootEventsBeyondMaxEventsPerSpanAreCountedAsDropped() throws {
    var policy = OrderPolicy()
    policy.maxEventsPerSpan = 2
    let (c, r) = correlator(policy)
    for i in 1...3 { c.process(log("1", "early \(i)", at: Int64(i))) }
    c.process(status("1", "CREATED", at: 5))
    c.finish()
    let root = try XCTUnwrap(r.span(named: "order 1"))
    XCTAssertEqual(root.events.map(\.name), ["early 1", "early 2"])
    XCTAssertEqual(root.droppedEventsCount, 2)
  }

  /// Events of the status an order is left in move to the root span when it closes; those that
  /// do not fit must be counted as dropped, not lost silently.
  func testEventsMovedToTheRootAtCloseAreKeptOrCountedAsDropped() throws {
    var policy = OrderPolicy()
    policy.maxEventsPerSpan = 2
    let (c, r) = correlator(policy)
    c.process(status("1", "CREATED", at: 0))  // root event 1 of 2
    c.process(log("1", "waiting 1", at: 1))  // current status' events: 1 of 2
    c.process(log("1", "waiting 2", at: 2))  // 2 of 2
    c.finish()
    let root = try XCTUnwrap(r.span(named: "order 1"))
    XCTAssertEqual(root.events.map(\.name), ["status CREATED", "waiting 1"])
    XCTAssertEqual(
      root.events.count + Int(root.droppedEventsCount), 3,
      "three events reached the root: kept or counted")
  }

  // MARK: - Aliases

  private let job = AliasKey(kind: "mes_job", key: "J-00077")

  func testAliasEventBeforeItsLinkWaitsThenJoinsTheOrdersTrace() throws {
    let (c, r) = correlator()
    c.process(status("123", "PAID", at: 0, service: "CRM"))
    c.process(status("", "IN_PRODUCTION", at: 5, service: "MES", alias: job))
    XCTAssertEqual(r.spans, [], "the alias-only event waits for its link")
    XCTAssertEqual(c.pendingAliasEvents, 1)
    c.process(
      event(
        "123", .fileLink, name: "mes_job J-00077 linked", at: 6, service: "MES",
        link: AliasLink(alias: job, orderID: "123")))
    XCTAssertEqual(c.pendingAliasEvents, 0)
    let span = try XCTUnwrap(r.span(named: "PAID → IN_PRODUCTION"))
    XCTAssertEqual(span.traceID, ids.traceID(orderID: "123"))
    XCTAssertEqual(span.parentSpanID, ids.rootSpanID(orderID: "123"))
    XCTAssertEqual(span.service, "MES")
    XCTAssertEqual(attribute(span, "order.id"), .string("123"))
    XCTAssertTrue(r.observed.contains { $0 == ("status IN_PRODUCTION", "123") })
    c.finish()
    XCTAssertEqual(attribute(r.span(named: "order 123"), "order.alias.mes_job"), .string("J-00077"))
    XCTAssertTrue(r.rejected.isEmpty)
  }

  func testAliasEventAfterItsLinkJoinsTheOrderAtOnce() throws {
    let (c, r) = correlator()
    c.process(status("123", "PAID", at: 0, service: "CRM"))
    c.process(
      event(
        "123", .fileLink, name: "mes_job J-00077 linked", at: 1, service: "MES",
        link: AliasLink(alias: job, orderID: "123")))
    c.process(status("", "IN_PRODUCTION", at: 5, service: "MES", alias: job))
    XCTAssertEqual(c.pendingAliasEvents, 0)
    XCTAssertEqual(r.span(named: "PAID → IN_PRODUCTION")?.traceID, ids.traceID(orderID: "123"))
  }

  /// A rule may key its event by the alias and carry the link too (`event: {alias: …}` plus
  /// `link:`): that link must release the events already waiting for the alias.
  func testLinkCarriedByAliasKeyedEventReleasesEventsWaitingForTheAlias() throws {
    let (c, r) = correlator()
    c.process(status("123", "PAID", at: 0, service: "CRM"))
    c.process(event("", .log, name: "job queued", at: 2, service: "MES", alias: job))
    XCTAssertEqual(c.pendingAliasEvents, 1)
    c.process(
      status(
        "", "IN_PRODUCTION", at: 5, service: "MES", alias: job,
        link: AliasLink(alias: job, orderID: "123")))
    XCTAssertEqual(c.pendingAliasEvents, 0, "the waiting event joins once the link is known")
    c.finish()
    XCTAssertTrue(r.rejected.isEmpty, "rejected: \(r.rejected.map { "\($0.0.name): \($0.1)" })")
  }

  func testAliasEventNeverLinkedIsRejectedAfterAliasTTL() {
    var policy = OrderPolicy()
    policy.aliasTTL = 60 * Self.second
    let (c, r) = correlator(policy)
    c.process(event("", .log, name: "job queued", at: 0, service: "MES", alias: job))
    c.advance(to: at(60))
    XCTAssertTrue(r.rejected.isEmpty)
    c.advance(to: at(60) + 1)
    XCTAssertEqual(r.rejected.map(\.1), [.aliasExpired])
    XCTAssertEqual(r.rejected.first?.0.name, "job queued")
    XCTAssertEqual(c.pendingAliasEvents, 0)
    XCTAssertEqual(c.statistics.aliasEventsExpired, 1)
    XCTAssertEqual(r.spans, [])
  }

  func testAliasEventNeverLinkedIsRejectedAtFinish() {
    let (c, r) = correlator()
    c.process(event("", .log, name: "job queued", at: 0, service: "MES", alias: job))
    c.process(event("", .log, name: "job started", at: 1, service: "MES", alias: job))
    c.finish()
    XCTAssertEqual(r.rejected.map(\.0.name), ["job queued", "job started"])
    XCTAssertEqual(r.rejected.map(\.1), [.aliasExpired, .aliasExpired])
  }

  func testWaitingAliasEventsBeyondTheLimitAreRejectedOldestFirst() {
    var policy = OrderPolicy()
    policy.maxPendingAliases = 2
    let (c, r) = correlator(policy)
    for i in 0..<3 {
      c.process(
        event(
          "", .log, name: "job \(i)", at: Int64(i), service: "MES",
          alias: AliasKey(kind: "mes_job", key: "J\(i)")))
    }
    XCTAssertEqual(c.pendingAliasEvents, 2)
    XCTAssertEqual(r.rejected.map(\.0.name), ["job 0"])
  }

  // MARK: - Closed orders

  func testEventForAClosedOrderIsRejected() {
    var policy = OrderPolicy()
    policy.finalGrace = 10 * Self.second
    let (c, r) = correlator(policy)
    c.process(status("1", "CREATED", at: 0))
    c.process(status("1", "DELIVERED", at: 5))
    c.advance(to: at(16))
    let spansAtClose = r.spans.count
    c.process(log("1", "late line", at: 17))
    XCTAssertEqual(r.rejected.map(\.1), [.afterOrderClosed])
    XCTAssertEqual(r.spans.count, spansAtClose, "no second root span")
    XCTAssertEqual(c.openOrders, 0)
    XCTAssertEqual(c.statistics.lateEvents, 1)
  }

  func testEventForAnOrderClosedAtFinishIsRejected() {
    let (c, r) = correlator()
    c.process(status("1", "CREATED", at: 0))
    c.finish()
    c.process(status("1", "PAID", at: 5))
    XCTAssertEqual(r.rejected.map(\.1), [.afterOrderClosed])
    XCTAssertEqual(r.spans.filter { $0.name == "order 1" }.count, 1)
  }

  func testAdvanceClosesExactlyTheOrdersThatAreDueAndForgetsTombstonesAfterTheHorizon() {
    // Orders whose due time moves (a later event pushes the horizon out, a final status pulls
    // the close in): after every advance no open order is overdue, every order closed by it
    // was, and a tombstone lives exactly `horizon` after its close.
    var policy = OrderPolicy()
    policy.horizon = 50 * Self.second
    policy.finalGrace = 7 * Self.second
    let (c, r) = correlator(policy)
    // Knuth's MMIX LCG, high bits: deterministic, which is all this test needs.
    var seed: UInt64 = 42
    func random() -> UInt64 {
      seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return seed >> 33
    }
    var time: Int64 = 0
    var closedBefore = 0
    for step in 0..<3000 {
      time += Int64(random() % 3)
      let order = "o\(random() % 40)"
      let status = random() % 9 == 0 ? "DELIVERED" : "S\(step)"
      c.process(self.status(order, status, at: time))
      guard step % 5 == 0 else { continue }
      let now = at(time)
      let openBefore = c.open
      c.advance(to: now)
      for (id, state) in c.open {
        XCTAssertFalse(
          state.finalTime.map { now > $0 + policy.finalGrace } ?? false, "\(id) overdue (final)")
        XCTAssertFalse(now > state.lastTime + policy.horizon, "\(id) overdue (horizon)")
      }
      for summary in r.closed[closedBefore...] {
        let state = openBefore[summary.orderID]!
        let due = state.finalTime.map { now > $0 + policy.finalGrace } ?? false
        XCTAssertTrue(due || now > state.lastTime + policy.horizon, "\(summary.orderID) early")
      }
      closedBefore = r.closed.count
      for (id, t) in c.tombstones {
        XCTAssertLessThanOrEqual(now, t.closedAt + policy.horizon, "tombstone \(id) kept too long")
      }
    }
    XCTAssertGreaterThan(r.closed.filter(\.complete).count, 20)
    let lastClose = r.closed.last!
    let tombstone = c.tombstones[lastClose.orderID]
    XCTAssertNotNil(tombstone, "closed within the horizon: still a tombstone")
    c.advance(to: tombstone!.closedAt + policy.horizon + 1)
    XCTAssertNil(c.tombstones[lastClose.orderID])
    // Once forgotten, the id may start a new order.
    let (openNow, rejectedNow) = (c.openOrders, r.rejected.count)
    c.process(self.status(lastClose.orderID, "CREATED", at: time + 500))
    XCTAssertEqual(c.openOrders, openNow + 1)
    XCTAssertEqual(r.rejected.count, rejectedNow)
  }

  func testTombstonesRestoredInEitherFormStillRejectLateEvents() throws {
    var policy = OrderPolicy()
    policy.finalGrace = 10 * Self.second
    let json = try JSONEncoder().encode(
      ClosedOrder(closedAt: at(5), aliases: [AliasKey(kind: "job", key: "J-1")]))
    let binary = Data(ClosedOrder(closedAt: at(5), aliases: []).binary())
    let (c, r) = correlator(policy)
    try c.restore(
      CorrelatorSnapshot(tombstones: ["1": json, "2": binary], watermark: at(20)))
    c.process(status("1", "PAID", at: 21))
    c.process(status("2", "PAID", at: 21))
    XCTAssertEqual(r.rejected.map(\.1), [.afterOrderClosed, .afterOrderClosed])
    let back = try ClosedOrder(
      binary: ClosedOrder(
        closedAt: -3,
        aliases: [
          AliasKey(kind: "k", key: "Сборка")
        ]
      ).binary())
    XCTAssertEqual(back.closedAt, -3)
    XCTAssertEqual(back.aliases, [AliasKey(kind: "k", key: "Сборка")])
    XCTAssertThrowsError(try ClosedOrder(binary: [9, 0, 0]))
  }

  /// A tombstone the store still holds but the last run had forgotten (its horizon passed, or
  /// its order id open again) does not come back at a restart.
  func testRestoreLeavesOutTombstonesTheLastRunHadForgotten() throws {
    var policy = OrderPolicy()
    policy.horizon = 50 * Self.second
    let job = AliasKey(kind: "job", key: "J-1")
    let old = Data(ClosedOrder(closedAt: at(5), aliases: [job]).binary())
    let recent = Data(ClosedOrder(closedAt: at(80), aliases: []).binary())
    let (first, _) = correlator(policy)
    first.trackChanges()
    first.process(status("7", "CREATED", at: 90))
    let reopened = try XCTUnwrap(first.takeDelta().upserted.first { $0.orderID == "7" }?.state)
    let (c, r) = correlator(policy)
    try c.restore(
      CorrelatorSnapshot(
        open: ["7": reopened], tombstones: ["1": old, "7": recent, "9": recent],
        aliases: [job: "1"], watermark: at(100)))
    XCTAssertEqual(Set(c.tombstones.keys), ["9"], "only the tombstone within its horizon")
    XCTAssertNil(c.aliases[job], "the forgotten order's alias goes with it")
    c.process(status("1", "CREATED", at: 101))
    c.process(status("7", "PAID", at: 101))
    c.process(status("9", "PAID", at: 101))
    XCTAssertEqual(r.rejected.map(\.1), [.afterOrderClosed], "only order 9 is still closed")
    XCTAssertEqual(c.open["7"]?.eventCount, 2, "the reopened order goes on")
    XCTAssertNotNil(c.open["1"], "a new order under the forgotten id")
  }

  // MARK: - Determinism

  private func mixedEvents() -> [OrderEvent] {
    let configFile = AliasKey(kind: "cfg_file", key: "f-9")
    return [
      log("A", "cart opened", at: 0),
      status("A", "CREATED", at: 1, user: "u1"),
      status("B", "CREATED", at: 2, user: "u2"),
      event("", .log, name: "file saved", at: 3, service: "Configurator", alias: configFile),
      status("A", "PAID", at: 4, service: "CRM"),
      event("A", .busPublish, name: "order.paid", at: 4, service: "CRM"),
      event("A", .stepStart, step: "cutting", at: 6, service: "MES"),
      event(
        "B", .fileLink, name: "cfg_file f-9 linked", at: 7, service: "Configurator",
        link: AliasLink(alias: configFile, orderID: "B")),
      log("B", "note", at: 8, service: "CRM"),
      event("A", .stepEnd, step: "cutting", at: 9, service: "MES"),
      status("B", "CANCELLED", at: 10, service: "CRM"),
      status("A", "IN_PRODUCTION", at: 11, service: "MES"),
      status("C", "CREATED", at: 12),
      event("C", .stepStart, step: "packing", at: 13, service: "MES"),
      status("A", "DELIVERED", at: 14, service: "MES"),
    ]
  }

  func testSameEventsGiveIdenticalSpansFromTwoCorrelators() {
    let events = mixedEvents()
    let (first, firstSpans) = correlator()
    let (second, secondSpans) = correlator()
    for e in events {
      first.process(e)
      second.process(e)
    }
    first.finish()
    second.finish()
    XCTAssertGreaterThanOrEqual(firstSpans.spans.count, 9)
    XCTAssertEqual(firstSpans.spans, secondSpans.spans)
    XCTAssertEqual(
      Set(firstSpans.spans.map(\.spanID)).count, firstSpans.spans.count, "span ids are unique")
  }

  func testReplayWithAdvanceGivesTheSameSpansAsFinish() {
    let events = mixedEvents()
    let (first, a) = correlator()
    let (second, b) = correlator()
    for e in events { first.process(e) }
    first.finish()
    for e in events { second.process(e) }
    second.advance(to: at(1_000_000))
    second.finish()
    XCTAssertEqual(Set(a.spans.map(\.spanID)), Set(b.spans.map(\.spanID)))
    XCTAssertEqual(a.spans.count, b.spans.count)
  }
}
