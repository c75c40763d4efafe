#if canImport(Glibc)
  import Glibc
#endif

/// Names the calling thread for `top -H`, `perf` and /proc (Foundation's `Thread.name` does
/// not reach the kernel on Linux). Linux keeps at most 15 bytes. Best effort: does nothing
/// where /proc/thread-self is missing.
public enum ThreadName {
  public static func set(_ name: String) {
    #if canImport(Glibc)
      let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
      guard fd >= 0 else { return }
      let bytes = Array(name.utf8.prefix(15))
      _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      close(fd)
    #endif
  }
}
