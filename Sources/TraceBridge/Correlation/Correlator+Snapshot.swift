import Foundation
import TraceBridgeCore

/// What changed in a correlator since it was last persisted.
struct ChangeLog {
  /// Orders opened, changed or closed (closed ones are now tombstones).
  var orders: Set<String> = []
  var aliases: [(AliasKey, String)] = []
  var pendingChanged = false
}

/// The correlator's state in the form the live store keeps it, so that a restart — or a
/// SIGKILL — resumes exactly where the last commit left: the same open orders, aliases and
/// waiting alias-only events, hence the same spans for the events read after it.
struct CorrelatorDelta: Sendable {
  /// Open orders, `OrderState` in its binary form (`OrderState+Binary.swift`).
  var upserted: [(orderID: String, state: Data)] = []
  /// Orders that closed: now tombstones (`ClosedOrder` in its binary form).
  var closed: [(orderID: String, tombstone: Data)] = []
  var aliases: [(AliasKey, String)] = []
  /// Every waiting alias-only event (JSON-encoded `[OrderEvent]`), when that set changed.
  var pending: Data?
  var watermark: Int64
  var isEmpty: Bool { upserted.isEmpty && closed.isEmpty && aliases.isEmpty && pending == nil }
}

/// A correlator's whole persisted state, as read back at start.
struct CorrelatorSnapshot {
  var open: [String: Data] = [:]
  var tombstones: [String: Data] = [:]
  var aliases: [AliasKey: String] = [:]
  var pending: Data?
  var watermark: Int64 = .min
}

extension Correlator {
  /// Starts recording changes for ``takeDelta()``.
  func trackChanges() {
    if changes == nil { changes = ChangeLog() }
  }

  /// The changes since the last call, encoded for the store.
  func takeDelta() throws -> CorrelatorDelta {
    let log = changes ?? ChangeLog()
    changes = ChangeLog()
    let encoder = JSONEncoder()
    var delta = CorrelatorDelta(watermark: watermark)
    for id in log.orders.sorted() {
      if let state = open[id] {
        delta.upserted.append((id, Data(state.binary())))
      } else if let tombstone = tombstones[id] {
        delta.closed.append((id, Data(tombstone.binary())))
      }
    }
    delta.aliases = log.aliases
    if log.pendingChanged {
      let waiting = pending.values.flatMap { $0 }.sorted {
        ($0.timeUnixNano, $0.sourceKey.description) < ($1.timeUnixNano, $1.sourceKey.description)
      }
      delta.pending = try encoder.encode(waiting)
    }
    return delta
  }

  /// Loads the state a previous run committed. Call before the first event.
  func restore(_ snapshot: CorrelatorSnapshot) throws {
    let decoder = JSONDecoder()
    for (id, data) in snapshot.open {
      let state = try OrderState(binary: [UInt8](data))
      open[id] = state
      schedule(id, state)
    }
    aliases = snapshot.aliases
    watermark = snapshot.watermark
    for (id, data) in snapshot.tombstones {
      // The store forgets tombstones later than memory did (by a commit every few seconds,
      // against a watermark recorded at close): one the last run had already forgotten — its
      // horizon passed, or its id open again — must not come back and turn that order's
      // events away.
      if snapshot.open[id] != nil { continue }
      // JSON before the binary form (stores written before 2026-12-04).
      let tombstone =
        data.first == UInt8(ascii: "{")
        ? try decoder.decode(ClosedOrder.self, from: data)
        : try ClosedOrder(binary: [UInt8](data))
      if tombstone.closedAt + policy.horizon < watermark {
        for a in tombstone.aliases where aliases[a] == id { aliases[a] = nil }
        continue
      }
      tombstones[id] = tombstone
      scheduleTombstone(id, tombstone)
    }
    if let data = snapshot.pending {
      let events = try decoder.decode([OrderEvent].self, from: data)
      for e in events {
        guard case .alias(let alias) = e.key else { continue }
        pending[alias, default: []].append(e)
        pendingOrder.append((alias, e.timeUnixNano + policy.aliasTTL))
        pendingCount += 1
      }
      pendingOrder.sort { $0.1 < $1.1 }
    }
  }
}
