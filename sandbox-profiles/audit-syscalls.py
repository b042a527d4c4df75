#!/usr/bin/env python3
"""Compare the syscalls the real processes make with their seccomp profiles.

Usage:
  strace -f -ff -qq -o /tmp/lg-trace/t latchgate up --config ...   (then stop it)
  sandbox-profiles/audit-syscalls.py /tmp/lg-trace [profiles_dir]

Each trace file (one per thread/process, from -ff) is attributed to a role by
the binary it exec'd (threads inherit the role of their process). Only calls
made after the process installed its seccomp filter count as steady state;
processes that never sealed are reported whole, marked "(unsealed)".
Prints, per role, syscalls used but not allowed (would be refused) and allowed
but never seen (candidates for removal, after a representative workload).
"""
import json, os, re, sys
from collections import defaultdict

ROLE_OF_BINARY = {"latchgate-front": "front", "latchgate-broker": "broker",
                  "latchgate-executor": "executor", "latchgate-signer": "signer"}
CALL = re.compile(r"^(?:\d+\s+)?(?:\d+:\d+:\d+\.\d+\s+)?([a-z0-9_]+)\(")


def main():
    trace_dir = sys.argv[1]
    profiles = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    files = {int(f.rsplit(".", 1)[1]): os.path.join(trace_dir, f)
             for f in os.listdir(trace_dir) if re.search(r"\.\d+$", f)}
    role_of_pid, parent_of = {}, {}
    lines_of = {}
    for pid, path in files.items():
        with open(path, errors="replace") as fh:
            lines_of[pid] = fh.read().splitlines()
        for line in lines_of[pid]:
            m = re.match(r'^(?:\d+\s+)?execve\("([^"]+)"', line)
            if m and "= 0" in line:
                role_of_pid[pid] = ROLE_OF_BINARY.get(os.path.basename(m.group(1)))
            m = re.match(r"^(?:\d+\s+)?(?:clone3?|vfork|fork)\(.*= (\d+)$", line)
            if m:
                parent_of[int(m.group(1))] = pid
    # Threads: inherit the role of the creating task unless they exec'd themselves.
    def role(pid, seen=()):
        if pid in role_of_pid:
            return role_of_pid[pid]
        if pid in parent_of and pid not in seen:
            return role(parent_of[pid], seen + (pid,))
        return None

    used = defaultdict(set)
    sealed = defaultdict(bool)
    for pid, lines in lines_of.items():
        r = role(pid)
        if not r:
            continue
        marker = next((i for i, l in enumerate(lines) if "seccomp(SECCOMP_SET_MODE_FILTER" in l), None)
        tail = lines[marker + 1:] if marker is not None else lines
        sealed[r] |= marker is not None
        for l in tail:
            m = CALL.match(l)
            if m and "resumed>" not in l:
                used[r].add(m.group(1))
    for r in sorted(used):
        with open(os.path.join(profiles, f"{r}.json")) as fh:
            allowed = {e["name"] for e in json.load(fh)["syscalls"]}
        state = "" if sealed[r] else " (unsealed: whole trace incl. start-up)"
        print(f"== {r}{state}")
        print("  used but not allowed:", " ".join(sorted(used[r] - allowed)) or "-")
        print("  allowed but not seen:", " ".join(sorted(allowed - used[r])) or "-")


if __name__ == "__main__":
    main()
