#!/usr/bin/env python3
"""Group the test suite by context, support modules in tests/support/. Idempotent: re-run after merges.

    tests/<context>/test_<kind>_<name>.py     kind: unit | integration | contract | property
    tests/support/                            modules the tests share (no tests in them)
    tests/rbac/                               the role matrix of every endpoint (its rows and checker)
    tests/docs/, tests/bench/                 unchanged

A file left in tests/unit|integration|contract|property (say, merged from another branch) is moved by
the same rule: its context from the first word of its name (`test_sales_drafts.py` -> tests/sales/
test_integration_drafts.py, `test_pull_pending.py` -> tests/sync/test_integration_pull_pending.py), its
kind from its old folder; explicit exceptions are in MOVES. Then every
reference to an old module or path (imports, `importlib` strings, paths in docs) is rewritten. Moves go
through `git mv`. Prints the mapping (old -> new); `--dry-run` only prints it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
KINDS = ("unit", "integration", "contract", "property")

# The first word of a test file's name -> its context folder.
CONTEXTS = {
    "accounts": "accounts",
    "audit": "audit",
    "catalog": "catalog",
    "logistics": "logistics",
    "sales": "sales",
    "invoicing": "invoicing",
    "outputs": "invoicing",
    "email": "invoicing",
    "sync": "sync",
    "pull": "sync",
    "push": "sync",
    "feed": "sync",
    "reconcile": "sync",
    "couch": "couch",
    "api": "api",
    "http": "api",
    "reports": "reports",
}
# Files whose first word does not say their context, or that would read badly by the rule.
MOVES = {
    "tests/integration/test_console_browser.py": "tests/console/test_integration_browser.py",
    "tests/integration/test_console_pages.py": "tests/console/test_integration_pages.py",
    "tests/integration/test_db_sync_wait.py": "tests/platform/test_integration_db_sync_wait.py",
    "tests/integration/test_housekeeping.py": "tests/platform/test_integration_housekeeping.py",
    "tests/integration/test_metrics.py": "tests/platform/test_integration_metrics.py",
    "tests/integration/test_meter_billing.py": "tests/sales/test_integration_meter_billing.py",
    "tests/integration/test_outbox_api.py": "tests/invoicing/test_integration_outbox_api.py",
    "tests/integration/test_outbox_processes.py": "tests/invoicing/test_integration_outbox_processes.py",
    "tests/integration/test_security_authn.py": "tests/accounts/test_integration_authn.py",
    "tests/integration/test_security_throttle.py": "tests/accounts/test_integration_throttle_concurrent.py",
    "tests/integration/test_security_input.py": "tests/api/test_integration_input_text.py",
    "tests/unit/test_security_files.py": "tests/platform/test_unit_file_permissions.py",
    "tests/property/test_sync_state_machine.py": "tests/sync/test_property_state_machine.py",
    "tests/unit/test_codec.py": "tests/platform/test_unit_codec.py",
    "tests/unit/test_layering.py": "tests/platform/test_unit_layering.py",
    "tests/unit/test_money.py": "tests/platform/test_unit_money.py",
    "tests/unit/test_settings.py": "tests/platform/test_unit_settings.py",
    "tests/unit/test_outputs_paynow.py": "tests/invoicing/test_unit_paynow.py",
    "tests/unit/test_outputs_fonts.py": "tests/invoicing/test_unit_fonts.py",
    "tests/integration/test_concurrency.py": "tests/platform/test_integration_concurrency.py",
    "tests/integration/test_migrations.py": "tests/platform/test_integration_migrations.py",
    "tests/integration/test_unit_of_work.py": "tests/platform/test_integration_unit_of_work.py",
    "tests/integration/test_api_reports.py": "tests/reports/test_integration_api.py",
    "tests/integration/test_logistics_catalog_api.py": "tests/catalog/test_integration_api.py",
    "tests/integration/test_email_auto.py": "tests/invoicing/test_integration_email_auto.py",
    "tests/integration/test_http_edge.py": "tests/api/test_integration_http_edge.py",
    "tests/contract/test_pull_couch.py": "tests/couch/test_contract_pull.py",
    "tests/property/test_conservation_all.py": "tests/logistics/test_property_conservation_all.py",
    "tests/property/test_sales_properties.py": "tests/sales/test_property_sales.py",
    "tests/property/test_sync_fuzz.py": "tests/sync/test_property_fuzz.py",
    # shared support modules
    "tests/pull_support.py": "tests/support/pull_support.py",
    "tests/sales_support.py": "tests/support/sales_support.py",
    "tests/contract/sync_support.py": "tests/support/sync_support.py",
    "tests/integration/audit_support.py": "tests/support/audit_support.py",
    "tests/integration/outputs_data.py": "tests/support/outputs_data.py",
    "tests/integration/outputs_smtp.py": "tests/support/outputs_smtp.py",
}
# Every file renamed so far (MOVES, and the ones the naming rule moved): references to these old names are
# rewritten on every run, so a branch merged later that still imports `tests.sales_support` or cites
# tests/integration/... is fixed.
DONE = {
    **MOVES,
    "tests/unit/test_accounts_policy.py": "tests/accounts/test_unit_policy.py",
    "tests/unit/test_audit_writer.py": "tests/audit/test_unit_writer.py",
    "tests/unit/test_sales_schemas.py": "tests/sales/test_unit_schemas.py",
    "tests/integration/audit_cases.py": "tests/support/audit_cases.py",
    "tests/integration/audit_cases_accounts.py": "tests/support/audit_cases_accounts.py",
    "tests/integration/audit_cases_catalog.py": "tests/support/audit_cases_catalog.py",
    "tests/integration/audit_cases_foundation.py": "tests/support/audit_cases_foundation.py",
    "tests/integration/audit_cases_logistics.py": "tests/support/audit_cases_logistics.py",
    "tests/integration/audit_cases_outputs.py": "tests/support/audit_cases_outputs.py",
    "tests/integration/audit_cases_sales.py": "tests/support/audit_cases_sales.py",
    "tests/integration/audit_cases_sync.py": "tests/support/audit_cases_sync.py",
    "tests/integration/test_accounts_sessions.py": "tests/accounts/test_integration_sessions.py",
    "tests/integration/test_accounts_throttle.py": "tests/accounts/test_integration_throttle.py",
    "tests/integration/test_accounts_tokens.py": "tests/accounts/test_integration_tokens.py",
    "tests/integration/test_accounts_users.py": "tests/accounts/test_integration_users.py",
    "tests/integration/test_api_edge.py": "tests/api/test_integration_edge.py",
    "tests/integration/test_api_pagination.py": "tests/api/test_integration_pagination.py",
    "tests/integration/test_api_swagger_browser.py": "tests/api/test_integration_swagger_browser.py",
    "tests/integration/test_audit_api.py": "tests/audit/test_integration_api.py",
    "tests/integration/test_audit_append_only.py": "tests/audit/test_integration_append_only.py",
    "tests/integration/test_audit_concurrency.py": "tests/audit/test_integration_concurrency.py",
    "tests/integration/test_audit_grants.py": "tests/audit/test_integration_grants.py",
    "tests/integration/test_audit_services.py": "tests/audit/test_integration_services.py",
    "tests/integration/test_audit_verify.py": "tests/audit/test_integration_verify.py",
    "tests/integration/test_feed_order.py": "tests/sync/test_integration_feed_order.py",
    "tests/integration/test_logistics_concurrency.py": "tests/logistics/test_integration_concurrency.py",
    "tests/integration/test_logistics_distributions.py": "tests/logistics/test_integration_distributions.py",
    "tests/integration/test_logistics_stock_api.py": "tests/logistics/test_integration_stock_api.py",
    "tests/integration/test_outputs_email.py": "tests/invoicing/test_integration_outputs_email.py",
    "tests/integration/test_outputs_end_to_end.py": "tests/invoicing/test_integration_outputs_end_to_end.py",
    "tests/integration/test_outputs_pdf.py": "tests/invoicing/test_integration_outputs_pdf.py",
    "tests/integration/test_outputs_print.py": "tests/invoicing/test_integration_outputs_print.py",
    "tests/integration/test_pull_pending.py": "tests/sync/test_integration_pull_pending.py",
    "tests/integration/test_pull_processes.py": "tests/sync/test_integration_pull_processes.py",
    "tests/integration/test_sales_concurrency.py": "tests/sales/test_integration_concurrency.py",
    "tests/integration/test_sales_drafts.py": "tests/sales/test_integration_drafts.py",
    "tests/integration/test_sales_invoices.py": "tests/sales/test_integration_invoices.py",
    "tests/integration/test_sales_transactions.py": "tests/sales/test_integration_transactions.py",
    "tests/integration/test_sync_concurrent_push.py": "tests/sync/test_integration_concurrent_push.py",
    "tests/integration/test_sync_replay_cli.py": "tests/sync/test_integration_replay_cli.py",
    "tests/contract/test_api_openapi.py": "tests/api/test_contract_openapi.py",
    "tests/contract/test_api_schemathesis.py": "tests/api/test_contract_schemathesis.py",
    "tests/contract/test_logistics_feed_docs.py": "tests/logistics/test_contract_feed_docs.py",
    "tests/contract/test_pull_changes.py": "tests/sync/test_contract_pull_changes.py",
    "tests/contract/test_sync_push.py": "tests/sync/test_contract_push.py",
    "tests/contract/test_sync_push_batch_state.py": "tests/sync/test_contract_push_batch_state.py",
    "tests/contract/test_sync_push_envelope.py": "tests/sync/test_contract_push_envelope.py",
    "tests/property/test_accounts_refresh_families.py": "tests/accounts/test_property_refresh_families.py",
    "tests/property/test_audit_chain.py": "tests/audit/test_property_chain.py",
    "tests/property/test_logistics_conservation.py": "tests/logistics/test_property_conservation.py",
    "tests/property/test_sync_repeated_keys.py": "tests/sync/test_property_repeated_keys.py",
}
SUPPORT_PATTERNS = (r"audit_cases.*\.py", r".*_support\.py", r"outputs_.*\.py")
PACKAGE_MOVES = {"tests/contract/rbac": "tests/rbac"}  # moved whole, its module names kept
# A module that changes depth must find the repository root again.
DEPTH_FIXES = {"tests/support/pull_support.py": ("parents[1]", "parents[2]")}


def planned_moves() -> dict[str, str]:
    plan: dict[str, str] = {}
    for old, new in MOVES.items():
        if (ROOT / old).exists():
            plan[old] = new
    for kind in KINDS:
        folder = TESTS / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            old = path.relative_to(ROOT).as_posix()
            if old in plan or path.name == "__init__.py" or path.name == "conftest.py":
                continue
            if any(re.fullmatch(p, path.name) for p in SUPPORT_PATTERNS):
                plan[old] = f"tests/support/{path.name}"
                continue
            if not path.name.startswith("test_"):
                print(f"  left in place (not a test, not a known support module): {old}")
                continue
            words = path.stem.removeprefix("test_").split("_", 1)
            context = CONTEXTS.get(words[0])
            if context is None:
                print(f"  left in place (no context for '{words[0]}'; add it to CONTEXTS or MOVES): {old}")
                continue
            # the first word goes when the folder says it already (sales_drafts -> sales/..._drafts), and
            # stays when it says more than the folder (pull_pending -> sync/..._pull_pending)
            rest = words[1] if len(words) > 1 and words[0] == context else path.stem.removeprefix("test_")
            plan[old] = f"tests/{context}/test_{kind}_{rest}.py"
    return plan


def module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True)  # noqa: S603, S607


def ensure_package(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    init = folder / "__init__.py"
    if not init.exists():
        init.write_text("")
        git("add", str(init.relative_to(ROOT)))


def rewrite_references(renames: dict[str, str]) -> None:
    """Old module names and paths -> new ones, in every Python, Markdown and text file of the repository."""
    pairs: list[tuple[str, str]] = []
    for old, new in renames.items():
        pairs.append((module(old), module(new)))
        pairs.append((old, new))
    for old, new in PACKAGE_MOVES.items():
        pairs.append((module(old), module(new)))
        pairs.append((old, new))
    # importlib strings built from a folder: f"tests.integration.{name}" for the moved audit cases
    pairs.append(('f"tests.integration.{info.name}"', 'f"tests.support.{info.name}"'))
    pairs.append(("tests/integration/audit_cases_<area>.py", "tests/support/audit_cases_<area>.py"))
    pairs.sort(key=lambda p: -len(p[0]))  # longest first: a module is never rewritten by its prefix
    pattern = re.compile("|".join(rf"(?<![\w.]){re.escape(old)}(?![\w])" for old, _ in pairs))
    lookup = dict(pairs)
    skip = {".git", ".venv", "node_modules", "__pycache__"}
    for path in ROOT.rglob("*"):
        if not path.is_file() or skip & set(path.relative_to(ROOT).parts):
            continue
        if (
            path.suffix not in {".py", ".md", ".toml", ".txt", ".ini", ".cfg", ".sql", ".sh", ".yml", ".yaml"}
            and path.name != "run"
        ):
            continue
        if path == Path(__file__).resolve():
            continue
        text = path.read_text()
        new_text = pattern.sub(lambda m: lookup[m.group(0)], text)
        if new_text != text:
            path.write_text(new_text)


def main() -> int:
    dry = "--dry-run" in sys.argv
    plan = planned_moves()
    packages = {old: new for old, new in PACKAGE_MOVES.items() if (ROOT / old).is_dir()}
    for old, new in {**plan, **packages}.items():
        print(f"{old} -> {new}")
    if dry:
        return 0
    for old, new in packages.items():
        ensure_package((ROOT / new).parent)
        git("mv", old, new)
    for old, new in plan.items():
        target = ROOT / new
        if target.exists():
            print(f"  refusing to overwrite {new} (from {old})", file=sys.stderr)
            return 1
        ensure_package(target.parent)
        git("mv", old, new)
        if new in DEPTH_FIXES:
            before, after = DEPTH_FIXES[new]
            target.write_text(target.read_text().replace(before, after))
    # every old kind folder that holds nothing but its __init__.py goes
    for kind in KINDS:
        folder = TESTS / kind
        if folder.is_dir() and {p.name for p in folder.iterdir()} <= {"__init__.py", "__pycache__"}:
            if (folder / "__init__.py").exists():
                git("rm", "-q", str((folder / "__init__.py").relative_to(ROOT)))
            for cache in folder.glob("__pycache__"):
                subprocess.run(["rm", "-rf", str(cache)], check=True)  # noqa: S603, S607
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
    # a renamed module keeps its references everywhere, including in files renamed before (re-runs)
    rewrite_references({**DONE, **plan})
    return 0


if __name__ == "__main__":
    sys.exit(main())
