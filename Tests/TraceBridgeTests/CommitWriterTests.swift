import Foundation
import GRDB
import TraceBridgeCore
import XCTest

@testable import TraceBridge

/// The live pipeline's commit thread: commits in order, hands on counters and wake-ups only
/// after the transaction, and stops at the first failure.
final class CommitWriterTests: XCTestCase {
  private var directory = ""

  override func setUpWithError() throws {
    directory = NSTemporaryDirectory() + "commitwriter-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: directory)
  }

  private final class Wakes: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.withLock { n += 1 } }
    var count: Int { lock.withLock { n } }
  }

  private func job(_ spans: Int, watermark: Int64) -> CommitWriter.Job {
    CommitWriter.Job(
      commit: StateStore.LiveCommit(
        spans: (0..<spans).map {
          StateStore.EncodedSpan(service: "Shop", bytes: [UInt8(truncatingIfNeeded: $0), 1, 2])
        },
        delta: CorrelatorDelta(watermark: watermark), nowNs: 1_000_000_000 * watermark),
      traceIDs: [:], acks: [], messageTimes: [], readTimes: [])
  }

  private func started(_ store: StateStore) -> (CommitWriter, SpoolCounters, Wakes) {
    let spool = SpoolCounters()
    let wakes = Wakes()
    let writer = CommitWriter(
      store: store, ids: IDDeriver(secret: Array("s".utf8), namespace: "t"), intake: nil,
      metrics: LiveMetrics(), spool: spool, wake: { wakes.add() })
    writer.start()
    return (writer, spool, wakes)
  }

  func testCommitsInOrderAndCountsAfterEach() throws {
    let store = try StateStore(path: directory + "/state.sqlite")
    let (writer, spool, wakes) = started(store)
    for i in 1...20 { try writer.submit(job(i % 3, watermark: Int64(i))) }
    try writer.finish()
    let expected = (1...20).reduce(0) { $0 + $1 % 3 }
    XCTAssertEqual(spool.spans, expected)
    XCTAssertEqual(spool.bytes, Int64(expected * 4), "3 bytes and a length byte a span")
    XCTAssertEqual(wakes.count, (1...20).filter { $0 % 3 != 0 }.count)
    XCTAssertEqual(
      try store.loadLive().snapshot.watermark, 20, "the last commit is the last applied")
    XCTAssertEqual(try store.spoolBatch(maxSpans: 100).reduce(0) { $0 + $1.spans.count }, expected)
  }

  func testTheNextCommitDeletesWhatTheSenderDeliveredAndFinishDeletesWhatNoCommitTook() throws {
    let store = try StateStore(path: directory + "/state.sqlite")
    let (writer, spool, _) = started(store)
    try writer.submit(job(3, watermark: 1))
    try writer.submit(job(2, watermark: 2))
    // Wait for both commits (one spool row each).
    for _ in 0..<500 where spool.spans < 5 { Thread.sleep(forTimeInterval: 0.01) }
    let rows = try store.spoolBatch(maxSpans: 100)
    XCTAssertEqual(rows.map { $0.spans.count }, [3, 2])
    // The sender delivered the first row: the next commit deletes it, and counts it out after.
    XCTAssertTrue(spool.released(through: rows[0].seq, spans: 3, bytes: rows[0].bytes))
    try writer.submit(job(0, watermark: 3))
    for _ in 0..<500 where spool.spans > 2 { Thread.sleep(forTimeInterval: 0.01) }
    XCTAssertEqual(try store.spoolBatch(maxSpans: 100).map(\.seq), [rows[1].seq])
    XCTAssertEqual(spool.spans, 2)
    XCTAssertEqual(spool.bytes, rows[1].bytes)
    // Delivered after the last commit: finish deletes it; after finish the sender must.
    XCTAssertTrue(spool.released(through: rows[1].seq, spans: 2, bytes: rows[1].bytes))
    try writer.finish()
    XCTAssertEqual(try store.spoolBatch(maxSpans: 100).count, 0)
    XCTAssertEqual(spool.spans, 0)
    XCTAssertEqual(spool.bytes, 0)
    XCTAssertFalse(spool.released(through: rows[1].seq, spans: 0, bytes: 0))
  }

  func testAFailedCommitStopsTheWriterAndSurfacesItsError() throws {
    let store = try StateStore(path: directory + "/state.sqlite")
    try store.queue.write { db in try db.execute(sql: "DROP TABLE spool") }
    let (writer, spool, wakes) = started(store)
    try writer.submit(job(2, watermark: 1))
    var surfaced = false
    for _ in 0..<200 where !surfaced {
      do {
        try writer.submit(job(0, watermark: 2))
        Thread.sleep(forTimeInterval: 0.01)
      } catch {
        surfaced = "\(error)".contains("no such table: spool")
      }
    }
    XCTAssertTrue(surfaced, "a later submit throws the commit's error")
    XCTAssertThrowsError(try writer.finish())
    XCTAssertEqual(spool.spans, 0, "nothing counted for a commit that did not happen")
    XCTAssertEqual(wakes.count, 0)
  }
}
