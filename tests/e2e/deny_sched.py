#!/usr/bin/env python3
"""Run a command where the kernel refuses to change scheduling policies.

    python3 tests/e2e/deny_sched.py COMMAND [ARGS...]

Installs a seccomp filter (the kind a container runtime's or a hardened systemd unit's profile
adds) under which `sched_setscheduler` and `sched_setattr` fail with EPERM, then execs COMMAND;
every thread it starts inherits the filter. The e2e suite starts the bridge through it to see
what `live.cpu_scheduling: batch` does where it is not allowed. x86-64 only (the syscall numbers
are that architecture's); elsewhere it exits 3 without running COMMAND.
"""

import ctypes
import os
import platform
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM = 1
NR_SCHED_SETSCHEDULER = 144  # x86-64
NR_SCHED_SETATTR = 314  # x86-64

# Classic BPF opcodes.
LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
RET_K = 0x06  # BPF_RET | BPF_K


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def program():
    """seccomp_data: nr at offset 0, arch at offset 4."""
    return [
        SockFilter(LD_W_ABS, 0, 0, 4),                       # 0: A = arch
        SockFilter(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),          # 1: x86-64 → 3
        SockFilter(RET_K, 0, 0, SECCOMP_RET_ALLOW),          # 2: another ABI: allow
        SockFilter(LD_W_ABS, 0, 0, 0),                       # 3: A = syscall number
        SockFilter(JEQ_K, 2, 0, NR_SCHED_SETSCHEDULER),      # 4: → 7
        SockFilter(JEQ_K, 1, 0, NR_SCHED_SETATTR),           # 5: → 7
        SockFilter(RET_K, 0, 0, SECCOMP_RET_ALLOW),          # 6: allow
        SockFilter(RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM),  # 7: refuse with EPERM
    ]


def install():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    instructions = program()
    array = (SockFilter * len(instructions))(*instructions)
    prog = SockFprog(len(instructions), ctypes.cast(array, ctypes.POINTER(SockFilter)))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if platform.machine() != "x86_64":
        print(f"deny_sched.py: x86-64 only, not {platform.machine()}", file=sys.stderr)
        return 3
    install()
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
