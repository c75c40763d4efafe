import Foundation
import LogParsers
import XCTest

/// Rotation suffixes (`.1`, `.2.gz`, `-20261124.gz`), ordering oldest first, and which files a
/// configured path stands for.
final class RotatedFileSetTests: XCTestCase {
  // MARK: rotation(of:)

  private func rotation(_ name: String) -> (String, RotatedFileSet.Rank) {
    let r = RotatedFileSet.rotation(of: name)
    return (r.base, r.rank)
  }

  func testLiveFileHasNoRotationSuffix() {
    XCTAssertTrue(rotation("mes.log") == ("mes.log", .live))
    XCTAssertTrue(rotation("mes") == ("mes", .live))
  }

  func testNumberedSuffixIsStripped() {
    XCTAssertTrue(rotation("mes.log.1") == ("mes.log", .numbered(1)))
    XCTAssertTrue(rotation("mes.log.12") == ("mes.log", .numbered(12)))
  }

  func testNumberedGzipSuffixIsStripped() {
    XCTAssertTrue(rotation("mes.log.2.gz") == ("mes.log", .numbered(2)))
    XCTAssertTrue(rotation("mes.log.10.gz") == ("mes.log", .numbered(10)))
  }

  func testDateextSuffixIsStripped() {
    XCTAssertTrue(rotation("mes.log-20261124.gz") == ("mes.log", .dated("20261124")))
    XCTAssertTrue(rotation("mes.log-20261124") == ("mes.log", .dated("20261124")))
    XCTAssertTrue(rotation("mes.log-2026112413") == ("mes.log", .dated("2026112413")))
  }

  func testDotsAndNumbersInsideTheLiveNameAreKept() {
    // A year inside the name is not a rotation number: the name does not end in digits.
    XCTAssertTrue(rotation("app.2026.log") == ("app.2026.log", .live))
    XCTAssertTrue(rotation("app-2026-11-24.log") == ("app-2026-11-24.log", .live))
    XCTAssertTrue(rotation("app.2026.log.3.gz") == ("app.2026.log", .numbered(3)))
  }

  func testShortDashNumberIsNotADate() {
    XCTAssertTrue(rotation("mes-v2-1234.log") == ("mes-v2-1234.log", .live))
    XCTAssertTrue(rotation("mes.log-1234") == ("mes.log-1234", .live))
  }

  func testGzippedLiveNameIsTheLiveNameCompressed() {
    XCTAssertTrue(rotation("mes.log.gz") == ("mes.log", .live))
  }

  func testHiddenFileWithNumberIsNotRotated() {
    XCTAssertTrue(rotation(".1") == (".1", .live))
  }

  // MARK: Rank order

  func testRanksOrderDatedThenHigherNumbersThenLive() {
    let ranks: [RotatedFileSet.Rank] = [
      .live, .numbered(1), .dated("20261124"), .numbered(3), .dated("20261123"),
    ]
    XCTAssertEqual(
      ranks.sorted(), [.dated("20261123"), .dated("20261124"), .numbered(3), .numbered(1), .live])
  }

  // MARK: group(_:)

  func testNumberedFilesAreOrderedOldestFirst() {
    let sets = RotatedFileSet.group([
      "/var/log/mes/mes.log", "/var/log/mes/mes.log.1", "/var/log/mes/mes.log.3.gz",
      "/var/log/mes/mes.log.10.gz", "/var/log/mes/mes.log.2.gz",
    ])
    XCTAssertEqual(sets.count, 1)
    XCTAssertEqual(sets.first?.baseName, "mes.log")
    XCTAssertEqual(sets.first?.directory, "/var/log/mes")
    XCTAssertEqual(
      sets.first?.files,
      [
        "/var/log/mes/mes.log.10.gz", "/var/log/mes/mes.log.3.gz", "/var/log/mes/mes.log.2.gz",
        "/var/log/mes/mes.log.1", "/var/log/mes/mes.log",
      ])
  }

  func testDatedFilesAreOrderedByDateBeforeTheLiveFile() {
    let sets = RotatedFileSet.group([
      "/l/mes.log", "/l/mes.log-20261124.gz", "/l/mes.log-20261122.gz", "/l/mes.log-20261123",
    ])
    XCTAssertEqual(sets.count, 1)
    XCTAssertEqual(
      sets.first?.files,
      ["/l/mes.log-20261122.gz", "/l/mes.log-20261123", "/l/mes.log-20261124.gz", "/l/mes.log"])
  }

