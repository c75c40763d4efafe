import HeapModule

/// The live pipeline's reorder window: elements come out smallest key first (event time, then
/// arrival order).
///
/// The heap holds 24-byte keys and the elements stay where they were put, in slots reused
/// after removal. A heap of the elements themselves (an event is ~300 bytes) moved each one
/// about log₂(n) times on the way out: with a queue drain handing over a thousand messages at a
/// time, copying them was a sixth of the pipeline thread's time.
struct ReorderQueue<Element> {
  struct Key: Comparable {
    var time: Int64
    var sequence: UInt64
    var slot: Int
    static func < (a: Key, b: Key) -> Bool { (a.time, a.sequence) < (b.time, b.sequence) }
    static func == (a: Key, b: Key) -> Bool { a.time == b.time && a.sequence == b.sequence }
  }

  private var heap = Heap<Key>()
  private var slots: [Element?] = []
  private var free: [Int] = []

  var isEmpty: Bool { heap.isEmpty }
  var count: Int { heap.count }

  /// Adds `element` under (`time`, `sequence`); sequences must not repeat.
  mutating func insert(_ element: Element, time: Int64, sequence: UInt64) {
    let slot: Int
    if let reused = free.popLast() {
      slot = reused
      slots[slot] = element
    } else {
      slot = slots.count
      slots.append(element)
    }
    heap.insert(Key(time: time, sequence: sequence, slot: slot))
  }

  /// Reads the smallest element in place (nil when empty).
  func withMin<T>(_ body: (Element) -> T) -> T? {
    guard let key = heap.min else { return nil }
    return body(slots[key.slot]!)
  }

  /// Removes and returns the smallest element.
  mutating func removeMin() -> Element? {
    guard let key = heap.popMin() else { return nil }
    let element = slots[key.slot]!
    slots[key.slot] = nil
    free.append(key.slot)
    if heap.isEmpty {  // all slots free: start over rather than keep a hole-ridden array
      slots.removeAll(keepingCapacity: true)
      free.removeAll(keepingCapacity: true)
    }
    return element
  }
}
