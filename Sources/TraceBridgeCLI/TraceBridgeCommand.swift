import ArgumentParser
import Foundation
import Logging
import TraceBridge

@main
struct TraceBridgeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tracebridge",
    abstract: "Turns order events from logs into one OpenTelemetry trace per order.",
    discussion: """
      TraceBridge parses the logs of Shop, CRM, MES and other systems with rules you write,
      joins the events by orderId (and by aliases such as MES job ids), and exports one
      trace per order over OTLP to Jaeger.

      Start with the bundled example:
        tracebridge rules check --config examples/tracebridge.yaml
        tracebridge backfill --config examples/tracebridge.yaml
        tracebridge timeline --config examples/tracebridge.yaml
        tracebridge run --config examples/tracebridge.yaml      (live mode)

      Exit status: 0 success, 1 runtime error, 2 bad configuration or usage (or a \
      state store a newer version migrated), 3 some spans could not be exported, 4 some \
      input could not be read.
      """,
    version: "0.1.0",
    subcommands: [Run.self, Backfill.self, Rules.self, Timeline.self, Migrate.self]
  )
}

/// Options every command that reads the configuration shares.
struct ConfigOptions: ParsableArguments {
  @Option(
    name: .shortAndLong,
    help: ArgumentHelp(
      "The configuration file (see docs/configuration.md).",
      discussion: "Default: $TRACEBRIDGE_CONFIG, else ./tracebridge.yaml.", valueName: "file"))
  var config: String?

  @Option(
    help:
      "Log level: trace, debug, info, notice, warning, error, critical (default: warning; info for run)."
  )
  var logLevel: Logger.Level?

  /// The level asked for, else `fallback`.
  func level(default fallback: Logger.Level) -> Logger.Level { logLevel ?? fallback }

  func load(defaultLevel: Logger.Level = .warning) throws -> TraceBridge.Configuration {
    bootstrapLogging(level: logLevel ?? defaultLevel)
    let path =
      config ?? ProcessInfo.processInfo.environment["TRACEBRIDGE_CONFIG"] ?? "tracebridge.yaml"
    do {
      return try ConfigurationLoader.load(file: path)
    } catch {
      printError(error.description)
      throw ExitCode(2)
    }
  }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

nonisolated(unsafe) private var loggingBootstrapped = false

func bootstrapLogging(level: Logger.Level) {
  guard !loggingBootstrapped else { return }
  loggingBootstrapped = true
  LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = level
    return handler
  }
}

func printError(_ message: String) {
  fflush(nil)  // all output streams: stdout lines first, then the message
  FileHandle.standardError.write(Data("tracebridge: \(message)\n".utf8))
}

/// Runs `body`, turning `CLIError`s into a message and their exit code.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
  do {
    return try body()
  } catch let error as CLIError {
    printError(error.description)
    throw ExitCode(error.exitCode)
  } catch let error as ExitCode {
    throw error
  } catch {
    printError("\(error)")
    throw ExitCode(1)
  }
}
