import ArgumentParser
import Foundation
import TraceBridge

struct Timeline: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show orders' timelines from the state store.",
    discussion: """
      Lists each order (or the ones named, by order id or alias such as J-00077 or
      mes_job:J-00077) with its trace id and every event in time order.
      """)

  @OptionGroup var options: ConfigOptions

  @Option(
    help: ArgumentHelp(
      "The state store (default: the configuration's store.path).", valueName: "path"))
  var store: String?

  @Option(
    help: ArgumentHelp(
      "Print the Jaeger link of each trace under this Jaeger UI base URL.", valueName: "url"))
  var jaegerUrl: String?

  @Argument(help: ArgumentHelp("Order ids or aliases (default: all orders).", valueName: "order"))
  var orders: [String] = []

  func run() throws {
    let config = try options.load()
    let path = store ?? config.storePath
    guard FileManager.default.fileExists(atPath: path) else {
      printError("no state store at \(path); run tracebridge backfill first")
      throw ExitCode(1)
    }
    try reportingErrors {
      let db = try StateStore(path: path)
      let rows = try db.orders(matching: orders)
      if rows.isEmpty {
        printError(
          orders.isEmpty
            ? "the store holds no orders" : "no order matches \(orders.joined(separator: ", "))")
        throw ExitCode(1)
      }
      for order in rows {
        var header =
          "order \(order.orderID)  \(order.status ?? "-") (\(order.state))  trace \(order.traceID)"
        if let u = order.userID { header += "  user \(u)" }
        let aliases = try db.aliases(orderID: order.orderID)
        if !aliases.isEmpty { header += "  aliases \(aliases.joined(separator: ", "))" }
        print(header)
        if let jaegerUrl {
          print(
            "  \(jaegerUrl.hasSuffix("/") ? String(jaegerUrl.dropLast()) : jaegerUrl)/trace/\(order.traceID)"
          )
        }
        var previous: Int64?
        let events = try db.timeline(orderID: order.orderID)
        let width = events.map(\.service.count).max() ?? 0
        for e in events {
          let what: String
          switch e.kind {
          case "status_change": what = "status \(e.status ?? "?")"
          case "step_start": what = "step \(e.step ?? e.name) started"
          case "step_end": what = "step \(e.step ?? e.name) ended"
          default: what = "\(e.kind) \(e.name)"
          }
          let delta = previous.map { "+" + Self.duration(e.time - $0) } ?? ""
          previous = e.time
          print(
            "  \(RuleTester.iso(e.time))  \(e.service.padding(toLength: width, withPad: " ", startingAt: 0)) \(what)  \(delta)"
          )
        }
        print("")
      }
    }
  }

  static func duration(_ ns: Int64) -> String {
    let s = Double(ns) / 1e9
    if s < 60 { return String(format: "%.1fs", s) }
    if s < 3600 { return String(format: "%dm%02ds", Int(s) / 60, Int(s) % 60) }
    return String(format: "%dh%02dm", Int(s) / 3600, Int(s) / 60 % 60)
  }
}
