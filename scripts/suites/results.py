#!/usr/bin/env python3
"""Result files of the client test suites (scripts/suites): parse, count, compare.

Every suite run ends in a TSV file, one test a line:

    <test name> TAB <outcome> TAB <detail>

where the outcome is `pass`, `fail` or `skip`, and the detail is the first line
of the failure message or the skip reason (empty for passes).

Usage:
    results.py junit REPORT.xml OUT.tsv      pytest --junitxml report -> TSV
    results.py mtr OUTPUT.log OUT.tsv        mariadb-test-run output -> TSV
    results.py counts RESULTS.tsv            prints "P passed, F failed, S skipped"
    results.py compare A.tsv B.tsv [NAME_A NAME_B] [--known FILE]
                                             tests whose outcome differs; exit 1
                                             when there is any not listed in FILE
                                             (lines "TEST  reason"; a test also
                                             covers its "TEST [variant]" runs;
                                             `#` starts a comment), which are
                                             printed as known

Standard library only, so any Python 3 runs it.
"""

import re
import sys
import xml.etree.ElementTree as ET

# Outcomes from best to worst: a test reported twice (pytest reports a
# teardown error as a second entry) keeps the worst.
RANK = {"pass": 0, "skip": 1, "fail": 2}


def first_line(text, limit=200):
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line[:limit]
    return ""


def clean(text):
    return text.replace("\t", " ").replace("\n", " ").strip()


def add(results, name, outcome, detail):
    old = results.get(name)
    if old is None or RANK[outcome] > RANK[old[0]]:
        results[name] = (outcome, clean(detail))


def parse_junit(path):
    results = {}
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
        outcome, detail = "pass", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "fail"
                detail = child.get("message") or first_line(child.text)
                if child.tag == "error":
                    detail = "error: " + detail
                break
            if child.tag == "skipped":
                # pytest reports skips and expected failures (xfail) this way.
                outcome = "skip"
                detail = child.get("message") or first_line(child.text)
        add(results, name, outcome, first_line(detail))
    return results


MTR_LINE = re.compile(r"^(?:worker\[\d+\] )?(\S+(?: '[^']*')?)\s+(?:w\d+ )?\[ (pass|fail|skipped|disabled) \]\s*(.*)$")
MTR_MESSAGE = re.compile(
    r"^(mysqltest: .*|.*mismatch.*|.*[Tt]imeout.*|.*[Tt]imed out.*|.*failed.*|.*[Ee]rror.*)$"
)


def parse_mtr(path):
    results = {}
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        m = MTR_LINE.match(line)
        if not m:
            continue
        name, status, rest = m.group(1), m.group(2), m.group(3)
        if status == "pass":
            add(results, name, "pass", "")
        elif status in ("skipped", "disabled"):
            add(results, name, "skip", rest)
        else:
            detail = ""
            for follow in lines[i + 1 : i + 40]:
                if MTR_LINE.match(follow):
                    break
                follow = follow.strip()
                if follow and MTR_MESSAGE.match(follow) and not follow.startswith("Test ended"):
                    detail = follow
                    break
            add(results, name, "fail", detail)
    return results


def write_tsv(results, path):
    with open(path, "w") as f:
        for name in sorted(results):
            outcome, detail = results[name]
            f.write("%s\t%s\t%s\n" % (name, outcome, detail))


def read_tsv(path):
    results = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0]:
                results[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return results


def counts(results):
    c = {"pass": 0, "fail": 0, "skip": 0}
    for outcome, _ in results.values():
        c[outcome] += 1
    return "%d passed, %d failed, %d skipped" % (c["pass"], c["fail"], c["skip"])


def read_known(path):
    """Test name -> reason, from a known-differences file."""
    known = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, reason = line.partition(" ")
                known[name] = reason.strip()
    return known


def compare(a, b, name_a, name_b, known=None):
    """Lines describing every test whose outcome differs, and those of them that
    `known` (test name -> reason) lists."""
    out, listed = [], []
    for test in sorted(set(a) | set(b)):
        oa, da = a.get(test, ("absent", ""))
        ob, db = b.get(test, ("absent", ""))
        if oa == ob:
            continue
        line = "  %s: %s %s, %s %s" % (test, name_a, oa, name_b, ob)
        detail = db if ob in ("fail", "skip") else da
        if detail:
            line += "\n      " + detail
        reason = (known or {}).get(test.split(" [", 1)[0])
        if reason is not None:
            listed.append(line + "\n      known: " + reason)
        else:
            out.append(line)
    return out, listed


def main(argv):
    if len(argv) >= 4 and argv[1] == "junit":
        write_tsv(parse_junit(argv[2]), argv[3])
    elif len(argv) >= 4 and argv[1] == "mtr":
        write_tsv(parse_mtr(argv[2]), argv[3])
    elif len(argv) == 3 and argv[1] == "counts":
        print(counts(read_tsv(argv[2])))
    elif len(argv) >= 4 and argv[1] == "compare":
        args = argv[2:]
        known = None
        # --known may be given several times; the lists are merged.
        while "--known" in args:
            i = args.index("--known")
            known = {**(known or {}), **read_known(args[i + 1])}
            del args[i:i + 2]
        if len(args) not in (2, 4):
            sys.stderr.write(__doc__)
            return 2
        names = args[2:4] if len(args) == 4 else ["A", "B"]
        diffs, listed = compare(read_tsv(args[0]), read_tsv(args[1]), *names, known=known)
        for line in diffs:
            print(line)
        if listed:
            print("known differences (%d):" % len(listed))
            for line in listed:
                print(line)
        return 1 if diffs else 0
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
