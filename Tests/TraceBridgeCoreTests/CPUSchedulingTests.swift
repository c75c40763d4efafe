import Foundation
import TraceBridgeCore
import XCTest

final class CPUSchedulingTests: XCTestCase {
  /// Runs `body` on a thread of its own (a policy stays with the thread that set it).
  private func onThread(_ body: @escaping @Sendable () -> [Int32]) -> [Int32] {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: [Int32] = []
    let thread = Thread {
      result = body()
      done.signal()
    }
    thread.start()
    done.wait()
    return result
  }

  /// The policy of a thread started from the calling one.
  private static func childPolicy() -> Int32 {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var policy: Int32 = -2
    let thread = Thread {
      policy = CPUScheduling.currentPolicy()
      done.signal()
    }
    thread.start()
    done.wait()
    return policy
  }

  func testBatchIsSetAndInherited() throws {
    #if os(Linux)
      let seen = onThread {
        let before = CPUScheduling.currentPolicy()
        let failed: Int32 = CPUScheduling.batch.applyToCurrentThread() == nil ? 0 : 1
        return [before, failed, CPUScheduling.currentPolicy(), Self.childPolicy()]
      }
      XCTAssertEqual(seen, [0, 0, 3, 3], "before, failed, after, a thread started after")
    #else
      throw XCTSkip("Linux scheduling policies")
    #endif
  }

  /// `normal` keeps what the thread has: the default on a fresh thread, batch on one that an
  /// operator's `chrt -b` (here: the test itself) put there.
  func testNormalLeavesThePolicyAsItWas() throws {
    #if os(Linux)
      let seen = onThread {
        CPUScheduling.normal.applyToCurrentThread()
        let fresh = CPUScheduling.currentPolicy()
        CPUScheduling.batch.applyToCurrentThread()
        CPUScheduling.normal.applyToCurrentThread()
        return [fresh, CPUScheduling.currentPolicy(), Self.childPolicy()]
      }
      XCTAssertEqual(seen, [0, 3, 3])
    #else
      throw XCTSkip("Linux scheduling policies")
    #endif
  }
}
