#!/usr/bin/env python3
"""Every shipped playbook and scenario validates against the checked-in JSON
Schema (schemas/), with an independent validator (python-jsonschema, not the
Rust parser). Run by the test suite with the project's .venv; exit 1 names
each file and the path of each problem.

    check-schemas.py                       the shipped playbooks and scenarios
    check-schemas.py playbook|scenario|report F…  the given files instead"""

import pathlib
import sys

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETS = [
    ("schemas/playbook.schema.json", "playbooks"),
    ("schemas/scenario.schema.json", "scenarios"),
    # No shipped reports: `check-schemas.py report F…` checks a run's JSON.
    ("schemas/report.schema.json", "reports"),
]


def main(argv: list[str]) -> int:
    if argv:
        kind, files = argv[0], [pathlib.Path(f).resolve() for f in argv[1:]]
        sets = [(s, files) for s, folder in SETS if folder == kind + "s"]
        if not sets:
            print(f"unknown kind {kind!r}: playbook, scenario or report")
            return 2
    else:
        sets = [(s, sorted((ROOT / folder).glob("*.yaml"))) for s, folder in SETS]
    problems = 0
    checked = 0
    for schema_path, paths in sets:
        schema = yaml.safe_load((ROOT / schema_path).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for path in paths:
            checked += 1
            document = yaml.safe_load(path.read_text())
            for error in validator.iter_errors(document):
                where = "/".join(str(p) for p in error.absolute_path) or "(top)"
                print(f"{path.name}: {where}: {error.message}")
                problems += 1
    print(f"schemas: {checked} file(s) checked, {problems} problem(s)")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
