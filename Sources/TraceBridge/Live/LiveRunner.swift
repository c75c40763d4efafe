import Exporters
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `tracebridge run`: the tailing pipeline, the spool's sender and the operations endpoints
/// (/healthz, /readyz, /metrics) as services of one `ServiceGroup`. SIGTERM or SIGINT stops
/// reading, commits, gives the sender a few seconds to drain the spool, and returns; what is
/// left in the spool is sent after the next start.
public final class LiveRunner: Sendable {
  public let configuration: Configuration
  public let metrics = LiveMetrics()
  let pipeline: LivePipeline
  let sender: SpoolSender
  let checkpointer: WALCheckpointer
  let storePath: String
  private let logger: Logger
  private let drainSeconds: Double

  /// - Parameters:
  ///   - export: overrides the configuration's exporter (`file:` appends in live mode).
  ///   - drainSeconds: how long a clean shutdown waits for the spool to empty.
  public init(
    configuration: Configuration, export: ExportTarget? = nil, storePath: String? = nil,
    drainSeconds: Double = 3,
    logger: Logger = Logger(label: "tracebridge.run")
  ) throws {
    self.configuration = configuration
    self.logger = logger
    self.drainSeconds = drainSeconds
    let path = storePath ?? configuration.storePath
    self.storePath = path
    let store: StateStore
    do {
      store = try StateStore(path: path)
    } catch let error as CLIError {
      throw error  // a store a newer version migrated: it names the path and exits 2
    } catch {
      throw CLIError("cannot open the state store \(path): \(error)", exitCode: 1)
    }
    let transport: any RequestTransport
    do {
      transport = try configuration.exporter.transport(
        for: export ?? configuration.exporter.target, appendToFile: true, logger: logger)
    } catch {
      throw CLIError("exporter: \(error)", exitCode: 2)
    }
    let spool = SpoolCounters()
    sender = SpoolSender(
      store: store, transport: transport, maxBatchSpans: configuration.exporter.maxBatchSpans,
      metrics: metrics,
      spool: spool, refusedDirectory: configuration.dataDirectory + "/export-refused",
      logger: logger)
    do {
      checkpointer = try WALCheckpointer(store: store, logger: logger)
    } catch {
      throw CLIError("cannot open the state store \(path): \(error)", exitCode: 1)
    }
    let sender = sender
    let intake = try AMQPIntake(configuration: configuration, metrics: metrics, logger: logger)
    pipeline = LivePipeline(
      configuration: configuration, store: store, metrics: metrics, spool: spool, intake: intake,
      format: transport.format, logger: logger, wake: { sender.wake() })
  }

  /// Runs until SIGTERM/SIGINT (then returns) or a fatal error (then throws).
  public func run() async throws {
    guard let (host, port) = ConfigurationLoader.parseListen(configuration.live.listen) else {
      throw CLIError("live.listen '\(configuration.live.listen)' is not HOST:PORT", exitCode: 2)
    }
    let router = Router()
    let pipeline = pipeline
    let sender = sender
    let metrics = metrics
    router.get("/healthz") { _, _ in "ok\n" }
    router.get("/readyz") { _, _ -> Response in
      let ready = pipeline.ready
      return Response(
        status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
        body: .init(byteBuffer: ByteBuffer(string: ready ? "ready\n" : "not ready\n")))
    }
    router.get("/metrics") { _, _ -> Response in
      sender.updateGauges()
      return Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
    }
    let app = Application(
      router: router,
      configuration: .init(address: .hostname(host, port: port), serverName: "tracebridge"),
      logger: logger)
    let service = PipelineService(
      pipeline: pipeline, sender: sender, checkpointer: checkpointer, drainSeconds: drainSeconds,
      logger: logger)
    let group = ServiceGroup(
      configuration: .init(
        services: [
          .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup),
          .init(service: app),
        ], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
  }
}

/// The pipeline and sender threads as one lifecycle service.
struct PipelineService: Service {
  let pipeline: LivePipeline
  let sender: SpoolSender
  let checkpointer: WALCheckpointer
  let drainSeconds: Double
  let logger: Logger

  func run() async throws {
    // The pipeline thread sets its own policy (and its commit writer and AMQP consumers inherit
    // it); these two are started from here, a thread of Swift's cooperative pool.
    let scheduling = pipeline.configuration.live.cpuScheduling
    try checkpointer.start(scheduling: scheduling)
    defer { checkpointer.stop() }
    sender.start(scheduling: scheduling)
    pipeline.start()
    while !Task.isShuttingDownGracefully && !Task.isCancelled && pipeline.isRunning {
      try? await Task.sleep(for: .milliseconds(100))
    }
    let failure = pipeline.stop()
    if failure == nil {
      logger.notice("stopping: state committed; sending what the spool holds")
      sender.drain(within: drainSeconds)
    }
    sender.stop()
    if let failure { throw CLIError("the live pipeline stopped: \(failure)", exitCode: 1) }
    logger.notice("stopped")
  }
}
