import ArgumentParser
import Foundation
import TraceBridge

struct Migrate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Bring the state store's schema up to this version, then exit.",
    discussion: """
      A new version may change the store's schema. `run`, `backfill` and `timeline` apply the \
      missing migrations whenever they open the store, but some rewrite a whole table (v7 \
      took 11 s for 1,000,000 events), and a service migrating on start refuses /healthz and \
      /readyz until it is done. After the backup, with the service stopped, run this first, as \
      the service's user: it applies each pending migration and says how long it took. With \
      --dry-run it only lists them.

      Exit status: 0 the store is current (with --dry-run: it was read); 1 no store at the \
      path, a newer tracebridge has migrated it (migrations this version does not know), or a \
      migration failed (rolled back: the store stays at the one before); 2 the configuration \
      is invalid.
      """)

  @OptionGroup var options: ConfigOptions

  @Option(
    help: ArgumentHelp(
      "The state store (default: the configuration's store.path; with it, no configuration is read).",
      valueName: "path"))
  var store: String?

  @Flag(help: "List the applied and pending migrations; change nothing.")
  var dryRun = false

  func run() throws {
    let path: String
    if let store {
      bootstrapLogging(level: options.level(default: .warning))
      path = store
    } else {
      path = try options.load().storePath
    }
    try reportingErrors {
      let status = try StateStore.migrationStatus(path: path)
      if !status.unknown.isEmpty {
        throw CLIError(
          "\(path): migrated by a newer tracebridge (migrations this version does not know: "
            + "\(status.unknown.joined(separator: ", "))); run that version, or restore the "
            + "backup taken before the upgrade")
      }
      print(
        "store \(path): \(status.applied.count) migrations applied, \(status.pending.count) pending"
      )
      if dryRun {
        for name in status.pending { print("  pending \(name)") }
        return
      }
      try StateStore.migrate(path: path) { name, seconds in
        print("  applied \(name) in \(String(format: "%.1f", seconds)) s")
      }
      print("the store is current (\(status.applied.count + status.pending.count) migrations)")
    }
  }
}
