#if canImport(Glibc)
  import Glibc
#endif

/// The kernel's scheduling policy for the ingest threads of `tracebridge run`
/// (`live.cpu_scheduling`).
///
/// `batch` is Linux's `SCHED_BATCH`: the kernel treats the threads as throughput work, so a
/// thread that wakes never preempts the one running on its CPU, a broker's or the proprietary
/// system's included; it waits for the running thread's slice instead. On a host the bridge
/// shares with the broker that costs it fewer preemptions a message and leaves its neighbours
/// their latency (docs/performance.md, item 21: about 0.7 µs less CPU a message).
/// `normal` leaves the threads the policy the process was started with: the default one, or
/// what an operator chose with `chrt` or systemd's `CPUSchedulingPolicy=`. Nice values are kept
/// either way.
public enum CPUScheduling: String, Sendable {
  case normal
  case batch

  /// Linux's number for `SCHED_BATCH` (`<sched.h>`; the Glibc module does not export the
  /// macro, which glibc defines for `_GNU_SOURCE` only).
  static let batchPolicy: Int32 = 3

  /// `batch`: sets the calling thread's policy, which threads it starts afterwards inherit.
  /// `normal`: does nothing. Returns nil on success, else the reason (the policy is then left
  /// as it was).
  @discardableResult
  public func applyToCurrentThread() -> String? {
    guard self == .batch else { return nil }
    #if os(Linux)
      var parameters = sched_param(sched_priority: 0)
      guard sched_setscheduler(0, Self.batchPolicy, &parameters) == 0 else {
        return "sched_setscheduler(SCHED_BATCH): \(String(cString: strerror(errno)))"
      }
      return nil
    #else
      return "batch scheduling exists on Linux only"
    #endif
  }

  /// The calling thread's policy, as Linux numbers it (-1 where it cannot be read).
  public static func currentPolicy() -> Int32 {
    #if os(Linux)
      return sched_getscheduler(0)
    #else
      return -1
    #endif
  }
}
