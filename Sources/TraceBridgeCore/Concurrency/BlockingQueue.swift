import Foundation

/// A bounded FIFO between threads: `put` blocks while the queue is full (backpressure),
/// `take` blocks while it is empty and returns nil once the queue is closed and drained.
/// A ring buffer: a taken item is released at once, so the queue never holds more than
/// `capacity` items alive. For the pipeline's dedicated threads, never the cooperative pool.
public final class BlockingQueue<Element: Sendable>: @unchecked Sendable {
  private let condition = NSCondition()
  private var slots: [Element?]
  private var head = 0
  private var stored = 0
  private var closed = false
  public let capacity: Int

  public init(capacity: Int) {
    precondition(capacity > 0)
    self.capacity = capacity
    slots = [Element?](repeating: nil, count: capacity)
  }

  /// Adds `item`, waiting for room. Returns false (the item is not taken) when the queue
  /// was closed.
  @discardableResult
  public func put(_ item: Element) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    while stored == capacity && !closed { condition.wait() }
    if closed { return false }
    slots[(head + stored) % capacity] = item
    stored += 1
    condition.broadcast()
    return true
  }

  /// The next item, waiting for one; nil when closed and empty.
  public func take() -> Element? {
    condition.lock()
    defer { condition.unlock() }
    while stored == 0 && !closed { condition.wait() }
    if stored == 0 { return nil }
    let item = slots[head]
    slots[head] = nil
    head = (head + 1) % capacity
    stored -= 1
    condition.broadcast()
    return item
  }

  /// No more puts; takers drain what is left, then get nil.
  public func close() {
    condition.lock()
    closed = true
    condition.broadcast()
    condition.unlock()
  }

  public var count: Int {
    condition.lock()
    defer { condition.unlock() }
    return stored
  }
}
