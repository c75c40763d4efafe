import Exporters
import Foundation
import LogParsers
import TraceBridgeCore
import Yams

/// Reads and validates a configuration file. Problems are collected, not thrown one by one:
/// the error lists every problem with its file and line and what to change.
public enum ConfigurationLoader {
  public static func load(
    file: String, environment: [String: String] = ProcessInfo.processInfo.environment
  )
    throws(ConfigurationError) -> Configuration
  {
    let text: String
    do {
      text = try String(contentsOfFile: file, encoding: .utf8)
    } catch {
      throw ConfigurationError(issues: [
        ConfigurationIssue(
          file: file, line: nil,
          message: "cannot read the configuration: \(error.localizedDescription)")
      ])
    }
    return try parse(text, file: file, environment: environment)
  }

  /// Parses configuration `text` as if read from `file` (relative paths resolve against its directory).
  public static func parse(_ text: String, file: String, environment: [String: String] = [:])
    throws(ConfigurationError) -> Configuration
  {
    var p = Parser(file: file, environment: environment)
    let root: Node?
    do {
      root = try Yams.compose(yaml: text)
    } catch {
      throw ConfigurationError(issues: [p.yamlIssue(error)])
    }
    guard let root else {
      throw ConfigurationError(issues: [
        ConfigurationIssue(
          file: file, line: nil, message: "the file is empty; see examples/tracebridge.yaml")
      ])
    }
    let config = p.configuration(root)
    if !p.issues.isEmpty || config == nil { throw ConfigurationError(issues: p.issues) }
    return config!
  }
}

extension ConfigurationLoader {
  /// `HOST:PORT` (`[::1]:9464` for IPv6).
  public static func parseListen(_ text: String) -> (host: String, port: Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
      (0...65535).contains(port)
    else { return nil }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return host.isEmpty ? nil : (host, port)
  }
}

private struct Parser {
  let file: String
  let environment: [String: String]
  let baseDirectory: String
  var issues: [ConfigurationIssue] = []
  /// Every source name written, also of sources with errors (so their rules are not also
  /// reported as naming a missing source).
  var declaredSources: Set<String> = []
  /// Every source some rule names, also rules with errors (so their source is not also
  /// reported as having no rule).
  var sourcesWithRules: Set<String> = []
  /// Sources that consume a RabbitMQ queue, by name.
  var amqpSources: [String: AMQPSourceSettings] = [:]

  init(file: String, environment: [String: String]) {
    self.file = file
    self.environment = environment
    let absolute = URL(fileURLWithPath: file).standardizedFileURL
    baseDirectory = absolute.deletingLastPathComponent().path
  }

  mutating func issue(_ node: Node?, _ message: String) {
    issues.append(ConfigurationIssue(file: file, line: node?.mark?.line, message: message))
  }

  func yamlIssue(_ error: Error) -> ConfigurationIssue {
    if let e = error as? YamlError {
      switch e {
      case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
        return ConfigurationIssue(
          file: file, line: mark.line, message: "YAML syntax error: \(problem)")
      default: break
      }
    }
    return ConfigurationIssue(file: file, line: nil, message: "YAML syntax error: \(error)")
  }

  func resolve(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    return URL(fileURLWithPath: baseDirectory).appendingPathComponent(path).standardizedFileURL.path
  }

  // MARK: - Node helpers

  /// The pairs of a mapping; reports keys not in `known`.
  mutating func mapping(_ node: Node, _ what: String, known: [String]) -> [(String, Node)]? {
    guard let m = node.mapping else {
      issue(node, "\(what) must be a mapping (key: value lines)")
      return nil
    }
    var pairs: [(String, Node)] = []
    for (k, v) in m {
      let key = k.string ?? ""
      if !known.isEmpty && !known.contains(key) {
        issue(k, "unknown key '\(key)' in \(what); known keys: \(known.joined(separator: ", "))")
        continue
      }
      pairs.append((key, v))
    }
    return pairs
  }

  mutating func string(_ node: Node, _ what: String) -> String? {
    guard let s = node.scalar?.string else {
      issue(node, "\(what) must be a single value, not a list or mapping")
      return nil
    }
    return s
  }

  mutating func strings(_ node: Node, _ what: String) -> [String]? {
    if let s = node.scalar?.string { return [s] }
    guard let seq = node.sequence else {
      issue(node, "\(what) must be a value or a list of values")
      return nil
    }
    var out: [String] = []
    for item in seq {
      if let s = string(item, what) { out.append(s) }
    }
    return out
  }

