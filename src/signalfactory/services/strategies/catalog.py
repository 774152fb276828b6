"""Stored strategies: every change is a new version; built-ins ship with the platform.

A strategy belongs to a tenant. Built-ins are stored once (owned by the default tenant,
flagged ``builtin``) and every tenant can read and run them; a tenant's own strategy of the
same name takes precedence for that tenant.

Three kinds of code: rules (safe by construction, evaluated in-process), uploaded Python
source (checked at upload, stored with its sha256, and only ever run in the sandbox: see
``services.sandbox.strategies``), and an operator's installed plug-ins (an entry point or a
module path given on the command line, imported in-process: trusted code).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from signalfactory.adapters.strategies.loading import load_strategy
from signalfactory.domain.errors import (
    BadInputError,
    NotFoundError,
    ReadOnlyError,
    TemporaryError,
)
from signalfactory.domain.strategies import (
    BUILTIN_TEMPLATES,
    RuleStrategy,
    Strategy,
    StrategyParam,
    builtin_strategy,
    code_hash,
)
from signalfactory.domain.strategies.stored import NewStrategy, NewStrategyVersion, StoredStrategy
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

if TYPE_CHECKING:
    # Imported where used: the audit log when a version is added, the sandbox for uploaded
    # code; a command that reads or runs stored rules needs neither.
    from signalfactory.services.sandbox.strategies import UploadedSource

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


def instantiate(stored: StoredStrategy, platform: Platform | None = None,
                purpose: str = "signals") -> Strategy:
    """The domain object that evaluates this stored version. Uploaded source becomes a
    ``SandboxedStrategy`` (it needs the platform's sandbox; ``purpose`` labels its runs)."""
    if stored.sandboxed:
        from signalfactory.services.sandbox.strategies import SandboxedStrategy

        if platform is None:
            raise TemporaryError(f"strategy {stored.name!r} is uploaded Python: it runs only "
                                 "in the sandbox, and none was given")
        return SandboxedStrategy(platform, stored, purpose)
    if stored.rule_text is not None:
        return RuleStrategy.from_text(stored.name, stored.rule_text,
                                      version=str(stored.version),
                                      parameters=dict(stored.parameters))
    if stored.class_path is None:
        raise BadInputError(f"strategy {stored.name!r} v{stored.version} has neither a rule "
                            "nor a Python class; add a new version")
    return load_strategy(stored.class_path, dict(stored.parameters))


#: names that are paths of the API under /strategies/, not strategies
RESERVED_NAMES = frozenset({"validate", "preview"})


def check_name(name: str) -> str:
    cleaned = name.strip().lower()
    if not cleaned or len(cleaned) > 100 or not set(cleaned) <= _NAME_CHARS:
        raise BadInputError(f"strategy name {name!r} must be 1..100 characters of a-z, 0-9, "
                            "'_', '-' or '.'")
    if cleaned in RESERVED_NAMES:
        raise BadInputError(f"{cleaned!r} is a reserved word (an API path); choose another "
                            "strategy name")
    return cleaned


def ensure_builtins(uow: UnitOfWork) -> None:
    """Store the shipped strategies once (idempotent; new defaults become new versions)."""
    for name, template in BUILTIN_TEMPLATES.items():
        _store(uow, DEFAULT_TENANT_ID, name, template.render(), created_by="builtin",
               builtin=True, description=template.description, timeframe="1d")


def builtins_current(uow: UnitOfWork) -> bool:
    """Whether ``ensure_builtins`` would store nothing: every shipped strategy's newest
    version is the one it ships. One read, so that a command finding them current takes no
    write lock (on SQLite a write transaction takes it up front)."""
    stored = {s.name: s for s in uow.strategies.visible(DEFAULT_TENANT_ID) if s.builtin}
    for name, template in BUILTIN_TEMPLATES.items():
        latest, strategy = stored.get(name), template.render()
        if latest is None or not _unchanged(latest, "rule", code_hash(strategy), "1d", None,
                                            dict(strategy.parameters), sandboxed=False):
            return False
    return True


def _unchanged(latest: StoredStrategy, kind: str, digest: str, timeframe: str,
               class_path: str | None, parameters: Mapping[str, StrategyParam], *,
               sandboxed: bool) -> bool:
    """Whether ``latest`` is this code, class and parameters on this timeframe."""
    return (latest.kind == kind and latest.code_hash == digest
            and latest.timeframe == timeframe and latest.class_path == class_path
            and dict(latest.parameters) == parameters and latest.sandboxed == sandboxed)


def store_builtins_once(platform: Platform) -> None:
    """Store the shipped strategies once per process, on the primary, so that the reads
    after it need not write (and may read a replica)."""
    if platform.builtins_stored.is_set():
        return
    try:
        with platform.database.write() as uow:
            ensure_builtins(uow)
    except ReadOnlyError:
        # Reads go on with what is stored; the built-ins are stored once writes work again.
        return
    platform.cache.invalidate("strategies")
    platform.builtins_stored.set()


def _store(uow: UnitOfWork, tenant_id: int, name: str, strategy: Strategy | None, *,
           created_by: str, builtin: bool = False, description: str = "",
           timeframe: str = "1d", class_path: str | None = None,
           upload: UploadedSource | None = None) -> tuple[int, int, bool]:
    """(strategy id, version id, whether a version was added): the same code, class and
    parameters on the same timeframe as the newest version add nothing. A new version is
    audited."""
    repo = uow.strategies
    if upload is not None:
        digest, kind, rule_text = upload.program.code_hash, "python", None
        class_path, source = upload.program.class_name, upload.program.source
        parameters = dict(upload.program.parameters)
    elif strategy is not None:
        digest, source = code_hash(strategy), None
        kind = "rule" if isinstance(strategy, RuleStrategy) else "python"
        rule_text = strategy.text if isinstance(strategy, RuleStrategy) else None
        parameters = dict(strategy.parameters)
    else:
        raise BadInputError("nothing to store: give a strategy or an uploaded source")
    strategy_id = repo.strategy_id(tenant_id, name)
    latest = None
    if strategy_id is None:
        strategy_id = repo.create(NewStrategy(tenant_id=tenant_id, name=name, kind=kind,
                                              description=description, builtin=builtin))
    else:
        latest = repo.newest(strategy_id)
    if latest is not None and latest.kind != kind:
        raise BadInputError(f"strategy {name!r} is a {latest.kind} strategy; store the "
                            f"{kind} one under another name")
    if latest is not None and _unchanged(latest, kind, digest, timeframe, class_path,
                                         parameters, sandboxed=source is not None):
        return strategy_id, latest.version_id, False
    from signalfactory.services.audit import log as audit

    version = 1 if latest is None else latest.version + 1
    version_id = repo.add_version(NewStrategyVersion(
        strategy_id=strategy_id, version=version,
        rule_text=rule_text, class_path=class_path, parameters=parameters,
        timeframe=timeframe, code_hash=digest, created_by=created_by, source=source))
    audit.record(uow, "system" if builtin else created_by, audit.STRATEGY_VERSION_CREATED,
                 f"strategy_version:{version_id}",
                 {"strategy": name, "strategy_id": strategy_id, "version": version,
                  "code_hash": digest, "timeframe": timeframe, "builtin": builtin,
                  "sandboxed": source is not None},
                 tenant_id=tenant_id)
    return strategy_id, version_id, True


def check_new(tenant_id: int, name: str, timeframe: str) -> str:
    """The cleaned name, once name and timeframe are fine for a new strategy (version)."""
    name = check_name(name)
    Timeframe.parse(timeframe)
    if name in BUILTIN_TEMPLATES and tenant_id == DEFAULT_TENANT_ID:
        raise BadInputError(f"{name!r} is a built-in strategy; choose another name")
    return name


def check_new_strategy(tenant_id: int, name: str, *, rule_text: str | None = None,
                       class_path: str | None = None,
                       parameters: Mapping[str, StrategyParam] | None = None,
                       timeframe: str = "1d") -> tuple[str, Strategy]:
    """Everything ``add_strategy`` checks of a rule or plug-in strategy, without a database:
    (clean name, strategy). Callers check first and open the database only for input that
    passed."""
    name = check_new(tenant_id, name, timeframe)
    if rule_text is not None and class_path is None:
        if parameters:
            raise BadInputError("rule strategies take their numbers inside the rule text; "
                                "drop the parameters")
        return name, RuleStrategy.from_text(name, rule_text)
    if class_path is not None and rule_text is None:
        return name, load_strategy(class_path, dict(parameters or {}))
    raise BadInputError("give exactly one of a rule text or a Python class path")


def prepare_upload(platform: Platform, tenant_id: int, name: str, source: str, *,
                   class_name: str | None = None,
                   parameters: Mapping[str, StrategyParam] | None = None,
                   timeframe: str = "1d") -> UploadedSource:
    """Check an uploaded Python strategy before any transaction: its name and timeframe,
    the static check of its source (line and rule named), and a load in the sandbox. Pass
    the result to ``add_strategy(upload=...)``."""
    from signalfactory.services.sandbox.strategies import check_upload

    check_new(tenant_id, name, timeframe)
    return check_upload(platform, source, class_name, parameters)


def add_strategy(uow: UnitOfWork, tenant_id: int, name: str, *, rule_text: str | None = None,
                 class_path: str | None = None,
                 parameters: Mapping[str, StrategyParam] | None = None,
                 timeframe: str = "1d", created_by: str = "cli",
                 description: str = "",
                 upload: UploadedSource | None = None) -> tuple[StoredStrategy, bool]:
    """Add a strategy or a new version of it; the same code again changes nothing.

    Exactly one of ``rule_text``, ``class_path`` (an operator's installed plug-in) and
    ``upload`` (uploaded source that passed ``prepare_upload``)."""
    name = check_new(tenant_id, name, timeframe)
    if upload is not None:
        if rule_text is not None or class_path is not None or parameters:
            raise BadInputError("give the uploaded source alone (its parameters were given "
                                "when it was checked)")
        _id, _version_id, created = _store(uow, tenant_id, name, None,
                                           created_by=created_by, description=description,
                                           timeframe=timeframe, upload=upload)
        return get_strategy(uow, tenant_id, name), created
    name, strategy = check_new_strategy(tenant_id, name, rule_text=rule_text,
                                        class_path=class_path, parameters=parameters,
                                        timeframe=timeframe)
    _id, _version_id, created = _store(uow, tenant_id, name, strategy,
                                       created_by=created_by, description=description,
                                       timeframe=timeframe, class_path=class_path)
    return get_strategy(uow, tenant_id, name), created


def get_strategy(uow: UnitOfWork, tenant_id: int, name: str,
                 version: int | None = None) -> StoredStrategy:
    found = uow.strategies.find(tenant_id, name.strip().lower(), version)
    if found is None:
        what = f"{name!r}" + (f" version {version}" if version is not None else "")
        raise NotFoundError(f"no strategy {what}; list them with `signalfactory strategies "
                            "list` or GET /api/v1/strategies")
    return found


def list_strategies(uow: UnitOfWork, tenant_id: int) -> list[StoredStrategy]:
    return uow.strategies.visible(tenant_id)


def list_versions(uow: UnitOfWork, tenant_id: int, name: str) -> list[StoredStrategy]:
    return uow.strategies.history(get_strategy(uow, tenant_id, name).id)


def resolve(uow: UnitOfWork, tenant_id: int, name: str | None, rule: str | None,
            parameters: Mapping[str, StrategyParam] | None = None, *,
            platform: Platform | None = None, purpose: str = "signals"
            ) -> tuple[Strategy, StoredStrategy | None]:
    """The strategy to run: a stored one by name (built-in parameters may be overridden,
    which runs an unstored variant), or an ad-hoc rule. An uploaded strategy runs in
    ``platform``'s sandbox, its runs labelled ``purpose``."""
    if rule is not None and name is None:
        return RuleStrategy.from_text("adhoc", rule), None
    if name is None or rule is not None:
        raise BadInputError("give exactly one of --strategy NAME or --rule TEXT")
    stored = get_strategy(uow, tenant_id, name)
    if parameters:
        if not stored.builtin:
            raise BadInputError("only built-in strategies take parameter overrides; add a "
                                "new version of your strategy instead")
        return builtin_strategy(stored.name, **dict(parameters)), None
    return instantiate(stored, platform, purpose), stored
