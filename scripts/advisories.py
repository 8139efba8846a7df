#!/usr/bin/env python3
"""Checks Cargo.lock against a RustSec advisory database on disk, for when
the live one cannot be fetched (scripts/deny.sh). Standard library only.

    advisories.py DB_DIR [SOURCE_FILE]

Fails (exit 1) as `cargo deny check advisories` does with this deny.toml:
on a vulnerability, an unsound or a notice advisory affecting any locked
crate, and on an unmaintained one for a crate this workspace depends on
directly (deny.toml: unmaintained = "workspace"); unmaintained transitive
crates are printed. Advisories listed in deny.toml's `ignore`, and withdrawn
ones, are skipped. Yanked crates cannot be checked offline (the last line
says so, and which database was used)."""

import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def version(text: str) -> tuple:
    """1.2.3-pre → (1, 2, 3, 0); a release sorts after its pre-releases."""
    core, _, pre = text.strip().partition("+")[0].partition("-")
    parts = [int(p) for p in core.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return (*parts[:3], 0 if pre else 1)


def matches(req: str, v: tuple) -> bool:
    """Whether v meets every comparator of a cargo-style requirement."""
    for comparator in req.split(","):
        comparator = comparator.strip()
        if not comparator or comparator == "*":
            continue
        m = re.fullmatch(r"(>=|<=|>|<|=|\^|~)?\s*([0-9][0-9A-Za-z.\-+]*)", comparator)
        if not m:
            raise ValueError(f"unreadable version requirement {comparator!r}")
        op, bound = m.group(1) or "^", version(m.group(2))
        if op in ("^", "~"):
            major, minor, patch = bound[:3]
            if op == "~":
                upper = (major, minor + 1, 0, 0)
            elif major > 0:
                upper = (major + 1, 0, 0, 0)
            elif minor > 0:
                upper = (0, minor + 1, 0, 0)
            else:
                upper = (0, 0, patch + 1, 0)
            ok = bound <= v < upper
        else:
            ok = {
                ">=": v >= bound,
                "<=": v <= bound,
                ">": v > bound,
                "<": v < bound,
                "=": v == bound,
            }[op]
        if not ok:
            return False
    return True


def front_matter(path: pathlib.Path) -> dict:
    text = path.read_text()
    m = re.search(r"```toml\n(.*?)\n```", text, re.S)
    if not m:
        raise ValueError(f"{path}: no TOML front matter")
    return tomllib.loads(m.group(1))


def direct_dependencies() -> set:
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    names = set()
    for table in ("dependencies", "dev-dependencies", "build-dependencies"):
        for name, spec in manifest.get(table, {}).items():
            names.add(spec.get("package", name) if isinstance(spec, dict) else name)
    return names


def main(argv: list) -> int:
    if not argv:
        print(__doc__)
        return 2
    db = pathlib.Path(argv[0])
    source = pathlib.Path(argv[1]) if len(argv) > 1 else None
    if not (db / "crates").is_dir():
        print(f"advisories: NOT CHECKED: {db} holds no advisory database", file=sys.stderr)
        return 2
    ignored = set(tomllib.loads((ROOT / "deny.toml").read_text())["advisories"].get("ignore", []))
    ignored = {i if isinstance(i, str) else i.get("id") for i in ignored}
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    direct = direct_dependencies()
    failures, notices, advisories_read = [], [], 0
    for package in lock.get("package", []):
        if not package.get("source", "").startswith("registry+"):
            continue
        name, locked = package["name"], version(package["version"])
        for path in sorted((db / "crates" / name).glob("*.md")):
            advisories_read += 1
            meta = front_matter(path)
            advisory = meta["advisory"]
            if advisory.get("withdrawn") or advisory["id"] in ignored:
                continue
            versions = meta.get("versions", {})
            safe = versions.get("patched", []) + versions.get("unaffected", [])
            if any(matches(r, locked) for r in safe):
                continue
            kind = advisory.get("informational", "").strip()
            line = f"{advisory['id']} {name} {package['version']}: {advisory.get('title') or path.read_text().split('# ', 1)[-1].splitlines()[0]}"
            if kind != "unmaintained" or name in direct:
                failures.append(f"{line} ({kind or 'vulnerability'})")
            else:
                notices.append(f"{line} ({kind}, transitive)")
    for n in notices:
        print(f"advisories: notice: {n}")
    for f in failures:
        print(f"advisories: DENIED: {f}")
    commit = ""
    if source and source.is_file():
        m = re.search(r"commit ([0-9a-f]{7,40})(?:, committed ([0-9-]+))?", source.read_text())
        if m:
            commit = f" (commit {m.group(1)}" + (f", {m.group(2)}" if m.group(2) else "") + ")"
    print(
        f"advisories: checked against {db}{commit}: {len(lock.get('package', []))} locked crates, "
        f"{advisories_read} advisories read, {len(failures)} denied, {len(notices)} notices "
        "(yanked crates not checked offline)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
