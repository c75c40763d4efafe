/// Reusable named sub-patterns in the spirit of grok: `%{NAME}` inserts a pattern,
/// `%{NAME:capture}` inserts it as the named group `capture`.
public struct PatternLibrary: Sendable {
  public static let builtins: [String: String] = [
    "TIMESTAMP_ISO8601":
      #"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?"#,
    "INT": #"[+-]?\d+"#,
    "NUMBER": #"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"#,
    "WORD": #"\w+"#,
    "NOTSPACE": #"\S+"#,
    "SPACE": #"\s*"#,
    "DATA": #".*?"#,
    "GREEDYDATA": #".*"#,
    "LOGLEVEL":
      #"(?:TRACE|TRC|DEBUG|DBG|INFO|INF|NOTICE|WARNING|WARN|WRN|ERROR|ERR|FATAL|FTL|CRITICAL|CRIT)"#,
    "UUID": #"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}"#,
  ]

  public private(set) var definitions: [String: String]

  /// The built-ins plus `custom` (a custom definition replaces a built-in of the same name).
  public init(custom: [String: String] = [:]) {
    definitions = Self.builtins.merging(custom) { _, new in new }
  }

  /// Replaces every `%{NAME}` / `%{NAME:capture}` in `pattern`, recursively.
  public func expand(_ pattern: String) throws(PatternError) -> String {
    try expand(pattern, chain: [])
  }

  private func expand(_ pattern: String, chain: [String]) throws(PatternError) -> String {
    guard pattern.contains("%{") else { return pattern }
    var out = ""
    var rest = Substring(pattern)
    while let start = rest.range(of: "%{") {
      out += rest[..<start.lowerBound]
      let after = rest[start.upperBound...]
      guard let close = after.firstIndex(of: "}") else {
        throw .malformedReference(String(rest[start.lowerBound...].prefix(40)))
      }
      let body = after[..<close]
      let parts = body.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
      let name = String(parts[0])
      guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
        throw .malformedReference("%{\(body)}")
      }
      guard let definition = definitions[name] else {
        throw .unknownSubPattern(name: name, known: definitions.keys.sorted())
      }
      if chain.contains(name) { throw .recursiveSubPattern(chain: chain + [name]) }
      let inner = try expand(definition, chain: chain + [name])
      if parts.count == 2 {
        let capture = parts[1]
        guard !capture.isEmpty, capture.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }),
          !(capture.first!.isNumber)
        else { throw .malformedReference("%{\(body)}") }
        out += "(?<\(capture)>\(inner))"
      } else {
        out += "(?:\(inner))"
      }
      rest = after[after.index(after: close)...]
    }
    out += rest
    return out
  }
}
