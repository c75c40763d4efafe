// swift-tools-version: 6.0
import PackageDescription

let package = Package(
  name: "TraceBridge",
  platforms: [.macOS(.v14)],
  products: [
    .executable(name: "tracebridge", targets: ["TraceBridgeCLI"])
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
  ],
  targets: [
    // C shims: only the module map and a header; the Swift wrappers own every pointer.
    .systemLibrary(
      name: "CPCRE2", pkgConfig: "libpcre2-8",
      providers: [.apt(["libpcre2-dev"])]),
    .systemLibrary(
      name: "CZlib", pkgConfig: "zlib",
      providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(
      name: "CRabbitMQ", pkgConfig: "librabbitmq",
      providers: [.apt(["librabbitmq-dev"])]),
    .systemLibrary(
      name: "CSQLiteConfig", pkgConfig: "sqlite3",
      providers: [.apt(["libsqlite3-dev"])]),
    .systemLibrary(
      name: "CLibXML2", pkgConfig: "libxml-2.0",
      providers: [.apt(["libxml2-dev"])]),

    // Event, span and id types. No I/O; every other module depends on it.
    .target(
      name: "TraceBridgeCore",
      dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
    // Rules, decoding, timestamps, multiline, reading files, XML bodies.
    .target(
      name: "LogParsers",
      dependencies: ["TraceBridgeCore", "CPCRE2", "CZlib", "CLibXML2"]),
    // The RabbitMQ connection (rabbitmq-c): consuming, acknowledging, dead-lettering.
    .target(name: "AMQPConsumer", dependencies: ["TraceBridgeCore", "CRabbitMQ"]),
    // OTLP encoding and transport, file output.
    .target(
      name: "Exporters",
      dependencies: [
        "TraceBridgeCore", "CZlib",
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Logging", package: "swift-log"),
      ]),
    // Configuration, correlation, span synthesis, state store, backfill, live mode
    // (tailing pipeline, spool, operations endpoints).
    .target(
      name: "TraceBridge",
      dependencies: [
        "TraceBridgeCore", "LogParsers", "Exporters", "AMQPConsumer", "CSQLiteConfig",
        .product(name: "Yams", package: "Yams"),
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "GRDBSQLite", package: "GRDB.swift"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "HeapModule", package: "swift-collections"),
      ]),
    // The thin executable: parses arguments, starts the work.
    .executableTarget(
      name: "TraceBridgeCLI",
      dependencies: [
        "TraceBridge",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),

    .testTarget(name: "TraceBridgeCoreTests", dependencies: ["TraceBridgeCore"]),
    .testTarget(name: "LogParsersTests", dependencies: ["LogParsers"]),
    .testTarget(name: "ExportersTests", dependencies: ["Exporters"]),
    .testTarget(name: "AMQPConsumerTests", dependencies: ["AMQPConsumer"]),
    .testTarget(
      name: "TraceBridgeTests", dependencies: ["TraceBridge"],
      resources: [.copy("../Fixtures")]),
  ],
  swiftLanguageModes: [.v6]
)
