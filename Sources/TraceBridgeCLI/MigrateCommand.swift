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
      path, a migration failed (rolled back: the store stays at the one before), or another \
      process is migrating the store; 2 the configuration is invalid, or a newer tracebridge \
      has migrated the store (migrations this version does not know; every command refuses \
      such a store with 2). With --config the configuration must load as for run (its \
      environment variables set); --store needs none.
      """)

  @OptionGroup var options: ConfigOptions

  @Option(
    help: ArgumentHelp(
      "The state store (default: the configuration's store.path; with it, no configuration is read).",
      valueName: "path"))
  var store: String?

  @Flag(
    help:
      "List the applied and the pending migrations; change nothing (the store is opened read-only)."
  )
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
        throw StateStore.newerVersionError(path: path, unknown: status.unknown)
      }
      print(
        "store \(path): \(status.applied.count) migrations applied, \(status.pending.count) pending"
      )
      if dryRun {
        for name in status.applied { print("  applied \(name)") }
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