  func testFilesAreGroupedByDirectoryAndLiveName() {
    let sets = RotatedFileSet.group([
      "/b/shop.log.1", "/a/mes.log", "/b/mes.log.1", "/a/mes.log.1", "/b/shop.log",
      "/a/app.2026.log",
    ])
    XCTAssertEqual(sets.map(\.directory), ["/a", "/a", "/b", "/b"])
    XCTAssertEqual(sets.map(\.baseName), ["app.2026.log", "mes.log", "mes.log", "shop.log"])
    XCTAssertEqual(sets[1].files, ["/a/mes.log.1", "/a/mes.log"])
    XCTAssertEqual(sets[2].files, ["/b/mes.log.1"], "a set without its live file is still a set")
    XCTAssertEqual(sets[3].files, ["/b/shop.log.1", "/b/shop.log"])
  }

  func testGroupingDoesNotDependOnListingOrder() {
    let paths = ["/l/mes.log.2.gz", "/l/mes.log", "/l/crm.log", "/l/mes.log.1", "/l/crm.log.1"]
    XCTAssertEqual(RotatedFileSet.group(paths), RotatedFileSet.group(paths.reversed()))
    XCTAssertEqual(RotatedFileSet.group(paths), RotatedFileSet.group(paths.sorted()))
  }

  // MARK: belongs(_:to:)

  func testRotatedSiblingsBelongToTheLiveFilesName() {
    for name in ["mes.log", "mes.log.1", "mes.log.2.gz", "mes.log-20261124.gz"] {
      XCTAssertTrue(RotatedFileSet.belongs(name, to: "mes.log"), name)
    }
    for name in ["crm.log", "mes.log.bak", "mes.log.old.gz", "xmes.log.1", "mes.log2"] {
      XCTAssertFalse(RotatedFileSet.belongs(name, to: "mes.log"), name)
    }
  }

  func testGlobPatternsMatchTheNameWithoutItsRotationSuffix() {
    XCTAssertTrue(RotatedFileSet.belongs("mes.log.3.gz", to: "*.log"))
    XCTAssertTrue(RotatedFileSet.belongs("mes-node1.log-20261124.gz", to: "mes-*.log"))
    XCTAssertTrue(RotatedFileSet.belongs("app.2026.log", to: "app.*.log"))
    XCTAssertTrue(RotatedFileSet.belongs("mes.log.1", to: "mes.lo?"))
    XCTAssertTrue(RotatedFileSet.belongs("mes.log.1", to: "mes.log*"))
    XCTAssertTrue(RotatedFileSet.belongs("mes1.log.2", to: "mes[0-9].log"))
    XCTAssertFalse(RotatedFileSet.belongs("crm.txt.1", to: "*.log"))
    XCTAssertFalse(RotatedFileSet.belongs("mesA.log.2", to: "mes[0-9].log"))
  }

  // MARK: Files on disk

  func testExpandListsTheLiveFileAndItsRotatedSiblingsOnly() throws {
    let dir = FileManager.default.temporaryDirectory
      .appendingPathComponent("RotatedFileSetTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    for name in [
      "mes.log", "mes.log.1", "mes.log.2.gz", "mes.log-20261124.gz", "crm.log", ".mes.log.swp",
    ] {
      try Data("x\n".utf8).write(to: dir.appendingPathComponent(name))
    }
    try FileManager.default.createDirectory(
      at: dir.appendingPathComponent("mes.log.3"), withIntermediateDirectories: true)

    let found = RotatedFileSet.expand(glob: dir.appendingPathComponent("mes.log").path)
    XCTAssertEqual(
      found.map { URL(fileURLWithPath: $0).lastPathComponent },
      ["mes.log", "mes.log-20261124.gz", "mes.log.1", "mes.log.2.gz"])
    XCTAssertEqual(
      RotatedFileSet.group(found).first?.files.map { URL(fileURLWithPath: $0).lastPathComponent },
      ["mes.log-20261124.gz", "mes.log.2.gz", "mes.log.1", "mes.log"])
    XCTAssertEqual(
      RotatedFileSet.expand(glob: dir.appendingPathComponent("nothing/*.log").path), [])
  }

  func testListFilesGivesRegularFilesUnderADirectorySortedAndSkipsHiddenOnes() throws {
    let dir = FileManager.default.temporaryDirectory
      .appendingPathComponent("RotatedFileSetTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(
      at: dir.appendingPathComponent("2026-11"), withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    for name in ["b.log", "a.log.1", ".hidden", "2026-11/mes.log.3.gz"] {
      try Data("x\n".utf8).write(to: dir.appendingPathComponent(name))
    }
    let files = try RotatedFileSet.listFiles(dir.path)
    XCTAssertEqual(
      files,
      ["2026-11/mes.log.3.gz", "a.log.1", "b.log"].map { dir.appendingPathComponent($0).path })
    let single = dir.appendingPathComponent("b.log").path
    XCTAssertEqual(try RotatedFileSet.listFiles(single), [single])
    XCTAssertThrowsError(try RotatedFileSet.listFiles(dir.appendingPathComponent("missing").path))
  }
}
