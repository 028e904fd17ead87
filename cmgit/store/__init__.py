"""Orchestration: one unit of work per command.

load -> open -> validate -> change -> seal -> commit, where nothing becomes visible until
the commit moves the branch, so a refused or failed command leaves the work tree, the
index and the history as they were. Configuration (schemas, settings, staff registry) is
read from the committed tree, never from the work tree, so an uncommitted edit of
``staff.yaml`` cannot grant anyone anything.

The package, one job a module: `core` (the repository, its configuration, the person
acting, reading records), `unit` (change, seal, commit), `cases` (new, record, edit,
move, assign), `views` (list, due, log, find, validate), `protection` (retention due,
single-out risk), `admin` (staff and settings),
`procedure` (forms, workflow and SOP pages changed in the work tree), `migrate` (records
brought along by a migration), `forward` (the migrations a newer cmgit ships), `report`
(the internal monthly report), `referral` (packages for other agencies), `bulk` (reads on
every core), `setup` (new repositories, keys, signers) and `drivers` (git's merge and
diff drivers, recovery). `Repository` is the core with the commands, which are functions
over it, as its methods.
"""

from __future__ import annotations

from ..registry import ROLES
from . import (
    admin,
    cases,
    drivers,
    exchange,
    forward,
    procedure,
    protection,
    referral,
    report,
    unit,
    views,
)
from .cases import MAX_FORM_BYTES, MoveResult
from .core import Committed, Core, Loaded
from .setup import (
    DEFAULT_CRITERIA,
    clone_auditor,
    init_repository,
    keygen,
    load_identities,
    make_signer,
    read_limited,
    staff_author,
)
from .views import CaseList, CheckResult

# Below this many records a bulk read runs in this process: a pool costs more than it saves.
POOL_FROM = 200


class Repository(Core):
    """A case repository: the core (configuration, the person acting, records read and
    checked) with the commands as its methods. Each command is a function over the core
    in the module of its job: ``repo.move(...)`` is ``cases.move(repo, ...)``."""

    # the unit of work
    ensure_clean = unit.ensure_clean
    precheck_clean = unit.precheck_clean
    change = unit.change
    seal = unit.seal
    # cases
    new_case = cases.new_case
    show = cases.show
    record_form = cases.record_form
    edit = cases.edit
    move = cases.move
    assign = cases.assign
    caseloads = cases.caseloads
    item_ids = cases.item_ids
    read_form_file = cases.read_form_file
    # views
    list_cases = views.list_cases
    due = views.due
    case_log = views.case_log
    find = views.find
    validate = views.validate
    check_record = views.check_record
    internal_monthly = report.internal_monthly
    retention_due = protection.retention_due
    single_out = protection.single_out
    # referral and transfer packages
    providers = referral.directory
    pack = referral.pack
    receive_transfer = referral.receive_transfer
    # staff and settings
    staff_add = admin.staff_add
    staff_update = admin.staff_update
    staff_deactivate = admin.staff_deactivate
    settings_set = admin.settings_set
    # the procedure: forms, workflow, SOP pages
    config_commit = procedure.config_commit
    migrate = forward.migrate
    # cases in and out
    import_cases = exchange.import_cases
    export_cases = exchange.export_cases
    disclose = exchange.disclose
    # git's drivers and repair
    open_blob = drivers.open_blob
    merge_record = drivers.merge_record
    merge_sealed = drivers.merge_sealed
    bring_forward = drivers.bring_forward
    bring_forward_sealed = drivers.bring_forward_sealed
    recover = drivers.recover
    textconv = drivers.textconv


__all__ = [
    "DEFAULT_CRITERIA",
    "MAX_FORM_BYTES",
    "POOL_FROM",
    "ROLES",
    "CaseList",
    "CheckResult",
    "Committed",
    "Loaded",
    "MoveResult",
    "Repository",
    "clone_auditor",
    "init_repository",
    "keygen",
    "load_identities",
    "make_signer",
    "read_limited",
    "staff_author",
]
