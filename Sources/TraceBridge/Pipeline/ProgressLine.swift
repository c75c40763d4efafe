import Foundation

/// A progress line on a terminal's standard error, redrawn at most twice a second:
/// bytes read of the total, lines/s, orders, spans.
final class ProgressLine {
  private let total: Int64
  private let started = Date()
  private var lastDraw = Date.distantPast

  init(total: Int64) { self.total = total }

  func update(bytes: Int64, lines: Int64, orders: Int, spans: Int) {
    let now = Date()
    guard now.timeIntervalSince(lastDraw) >= 0.5 else { return }
    lastDraw = now
    let elapsed = max(now.timeIntervalSince(started), 0.001)
    let percent = total > 0 ? min(100, Double(bytes) * 100 / Double(total)) : 0
    let line = String(
      format: "\r%5.1f%%  %@ of %@  %@ lines/s  %d orders  %d spans   ", percent, Self.bytes(bytes),
      Self.bytes(total), Self.count(Double(lines) / elapsed), orders, spans)
    FileHandle.standardError.write(Data(line.utf8))
  }

  func finish() {
    FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
  }

  static func bytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 {
      v /= 1024
      u += 1
    }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
  }

  static func count(_ v: Double) -> String {
    v >= 1e6
      ? String(format: "%.2fM", v / 1e6)
      : v >= 1e3 ? String(format: "%.1fk", v / 1e3) : String(format: "%.0f", v)
  }
}
