#if canImport(Glibc)
  import Glibc
#endif

/// The kernel's scheduling policy for the threads of `tracebridge run` (`live.cpu_scheduling`).
///
/// `batch` is Linux's `SCHED_BATCH`: the kernel treats the threads as throughput work, so a
/// thread that wakes never preempts the one running on its CPU, a broker's or the proprietary
/// system's included; it waits for the running thread's slice instead. On a host the bridge
/// shares with the broker that costs it fewer preemptions a message and leaves its neighbours
/// their latency (docs/performance.md, item 21: about 0.7 µs less CPU a message).
/// `normal` keeps the default policy (`SCHED_OTHER`). Nice values are kept either way.
public enum CPUScheduling: String, Sendable, CaseIterable {
  case normal
  case batch

  /// Linux's policy number (`<sched.h>`: `SCHED_OTHER` 0, `SCHED_BATCH` 3; the Glibc module
  /// does not export `SCHED_BATCH`, which glibc defines for `_GNU_SOURCE` only).
  public var policy: Int32 {
    switch self {
    case .normal: 0
    case .batch: 3
    }
  }

  /// Sets the policy of the calling thread; threads it starts afterwards inherit it. Returns
  /// nil on success, else the reason (the policy is then left as it was).
  @discardableResult
  public func applyToCurrentThread() -> String? {
    #if os(Linux)
      var parameters = sched_param(sched_priority: 0)
      guard sched_setscheduler(0, policy, &parameters) == 0 else {
        return "sched_setscheduler(\(rawValue)): \(String(cString: strerror(errno)))"
      }
      return nil
    #else
      return self == .normal ? nil : "\(rawValue) scheduling exists on Linux only"
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
