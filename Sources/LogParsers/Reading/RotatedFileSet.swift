import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The files of one log as rotation leaves them — `mes.log.3.gz`, `mes.log.2.gz`, `mes.log.1`,
/// `mes.log` (or `mes.log-20261123.gz`, …, `mes.log` with logrotate's `dateext`) — ordered
/// oldest first, so reading them in order reads the log in the order it was written.
public struct RotatedFileSet: Sendable, Equatable {
  /// The live file's name (`mes.log`), the set's identity within its directory.
  public var baseName: String
  public var directory: String
  /// Paths, oldest first.
  public var files: [String]

  /// Where a file stands in its rotated set.
  public enum Rank: Comparable, Sendable {
    /// `-YYYYMMDD[…]`: older than the numbered and live files, ordered by date.
    case dated(String)
    /// `.N`: higher is older.
    case numbered(Int)
    case live

    public static func < (a: Rank, b: Rank) -> Bool {
      switch (a, b) {
      case (.dated(let x), .dated(let y)): return x < y
      case (.dated, _): return true
      case (.numbered, .dated): return false
      case (.numbered(let x), .numbered(let y)): return x > y
      case (.numbered, .live): return true
      case (.live, _): return false
      }
    }
  }

  /// Splits a file name into the live file's name and the rotation rank:
  /// `mes.log.2.gz` → (`mes.log`, .numbered(2)).
  public static func rotation(of fileName: String) -> (base: String, rank: Rank) {
    var name = Substring(fileName)
    for suffix in [".gz", ".gzip"] where name.hasSuffix(suffix) {
      name = name.dropLast(suffix.count)
    }
    if let dot = name.lastIndex(of: "."), dot > name.startIndex {
      let tail = name[name.index(after: dot)...]
      if !tail.isEmpty, tail.count <= 6, tail.allSatisfy(\.isASCIIDigitCharacter), let n = Int(tail)
      {
        return (String(name[..<dot]), .numbered(n))
      }
    }
    if let dash = name.lastIndex(of: "-"), dash > name.startIndex {
      let tail = name[name.index(after: dash)...]
      if tail.count >= 8, tail.prefix(8).allSatisfy(\.isASCIIDigitCharacter),
        tail.dropFirst(8).allSatisfy({ $0.isASCIIDigitCharacter || $0 == "-" || $0 == "_" })
      {
        return (String(name[..<dash]), .dated(String(tail)))
      }
    }
    return (String(name), .live)
  }

  /// Groups `paths` into rotated sets (by directory and live name), each ordered oldest first;
  /// the sets are ordered by directory and name so the result does not depend on listing order.
  public static func group(_ paths: [String]) -> [RotatedFileSet] {
    var sets: [String: (base: String, dir: String, files: [(Rank, String)])] = [:]
    for path in paths {
      let url = URL(fileURLWithPath: path)
      let dir = url.deletingLastPathComponent().path
      let (base, rank) = rotation(of: url.lastPathComponent)
      let id = dir + "/" + base
      sets[id, default: (base, dir, [])].files.append((rank, path))
    }
    return sets.keys.sorted().map { id in
      let s = sets[id]!
      return RotatedFileSet(
        baseName: s.base, directory: s.dir,
        files: s.files.sorted { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }.map(\.1))
    }
  }

  /// True when `fileName`, with its rotation suffix removed, matches the shell glob `pattern`.
  public static func belongs(_ fileName: String, to pattern: String) -> Bool {
    if fnmatch(pattern, fileName, 0) == 0 { return true }
    return fnmatch(pattern, rotation(of: fileName).base, 0) == 0
  }

  /// The regular files under `path` (the path itself when it is a file), sorted.
  public static func listFiles(_ path: String) throws -> [String] {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
      throw FileSetError.notFound(path)
    }
    guard isDir.boolValue else { return [path] }
    guard let e = FileManager.default.enumerator(atPath: path) else {
      throw FileSetError.notFound(path)
    }
    var files: [String] = []
    while let rel = e.nextObject() as? String {
      let full = (path as NSString).appendingPathComponent(rel)
      var d: ObjCBool = false
      if FileManager.default.fileExists(atPath: full, isDirectory: &d), !d.boolValue,
        !URL(fileURLWithPath: rel).lastPathComponent.hasPrefix(".")
      {
        files.append(full)
      }
    }
    return files.sorted()
  }

  /// The files a configured glob (`/var/log/mes/mes.log*`) stands for, with their rotated siblings.
  public static func expand(glob: String) -> [String] {
    let url = URL(fileURLWithPath: glob)
    let dir = url.deletingLastPathComponent().path
    let pattern = url.lastPathComponent
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
    return names.filter { !$0.hasPrefix(".") && belongs($0, to: pattern) }.sorted()
      .map { (dir as NSString).appendingPathComponent($0) }
      .filter { p in
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: p, isDirectory: &d) && !d.boolValue
      }
  }
}

public enum FileSetError: Error, CustomStringConvertible {
  case notFound(String)
  public var description: String {
    switch self {
    case .notFound(let p): return "\(p): no such file or directory"
    }
  }
}

extension Character {
  fileprivate var isASCIIDigitCharacter: Bool { isASCII && isNumber }
}
