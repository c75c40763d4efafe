import ArgumentParser
import Exporters
import Foundation
import Logging
import TraceBridge

struct Run: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Tail the configured logs and export each order's spans as they happen (live mode).",
    discussion: """
      Follows every configured source's files: new files, rotation by rename (x.log ->
      x.log.1 -> x.log.2.gz), copytruncate, truncation and deletion. Files are known by a
      fingerprint of their first line, so a rotated file is resumed where it was left and a
      file that reappears gzipped is not read again.

      Spans are committed to a durable spool in the state store together with the file
      checkpoints and the order state, then sent to the exporter with OTLP retries for as
      long as it takes. Killing the process at any moment loses nothing; a restart re-sends
      at most spans that were already sent, byte for byte the same.

      Sources with amqp: consume their RabbitMQ queue (see docs/configuration.md): a message
      is acknowledged once its spans are committed; one no rule can map goes to the queue's
      dead-letter queue with the reason in the x-tracebridge-reason header.

      Serves /healthz, /readyz and /metrics (Prometheus) on live.listen (127.0.0.1:9464).
      SIGTERM or Ctrl-C: commits, sends what it can for a few seconds, and exits 0.

      Examples:
        tracebridge run -c /etc/tracebridge/tracebridge.yaml
        tracebridge run -c tracebridge.yaml --export http://jaeger:4318/v1/traces --listen 0.0.0.0:9464
      """)

  @OptionGroup var options: ConfigOptions

  @Option(
    help: ArgumentHelp(
      "Where spans go, overriding the configuration's exporter.",
      discussion:
        "http(s)://host:4318/v1/traces (OTLP/HTTP protobuf), file:PATH (OTLP JSON lines, appended), or discard.",
      valueName: "url"))
  var export: String?

  @Option(
    help: ArgumentHelp(
      "Serve /healthz, /readyz and /metrics here, overriding live.listen.", valueName: "host:port"))
  var listen: String?

  @Option(
    help: ArgumentHelp(
      "The state store (checkpoints, order state, spool); default: the configuration's store.path.",
      valueName: "path"))
  var store: String?

  @Option(
    help: ArgumentHelp(
      "How long a clean shutdown waits for the spool to drain, in seconds.", valueName: "seconds"))
  var drainTimeout: Double = 3

  func run() async throws {
    var configuration = try options.load(defaultLevel: .info)
    if let listen {
      guard ConfigurationLoader.parseListen(listen) != nil else {
        printError("--listen '\(listen)' is not HOST:PORT; write e.g. 127.0.0.1:9464")
        throw ExitCode(2)
      }
      configuration.live.listen = listen
    }
    let target: ExportTarget?
    do {
      target = try export.map { try ExportTarget(parsing: $0) }
    } catch {
      printError("--export: \(error)")
      throw ExitCode(2)
    }
    let runner: LiveRunner
    do {
      runner = try LiveRunner(
        configuration: configuration, export: target, storePath: store, drainSeconds: drainTimeout)
    } catch let error as CLIError {
      printError(error.description)
      throw ExitCode(error.exitCode)
    }
    do {
      try await runner.run()
    } catch let error as CLIError {
      printError(error.description)
      throw ExitCode(error.exitCode)
    } catch {
      printError("\(error)")
      throw ExitCode(1)
    }
  }
}
