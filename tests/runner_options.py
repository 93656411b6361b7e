"""The options both test runners take: tests/run.py and tests/systemd/check_systemd.py."""
import argparse


def runner_options(keep_help):
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", default="", help="run only the tests whose name contains this")
    ap.add_argument("--keep", action="store_true", help=keep_help)
    return ap
