import Foundation
import TraceBridgeCore

/// Writes store changes on its own thread in transactions of a few thousand, so the pipeline
/// does not wait for SQLite. `finish` waits for every change to be committed and rethrows
/// the first write error.
final class StoreWriter: @unchecked Sendable {
  private let store: StateStore
  private let ids: IDDeriver
  private let queue = BlockingQueue<[StateStore.Change]>(capacity: 4)
  private var buffer: [StateStore.Change] = []
  private let done = DispatchSemaphore(value: 0)
  private let lock = NSLock()
  private var failure: Error?

  init(store: StateStore, ids: IDDeriver) {
    self.store = store
    self.ids = ids
    buffer.reserveCapacity(8192)
    let thread = Thread { [self] in
      ThreadName.set("store-writer")
      var traceIDs: [String: TraceID] = [:]
      while let batch = queue.take() {
        do {
          try store.apply(batch) { id in
            if let t = traceIDs[id] { return t }
            let t = ids.traceID(orderID: id)
            if traceIDs.count > 100_000 { traceIDs.removeAll() }
            traceIDs[id] = t
            return t
          }
        } catch {
          lock.lock()
          if failure == nil { failure = error }
          lock.unlock()
        }
      }
      done.signal()
    }
    thread.name = "store-writer"
    thread.start()
  }

  func add(_ change: StateStore.Change) {
    buffer.append(change)
    if buffer.count >= 8192 {
      queue.put(buffer)
      buffer.removeAll(keepingCapacity: true)
    }
  }

  func finish() throws {
    if !buffer.isEmpty { queue.put(buffer) }
    buffer.removeAll()
    queue.close()
    done.wait()
    lock.lock()
    defer { lock.unlock() }
    if let failure { throw CLIError("cannot write the state store \(store.path): \(failure)") }
  }
}
