"""A deep property-based run: tests/test_schemathesis.py with many examples per operation, on SQLite and Postgres.

    .venv/bin/python -m bench.schemathesis_deep                        # 1000 examples per operation, both databases
    .venv/bin/python -m bench.schemathesis_deep --examples 200 --databases sqlite
    make bench-fuzz                                                    # the same as the first line

The suite's own run (`make test`) stops an operation at its first failure and uses 25 derandomized examples. Here
the test runs in its survey mode (`SCHEMATHESIS_SURVEY`): every generated example is sent and checked, nothing
stops the search, and each answer is counted. Examples are fresh random ones on every run (`--seed N` repeats one).
Per database it prints the examples sent, the 5xx answers and the other failed checks on answers below 500
(status code, content type or body the schema does not declare), per operation; every 5xx is listed with its
request and the server's traceback. Figures go to `bench/results/schemathesis_deep.json`. Exit status 1 when any
5xx or failed check was found, so it can gate a release.

Postgres: a throwaway test database is created from `--postgres-url` (pytest-django's `test_` prefix, dropped
afterwards by `--create-db` on the next run).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, ROOT, parser_for, write_json

TEST = "tests/test_schemathesis.py::test_api_answers_within_its_schema"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/batterypred_fuzz"


def run(database: str, examples: int, postgres_url: str, seed: int | None) -> dict:
    """Run the survey on one database; return its counts and the 5xx found."""
    with tempfile.NamedTemporaryFile(prefix=f"survey-{database}-", suffix=".jsonl", delete=False) as handle:
        survey = Path(handle.name)
    env = {**os.environ, "SCHEMATHESIS_MAX_EXAMPLES": str(examples), "SCHEMATHESIS_SURVEY": str(survey)}
    command = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider"]
    if database == "postgres":
        env["DATABASE_URL"] = postgres_url
        command.append("--create-db")
    else:
        env.pop("DATABASE_URL", None)
    if seed is not None:
        command.append(f"--hypothesis-seed={seed}")
    started = time.monotonic()
    print(f"=== {database}: {examples} examples per operation", flush=True)
    finished = subprocess.run(command, cwd=ROOT, env=env, check=False)
    seconds = time.monotonic() - started
    records = [json.loads(line) for line in survey.read_text().splitlines() if line.strip()]
    survey.unlink()
    per_operation: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failed_checks: collections.Counter = collections.Counter()
    server_errors = []
    for record in records:
        counts = per_operation[record["operation"]]
        counts["examples"] += 1
        if record["status"] >= 500:  # its other failed checks (an undocumented 500) are the same bug
            counts["5xx"] += 1
            server_errors.append(record)
            continue
        for title in record["failed"]:
            counts["other_failed_checks"] += 1
            failed_checks[f"{record['operation']}: {title}"] += 1
    return {
        "database": database,
        "examples_per_operation": examples,
        "seconds": round(seconds, 1),
        "pytest_exit_code": finished.returncode,
        "requests": len(records),
        "5xx": len(server_errors),
        "other_failed_checks": sum(failed_checks.values()),
        "failed_checks": dict(failed_checks),
        "per_operation": {operation: dict(counts) for operation, counts in sorted(per_operation.items())},
        "server_errors": server_errors,
    }


def report(result: dict) -> None:
    print(
        f"--- {result['database']}: {result['requests']} requests in {result['seconds']} s, "
        f"5xx: {result['5xx']}, other failed checks: {result['other_failed_checks']}"
        f" (pytest exit {result['pytest_exit_code']})"
    )
    for operation, counts in result["per_operation"].items():
        print(
            f"    {operation:55} {counts.get('examples', 0):6} examples  {counts.get('5xx', 0):4} 5xx  "
            f"{counts.get('other_failed_checks', 0):4} other"
        )
    for check, count in sorted(result["failed_checks"].items()):
        print(f"    failed check x{count}: {check}")
    for error in result["server_errors"]:
        print(f"    5xx {error['status']} {error['request']['method']} {error['request']['url']}")
        print(f"        body: {str(error['request']['body'])[:500]}")
        last_line = (error.get("traceback") or "").strip().splitlines()[-1:] or ["(no traceback)"]
        print(f"        {last_line[0]}")


def main() -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--examples", type=int, default=1000, help="examples per operation (default 1000)")
    parser.add_argument("--databases", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--postgres-url", default=os.environ.get("FUZZ_DATABASE_URL", DEFAULT_POSTGRES))
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, to repeat a run")
    args = parser.parse_args()
    results = []
    for database in args.databases.split(","):
        result = run(database.strip(), args.examples, args.postgres_url, args.seed)
        report(result)
        results.append(result)
    path = write_json(RESULTS / "schemathesis_deep.json", results)
    print(f"figures and every 5xx with its traceback: {path.relative_to(ROOT)}")
    print("5xx per database: " + ", ".join(f"{r['database']} {r['5xx']}" for r in results))
    bad = any(r["5xx"] or r["other_failed_checks"] or r["pytest_exit_code"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