  mutating func stringMap(_ node: Node, _ what: String) -> [(String, String)]? {
    guard let pairs = mapping(node, what, known: []) else { return nil }
    var out: [(String, String)] = []
    for (k, v) in pairs {
      if let s = string(v, "\(what).\(k)") { out.append((k, s)) }
    }
    return out
  }

  mutating func duration(_ node: Node, _ what: String) -> Int64? {
    guard let s = string(node, what) else { return nil }
    guard let ns = Self.parseDuration(s) else {
      issue(node, "\(what): '\(s)' is not a duration; write it like 500ms, 30s, 10m, 72h or 7d")
      return nil
    }
    return ns
  }

  static func parseDuration(_ text: String) -> Int64? {
    let units: [(String, Double)] = [
      ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9), ("d", 86400e9),
    ]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
      let number = text.dropLast(suffix.count)
      if suffix == "s" && number.hasSuffix("m") { continue }
      // Durations are nanoseconds in an Int64 (about 292 years): larger ones, inf and nan
      // are not durations.
      guard let v = Double(number), v >= 0, v.isFinite, v * factor < 9.2e18 else { return nil }
      return Int64(v * factor)
    }
    return nil
  }

  mutating func positiveInt(_ node: Node, _ what: String) -> Int? {
    guard let s = string(node, what), let v = Int(s), v > 0 else {
      issue(node, "\(what) must be a whole number greater than 0")
      return nil
    }
    return v
  }

  // MARK: - The file

  mutating func configuration(_ root: Node) -> Configuration? {
    guard
      let top = mapping(
        root, "the configuration",
        known: [
          "namespace", "ids", "data_dir", "store", "rejected", "orders", "patterns", "sources",
          "rules", "exporter",
          "live", "spool", "amqp",
        ])
    else { return nil }
    let node = Dictionary(top, uniquingKeysWith: { a, _ in a })
    let namespace = node["namespace"].flatMap { string($0, "namespace") } ?? "default"
    var secret: [UInt8] = []
    if let ids = node["ids"] {
      secret = self.secret(ids) ?? []
    } else {
      issue(
        root,
        "missing 'ids': give the secret that keys trace ids, e.g. ids: {secret_env: TRACEBRIDGE_ID_SECRET}"
      )
    }
    let dataDirectory = resolve(
      node["data_dir"].flatMap { string($0, "data_dir") } ?? ".tracebridge")
    var storePath = dataDirectory + "/state.sqlite"
    if let store = node["store"], let pairs = mapping(store, "store", known: ["path"]) {
      for (k, v) in pairs where k == "path" {
        if let s = string(v, "store.path") { storePath = resolve(s) }
      }
    }
    var rejectedPath = dataDirectory + "/rejected.jsonl"
    if let r = node["rejected"], let pairs = mapping(r, "rejected", known: ["path"]) {
      for (k, v) in pairs where k == "path" {
        if let s = string(v, "rejected.path") { rejectedPath = resolve(s) }
      }
    }
    let orders = node["orders"].map { self.orders($0) } ?? OrderPolicy()
    var library = PatternLibrary()
    if let patterns = node["patterns"], let pairs = stringMap(patterns, "patterns") {
      library = PatternLibrary(custom: Dictionary(pairs, uniquingKeysWith: { a, _ in a }))
      for (name, _) in pairs {
        do {
          _ = try CompiledPattern(try library.expand("%{\(name)}"))
        } catch {
          let keyNode = patterns.mapping?.first(where: { $0.key.string == name })?.value
          issue(keyNode, "pattern '\(name)': \(error)")
        }
      }
    }
    var sources: [SourceDefinition] = []
    if let s = node["sources"] {
      sources = self.sources(s)
    } else {
      issue(root, "missing 'sources': list the log files to read, see docs/configuration.md")
    }
    var rules: [CompiledRule] = []
    if let r = node["rules"] {
      rules = self.rules(r, library: library, sources: sources)
    } else {
      issue(root, "missing 'rules': say how lines become order events, see docs/configuration.md")
    }
    for source in sources where !sourcesWithRules.contains(source.name) {
      let n = node["sources"]?.sequence?.first { $0.mapping?["name"]?.string == source.name }
      issue(n, "source '\(source.name)' has no rule; add a rule with source: \(source.name)")
    }
    var exporter = ExporterConfiguration(target: .file(dataDirectory + "/traces.otlp.jsonl"))
    if let e = node["exporter"] { exporter = self.exporter(e, default: exporter) }
    var live = LiveConfiguration()
    if let l = node["live"] { live = self.live(l, base: live) }
    if let sp = node["spool"], let pairs = mapping(sp, "spool", known: ["max_bytes"]) {
      for (_, v) in pairs {
        guard let text = string(v, "spool.max_bytes") else { continue }
        if let bytes = Self.parseByteSize(text) {
          live.spoolMaxBytes = bytes
        } else {
          issue(
            v, "spool.max_bytes: '\(text)' is not a size; write it like 512MiB, 2GiB or 100000000")
        }
      }
    }
    var configuration = Configuration(
      file: file, namespace: namespace, secret: secret, dataDirectory: dataDirectory,
      storePath: storePath,
      rejectedPath: rejectedPath, orders: orders, sources: sources, rules: rules, exporter: exporter
    )
    configuration.live = live
    configuration.amqpSources = amqpSources
    if !amqpSources.isEmpty {
      if let a = node["amqp"] {
        configuration.amqp = amqpConnection(a)
      } else {
        issue(
          root,
          "sources \(amqpSources.keys.sorted().joined(separator: ", ")) read RabbitMQ queues: add amqp: {url: amqp://host:5672/%2F}"
        )
      }
    } else if let a = node["amqp"] {
      configuration.amqp = amqpConnection(a)
    }
    return configuration
  }

  mutating func amqpSource(_ node: Node, _ w: String) -> AMQPSourceSettings? {
    guard
      let pairs = mapping(
        node, "\(w): amqp",
        known: ["queue", "passive", "bind", "prefetch", "dead_letter", "max_message_bytes"])
    else { return nil }
    let m = Dictionary(pairs, uniquingKeysWith: { a, _ in a })
    guard let qn = m["queue"], let queue = string(qn, "\(w): amqp.queue"), !queue.isEmpty else {
      issue(node, "\(w): amqp needs queue: the queue to consume")
      return nil
    }
    var settings = AMQPSourceSettings(queue: queue)
    if let p = m["passive"], let s = string(p, "\(w): amqp.passive") {
      switch s {
      case "true": settings.passive = true
      case "false": settings.passive = false
      default: issue(p, "\(w): amqp.passive must be true or false")
      }
    }
    if let b = m["bind"] {
      if let seq = b.sequence {
        for item in seq {
          guard let bp = mapping(item, "\(w): amqp.bind", known: ["exchange", "routing_key"]) else {
            continue
          }
          let d = Dictionary(bp, uniquingKeysWith: { a, _ in a })
          guard let e = d["exchange"].flatMap({ string($0, "\(w): amqp.bind.exchange") }) else {
            issue(item, "\(w): amqp.bind needs exchange (and routing_key)")
            continue
          }
          let r = d["routing_key"].flatMap { string($0, "\(w): amqp.bind.routing_key") } ?? ""
          settings.bindings.append((e, r))
        }
      } else {
        issue(b, "\(w): amqp.bind must be a list of {exchange, routing_key}")
      }
    }
    if let p = m["prefetch"], let n = positiveInt(p, "\(w): amqp.prefetch") {
      settings.prefetch = min(n, 65535)
    }
    if let d = m["dead_letter"],
      let dp = mapping(d, "\(w): amqp.dead_letter", known: ["exchange", "routing_key"])
    {
      for (k, v) in dp {
        guard let s = string(v, "\(w): amqp.dead_letter.\(k)") else { continue }
        if k == "exchange" {
          settings.deadLetterExchange = s
        } else {
          settings.deadLetterRoutingKey = s
        }
      }
    }
    if let mb = m["max_message_bytes"], let text = string(mb, "\(w): amqp.max_message_bytes") {
      if let n = Self.parseByteSize(text) {
        settings.maxMessageBytes = Int(min(n, Int64(Int32.max)))
      } else {
        issue(mb, "\(w): amqp.max_message_bytes: '\(text)' is not a size; write it like 1MiB")
      }
    }
    return settings
  }

  mutating func amqpConnection(_ node: Node) -> AMQPConnectionSettings? {
    guard
      let pairs = mapping(
        node, "amqp",
        known: ["url", "url_env", "user_env", "password_env", "password_file", "heartbeat", "tls"])
    else { return nil }
    var settings = AMQPConnectionSettings()
    var sawURL = false
    for (k, v) in pairs {
      switch k {
      case "url", "url_env":
        guard let s = string(v, "amqp.\(k)") else { continue }
        let url = k == "url" ? s : environment[s]
        guard let url else {
          issue(v, "amqp.url_env: the environment variable \(s) is not set")
          continue
        }
        sawURL = true
        settings.url = url
        if !(url.hasPrefix("amqp://") || url.hasPrefix("amqps://")) {
          issue(
            v,
            "amqp.\(k): '\(k == "url" ? url : s)' is not an AMQP URL; write amqp://host:5672/%2F or amqps://host:5671/vhost"
          )
        }
      case "user_env", "password_env":
        guard let s = string(v, "amqp.\(k)") else { continue }
        guard let value = environment[s] else {
          issue(v, "amqp.\(k): the environment variable \(s) is not set")
          continue
        }
        if k == "user_env" { settings.user = value } else { settings.password = value }
      case "password_file":
        guard let s = string(v, "amqp.password_file") else { continue }
        let path = resolve(s)
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
          issue(v, "amqp.password_file: cannot read \(path)")
          continue
        }
        settings.password = text.hasSuffix("\n") ? String(text.dropLast()) : text
      case "heartbeat":
        if let d = duration(v, "amqp.heartbeat") {
          settings.heartbeatSeconds = max(0, Int(d / 1_000_000_000))
        }
      default:
        guard let tp = mapping(v, "amqp.tls", known: ["ca_file", "cert_file", "key_file"]) else {
          continue
        }
        for (tk, tv) in tp {
          guard let s = string(tv, "amqp.tls.\(tk)") else { continue }
          let path = resolve(s)
          if !FileManager.default.isReadableFile(atPath: path) {
            issue(tv, "amqp.tls.\(tk): cannot read \(path)")
          }
          switch tk {
          case "ca_file": settings.caFile = path
          case "cert_file": settings.certFile = path
          default: settings.keyFile = path
          }
        }
      }
    }
    if !sawURL { issue(node, "amqp needs url: (or url_env:), e.g. amqp://rabbitmq:5672/%2F") }
    return settings
  }

  mutating func live(_ node: Node, base: LiveConfiguration) -> LiveConfiguration {
    var live = base
    guard
      let pairs = mapping(
        node, "live",
        known: [
          "listen", "poll_interval", "reorder_window", "multiline_flush", "commit_interval",
          "rotated_quiet_period", "start_at", "cpu_scheduling",
        ])
    else { return live }
    func seconds(_ v: Node, _ key: String, positive: Bool = true) -> Double? {
      guard let ns = duration(v, "live.\(key)") else { return nil }
      if positive && ns == 0 {
        issue(v, "live.\(key) must be longer than 0")
        return nil
      }
      return Double(ns) / 1e9
    }
    for (k, v) in pairs {
      switch k {
      case "listen":
        guard let s = string(v, "live.listen") else { continue }
        if ConfigurationLoader.parseListen(s) == nil {
          issue(
            v, "live.listen: '\(s)' is not HOST:PORT; write e.g. 127.0.0.1:9464 or 0.0.0.0:9464")
        } else {
          live.listen = s
        }
      case "poll_interval": if let d = seconds(v, k) { live.pollInterval = d }
      case "reorder_window": if let d = seconds(v, k, positive: false) { live.reorderWindow = d }
      case "multiline_flush": if let d = seconds(v, k) { live.multilineFlush = d }
      case "commit_interval": if let d = seconds(v, k) { live.commitInterval = d }
      case "rotated_quiet_period": if let d = seconds(v, k) { live.rotatedQuietPeriod = d }
      case "cpu_scheduling":
        guard let s = string(v, "live.cpu_scheduling") else { continue }
        if let policy = CPUScheduling(rawValue: s) {
          live.cpuScheduling = policy
        } else {
          issue(v, "live.cpu_scheduling: '\(s)' is neither batch nor normal")
        }
      default:
        guard let s = string(v, "live.start_at") else { continue }
        switch s {
        case "beginning": live.startAtEnd = false
        case "end": live.startAtEnd = true
        default: issue(v, "live.start_at: '\(s)' is neither beginning nor end")
        }
      }
    }
    return live
  }

  /// `1GiB`, `512MiB`, `100MB`, `4096`.
  static func parseByteSize(_ text: String) -> Int64? {
    let units: [(String, Double)] = [
      ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("KB", 1e3), ("MB", 1e6),
      ("GB", 1e9), ("B", 1),
    ]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
      guard let v = Double(text.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v > 0,
        v.isFinite, v * factor < 9.2e18
      else { return nil }
      return Int64(v * factor)
    }
    guard let v = Int64(text), v > 0 else { return nil }
    return v
  }

  mutating func secret(_ node: Node) -> [UInt8]? {
    guard let pairs = mapping(node, "ids", known: ["secret", "secret_env", "secret_file"]) else {
      return nil
    }
    guard pairs.count == 1, let (key, value) = pairs.first,
      let text = string(value, "ids.\(pairs[0].0)")
    else {
      issue(node, "ids needs exactly one of secret, secret_env, secret_file")
      return nil
    }
    var secret: String?
    switch key {
    case "secret": secret = text
    case "secret_env":
      secret = environment[text]
      if secret == nil || secret!.isEmpty {
        issue(
          value,
          "ids.secret_env: the environment variable \(text) is not set; export it or use secret_file"
        )
        return nil
      }
    default:
      let path = resolve(text)
      guard let s = try? String(contentsOfFile: path, encoding: .utf8) else {
        issue(value, "ids.secret_file: cannot read \(path)")
        return nil
      }
      secret = s.hasSuffix("\n") ? String(s.dropLast()) : s
    }
    guard let secret, secret.utf8.count >= 8 else {
      issue(
        value,
        "the id secret is too short; use at least 8 characters (32 random bytes in production)")
      return nil
    }
    return Array(secret.utf8)
  }

  mutating func orders(_ node: Node) -> OrderPolicy {
    var policy = OrderPolicy()
    guard
      let pairs = mapping(
        node, "orders",
        known: ["final_statuses", "horizon", "final_grace", "alias_ttl", "max_pending_aliases"])
    else { return policy }
    for (k, v) in pairs {
      switch k {
      case "final_statuses":
        if let s = strings(v, "orders.final_statuses") { policy.finalStatuses = Set(s) }
      case "horizon": if let d = duration(v, "orders.horizon") { policy.horizon = d }
      case "final_grace": if let d = duration(v, "orders.final_grace") { policy.finalGrace = d }
      case "alias_ttl": if let d = duration(v, "orders.alias_ttl") { policy.aliasTTL = d }
      default:
        if let n = positiveInt(v, "orders.max_pending_aliases") { policy.maxPendingAliases = n }
      }
    }
    return policy
  }

  mutating func sources(_ node: Node) -> [SourceDefinition] {
    guard let seq = node.sequence else {
      issue(node, "sources must be a list (lines starting with '- ')")
      return []
    }
    var out: [SourceDefinition] = []
    for (i, item) in seq.enumerated() {
      let what = "sources[\(i)]"
      guard
        let pairs = mapping(
          item, what,
          known: [
            "name", "service", "paths", "encoding", "timezone", "multiline", "max_line_bytes",
            "amqp",
          ])
      else { continue }
      let m = Dictionary(pairs, uniquingKeysWith: { a, _ in a })
      guard let nameNode = m["name"], let name = string(nameNode, "\(what).name"), !name.isEmpty
      else {
        issue(item, "\(what) needs a name")
        continue
      }
      let w = "source '\(name)'"
      declaredSources.insert(name)
      if out.contains(where: { $0.name == name }) {
        issue(nameNode, "\(w) is defined twice; names must be unique")
      }
      guard let serviceNode = m["service"], let service = string(serviceNode, "\(w): service")
      else {
        issue(
          item,
          "\(w) needs service: the system that writes the log (Shop, CRM, MES), used as service.name"
        )
        continue
      }
      var paths: [String] = []
      if let q = m["amqp"] {
        if m["paths"] != nil {
          issue(q, "\(w) has both paths and amqp; a source reads files or a queue, not both")
        }
        if let settings = amqpSource(q, w) { amqpSources[name] = settings }
      } else if let p = m["paths"], let list = strings(p, "\(w): paths") {
        paths = list.map(resolve)
      } else {
        issue(item, "\(w) needs paths: the log files, e.g. [/var/log/mes/mes.log]")
      }
      var decoder: CharsetDecoder? = try? CharsetDecoder(charset: "utf-8")
      if let e = m["encoding"], let name = string(e, "\(w): encoding") {
        do { decoder = try CharsetDecoder(charset: name) } catch {
          issue(e, "\(w): \(error)")
          decoder = nil
        }
      }
      var zone = LocalZone.utc
      if let z = m["timezone"], let id = string(z, "\(w): timezone") {
        do { zone = try LocalZone(identifier: id) } catch { issue(z, "\(w): \(error)") }
      }
      var start: CompiledPattern?
      if let ml = m["multiline"],
        let mp = mapping(ml, "\(w): multiline", known: ["start", "timeout"])
      {
        for (k, v) in mp where k == "start" {
          if let s = string(v, "\(w): multiline.start") {
            do { start = try CompiledPattern(s) } catch {
              issue(v, "\(w): multiline.start: \(error)")
            }
          }
        }
        for (k, v) in mp where k == "timeout" { _ = duration(v, "\(w): multiline.timeout") }
      }
      var maxLine = 65536
      if let n = m["max_line_bytes"], let v = positiveInt(n, "\(w): max_line_bytes") {
        if v < 256 { issue(n, "\(w): max_line_bytes must be at least 256") } else { maxLine = v }
      }
      guard let decoder else { continue }
      out.append(
        SourceDefinition(
          name: name, service: service, paths: paths, decoder: decoder, zone: zone,
          multilineStart: start,
          maxLineBytes: maxLine))
    }
    return out
  }

  mutating func rules(_ node: Node, library: PatternLibrary, sources: [SourceDefinition])
    -> [CompiledRule]
  {
    guard let seq = node.sequence else {
      issue(node, "rules must be a list (lines starting with '- ')")
      return []
    }
    var out: [CompiledRule] = []
    var names = Set<String>()
    for (i, item) in seq.enumerated() {
      let what = "rules[\(i)]"
      guard
        let pairs = mapping(
          item, what,
          known: [
            "name", "source", "sources", "pattern", "json", "logfmt", "xml", "where", "timestamp",
            "event", "link", "when", "body", "message", "namespaces",
          ])
      else { continue }
      let m = Dictionary(pairs, uniquingKeysWith: { a, _ in a })
      guard let nameNode = m["name"], let name = string(nameNode, "\(what).name"), !name.isEmpty
      else {
        issue(item, "\(what) needs a name")
        continue
      }
      let w = "rule '\(name)'"
      if !names.insert(name).inserted {
        issue(nameNode, "\(w) is defined twice; names must be unique")
      }
      var ruleSources: [String] = []
      for key in ["source", "sources"] {
        if let s = m[key], let list = strings(s, "\(w): \(key)") {
          for src in list where !declaredSources.contains(src) {
            issue(
              s,
              "\(w): no source named '\(src)'; sources are: \(sources.map(\.name).joined(separator: ", "))"
            )
          }
          ruleSources += list
        }
      }
      sourcesWithRules.formUnion(ruleSources)
      if ruleSources.isEmpty {
        issue(item, "\(w) needs source: the name of the source whose lines it parses")
      }
      let matchers = ["pattern", "json", "logfmt", "xml"].filter { m[$0] != nil }
      guard matchers.count == 1 else {
        issue(item, "\(w) needs exactly one of pattern:, json:, logfmt: or xml:")
        continue
      }
      // Keys only a queue's messages have: every source of the rule must be a queue source.
      let fileSources = ruleSources.filter {
        declaredSources.contains($0) && amqpSources[$0] == nil
      }
      for key in ["xml", "when", "body", "message", "namespaces"] {
        if let n = m[key], let f = fileSources.first {
          issue(
            n,
            "\(w): \(key): applies to RabbitMQ messages, but source '\(f)' reads files; give this rule only queue sources (sources with amqp:)"
          )
        }
      }
      let matcher: RuleDefinition.Matcher
      switch matchers[0] {
      case "pattern":
        guard let p = string(m["pattern"]!, "\(w): pattern") else { continue }
        matcher = .pattern(p)
      case "json":
        guard let f = stringMap(m["json"]!, "\(w): json") else { continue }
        matcher = .json(f.map { (capture: $0.0, pointer: $0.1) })
      case "xml":
        guard let f = stringMap(m["xml"]!, "\(w): xml") else { continue }
        matcher = .xml(f.map { (capture: $0.0, path: $0.1) })
      default:
        guard let f = stringMap(m["logfmt"]!, "\(w): logfmt") else { continue }
        matcher = .logfmt(f.map { (capture: $0.0, key: $0.1) })
      }
      var message: RuleDefinition.MessageOptions?
      if ["when", "body", "message", "namespaces", "xml"].contains(where: { m[$0] != nil }) {
        message = messageOptions(m, w)
      }
      var whereClauses: [(capture: String, pattern: String)] = []
      if let wn = m["where"], let f = stringMap(wn, "\(w): where") {
        whereClauses = f.map { (capture: $0.0, pattern: $0.1) }
      }
      var tsField = "ts"
      var tsFormat = "iso8601"
      var tz: String?
      var timeSource = TimeSource.field
      if let t = m["timestamp"],
        let tp = mapping(t, "\(w): timestamp", known: ["from", "field", "format", "timezone"])
      {
        for (k, v) in tp {
          guard let s = string(v, "\(w): timestamp.\(k)") else { continue }
          switch k {
          case "field": tsField = s
          case "format": tsFormat = s
          case "from":
            if let f = TimeSource(rawValue: s) {
              timeSource = f
              if f != .field, let file = fileSources.first {
                issue(
                  v,
                  "\(w): timestamp.from: \(s) applies to RabbitMQ messages, but source '\(file)' reads files; use from: field"
                )
              }
            } else {
              issue(
                v,
                "\(w): timestamp.from: '\(s)' is not one of field (a capture, the default), amqp (the message's timestamp property), received (when the bridge received it)"
              )
            }
          default: tz = s
          }
        }
        if timeSource != .field {
          for (k, v) in tp where k != "from" {
            issue(
              v,
              "\(w): timestamp.\(k) applies to from: field only; the time comes from \(timeSource.rawValue)"
            )
          }
        }
      }
      let event = m["event"].flatMap { eventTemplate($0, w) }
      var link: LinkTemplate?
      if let l = m["link"], let lp = mapping(l, "\(w): link", known: ["kind", "key", "order_id"]) {
        let d = Dictionary(lp, uniquingKeysWith: { a, _ in a })
        if let k = d["kind"].flatMap({ string($0, "\(w): link.kind") }),
          let key = d["key"].flatMap({ string($0, "\(w): link.key") }),
          let o = d["order_id"].flatMap({ string($0, "\(w): link.order_id") })
        {
          link = LinkTemplate(kind: k, key: key, orderID: o)
        } else {
          issue(
            l,
            "\(w): link needs kind, key and order_id, e.g. {kind: mes_job, key: '${job}', order_id: '${order}'}"
          )
          continue
        }
      }
      var def = RuleDefinition(
        name: name, sources: ruleSources, matcher: matcher, whereClauses: whereClauses,
        timestampField: tsField,
        timestampFormat: tsFormat, timezone: tz, event: event, link: link)
      def.timeSource = timeSource
      def.message = message
      do {
        out.append(try CompiledRule(def, library: PatternLibrary(custom: library.definitions)))
      } catch {
        issue(Self.node(for: error.field, in: item), "\(w): \(error.field): \(error.message)")
      }
    }
    return out
  }

  /// `when:`, `body:`, `message:` and `namespaces:` of a rule for queue sources.
  mutating func messageOptions(_ m: [String: Node], _ w: String) -> RuleDefinition.MessageOptions {
    var o = RuleDefinition.MessageOptions()
    if let n = m["when"],
      let pairs = mapping(
        n, "\(w): when",
        known: ["queue", "exchange", "routing_key", "type", "app_id", "content_type", "headers"])
    {
      var sel = MessageSelector()
      for (k, v) in pairs {
        if k == "headers" {
          if let h = stringMap(v, "\(w): when.headers") { sel.headers = h }
          continue
        }
        guard let s = string(v, "\(w): when.\(k)") else { continue }
        switch k {
        case "queue": sel.queue = s
        case "exchange": sel.exchange = s
        case "routing_key": sel.routingKey = s
        case "type": sel.type = s
        case "app_id": sel.appID = s
        default:
          if s.contains(";") {
            issue(
              v,
              "\(w): when.content_type is compared without parameters; write '\(s.split(separator: ";")[0])'"
            )
          }
          sel.contentType = s
        }
      }
      o.when = sel
    }
    if let n = m["body"], let s = string(n, "\(w): body") {
      if let f = BodyFormat(rawValue: s) {
        o.body = f
      } else {
        issue(
          n, "\(w): body: '\(s)' is not one of auto (by content type, the default), json, xml, text"
        )
      }
    }
    if let n = m["message"], let f = stringMap(n, "\(w): message") {
      o.fields = f.map { (capture: $0.0, pointer: $0.1) }
    }
    if let n = m["namespaces"], let f = stringMap(n, "\(w): namespaces") {
      for (prefix, uri) in f { o.namespaces[prefix] = uri }
      if m["xml"] == nil { issue(n, "\(w): namespaces applies to xml: rules only") }
    }
    return o
  }

  /// The node a dotted field path (`event.status`, `timestamp.format`) points at inside a rule.
  /// Keys may themselves contain dots (`attributes: {order.total: …}`): at each level the
  /// longest run of parts that names a key wins.
  static func node(for field: String, in rule: Node) -> Node {
    var current = rule
    let parts = field.split(separator: ".").map(String.init)
    var i = 0
    outer: while i < parts.count {
      for j in stride(from: parts.count, to: i, by: -1) {
        let key = parts[i..<j].joined(separator: ".")
        if let next = current.mapping?.first(where: { $0.key.string == key })?.value {
          current = next
          i = j
          continue outer
        }
      }
      break
    }
    return current
  }

  mutating func eventTemplate(_ node: Node, _ w: String) -> EventTemplate? {
    guard
      let pairs = mapping(
        node, "\(w): event",
        known: ["order_id", "alias", "kind", "status", "step", "name", "user_id", "attributes"])
    else { return nil }
    var e = EventTemplate()
    for (k, v) in pairs {
      switch k {
      case "alias":
        guard let a = mapping(v, "\(w): event.alias", known: ["kind", "key"]) else { continue }
        for (ak, av) in a {
          if ak == "kind" { e.aliasKind = string(av, "\(w): event.alias.kind") }
          if ak == "key" { e.aliasKey = string(av, "\(w): event.alias.key") }
        }
      case "attributes":
        e.attributes = (stringMap(v, "\(w): event.attributes") ?? []).map {
          (key: $0.0, value: $0.1)
        }
      default:
        let s = string(v, "\(w): event.\(k)")
        switch k {
        case "order_id": e.orderID = s
        case "kind": e.kind = s
        case "status": e.status = s
        case "step": e.step = s
        case "name": e.name = s
        default: e.userID = s
        }
      }
    }
    return e
  }

  mutating func exporter(_ node: Node, default base: ExporterConfiguration) -> ExporterConfiguration
  {
    var config = base
    guard
      let pairs = mapping(
        node, "exporter",
        known: [
          "endpoint", "file", "compression", "headers", "timeout", "retry", "max_batch_spans",
        ])
    else { return config }
    let m = Dictionary(pairs, uniquingKeysWith: { a, _ in a })
    if m["endpoint"] != nil && m["file"] != nil {
      issue(node, "exporter: give endpoint or file, not both")
    }
    if let e = m["endpoint"], let url = string(e, "exporter.endpoint") {
      if url.hasPrefix("http://") || url.hasPrefix("https://"), URL(string: url)?.host != nil {
        config.target = .http(url)
      } else {
        issue(
          e,
          "exporter.endpoint: '\(url)' is not an http(s) URL; Jaeger's OTLP/HTTP endpoint is http://jaeger:4318/v1/traces"
        )
      }
    }
    if let f = m["file"], let path = string(f, "exporter.file") {
      config.target = .file(resolve(path))
    }
    if let c = m["compression"], let s = string(c, "exporter.compression") {
      switch s {
      case "gzip": config.gzip = true
      case "none": config.gzip = false
      default: issue(c, "exporter.compression: '\(s)' is not supported; use gzip or none")
      }
    }
    if let h = m["headers"], let pairs = stringMap(h, "exporter.headers") { config.headers = pairs }
    if let t = m["timeout"], let d = duration(t, "exporter.timeout") {
      config.timeout = Double(d) / 1e9
    }
    if let n = m["max_batch_spans"], let v = positiveInt(n, "exporter.max_batch_spans") {
      config.maxBatchSpans = v
    }
    if let r = m["retry"],
      let rp = mapping(
        r, "exporter.retry", known: ["initial_interval", "max_interval", "max_elapsed"])
    {
      for (k, v) in rp {
        guard let d = duration(v, "exporter.retry.\(k)") else { continue }
        let s = Double(d) / 1e9
        switch k {
        case "initial_interval": config.retry.initialInterval = s
        case "max_interval": config.retry.maxInterval = s
        default: config.retry.maxElapsed = s
        }
      }
    }
    return config
  }
}
