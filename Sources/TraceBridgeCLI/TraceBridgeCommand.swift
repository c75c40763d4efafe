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

  /// ArgumentParser's own `main`, except that a usage error (an unknown option, a bad value)
  /// exits 2 as `--help` says — ArgumentParser exits 64 — so that the systemd unit, which does
  /// not restart on 2, does not restart a service whose command line is wrong forever.
  static func main() async {
    do {
      var command = try parseAsRoot()
      if var command = command as? AsyncParsableCommand {
        try await command.run()
      } else {
        try command.run()
      }
    } catch {
      if exitCode(for: error) == .validationFailure {
        FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
        Foundation.exit(2)
      }
      exit(withError: error)
    }
  }
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
      "Log level: trace, debug, info, notice, warning, error, critical (default: warning; info for run).",
    transform: ConfigOptions.level(named:))
  var logLevel: Logger.Level?

  /// A `--log-level` value (parsed here rather than by a conformance of swift-log's type to
  /// the argument parser's protocol, which neither package declares).
  static func level(named name: String) throws -> Logger.Level {
    guard let level = Logger.Level(rawValue: name) else {
      throw ValidationError(
        "'\(name)' is not a log level: trace, debug, info, notice, warning, error or critical")
    }
    return level
  }

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
