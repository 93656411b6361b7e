#!/usr/bin/env python3
"""Runs every clsgw test: the doctest unit suite, then the integration and interop tests.

Prints one line per test and ends with the line `N passed, N failed` (plus `, N skipped`
when a test could not run here; a skipped test is never counted as passed).
Usage: tests/run.py [--build DIR] [-k SUBSTRING]
"""
from runner_options import runner_options
import json
import importlib
import inspect
import os
import re
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = ["test_cli", "test_hanscan", "test_contain", "test_outbound", "test_inbound", "test_sandbox", "test_spares", "test_signer", "test_interop", "test_tls", "test_ops", "test_local", "test_install", "test_faults", "test_check", "test_service", "test_long"]


EMULATION_LIMITS = ("need sandboxed helper processes: under qemu-user (no binfmt_misc here) clsgwd cannot "
                    "exec its arm64 helpers, and an emulated program cannot load a seccomp filter")


def run_unit(build, results, emulator):
    exe = os.path.join(build, "tests", "unit-tests")
    env = dict(os.environ, CLSGW_EMULATED="1") if emulator else None
    r = subprocess.run([*emulator, exe, "--no-colors"], capture_output=True, text=True, env=env)
    m = re.search(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed\s*\|\s*(\d+) skipped", r.stdout)
    if not m:
        print(r.stdout + r.stderr)
        results["failed"] += 1
        print("FAIL unit-tests (no doctest summary)")
        return
    if r.returncode != 0:
        print(r.stdout[-6000:])
    passed, failed, skipped = int(m.group(2)), int(m.group(3)), int(m.group(4))
    results["passed"] += passed
    results["failed"] += failed
    results["skipped"] += skipped
    print(f"unit: {passed} passed, {failed} failed (doctest, {m.group(1)} cases)")
    if skipped:
        print(f"SKIP unit: {skipped} cases that need the kernel's own view of the program: libseccomp cannot query "
              f"the kernel's filter actions from an emulated program, qemu-user cannot load a filter, and its "
              f"/proc/self/smaps shows the emulator's mappings (they run in the native make check)")


def main():
    ap = runner_options("keep the test folders for inspection")
    ap.add_argument("--emulator", default="", help="run our programs under this command (qemu-user)")
    ap.add_argument("--arch", default="native")
    ap.add_argument("--sanitized", action="store_true", help="the build under test has ASan/UBSan")
    ap.add_argument("--results", help="also write each integration test's result to this JSON file")
    args = ap.parse_args()
    os.environ["CLSGW_BUILD"] = os.path.abspath(args.build)
    os.environ["CLSGW_EMULATOR"] = args.emulator
    os.environ["CLSGW_ARCH"] = args.arch
    if args.sanitized:
        os.environ["CLSGW_SANITIZED"] = "1"
    emulator = args.emulator.split()
    sys.path.insert(0, os.path.join(HERE, "integration"))
    results = {"passed": 0, "failed": 0, "skipped": 0}
    records = []  # for --results: one per integration test
    if not args.k:
        run_unit(args.build, results, emulator)
    import harness
    for name in MODULES:
        module = importlib.import_module(name)
        not_emulated = 0
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if not fname.startswith("test_") or fn.__module__ != name or args.k not in f"{name}.{fname}":
                continue
            if emulator and not getattr(fn, "runs_emulated", False):
                not_emulated += 1
                continue
            title = (fn.__doc__ or fname).strip().splitlines()[0]
            env = harness.Env(fname[5:20])
            started = time.monotonic()
            failed = False
            record = {"module": name, "test": fname, "title": title, "scenario": getattr(fn, "scenario", None)}
            records.append(record)
            try:
                fn(env)
                results["passed"] += 1
                record["result"] = "passed"
                print(f"PASS {name}: {title} ({time.monotonic() - started:.1f}s)")
            except harness.SkipTest as e:
                results["skipped"] += 1
                record["result"] = f"skipped: {e}"
                print(f"SKIP {name}: {title}: {e}")
            except Exception:
                results["failed"] += 1
                record["result"] = "failed"
                print(f"FAIL {name}: {title}")
                print("  " + traceback.format_exc().replace("\n", "\n  "))
                print(f"  (test folder kept: {env.dir})")
                failed = True
            finally:
                env.close(keep=args.keep or failed)
            sys.stdout.flush()
        if not_emulated:
            results["skipped"] += not_emulated
            print(f"SKIP {name}: {not_emulated} tests {EMULATION_LIMITS}")
    line = f"{results['passed']} passed, {results['failed']} failed"
    if results["skipped"]:
        line += f", {results['skipped']} skipped"
    print(line)
    if args.results:
        with open(args.results, "w") as f:
            json.dump(records, f, indent=1)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
