import Foundation
import TraceBridgeCore
import XCTest

final class CPUSchedulingTests: XCTestCase {
  /// On a thread of its own (the policy stays with the thread): batch is set, a thread started
  /// from it inherits it, and normal sets it back.
  func testBatchIsSetInheritedAndUndone() throws {
    #if os(Linux)
      let done = DispatchSemaphore(value: 0)
      nonisolated(unsafe) var seen: [String] = []
      let thread = Thread {
        let before = CPUScheduling.currentPolicy()
        let problem = CPUScheduling.batch.applyToCurrentThread()
        let after = CPUScheduling.currentPolicy()
        nonisolated(unsafe) var child: Int32 = -2
        let childDone = DispatchSemaphore(value: 0)
        let c = Thread {
          child = CPUScheduling.currentPolicy()
          childDone.signal()
        }
        c.start()
        childDone.wait()
        let undone = CPUScheduling.normal.applyToCurrentThread()
        seen = [
          "\(before)", problem ?? "ok", "\(after)", "\(child)", undone ?? "ok",
          "\(CPUScheduling.currentPolicy())",
        ]
        done.signal()
      }
      thread.start()
      done.wait()
      XCTAssertEqual(seen, ["0", "ok", "3", "3", "ok", "0"])
    #else
      throw XCTSkip("Linux scheduling policies")
    #endif
  }
}
