import Foundation

/// A named thread (4 MiB of stack) that others can wait for: the backfill producers, the live
/// commit writer and the WAL checkpointer run on one.
public final class JoinableThread: @unchecked Sendable {
  private let finished = DispatchSemaphore(value: 0)

  public init() {}

  public func start(name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread { [finished] in
      ThreadName.set(name)
      body()
      finished.signal()
    }
    thread.name = name
    thread.stackSize = 1 << 22
    thread.start()
  }

  /// Returns once the body has ended (any number of times; the thread must have been started).
  public func wait() {
    finished.wait()
    finished.signal()
  }
}
