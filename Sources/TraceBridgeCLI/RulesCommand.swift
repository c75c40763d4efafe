import ArgumentParser
import Foundation
import TraceBridge

struct Rules: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Check the configuration and test parsing rules on sample lines.",
    subcommands: [Check.self, Test.self])

  struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Validate the configuration: every error with its file, line and what to change.")

    @OptionGroup var options: ConfigOptions

    @Flag(
      help:
        "Print each source's rule patterns with every %{NAME} expanded, as JSON (for grep -P, rg -P)."
    )
    var printPatterns = false

    func run() throws {
      let config = try options.load()
      if printPatterns {
        var object: [String: [[String: String]]] = [:]
        for source in config.sources {
          object[source.name] = config.rules(for: source.name).rules.map { rule in
            var entry = ["rule": rule.name, "kind": rule.matcherKind]
            if let p = rule.expandedPattern { entry["pattern"] = p }
            return entry
          }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(object), as: UTF8.self))
        return
      }
      print(
        "\(config.file): OK — \(config.sources.count) sources, \(config.rules.count) rules, exporter \(config.exporter.target)"
      )
    }
  }

  struct Test: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Show for each line or sample message which rule matched and the event it makes.",
      discussion: """
        Prints one JSON object a record: the rule that matched and the event, or
        "unmatched": true with the text. A summary (matches per rule, unmatched line
        numbers) goes to standard error.

        Sample messages of a queue source: --message BODY (repeatable) reads each body
        file (JSON, XML or text, in any charset) with its AMQP properties and headers
        from BODY.amqp.json beside it, or from --properties FILE for a single message:
          {"properties": {"content_type": "application/xml", "timestamp": 1764662400,
                          "routing_key": "mes.job.started", "message_id": "m-1"},
           "headers": {"x-kind": "job"}}
        Each line then shows the event the message makes, or "dead_letter" with the
        reason it would be dead-lettered, and the charset the body was read in.

        Golden mode: --expect FILE compares the output with FILE and exits 1 on any
        difference, so rule tests can run in CI; --update writes FILE instead.

        Examples:
          tracebridge rules test -c tracebridge.yaml samples/mes/mes.log
          tail -n 100 /var/log/mes/mes.log | tracebridge rules test -c tracebridge.yaml --source mes -
          tracebridge rules test -c tracebridge.yaml --expect tests/mes.golden.jsonl samples/mes.log
          tracebridge rules test -c tracebridge.yaml --source mes-bus --message samples/job-started.xml
        """)

    @OptionGroup var options: ConfigOptions

    @Option(
      help:
        "The source whose rules to apply (default: the source whose paths claim the file's name).")
    var source: String?

    @Option(
      help: ArgumentHelp(
        "Compare the output with this golden file; exit 1 on a difference.", valueName: "file"))
    var expect: String?

    @Flag(help: "With --expect: write the golden file instead of comparing.")
    var update = false

    @Option(
      name: .customLong("message"),
      help: ArgumentHelp(
        "A sample message body of a queue source (repeatable); properties and headers from <body>.amqp.json.",
        valueName: "body"))
    var messages: [String] = []

    @Option(
      help: ArgumentHelp(
        "With one --message: its properties and headers (JSON).", valueName: "file"))
    var properties: String?

    @Argument(
      help: ArgumentHelp("The sample log file, or - for standard input.", valueName: "logfile"))
    var logfile: String = "-"

    func validate() throws {
      if properties != nil && messages.count != 1 {
        throw ValidationError(
          "--properties goes with exactly one --message; for several, put each message's properties in <body>.amqp.json"
        )
      }
    }

    func run() throws {
      let config = try options.load()
      let tester = RuleTester(configuration: config)
      let result = try reportingErrors {
        if !messages.isEmpty {
          let source = try tester.messageSource(named: self.source)
          return try tester.runMessages(paths: messages, properties: properties, source: source)
        }
        let source = try tester.source(for: logfile, named: self.source)
        return try tester.run(path: logfile, source: source)
      }
      var summary = "\(result.records) records: "
      summary += result.matched.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(
        separator: ", ")
      summary += "; \(result.unmatchedLines.count) unmatched"
      if !result.unmatchedLines.isEmpty {
        summary +=
          " (lines \(result.unmatchedLines.prefix(20).map(String.init).joined(separator: ", "))\(result.unmatchedLines.count > 20 ? ", …" : ""))"
      }
      if !result.rejectedLines.isEmpty {
        summary +=
          "; \(result.rejectedLines.count) rejected ("
          + result.rejectedLines.prefix(10).map { "line \($0.line): \($0.reason)" }.joined(
            separator: ", ") + ")"
      }
      guard let expect else {
        for line in result.lines { print(line) }
        printError(summary)
        return
      }
      if update {
        try reportingErrors {
          try (result.lines.joined(separator: "\n") + "\n").write(
            toFile: expect, atomically: true, encoding: .utf8)
        }
        printError("wrote \(result.lines.count) records to \(expect)")
        return
      }
      guard let text = try? String(contentsOfFile: expect, encoding: .utf8) else {
        printError("cannot read the golden file \(expect); create it with --update")
        throw ExitCode(2)
      }
      let expected = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
      let diffs = RuleTester.differences(actual: result.lines, expected: expected)
      if diffs.isEmpty {
        print("\(expect): all \(result.lines.count) records as expected")
        return
      }
      for d in diffs.prefix(20) { print(d) }
      printError(
        "\(diffs.count) of \(max(result.lines.count, expected.count)) records differ from \(expect)"
      )
      throw ExitCode(1)
    }
  }
}
